"""Command-line interface: argparse subcommands that only assemble the library.

Every user mistake becomes one ``error: ...`` line on stderr and exit status 2; an interrupt
exits 130. Nothing here computes anything the library does not already offer.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm import tqdm

from .errors import ConfigError, ImageError, MnistTwoLayerError

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
    from .augment import AUGMENTATIONS
    from .config import PRESETS, SAMPLINGS, TrainConfig
    from .network import DTYPES, GRADIENT_METHODS, INITS
    from .optim import SCHEDULES

    p = sub.add_parser("train", help="train a network and write a run folder",
                       description="Train a TwoLayerNet. A preset sets every value; flags "
                                   "override it. Runs write to --out (default runs/<time>).")
    p.add_argument("--preset", choices=sorted(PRESETS), help="book, default, best or record "
                   "(default: default)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, help="budget in epochs")
    budget.add_argument("--iters", type=positive_int, help="budget in iterations")
    p.add_argument("--hidden", type=positive_int, help="hidden units")
    p.add_argument("--batch-size", type=positive_int, help="minibatch size")
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--momentum", type=_number(float, "a number", 0.0, strict=False, high=0.999),
                   help="momentum in [0, 1)")
    p.add_argument("--nesterov", action="store_const", const=True, help="Nesterov momentum")
    p.add_argument("--weight-decay", type=nonnegative_float, help="L2 weight decay on W1, W2")
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    p.add_argument("--init", choices=INITS, help="weight initialisation")
    p.add_argument("--dtype", choices=DTYPES, help="float32 (fast) or float64")
    p.add_argument("--seed", type=nonnegative_int, help="random seed (same seed, same result)")
    p.add_argument("--dataset", help="dataset name (default: mnist)")
    p.add_argument("--val-size", type=nonnegative_int,
                   help="hold out this many training samples for validation and early stopping")
    p.add_argument("--train-size", type=positive_int, help="train on a subset of this size")
    p.add_argument("--sampling", choices=SAMPLINGS,
                   help="batches by epoch permutation or drawn with replacement (the book)")
    p.add_argument("--gradient", choices=GRADIENT_METHODS, help="gradient path")
    p.add_argument("--patience", type=positive_int,
                   help="stop after this many epochs without a better validation accuracy")
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
    p.add_argument("--augment-shift", type=_number(int, "an integer", 0, strict=False, high=4),
                   metavar="N", help="the older spelling of --augment shift --max-shift N")
    p.add_argument("--no-standardize", dest="standardize", action="store_const", const=False,
                   help="train on raw [0, 1] inputs")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<timestamp>)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
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

    on_epoch = None if args.quiet else _print_epoch
    # every setting with a flag; weight_init_std has none (the book's 0.01 comes with --init)
    settings = {name: getattr(args, name) for name in setting_names() if hasattr(args, name)}
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name, value in settings.items()
                 if value is not None] + (["--preset"] if args.preset else []) + (
                     ["--out"] if args.out else []) + (
                     ["--augment-shift"] if args.augment_shift is not None else [])
        if given:
            raise ConfigError(f"--resume continues a run with its saved settings; drop "
                              f"{', '.join(given)}")
        trainer = Trainer.resume(args.resume, data_dir=args.data_dir, quiet=args.quiet,
                                 on_epoch=on_epoch)
    else:
        run_dir = args.out or _default_run_dir()
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"--out {run_dir} is a file; a run writes a folder")
        if (run_dir / "checkpoint.npz").exists():
            raise ConfigError(f"{run_dir} already holds a run; continue it with --resume "
                              f"{run_dir} or choose another --out")
        if args.augment_shift is not None:
            if args.augment is not None or args.max_shift is not None:
                raise ConfigError("--augment-shift N is the older spelling of --augment shift "
                                  "--max-shift N; give one or the other")
            settings["augment"] = "shift" if args.augment_shift else "none"
            settings["max_shift"] = args.augment_shift or None
        config = config_from_preset(args.preset or "default", **settings)
        trainer = Trainer(config, run_dir, data_dir=args.data_dir, quiet=args.quiet,
                          on_epoch=on_epoch)
    try:
        metrics = trainer.run()
    except TrainingInterrupted as stop:
        sys.stderr.write(f"interrupted at iteration {stop.iteration}: checkpoint and history "
                         f"saved in {stop.run_dir}\nresume with: python -m mnist_twolayer "
                         f"train --resume {stop.run_dir}\n")
        return EXIT_INTERRUPTED
    print(f"test accuracy {metrics['test_accuracy']:.2%} (loss {metrics['test_loss']:.4f}) "
          f"after {metrics['iterations']} iterations in {metrics['seconds']:.1f} s")
    print(f"run folder: {trainer.run_dir}")
    return 0


def _load_model(path: Path) -> Any:
    from .network import TwoLayerNet

    return TwoLayerNet.load(path)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy, loss, per-class precision and recall")
    p.add_argument("model", type=Path, help="a model.npz written by train")
    p.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--out", type=Path, help="folder for confusion.png and misclassified.png "
                   "(default: the model's folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from . import plots
    from .datasets import load_mnist
    from .metrics import confusion_matrix, precision_recall

    net = _load_model(args.model)
    dataset = args.dataset or net.metadata.get("dataset", "mnist")
    _, (x_test, t_test) = load_mnist(dataset=dataset, data_dir=args.data_dir, dtype=net.dtype)
    if x_test.shape[1] != net.input_size:
        raise ConfigError(f"{args.model} takes {net.input_size} inputs but {dataset} images "
                          f"have {x_test.shape[1]} pixels")
    loss, accuracy = net.evaluate(x_test, t_test)
    probs = net.predict(x_test)
    predicted = probs.argmax(axis=1)
    cm = confusion_matrix(t_test, predicted, net.output_size)
    precision, recall = precision_recall(cm)
    out = args.out or args.model.parent
    figures = [plots.plot_confusion(t_test, predicted, out / "confusion.png"),
               plots.plot_misclassified(x_test, t_test, predicted, probs,
                                        out / "misclassified.png")]
    report = {
        "model": str(args.model), "dataset": dataset, "samples": int(len(t_test)),
        "test_accuracy": float(accuracy), "test_loss": float(loss),
        "per_class": [{"class": k, "precision": float(precision[k]), "recall": float(recall[k]),
                       "support": int(cm[k].sum())} for k in range(net.output_size)],
        "figures": [str(f) for f in figures],
    }
    if args.json:
        _print_json(report)
        return 0
    print(f"{dataset} test: accuracy {accuracy:.2%}, loss {loss:.4f} on {len(t_test)} images")
    print(f"{'class':>5} {'precision':>9} {'recall':>7} {'support':>7}")
    for row in report["per_class"]:
        print(f"{row['class']:>5} {row['precision']:>9.4f} {row['recall']:>7.4f} "
              f"{row['support']:>7}")
    print("figures: " + ", ".join(report["figures"]))
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="name the digit in PNG or JPEG images")
    p.add_argument("model", type=Path, help="a model.npz written by train")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=positive_int, default=1, help="show the k likeliest digits")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from .images import FIELD, image_to_mnist

    net = _load_model(args.model)
    if net.input_size != FIELD * FIELD:
        raise ConfigError(f"{args.model} takes {net.input_size} inputs; predict prepares "
                          f"{FIELD}x{FIELD} digits ({FIELD * FIELD} inputs)")
    if args.top_k > net.output_size:
        raise ConfigError(f"--top-k {args.top_k} is more than the model's {net.output_size} "
                          f"classes")
    results, failed = [], 0
    for path in args.images:
        try:
            x = image_to_mnist(path).astype(net.dtype, copy=False)
        except ImageError as exc:
            failed += 1
            sys.stderr.write(f"error: {exc}\n")
            results.append({"image": str(path), "error": str(exc)})
            continue
        probs = net.predict(x[None, :])[0]
        top = np.argsort(-probs, kind="stable")[:args.top_k]
        results.append({"image": str(path), "digit": int(top[0]),
                        "probability": float(probs[top[0]]),
                        "top_k": [{"digit": int(k), "probability": float(probs[k])}
                                  for k in top]})
        if not args.json:
            others = "".join(f", {k} ({probs[k]:.3f})" for k in top[1:])
            print(f"{path}: {top[0]} ({probs[top[0]]:.3f}){others}")
    if args.json:
        _print_json({"model": str(args.model), "predictions": results})
    return EXIT_USER_ERROR if failed else 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    from .history import METRICS

    p = sub.add_parser("plot", help="overlay the curves of several runs in one figure")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    p.add_argument("--out", type=Path, default=Path("runs.png"),
                   help="PNG file to write (default: runs.png)")
    p.add_argument("--metric", choices=METRICS, default="test_accuracy",
                   help="the curve to compare (default: test_accuracy)")
    p.set_defaults(run=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    from . import plots
    from .history import load_history

    runs = [(run_dir.name or str(run_dir), load_history(run_dir)) for run_dir in args.runs]
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: figures are PNG files; use a .png name")
    print(f"wrote {plots.plot_runs(runs, args.out, metric=args.metric)}")
    return 0


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
                        "(default: all; torch only if installed, nditer only for order 2)")
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m mnist_twolayer",
        description="Train and inspect a NumPy two-layer network on MNIST.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_download, _add_info, _add_train, _add_evaluate, _add_predict,
                _add_plot, _add_gradcheck):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad flag already reported on one line
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting_errors(lambda: args.run(args))


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
