"""Test accuracy curves of several runs in one figure: a small sweep, or existing run folders.

    python scripts/plot_accuracy.py --sweep hidden --values 25,50,100,200 --epochs 3
    python scripts/plot_accuracy.py --sweep lr --values 0.05,0.2,0.8 --epochs 3
    python scripts/plot_accuracy.py runs/A runs/B --out compare.png

A sweep trains the default preset with one setting changed per run (each run writes its own
folder under --runs-dir), then draws every run's curve with ``plots.plot_runs``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mnist_twolayer.cli import OneLineParser, nonnegative_int, positive_int, run_reporting_errors
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import ConfigError
from mnist_twolayer.history import METRICS, load_history
from mnist_twolayer.plots import plot_runs
from mnist_twolayer.trainer import Trainer

SWEEPS = {"hidden": int, "lr": float, "batch_size": int, "momentum": float}


def _values(text: str, kind: type) -> list:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--values {text!r}: expected comma-separated {kind.__name__}s") from None
    if not values:
        raise ConfigError("--values is empty")
    return values


def sweep(setting: str, values: Sequence, *, epochs: int, train_size: int | None, seed: int,
          runs_dir: Path) -> list[tuple[str, dict]]:
    """Train one run per value of ``setting``; return (label, history) pairs."""
    runs = []
    for value in values:
        config = config_from_preset("default", epochs=epochs, train_size=train_size, seed=seed,
                                    **{setting: value})
        label = f"{setting}={value}"
        trainer = Trainer(config, runs_dir / label.replace("=", "-"))
        metrics = trainer.run()
        print(f"{label}: test accuracy {metrics['test_accuracy']:.2%} in "
              f"{metrics['seconds']:.1f} s")
        runs.append((label, trainer.state.history))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=Path(__file__).name, description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="*", metavar="RUN_DIR",
                        help="existing run folders to draw (instead of a sweep)")
    parser.add_argument("--sweep", choices=sorted(SWEEPS), default="hidden",
                        help="the setting to vary (default: hidden)")
    parser.add_argument("--values", default="25,50,100,200",
                        help="comma-separated values of the swept setting")
    parser.add_argument("--epochs", type=positive_int, default=3, help="epochs per run")
    parser.add_argument("--train-size", type=positive_int, help="train on a subset")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--metric", choices=METRICS, default="test_accuracy")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/sweep"),
                        help="where sweep runs are written (default: runs/sweep)")
    parser.add_argument("--out", type=Path, default=Path("accuracy.png"),
                        help="PNG file to write (default: accuracy.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def run() -> int:
        if args.out.suffix.lower() != ".png":
            raise ConfigError(f"--out {args.out}: the figure is a PNG file; use a .png name")
        if args.runs:
            runs = [(run.name or str(run), load_history(run)) for run in args.runs]
        else:
            runs = sweep(args.sweep, _values(args.values, SWEEPS[args.sweep]),
                         epochs=args.epochs, train_size=args.train_size, seed=args.seed,
                         runs_dir=args.runs_dir)
        plot_runs(runs, args.out, metric=args.metric)
        print(f"wrote {args.out}")
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
