"""Compare the gradient paths of TwoLayerNet on real MNIST: print a table, save a PNG chart.

    python scripts/compare_gradients.py [--batch N] [--hidden H] [--dtype float64|float32]
                                        [--seed S] [--methods LIST] [--activation A]
                                        [--order 2|4] [--h H] [--out FILE.png]

The same engine as ``python -m mnist_twolayer gradcheck`` (mnist_twolayer.gradcheck); the chart
shows the relative error of each compared pair per parameter on a log scale.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mnist_twolayer.cli import (
    OneLineParser,
    finite_difference_step,
    nonnegative_int,
    positive_int,
    run_reporting_errors,
)
from mnist_twolayer.errors import ConfigError
from mnist_twolayer.gradcheck import METHODS, STEPS, gradcheck_mnist, parse_methods
from mnist_twolayer.gradient import ACTIVATIONS, ORDERS
from mnist_twolayer.plots import plot_gradcheck


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=Path(__file__).name, description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=positive_int, default=100,
                        help="training images in the batch (default: 100)")
    parser.add_argument("--hidden", type=positive_int, default=50,
                        help="hidden units (default: 50)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--methods", metavar="LIST",
                        help=f"comma-separated paths among {', '.join(METHODS)} (default: all)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid")
    parser.add_argument("--order", type=int, choices=ORDERS, default=2,
                        help="2 = central differences, 4 = five-point stencil (vectorized only)")
    parser.add_argument("--h", type=finite_difference_step,
                        help=f"finite-difference step (default: {STEPS[2]:g} for order 2, "
                             f"{STEPS[4]:g} for order 4)")
    parser.add_argument("--out", type=Path, default=Path("gradcheck.png"),
                        help="PNG chart to write (default: gradcheck.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def run() -> int:
        if args.out.suffix.lower() != ".png":
            raise ConfigError(f"--out {args.out}: the chart is a PNG file; use a .png name")
        methods = parse_methods(args.methods) if args.methods is not None else None
        result = gradcheck_mnist(batch=args.batch, hidden=args.hidden, dtype=args.dtype,
                                 seed=args.seed, methods=methods, activation=args.activation,
                                 order=args.order, h=args.h)
        print(result.table())
        if result.comparisons:
            plot_gradcheck(result, args.out)
            print(f"\nwrote {args.out}")
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
