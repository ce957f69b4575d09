"""``evaluate``, ``predict`` and ``plot``: looking at what a run made."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cli import EXIT_USER_ERROR, add_threads, positive_int, print_json
from .errors import ConfigError, ImageError, MnistTwoLayerError


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_evaluate(sub)
    _add_predict(sub)
    _add_plot(sub)


def _load_model(path: Path) -> Any:
    """The model in ``path``: a model.npz, or the folder of a run that wrote one."""
    from .network import TwoLayerNet, find_model

    return TwoLayerNet.load(find_model(path))


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy, loss, per-class precision and recall")
    p.add_argument("model", type=Path, help="a model.npz written by train, or its run folder")
    p.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    p.add_argument("--data-dir", type=Path, help="where datasets live (see README)")
    p.add_argument("--out", type=Path, help="folder for confusion.png and misclassified.png, "
                   "or confusion-DATASET.png and misclassified-DATASET.png for another dataset "
                   "than the model's, so the run's own figures stay (default: the model's "
                   "folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_threads(p)
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
    suffix = "" if dataset == trained_on else f"-{dataset}"
    figures = [out / f"confusion{suffix}.png", out / f"misclassified{suffix}.png"]
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
        print_json(report)
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


def _check_prepared_folder(folder: Path) -> None:
    """Refuse a --save-prepared folder that could not be written before any work is done: an
    existing folder must be writable; a new one (with any missing parents, as a run folder
    gets them) is made later, so the nearest folder that exists on its path must be writable
    (a run whose every image fails makes no folder at all)."""
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(f"--save-prepared {folder} is a file; it names a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"--save-prepared {folder}: the folder is not writable")
        return
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    problem = ("is not a folder" if not ancestor.is_dir() else
               "is not writable" if not os.access(ancestor, os.W_OK | os.X_OK) else None)
    if problem:
        raise ConfigError(f"--save-prepared {folder}: cannot create the folder ({ancestor} "
                          f"{problem})")


def _prepared_names(folder: Path, images: Sequence[Path]) -> list[Path]:
    """Where --save-prepared writes each input: DIR/<input stem>.png, with -2, -3, ... for
    inputs that share a stem. No name may be one of the inputs (the user's own picture is
    never overwritten)."""
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


def _make_prepared_folder(folder: Path) -> None:
    """The --save-prepared folder, made when the first prepared image is written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--save-prepared {folder}: cannot create the folder "
                          f"({exc.strerror})") from None


def _run_predict(args: argparse.Namespace) -> int:
    from .datasets import DIGITS, class_names
    from .images import FIELD, image_to_mnist, save_prepared

    images = _image_paths(args.images)
    prepared_paths = None
    if args.save_prepared is not None:
        _check_prepared_folder(args.save_prepared)
        prepared_paths = _prepared_names(args.save_prepared, images)
    net = _load_model(args.model)
    if net.input_size != FIELD * FIELD:
        raise ConfigError(f"{args.model} takes {net.input_size} inputs; predict prepares "
                          f"{FIELD}x{FIELD} digits ({FIELD * FIELD} inputs)")
    if args.top_k > net.output_size:
        raise ConfigError(f"--top-k {args.top_k} is more than the model's {net.output_size} "
                          f"classes")
    names = class_names(net.metadata.get("dataset"), net.output_size)
    digits = names == DIGITS
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
            if not saved:
                _make_prepared_folder(args.save_prepared)
            results[-1]["prepared"] = str(save_prepared(x, prepared_paths[i]))
            saved += 1
        if not args.json:
            print(f"{path}: " + ", ".join(f"{names[k]} ({probs[k]:.3f})" for k in top))
    if args.json:
        print_json({"model": str(args.model), "predictions": results})
    elif prepared_paths is not None:
        print(f"prepared images: {saved} written to {args.save_prepared}" if saved else
              f"prepared images: none written ({args.save_prepared} not made)")
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
    from .history import load_history, recorded

    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: figures are PNG files; use a .png name")
    if args.label is not None and len(args.label) != len(args.runs):
        raise ConfigError(f"{len(args.label)} --label for {len(args.runs)} runs; give one per "
                          f"run, in the same order")
    labels = args.label or [_run_label(run_dir) for run_dir in args.runs]
    runs = [(label, load_history(run_dir)) for label, run_dir in zip(labels, args.runs,
                                                                       strict=True)]
    lacking = [label for label, history in runs
               if not recorded(history["epochs"], args.x, args.metric)[0].size]
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
