"""Curves of several runs in one figure: a small sweep, or existing run folders.

    python scripts/plot_accuracy.py --sweep hidden --values 25,50,100,200 --epochs 3
    python scripts/plot_accuracy.py --sweep optimizer          # the book's ch. 6 comparison
    python scripts/plot_accuracy.py --sweep activation         # sigmoid (ch. 4) vs ReLU (ch. 5)
    python scripts/plot_accuracy.py --sweep init               # normal 0.01, Xavier, He
    python scripts/plot_accuracy.py runs/A runs/B --out compare.png

A sweep trains one job with one thing changed per run, from the same seed (so the same initial
weights where the change allows and the same batches), each run in its own folder under
--runs-dir. The hidden, lr, batch_size and momentum sweeps draw test accuracy per epoch
(``plots.plot_runs``); the optimizer, activation and init sweeps draw the minibatch loss of
every iteration and the test accuracy (``plots.plot_sweep``), as the book's ch. 6 figures do.
A run that diverges keeps the curve it had, marked in the legend.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_twolayer.cli import OneLineParser, nonnegative_int, positive_int, run_reporting_errors
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import ConfigError, TrainingError
from mnist_twolayer.history import METRICS, load_history
from mnist_twolayer.optim import OPTIMIZERS
from mnist_twolayer.plots import plot_runs, plot_sweep
from mnist_twolayer.trainer import Trainer


@dataclass(frozen=True)
class Sweep:
    """One comparison: the values it tries by default, the job each run trains, and how a
    value becomes that run's name and settings."""

    kind: Callable[[str], Any]
    values: str
    preset: str
    budget: dict[str, int]
    job: dict[str, Any] = field(default_factory=dict)
    runs: Callable[[str, Sequence[Any]], list[tuple[str, dict[str, Any]]]] = (
        lambda setting, values: [(f"{setting}={value}", {setting: value}) for value in values])
    title: str = ""
    families: int = 1  # runs in this many consecutive groups (see plots.plot_sweep)


