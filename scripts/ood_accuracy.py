"""Accuracy of saved models on digits from outside MNIST, per category: print a table.

    python scripts/ood_accuracy.py MODEL [MODEL ...] [--seed S] [--per-category N]
                                   [--markdown] [--save-images DIR]

The digits come from mnist_twolayer.ood (fonts, handwriting-like fonts, pen strokes, photo
conditions), drawn from --seed, and go through the same preparation as ``predict``. A column
is named after the model's run folder (``runs/best/model.npz`` -> ``best``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mnist_twolayer.cli import OneLineParser, nonnegative_int, positive_int, run_reporting_errors
from mnist_twolayer.errors import ConfigError
from mnist_twolayer.images import FIELD
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.ood import CATEGORIES, accuracy_by_category, make_ood_set, prepare_set

ROWS = {"fonts": "fonts (sans, serif)", "handwriting": "handwriting fonts",
        "strokes": "pen strokes", "photo": "photo conditions", "all": "all"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=Path(__file__).name, description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL",
                        help="model.npz files written by train")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="draws the digits (default: 0)")
    parser.add_argument("--per-category", type=positive_int, default=250,
                        help="digits per category (default: 250)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--save-images", type=Path, metavar="DIR",
                        help="also write the digits as image files into DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def run() -> int:
        if args.save_images is not None and args.save_images.exists() \
                and not args.save_images.is_dir():
            raise ConfigError(f"--save-images {args.save_images} is a file; it names a folder")
        nets = [TwoLayerNet.load(path) for path in args.models]
        for path, net in zip(args.models, nets, strict=True):
            if net.input_size != FIELD * FIELD:
                raise ConfigError(f"{path} takes {net.input_size} inputs, not the "
                                  f"{FIELD * FIELD} of a 28x28 digit")
        ood = make_ood_set(seed=args.seed, per_category=args.per_category)
        if ood.missing:
            print(f"note: font packages not installed, their digits are left out: "
                  f"{', '.join(ood.missing)}", file=sys.stderr)
        if args.save_images is not None:
            ood.save(args.save_images)
        prepared = prepare_set(ood)
        tallies = [accuracy_by_category(net, ood, prepared) for net in nets]
        names = [path.parent.name or str(path) for path in args.models]
        print(_table(names, tallies, args.markdown))
        if args.save_images is not None:
            print(f"wrote {len(ood.digits)} images to {args.save_images}")
        return 0

    return run_reporting_errors(run)


def _table(names: list[str], tallies: list[dict[str, tuple[int, int]]], markdown: bool) -> str:
    rows = [key for key in (*CATEGORIES, "all") if key in tallies[0]]
    cells = [[ROWS[key], str(tallies[0][key][1])]
             + [f"{100 * right / total:.1f}%" for right, total in (t[key] for t in tallies)]
             for key in rows]
    header = ["category", "digits", *names]
    if markdown:
        lines = [header, ["---"] * len(header), *cells]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [max(len(row[k]) for row in (header, *cells)) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if k == 0 else cell.rjust(w)
                               for k, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     for row in (header, *cells))


if __name__ == "__main__":
    sys.exit(main())
