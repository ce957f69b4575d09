"""``train``: a run folder from a preset and flags, or an existing run continued."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .cli import (
    EXIT_INTERRUPTED,
    add_threads,
    nonnegative_float,
    nonnegative_int,
    number,
    positive_float,
    positive_int,
)
from .errors import ConfigError
from .run_folder import hold_run_folder


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .augment import AUGMENTATIONS
    from .config import PRESETS, SAMPLINGS, TrainConfig
    from .gradient import ACTIVATIONS
    from .network import DTYPES, GRADIENT_METHODS, INITS
    from .optim import OPTIMIZERS, SCHEDULES

    p = sub.add_parser("train", help="train a network and write a run folder",
                       description="Train a TwoLayerNet. A preset sets every value; flags "
                                   "override it. Runs write to --out (default runs/<time>).")
    p.add_argument("--preset", choices=sorted(PRESETS), help="book (= book-ch4), book-ch5, "
                   "default, best or record (default: default)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, help="budget in epochs (at least 1)")
    budget.add_argument("--iters", type=positive_int,
                        help="budget in iterations (at least 1)")
    p.add_argument("--hidden", type=positive_int, help="hidden units (at least 1)")
    p.add_argument("--activation", choices=ACTIVATIONS, help="hidden activation")
    p.add_argument("--batch-size", type=positive_int,
                   help="minibatch size (1 up to the number of training samples)")
    p.add_argument("--lr", type=positive_float, help="learning rate, > 0 (switching to adagrad, "
                   "rmsprop or adam without it: that optimizer's default, 0.01 or 0.001)")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS),
                   help="the book's ch. 6 optimizers, as torch.optim defines them")
    p.add_argument("--momentum", type=number(float, "a number", 0.0, strict=False, high=0.999),
                   help="momentum and nesterov: momentum in [0, 1) (default 0.9); without "
                        "--optimizer, 0 means plain SGD and > 0 momentum SGD")
    p.add_argument("--nesterov", action="store_const", const=True,
                   help="Nesterov momentum: the same as --optimizer nesterov")
    p.add_argument("--beta1", type=nonnegative_float,
                   help="adam: decay of the gradient average in [0, 1) (default 0.9)")
    p.add_argument("--beta2", type=nonnegative_float,
                   help="adam: decay of the squared-gradient average in [0, 1) (default 0.999)")
    p.add_argument("--decay-rate", type=nonnegative_float,
                   help="rmsprop: decay of the squared-gradient average in [0, 1) "
                        "(default 0.99)")
    p.add_argument("--eps", type=positive_float,
                   help="adagrad, rmsprop, adam: added to the denominator (default as "
                        "torch.optim: 1e-10 adagrad, 1e-8 rmsprop and adam; the book: 1e-7)")
    p.add_argument("--weight-decay", type=nonnegative_float,
                   help="L2 weight decay on W1, W2 (>= 0)")
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    p.add_argument("--init", choices=INITS, help="weight initialisation")
    p.add_argument("--dtype", choices=DTYPES, help="float32 (fast) or float64")
    p.add_argument("--seed", type=nonnegative_int,
                   help="random seed, >= 0 (same seed, same result on one machine)")
    p.add_argument("--dataset", help="dataset name (default: mnist)")
    p.add_argument("--val-size", type=nonnegative_int,
                   help="hold out this many training samples for validation and early "
                        "stopping (0 up to one less than the training set)")
    p.add_argument("--train-size", type=positive_int,
                   help="train on a subset of this size (1 up to what --val-size leaves)")
    p.add_argument("--sampling", choices=SAMPLINGS,
                   help="batches by epoch permutation or drawn with replacement (the book)")
    p.add_argument("--gradient", choices=GRADIENT_METHODS, help="gradient path")
    p.add_argument("--patience", type=positive_int,
                   help="stop after this many evaluations (at least 1) without a better "
                        "validation accuracy; needs --val-size")
    p.add_argument("--eval-every", type=positive_int, metavar="N",
                   help="evaluate (and checkpoint) every N iterations (default: once an epoch)")
    limits = TrainConfig()  # the defaults of the distortion limits, for the help
    p.add_argument("--augment", choices=AUGMENTATIONS,
                   help="distort every training digit afresh each time it is drawn")
    p.add_argument("--max-shift", type=nonnegative_float, metavar="PIXELS",
                   help=f"shift and affine: move by up to this much in y and x "
                        f"(default {limits.max_shift:g})")
    p.add_argument("--max-rotation", type=nonnegative_float, metavar="DEGREES",
                   help=f"affine: rotate by up to this angle either way "
                        f"(default {limits.max_rotation:g})")
    p.add_argument("--max-scale", type=nonnegative_float, metavar="FRACTION",
                   help=f"affine: resize by up to this fraction either way "
                        f"(default {limits.max_scale:g})")
    p.add_argument("--max-shear", type=nonnegative_float, metavar="DEGREES",
                   help=f"affine: slant by up to this angle either way "
                        f"(default {limits.max_shear:g})")
    p.add_argument("--elastic-alpha", type=nonnegative_float, metavar="PIXELS",
                   help=f"elastic: scale of the displacement field "
                        f"(default {limits.elastic_alpha:g})")
    p.add_argument("--elastic-sigma", type=positive_float, metavar="PIXELS",
                   help=f"elastic: width of the Gaussian that smooths it "
                        f"(default {limits.elastic_sigma:g})")
    p.add_argument("--augment-shift", type=number(int, "an integer", 0, strict=False, high=4),
                   metavar="N", help="the older spelling of --augment shift --max-shift N (0..4)")
    p.add_argument("--no-standardize", dest="standardize", action="store_const", const=False,
                   help="train on raw [0, 1] inputs")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<timestamp>)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the run in DIR; with --epochs or --iters, to that budget "
                        "(a finished run then starts a new cycle of its schedule)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    add_threads(p)
    p.set_defaults(run=_run_train)


def _default_run_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = Path("runs") / stamp, 1
    while candidate.exists():
        n += 1
        candidate = Path("runs") / f"{stamp}-{n}"
    return candidate


def _print_epoch(record: dict[str, Any]) -> None:
    val = "" if record["val_accuracy"] is None else f"  val {record['val_accuracy']:.4f}"
    tqdm.write(f"epoch {record['epoch']:>3}  iter {record['iteration']:>6}  "
               f"loss {record['train_loss']:.4f}  train {record['train_accuracy']:.4f}{val}  "
               f"test {record['test_accuracy']:.4f}  {record['seconds']:.1f}s", file=sys.stderr)


def _run_train(args: argparse.Namespace) -> int:
    from .config import config_from_preset, setting_names
    from .errors import TrainingInterrupted
    from .trainer import Trainer

    # every setting with a flag; weight_init_std has none (the book's 0.01 comes with --init)
    settings = {name: getattr(args, name) for name in setting_names() if hasattr(args, name)}
    settings["nesterov"] = args.nesterov  # the flag from before --optimizer (see config)
    hooks = {"quiet": args.quiet, "on_epoch": None if args.quiet else _print_epoch,
             "on_progress": None if args.quiet or sys.stderr.isatty() else _ProgressLines()}
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name, value in settings.items()
                 if value is not None and name not in ("epochs", "iters")] + (
                     ["--preset"] if args.preset else []) + (["--out"] if args.out else []) + (
                     ["--augment-shift"] if args.augment_shift is not None else [])
        if given:
            raise ConfigError(f"--resume continues a run with its saved settings (only its "
                              f"budget, --epochs or --iters, may grow); drop {', '.join(given)}")
        run_dir, config = args.resume, None
    else:
        run_dir = args.out or _default_run_dir()
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir} is a file; a run writes a folder")
        if args.augment_shift is not None:
            if args.augment is not None or args.max_shift is not None:
                raise ConfigError("--augment-shift N is the older spelling of --augment shift "
                                  "--max-shift N; give one or the other")
            settings["augment"] = "shift" if args.augment_shift else "none"
            settings["max_shift"] = args.augment_shift or None
        config = config_from_preset(args.preset or "default", **settings)
        config.validate()  # before the folder is made: a bad setting leaves nothing behind
    with hold_run_folder(run_dir, new=config is not None):
        if config is None:
            trainer = Trainer.resume(run_dir, data_dir=args.data_dir, epochs=args.epochs,
                                     iters=args.iters, **hooks)
            state = trainer.state
            if trainer.finished:
                print(f"{run_dir} had finished (iteration {state.iteration} of "
                      f"{trainer.total_iterations}): its model, metrics and figures are written "
                      f"again; more training: --resume {run_dir} --epochs N or --iters N")
            elif not args.quiet:
                print(f"resuming {run_dir} at iteration {state.iteration} of "
                      f"{trainer.total_iterations}")
        else:
            if (run_dir / "checkpoint.npz").exists():
                raise ConfigError(f"{run_dir} already holds a run; continue it with --resume "
                                  f"{run_dir} or choose another --out")
            trainer = Trainer(config, run_dir, data_dir=args.data_dir, **hooks)
        try:
            metrics = trainer.run()
        except TrainingInterrupted as stop:
            sys.stderr.write(f"interrupted at iteration {stop.iteration}: checkpoint, history "
                             f"and the model so far saved in {stop.run_dir}\nresume with: "
                             f"{args.prog} train --resume {stop.run_dir}\n")
            return EXIT_INTERRUPTED
    print(f"test accuracy {metrics['test_accuracy']:.2%} (loss {metrics['test_loss']:.4f}) "
          f"after {metrics['iterations']} iterations in {metrics['seconds']:.1f} s")
    if "model_from_epoch" in metrics:
        stopped = ("stopped early: " if metrics["stopped_early"] else "")
        print(f"{stopped}the model kept is epoch {metrics['model_from_epoch']:g}'s, the best "
              f"validation accuracy ({metrics['val_accuracy']:.2%}) of {metrics['epochs']:g} "
              f"epochs")
    print(f"run folder: {trainer.run_dir}")
    return 0


class _ProgressLines:
    """Progress for a terminal-less run (a pipe, a log file, where no bar draws): a line on
    stderr every PROGRESS_EVERY seconds, so a slow run is never silent for long."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, iteration: int, total: int, seconds: float) -> None:
        if seconds - self.last < PROGRESS_EVERY or iteration == total:
            return
        self.last = seconds
        left = seconds / iteration * (total - iteration)
        sys.stderr.write(f"iteration {iteration} of {total} ({iteration / total:.0%}), "
                         f"{seconds:.0f} s so far, about {left:.0f} s left\n")
        sys.stderr.flush()


PROGRESS_EVERY = 10.0
"""Seconds between progress lines when stderr is not a terminal."""