def _optimizer_runs(setting: str, values: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each optimizer at its own default learning rate, as the book's comparison runs them."""
    runs = []
    for name in values:
        if name not in OPTIMIZERS:
            raise ConfigError(f"--values: unknown optimizer {name!r}; choose among "
                              f"{', '.join(OPTIMIZERS)}")
        lr = OPTIMIZERS[name].default_lr
        runs.append((f"{name}, lr {lr:g}", {"optimizer": name, "lr": lr}))
    return runs


def _init_runs(setting: str, values: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    names = {"normal": "N(0, 0.01²)", "xavier": "Xavier", "he": "He"}
    return [(f"{activation}, {names.get(init, init)}", {"activation": activation, "init": init})
            for activation in ("sigmoid", "relu") for init in values]


# The book's ch. 5 job (784-50-10 ReLU, N(0, 0.01^2) init, SGD lr 0.1, batches of 100 drawn
# with replacement, [0, 1] inputs) is the base of the activation and init sweeps; its ch. 6
# optimizer comparison uses batches of 128, 2000 iterations and He init (its 100-unit layers).
SWEEPS: dict[str, Sweep] = {
    "hidden": Sweep(int, "25,50,100,200", "default", {"epochs": 3}),
    "lr": Sweep(float, "0.05,0.2,0.8", "default", {"epochs": 3}),
    "batch_size": Sweep(int, "25,100,400", "default", {"epochs": 3}),
    "momentum": Sweep(float, "0,0.5,0.9", "default", {"epochs": 3}),
    "optimizer": Sweep(str, ",".join(OPTIMIZERS), "book-ch5", {"iters": 2000},
                       dict(hidden=100, init="he", batch_size=128), _optimizer_runs,
                       "The ch. 6 optimizers, each at its default lr: 784-100-10 ReLU, He init, "
                       "batch 128"),
    "activation": Sweep(str, "sigmoid,relu", "book-ch5", {"iters": 10000}, {},
                        lambda setting, values: [(value, {setting: value}) for value in values],
                        title="Sigmoid (ch. 4) or ReLU (ch. 5): the book's job, 784-50-10, "
                              "SGD lr 0.1, batch 100"),
    "init": Sweep(str, "normal,xavier,he", "book-ch5", {"iters": 3000}, {}, _init_runs,
                  "Initial weights for each activation: 784-50-10, SGD lr 0.1, batch 100",
                  families=2),
}
FIGURE_SWEEPS = ("optimizer", "activation", "init")  # drawn by plot_sweep


def _values(text: str, kind: Callable[[str], Any]) -> list:
    try:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--values {text!r}: expected comma-separated "
                          f"{getattr(kind, '__name__', 'value')}s") from None
    if not values:
        raise ConfigError("--values is empty")
    return values


def sweep(name: str, values: Sequence, *, budget: dict[str, int], train_size: int | None,
          seed: int, runs_dir: Path) -> list[tuple[str, dict]]:
    """Train one run per value of sweep ``name``; return (label, history) pairs. A run that
    diverges is reported and kept with the history it had."""
    spec = SWEEPS[name]
    runs = []
    for label, settings in spec.runs(name, values):
        config = config_from_preset(spec.preset, train_size=train_size, seed=seed,
                                    **{**spec.job, **budget, **settings})
        folder = runs_dir / "-".join(f"{key}-{value}" for key, value in settings.items()
                                     if key != "lr")
        trainer = Trainer(config, folder)
        try:
            metrics = trainer.run()
        except TrainingError as exc:
            print(f"{label}: diverged ({exc})")
            label = (f"{label}: diverged after "
                     f"{len(trainer.state.history['iteration_loss'])} iterations")
        else:
            print(f"{label}: test accuracy {metrics['test_accuracy']:.2%} in "
                  f"{metrics['seconds']:.1f} s")
        runs.append((label, trainer.state.history))
    return runs


def _epilog() -> str:
    lines = ["sweeps (default values; job; budget):"]
    for name, spec in SWEEPS.items():
        budget = ", ".join(f"{value} {key}" for key, value in spec.budget.items())
        job = ", ".join(f"{key} {value}" for key, value in spec.job.items())
        lines.append(f"  {name:<11} {spec.values}; preset {spec.preset}"
                     f"{', ' + job if job else ''}; {budget}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=Path(__file__).name, description=__doc__.splitlines()[0],
                           epilog=_epilog(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="*", metavar="RUN_DIR",
                        help="existing run folders to draw (instead of a sweep)")
    parser.add_argument("--sweep", choices=SWEEPS, default="hidden",
                        help="what to vary (default: hidden)")
    parser.add_argument("--values", help="comma-separated values (default: the sweep's own, "
                        "listed below)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, help="epochs per run (default: the "
                        "sweep's budget, listed below)")
    budget.add_argument("--iters", type=positive_int, help="iterations per run")
    parser.add_argument("--train-size", type=positive_int, help="train on a subset")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="(default: 0)")
    parser.add_argument("--metric", choices=METRICS, default="test_accuracy",
                        help="the curve of the hidden, lr, batch_size and momentum sweeps and "
                             "of run folders (default: test_accuracy)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/sweep"),
                        help="where sweep runs are written (default: runs/sweep)")
    parser.add_argument("--out", type=Path, help="PNG file to write (default: SWEEP.png for a "
                        "sweep, accuracy.png for run folders)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def run() -> int:
        out = args.out or Path("accuracy.png" if args.runs else f"{args.sweep}.png")
        if out.suffix.lower() != ".png":
            raise ConfigError(f"--out {out}: the figure is a PNG file; use a .png name")
        if args.runs:
            runs = [(run.name or str(run), load_history(run)) for run in args.runs]
            plot_runs(runs, out, metric=args.metric)
            print(f"wrote {out}")
            return 0
        spec = SWEEPS[args.sweep]
        budget = ({"epochs": args.epochs} if args.epochs else
                  {"iters": args.iters} if args.iters else spec.budget)
        runs = sweep(args.sweep, _values(args.values or spec.values, spec.kind), budget=budget,
                     train_size=args.train_size, seed=args.seed, runs_dir=args.runs_dir)
        if args.sweep in FIGURE_SWEEPS:
            plot_sweep(runs, out, spec.title, spec.families)
        else:
            plot_runs(runs, out, metric=args.metric)
        print(f"wrote {out}")
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
