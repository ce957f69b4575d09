"""Command-line interface: argparse subcommands that only assemble the library.

Every user mistake becomes one ``error: ...`` line on stderr and exit status 2; an interrupt
exits 130. Nothing here computes anything the library does not already offer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm import tqdm

from .errors import ConfigError, ImageError, MnistTwoLayerError

EXIT_DISAGREE = 1  # gradcheck: some pair of gradient paths is outside its tolerance
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not a usage block (scripts use it too)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        sys.exit(EXIT_USER_ERROR)


# --- argument types: each rejects a bad value with a message argparse prints on one line ---


def _number(kind: Callable[[str], Any], name: str, low: float | None, strict: bool,
            high: float | None = None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if kind is float and value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if strict else value < low):
            relation = "greater than" if strict else "at least"
            raise argparse.ArgumentTypeError(f"{text!r} must be {relation} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high:g}")
        return value

    return parse


positive_int = _number(int, "an integer", 0, strict=True)
nonnegative_int = _number(int, "an integer", 0, strict=False)
positive_float = _number(float, "a number", 0.0, strict=True)
nonnegative_float = _number(float, "a number", 0.0, strict=False)
unit_interval = _number(float, "a number", 0.0, strict=False, high=1.0)
# beyond 0.1 a difference quotient says little about the derivative (and exp may overflow)
finite_difference_step = _number(float, "a number", 0.0, strict=True, high=0.1)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


# --- subcommands ---


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download (or copy) a dataset, verify and cache it")
    p.add_argument("--dataset", default="mnist", help="dataset name (default: mnist)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--force", action="store_true", help="fetch again even if files verify")
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="a mirror to try first (repeatable)")
    p.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                   help="copy the files from a local folder instead of the network")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    from .datasets import dataset_dir
    from .download import download

    results = download(args.dataset, args.data_dir, mirrors=args.mirror, force=args.force,
                       from_dir=args.from_dir, quiet=args.quiet)
    if not args.quiet:
        for r in results:
            how = {"present": "already present and verified",
                   "copied": f"copied from {r.source} and verified",
                   "downloaded": f"downloaded from {r.source} and verified"}[r.action]
            print(f"{r.filename}: {how}")
    print(f"{args.dataset}: {len(results)} files verified in "
          f"{dataset_dir(args.dataset, args.data_dir)}")
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show where a dataset lives and whether it verifies")
    p.add_argument("--dataset", default="mnist", help="dataset name (default: mnist)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from . import datasets

    info = datasets.dataset_info(args.dataset, args.data_dir)
    if args.json:
        _print_json(info)
        return 0
    print(f"dataset   {info['dataset']}")
    print(f"data_dir  {info['data_dir']}  ({info['data_dir_source']})")
    print(f"folder    {info['path']}")
    print(f"{'split':<6} {'present':<8} {'verified':<9} {'samples':>7}  label counts 0..9")
    problems = []
    for split, s in info["splits"].items():
        counts = " ".join(map(str, s["label_counts"] or [])) or "-"
        samples = "-" if s["samples"] is None else s["samples"]
        print(f"{split:<6} {_yes(s['present']):<8} {_yes(s['verified']):<9} {samples:>7}  {counts}")
        problems += [f"{e['file']}: {'missing' if not e['present'] else e['error']}"
                     for e in s["files"].values() if not e["verified"]]
        problems += [f"{split}: {s['error']}"] if s["error"] else []
    for problem in problems:
        print(f"  {problem}")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import PRESETS, SAMPLINGS
    from .gradient import ACTIVATIONS
    from .network import DTYPES, GRADIENT_METHODS, INITS
    from .optim import OPTIMIZERS, SCHEDULES

    p = sub.add_parser("train", help="train a network and write a run folder",
                       description="Train a TwoLayerNet. A preset sets every value; flags "
                                   "override it. Runs write to --out (default runs/<time>).")
    p.add_argument("--preset", choices=sorted(PRESETS), help="book (= book-ch4), book-ch5, "
                   "default or best (default: default)")
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
    p.add_argument("--momentum", type=_number(float, "a number", 0.0, strict=False, high=0.999),
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
    p.add_argument("--augment-shift", type=_number(int, "an integer", 0, strict=False, high=4),
                   help="shift training digits by up to this many pixels (0..4)")
    p.add_argument("--no-standardize", dest="standardize", action="store_const", const=False,
                   help="train on raw [0, 1] inputs")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<timestamp>)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the run in DIR; with --epochs or --iters, to that budget "
                        "(a finished run then starts a new cycle of its schedule)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _add_threads(p)
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
                     ["--preset"] if args.preset else []) + (["--out"] if args.out else [])
        if given:
            raise ConfigError(f"--resume continues a run with its saved settings (only its "
                              f"budget, --epochs or --iters, may grow); drop {', '.join(given)}")
        run_dir, config = args.resume, None
    else:
        run_dir = args.out or _default_run_dir()
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir} is a file; a run writes a folder")
        config = config_from_preset(args.preset or "default", **settings)
        config.validate()  # before the folder is made: a bad setting leaves nothing behind
    with _run_folder(run_dir, new=config is not None):
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


@contextmanager
def _run_folder(run_dir: Path, new: bool) -> Iterator[None]:
    """Hold the run folder for this process: a second train or --resume on it is refused in
    one line, and writes nothing. A new folder that ends up holding nothing but its lock (a
    data load that failed) is removed, so a failed command leaves nothing behind."""
    from .errors import CheckpointError
    from .fileio import FolderInUse, folder_lock

    created = new and not run_dir.exists()
    if not new and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir / 'checkpoint.npz'}: no checkpoint here; is this a "
                              f"run folder?" if not run_dir.exists() else
                              f"{run_dir} is a file; resume takes the run folder that holds "
                              f"checkpoint.npz")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(run_dir, wait=False):
            yield
    except FolderInUse as busy:
        raise ConfigError(f"{run_dir} is in use by process {busy.holder or '(unknown)'}, a "
                          f"train or --resume running there; wait for it to end or choose "
                          f"another --out") from None
    finally:
        if created and [p.name for p in run_dir.iterdir()] in ([], [".lock"]):
            shutil.rmtree(run_dir, ignore_errors=True)


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


def _load_model(path: Path) -> Any:
    """The model in ``path``: a model.npz, or the folder of a run that wrote one."""
    from .network import TwoLayerNet, find_model

    return TwoLayerNet.load(find_model(path))


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy, loss, per-class precision and recall")
    p.add_argument("model", type=Path, help="a model.npz written by train")
    p.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--out", type=Path, help="folder for confusion.png and misclassified.png "
                   "(default: the model's folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_threads(p)
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from . import plots
    from .datasets import class_names, get_spec, load_mnist
    from .metrics import confusion_matrix, precision_recall

    net = _load_model(args.model)
    trained_on = net.metadata.get("dataset", "mnist")
    dataset = get_spec(args.dataset or trained_on).name
    if dataset != trained_on:
        sys.stderr.write(f"warning: {args.model} was trained on {trained_on}, not {dataset}: "
                         f"expect little better than chance\n")
    _, (x_test, t_test) = load_mnist(dataset=dataset, data_dir=args.data_dir, dtype=net.dtype)
    if x_test.shape[1] != net.input_size:
        raise ConfigError(f"{args.model} takes {net.input_size} inputs but {dataset} images "
                          f"have {x_test.shape[1]} pixels")
    names = class_names(dataset, net.output_size)
    loss, accuracy = net.evaluate(x_test, t_test)
    probs = net.predict(x_test)
    predicted = probs.argmax(axis=1)
    cm = confusion_matrix(t_test, predicted, net.output_size)
    precision, recall = precision_recall(cm)
    out = args.out or (args.model if args.model.is_dir() else args.model.parent)
    figures = [out / "confusion.png", out / "misclassified.png"]
    plots.plot_confusion(t_test, predicted, figures[0], class_names=names)
    plots.plot_misclassified(x_test, t_test, predicted, probs, figures[1], class_names=names)
    report = {
        "model": str(args.model), "dataset": dataset, "samples": int(len(t_test)),
        "test_accuracy": float(accuracy), "test_loss": float(loss),
        "per_class": [{"class": k, "name": names[k], "precision": float(precision[k]),
                       "recall": float(recall[k]), "support": int(cm[k].sum())}
                      for k in range(net.output_size)],
        "figures": [str(f) for f in figures],
    }
    if args.json:
        _print_json(report)
        return 0
    width = max(5, *map(len, names))
    print(f"{dataset} test: accuracy {accuracy:.2%}, loss {loss:.4f} on {len(t_test)} images")
    print(f"{'class':>{width}} {'precision':>9} {'recall':>7} {'support':>7}")
    for row in report["per_class"]:
        print(f"{row['name']:>{width}} {row['precision']:>9.4f} {row['recall']:>7.4f} "
              f"{row['support']:>7}")
    print("figures: " + ", ".join(report["figures"]))
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="name the digit (or class) in PNG or JPEG images")
    p.add_argument("model", type=Path, help="a model.npz or the folder of a run")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                   help="image files, or folders (each image file in them, sorted by name)")
    p.add_argument("--top-k", type=positive_int, default=1, help="show the k likeliest classes")
    p.add_argument("--save-prepared", type=Path, metavar="DIR",
                   help="write the 28x28 image each input became into DIR (a PNG named after "
                        "the input), to see what the network saw")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_predict)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""What ``predict`` takes from a folder it is given."""


def _image_paths(given: Sequence[Path]) -> list[Path]:
    """Files as given; a folder becomes its image files sorted by name (an empty one is
    itself, so that it is reported as a failure rather than skipped in silence)."""
    paths = []
    for path in given:
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            paths += found or [path]
        else:
            paths.append(path)
    return paths


def _prepared_names(folder: Path, images: Sequence[Path]) -> list[Path]:
    """Where --save-prepared writes each input: DIR/<input stem>.png, with -2, -3, ... for
    inputs that share a stem. The folder is created; it may not be a file, and no name may be
    one of the inputs (the user's own picture is never overwritten)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--save-prepared {folder} is a file; it names a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--save-prepared {folder}: cannot create the folder "
                          f"({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--save-prepared {folder}: the folder is not writable")
    names, taken = [], set()
    for image in images:
        name, n = f"{image.stem}.png", 1
        while name in taken:
            n += 1
            name = f"{image.stem}-{n}.png"
        taken.add(name)
        target = folder / name
        if target.exists() and any(given.exists() and target.samefile(given)
                                   for given in images):
            raise ConfigError(f"--save-prepared {folder}: {target} is one of the input images; "
                              f"choose another folder")
        names.append(target)
    return names


def _run_predict(args: argparse.Namespace) -> int:
    from .datasets import DIGITS, class_names
    from .images import FIELD, image_to_mnist, save_prepared

    net = _load_model(args.model)
    if net.input_size != FIELD * FIELD:
        raise ConfigError(f"{args.model} takes {net.input_size} inputs; predict prepares "
                          f"{FIELD}x{FIELD} digits ({FIELD * FIELD} inputs)")
    if args.top_k > net.output_size:
        raise ConfigError(f"--top-k {args.top_k} is more than the model's {net.output_size} "
                          f"classes")
    names = class_names(net.metadata.get("dataset"), net.output_size)
    digits = names == DIGITS
    images = _image_paths(args.images)
    prepared_paths = (None if args.save_prepared is None
                      else _prepared_names(args.save_prepared, images))
    results, failed, saved = [], 0, 0
    for i, path in enumerate(images):
        try:
            if path.is_dir():
                raise ImageError(f"{path}: a folder with no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            x = image_to_mnist(path).astype(net.dtype, copy=False)
        except ImageError as exc:
            failed += 1
            sys.stderr.write(f"error: {exc}\n")
            results.append({"image": str(path), "error": str(exc)})
            continue
        probs = net.predict(x[None, :])[0]
        top = np.argsort(-probs, kind="stable")[:args.top_k]
        best = int(top[0])
        results.append({"image": str(path), "class": best, "name": names[best],
                        **({"digit": best} if digits else {}),
                        "probability": float(probs[best]),
                        "top_k": [{"class": int(k), "name": names[k],
                                   "probability": float(probs[k])} for k in top]})
        if prepared_paths is not None:
            results[-1]["prepared"] = str(save_prepared(x, prepared_paths[i]))
            saved += 1
        if not args.json:
            print(f"{path}: " + ", ".join(f"{names[k]} ({probs[k]:.3f})" for k in top))
    if args.json:
        _print_json({"model": str(args.model), "predictions": results})
    elif prepared_paths is not None:
        print(f"prepared images: {saved} written to {args.save_prepared}")
    return EXIT_USER_ERROR if failed else 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    from .history import METRICS, RUN_AXES

    p = sub.add_parser("plot", help="overlay the curves of several runs in one figure")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    p.add_argument("--out", type=Path, default=Path("runs.png"),
                   help="PNG file to write (default: runs.png)")
    p.add_argument("--metric", choices=METRICS, default="test_accuracy",
                   help="the curve to compare (default: test_accuracy)")
    p.add_argument("--x", choices=tuple(RUN_AXES), default="epoch",
                   help="the x axis: epoch, iteration or seconds of training (default: epoch)")
    p.add_argument("--label", action="append", metavar="TEXT",
                   help="a run's name in the legend, once per run in order (default: the "
                        "folder's name; for a folder named by its start time, its preset and "
                        "the settings that differ from it)")
    p.set_defaults(run=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from . import plots
    from .history import load_history

    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: figures are PNG files; use a .png name")
    if args.label is not None and len(args.label) != len(args.runs):
        raise ConfigError(f"{len(args.label)} --label for {len(args.runs)} runs; give one per "
                          f"run, in the same order")
    labels = args.label or [_run_label(run_dir) for run_dir in args.runs]
    runs = [(label, load_history(run_dir)) for label, run_dir in zip(labels, args.runs,
                                                                       strict=True)]
    lacking = [label for label, history in runs
               if not any(r.get(args.metric) is not None for r in history["epochs"])]
    plots.plot_runs(runs, args.out, metric=args.metric, x=args.x)
    if lacking:
        sys.stderr.write(f"note: {', '.join(lacking)} recorded no {args.metric} (drawn as "
                         f"'no data')\n")
    print(f"wrote {args.out}")
    return 0


def _run_label(run_dir: Path) -> str:
    """The folder's name; for one named by its start time (train's default), the preset and
    the settings that differ from it, which say more than a date."""
    import re

    from .config import TrainConfig, config_from_preset

    name = run_dir.resolve().name or str(run_dir)
    if not re.fullmatch(r"\d{8}-\d{6}(-\d+)?", name):
        return name
    try:
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        preset = config_from_preset(config.preset)
    except (OSError, ValueError, TypeError, MnistTwoLayerError):
        return name
    changed = [f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
               for key, value in config.to_dict().items() if value != getattr(preset, key)]
    return f"{config.preset}{': ' if changed else ''}{', '.join(changed)} ({name})"


def _add_gradcheck(sub: argparse._SubParsersAction) -> None:
    from .gradcheck import METHODS, STEPS
    from .gradient import ACTIVATIONS, ORDERS

    p = sub.add_parser("gradcheck", help="compare the gradient paths on real MNIST images")
    p.add_argument("--batch", type=positive_int, default=100,
                   help="training images in the batch (default: 100)")
    p.add_argument("--hidden", type=positive_int, default=50,
                   help="hidden units (default: 50)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the net (default: float64; torch always runs in float64)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="picks the images and the initial weights (default: 0)")
    p.add_argument("--methods", metavar="LIST",
                   help=f"comma-separated paths among {', '.join(METHODS)} "
                        "(default: all but the book's slow nditer loop, ~25 s on the full "
                        "net; torch only if installed)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid",
                   help="hidden activation of the net (default: sigmoid)")
    p.add_argument("--order", type=int, choices=ORDERS, default=2,
                   help="finite differences: 2 = central, 4 = five-point stencil "
                        "(vectorized only) (default: 2)")
    p.add_argument("--h", type=finite_difference_step,
                   help=f"finite-difference step (default: {STEPS[2]:g} for order 2, "
                        f"{STEPS[4]:g} for order 4)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_threads(p)
    p.set_defaults(run=_run_gradcheck)


def _run_gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import gradcheck_mnist, parse_methods

    methods = parse_methods(args.methods) if args.methods is not None else None
    result = gradcheck_mnist(batch=args.batch, hidden=args.hidden, dtype=args.dtype,
                             seed=args.seed, methods=methods, activation=args.activation,
                             order=args.order, h=args.h, data_dir=args.data_dir)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.table())
    # a pair outside its tolerance is a finding, not a user error: exit 1 (2 is for mistakes)
    return 0 if all(verdict.agree for verdict in result.verdicts()) else EXIT_DISAGREE


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the digit pad: draw digits in a browser, see the net read "
                                     "them")
    p.add_argument("model", type=Path, nargs="?", metavar="MODEL",
                   help="a model.npz or a run folder (default: the newest runs/*/model.npz)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_number(int, "an integer", 0, strict=False, high=65535),
                   default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from .network import find_model
    from .server import PadServer, is_loopback, load_pad, serve_until_interrupted

    pad = load_pad(find_model(args.model))
    server = PadServer(pad, args.host, args.port)
    if not is_loopback(args.host):
        sys.stderr.write(f"warning: --host {args.host}: the digit pad is reachable from the "
                         f"network, by anyone who can reach this machine\n")
    print(f"digit pad for {pad.path}: {server.url}  (Ctrl-C stops it)", flush=True)
    if args.open:
        _open_browser(server.url)
    serve_until_interrupted(server)
    sys.stderr.write("digit pad stopped\n")
    return 0


def _open_browser(url: str) -> None:
    """Open ``url`` in a thread: a console browser would otherwise hold the server up."""
    import threading
    import webbrowser

    def run() -> None:
        if not webbrowser.open(url):
            sys.stderr.write(f"note: found no browser to open; open {url} yourself\n")

    threading.Thread(target=run, name="open-browser", daemon=True).start()


MODULE_PROG = "python -m mnist_twolayer"


def build_parser(prog: str = MODULE_PROG) -> argparse.ArgumentParser:
    from . import __version__

    parser = OneLineParser(
        prog=prog,
        description="Train and inspect a NumPy two-layer network on MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"mnist_twolayer {__version__}")
    parser.set_defaults(prog=prog)  # commands name the program as it was invoked
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_download, _add_info, _add_train, _add_evaluate, _add_predict,
                _add_plot, _add_gradcheck, _add_serve):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The CLI. ``prog`` is how it was invoked, for messages: ``python -m mnist_twolayer`` (from
    __main__), else the script's own name (``mnist-twolayer``) when it reads sys.argv."""
    if prog is None:
        prog = Path(sys.argv[0]).name if argv is None and sys.argv[0] else MODULE_PROG
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported on one line
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors(lambda: _with_threads(getattr(args, "threads", None),
                                                      lambda: args.run(args)))


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="BLAS threads for the matrix products (default: the BLAS's own choice, "
                        "usually one per core)")


def _with_threads(threads: int | None, command: Callable[[], int]) -> int:
    """Run ``command`` with the BLAS limited to ``threads`` threads (None: as it is)."""
    if threads is None:
        return command()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        return command()


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run ``command`` and return its exit status; a user's mistake, an interrupt, sizes too
    large for memory or a write the OS refuses become one ``error:`` line and a status."""
    try:
        return command()
    except MnistTwoLayerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return EXIT_INTERRUPTED
    except MemoryError as exc:  # sizes this machine cannot hold, e.g. --hidden 10**12
        sys.stderr.write(f"error: out of memory ({exc or 'MemoryError'}); use smaller sizes "
                         f"(--hidden, --batch-size, --train-size, --batch)\n")
        return EXIT_USER_ERROR
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}\n")
        return 1
