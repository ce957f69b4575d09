"""The figures a run folder holds, drawn from a training history or a model's predictions.

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot, so
plotting neither opens windows nor changes the backend of an interactive session that imports
this module. Every PNG is written to a temporary name and renamed into place.

The history format (written by the trainer) is::

    {"iteration_loss": [float, ...],
     "epochs": [{"epoch": 1, "iteration": 600, "seconds": 1.2, "lr": 0.1,
                 "train_loss": ..., "train_accuracy": ...,
                 "val_loss": ... or None, "val_accuracy": ... or None,
                 "test_loss": ..., "test_accuracy": ...}, ...]}
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .errors import ConfigError
from .fileio import atomic_path
from .history import METRICS
from .metrics import confusion_matrix

if TYPE_CHECKING:
    from .gradcheck import GradcheckResult

DPI = 120
SPLITS = (("train", "train", "tab:blue"), ("val", "validation", "tab:orange"),
          ("test", "test", "tab:green"))


# --- numbers behind the figures ---


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so far, and non-finite
    values (a diverged step) are left out instead of poisoning every later point."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    total = np.concatenate([[0.0], np.cumsum(np.where(finite, v, 0.0))])
    count = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, v.size + 1)
    start = np.maximum(end - max(1, window), 0)
    n = count[end] - count[start]
    return np.divide(total[end] - total[start], n, out=np.full(v.size, np.nan), where=n > 0)


# --- figures from a history ---


def plot_loss(history: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Minibatch loss of every iteration (thin) with its moving average, and the per-epoch
    validation and test loss at the iteration where they were measured. A loss that stopped
    being finite is marked where it happened, since that is why such a run ended."""
    fig, ax = _figure((9, 5))
    losses = np.asarray(history.get("iteration_loss", []), dtype=np.float64)
    finite = np.isfinite(losses)
    shown = [losses[finite]]
    if losses.size:
        losses = np.where(finite, losses, np.nan)
        steps = np.arange(1, losses.size + 1)
        window = int(np.clip(losses.size // 50, 1, 200))
        if window > 1:
            ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.6,
                    label="minibatch loss")
            ax.plot(steps, moving_average(losses, window), color="tab:blue", linewidth=2,
                    label=f"minibatch loss, moving average of {window}")
        else:  # too few iterations to smooth
            ax.plot(steps, losses, ".-", color="tab:blue", linewidth=1.5, label="minibatch loss")
    if not finite.all():
        first = int(np.argmin(finite)) + 1
        ax.axvline(first, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"loss not finite from iteration {first}")
    for split, label, colour in SPLITS[1:]:
        x, y = _series(history.get("epochs", []), "iteration", f"{split}_loss")
        if x.size:
            ax.plot(x, y, "o-", color=colour, linewidth=1.5, markersize=5,
                    label=f"{label} loss (per evaluation)")
            shown.append(y)
    values = np.concatenate(shown)
    if not values.size:
        _say(ax, "no loss recorded yet")
    elif values.min() > 0 and values.max() / values.min() > 20:
        ax.set_yscale("log")  # the loss falls by orders of magnitude: show them all
    ax.set(title="Training loss", xlabel="iteration", ylabel="cross-entropy loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax)
    return _save(fig, path)


def plot_accuracy(history: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Train, validation and test accuracy at each evaluation (epoch)."""
    fig, ax = _figure((8, 5))
    epochs = history.get("epochs", [])
    for split, label, colour in SPLITS:
        x, y = _series(epochs, "epoch", f"{split}_accuracy")
        if x.size:
            ax.plot(x, y, "o-", color=colour, linewidth=1.8, markersize=5,
                    label=f"{label} ({y[-1]:.2%} at the end)")
    if ax.get_lines():
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        _say(ax, "no evaluation recorded yet")
    ax.set(title="Accuracy per epoch", xlabel="epoch", ylabel="accuracy")
    _legend(ax, loc="lower right")
    return _save(fig, path)


def plot_runs(runs: Sequence[tuple[str, dict[str, Any]]], path: str | os.PathLike[str],
              metric: str = "test_accuracy") -> Path:
    """Several runs side by side: ``metric`` per epoch (left) and its counterpart (accuracy
    and loss of the same split) per epoch (right), one colour per run."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if not runs:
        raise ConfigError("no runs to plot")
    split, kind = metric.split("_")
    other = f"{split}_{'loss' if kind == 'accuracy' else 'accuracy'}"
    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colours = _run_colours(len(runs))
    for (name, history), colour in zip(runs, colours, strict=True):
        epochs = history.get("epochs", [])
        for ax, key in zip(axes, (metric, other), strict=True):
            x, y = _series(epochs, "epoch", key)
            final = "no data" if not y.size else (f"{y[-1]:.2%}" if key.endswith("accuracy")
                                                 else f"{y[-1]:.4f}")
            ax.plot(x, y, "o-", color=colour, linewidth=1.6, markersize=4,
                    label=f"{name} ({final})")
    split_name = dict((s, label) for s, label, _ in SPLITS)[split]
    for ax, key in zip(axes, (metric, other), strict=True):
        is_accuracy = key.endswith("accuracy")
        ax.set(title=f"{split_name} {'accuracy' if is_accuracy else 'loss'}".capitalize(),
               xlabel="epoch", ylabel="accuracy" if is_accuracy else "cross-entropy loss")
        if is_accuracy:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right" if is_accuracy else "upper right", fontsize="small",
                  title="run (last value)", title_fontsize="small")
    fig.suptitle(f"{len(runs)} run{'s' if len(runs) != 1 else ''} compared")
    return _save(fig, path)


# --- figures from predictions and weights ---


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike[str],
                   class_names: Sequence[str] | None = None) -> Path:
    """Confusion matrix with the count in every cell; colour on a square-root-like scale so the
    few mistakes show beside the large diagonal."""
    names = _class_names(class_names)
    k = len(names)
    cm = confusion_matrix(y_true, y_pred, num_classes=k)
    side = max(6.5, 0.62 * k + 2.5)
    fig, ax = _figure((side + 1.2, side))
    vmax = max(1, int(cm.max()))
    norm = PowerNorm(gamma=0.4, vmin=0, vmax=vmax)
    image = ax.imshow(cm, cmap="Blues", norm=norm)
    ticks = [0] + [10**e for e in range(int(np.log10(vmax)) + 1)]
    fig.colorbar(image, ax=ax, shrink=0.8, label="count (square-root-like scale)", ticks=ticks)
    cell_colours = image.cmap(norm(cm))
    luminance = cell_colours[..., :3] @ np.array([0.299, 0.587, 0.114])
    fontsize = 9 if k <= 10 and cm.max() < 10_000 else 7
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=fontsize,
                color="white" if luminance[i, j] < 0.5 else "black",
                fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0,
                  ha="right" if max(map(len, names)) > 2 else "center")
    ax.set_yticks(range(k), names)
    total = int(cm.sum())
    accuracy = np.trace(cm) / total if total else 0.0
    ax.set(xlabel="predicted", ylabel="true",
           title=f"Confusion matrix: {total - int(np.trace(cm))} of {total} wrong "
                 f"(accuracy {accuracy:.2%})")
    return _save(fig, path)


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                       probs: np.ndarray, path: str | os.PathLike[str], max_items: int = 36,
                       class_names: Sequence[str] | None = None) -> Path:
    """A grid of wrongly classified digits, most confident mistakes first, each labelled
    "true → predicted (p)". ``probs`` is (N, classes) or the (N,) probability of the
    prediction; images are (N, 784), (N, 1, 28, 28) or (N, 28, 28) in any range."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    pics = _as_square_images(images)
    probs = np.asarray(probs, dtype=np.float64)
    if not len(t) == len(p) == len(pics) == len(probs):
        raise ValueError("images, y_true, y_pred and probs must have the same length")
    confidence = probs[np.arange(len(p)), p] if probs.ndim == 2 else probs.ravel()
    wrong = np.flatnonzero(t != p)
    if not wrong.size:
        fig, ax = _figure((6, 2.5))
        ax.set_axis_off()
        _say(ax, f"No misclassified digits: all {len(t)} are correct.", size=13)
        ax.set_title("Misclassified digits")
        return _save(fig, path)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:max(1, max_items)]
    tiles = pics[shown].astype(np.float64)
    low = tiles.min(axis=(1, 2), keepdims=True)
    span = tiles.max(axis=(1, 2), keepdims=True) - low
    tiles = np.divide(tiles - low, span, out=np.zeros_like(tiles), where=span > 0)
    names = _class_names(class_names)
    labels = [f"{names[t[i]]} → {names[p[i]]} ({confidence[i]:.2f})" for i in shown]
    title = (f"Misclassified: {len(wrong)} of {len(t)} wrong; showing {len(shown)}, most "
             "confident first\n(true → predicted (probability of the prediction))")
    fig = _tile_figure(tiles, labels, title, colormaps["gray_r"], 0.0, 1.0,
                       label_size=9 if class_names is None else 6.5)
    return _save(fig, path)


def plot_weights(W1: np.ndarray, path: str | os.PathLike[str], max_units: int = 64) -> Path:
    """First-layer weights of the first ``max_units`` hidden units, each shown as the image it
    responds to: red where the weight is positive, blue where negative, white at zero, each
    unit scaled to its own largest magnitude so faint units stay visible."""
    w = np.asarray(W1, dtype=np.float64)
    side = math.isqrt(w.shape[0]) if w.ndim == 2 else 0
    if w.ndim != 2 or side * side != w.shape[0]:
        raise ValueError(f"W1 must be (pixels, hidden) with a square pixel count, got {w.shape}")
    units = min(w.shape[1], max(1, max_units))
    tiles = w[:, :units].T.reshape(units, side, side)
    scale = np.abs(tiles).max(axis=(1, 2), keepdims=True)
    tiles = np.divide(tiles, scale, out=np.zeros_like(tiles), where=scale > 0)
    labels = [f"unit {j}" for j in range(units)]
    title = (f"First-layer weights of {units} of {w.shape[1]} hidden units\n"
             "(red +, blue −, white 0; each unit on its own symmetric scale)")
    fig = _tile_figure(tiles, labels, title, colormaps["RdBu_r"], -1.0, 1.0, label_size=8)
    return _save(fig, path)


def plot_augmentation(originals: np.ndarray, distorted: np.ndarray, labels: Sequence[int],
                      description: str, path: str | os.PathLike[str]) -> Path:
    """What the net is trained on: each training digit (left, set apart) beside its distorted
    draws. ``originals`` is (k, pixels), ``distorted`` (k, draws, pixels), both as [0, 1] ink
    (values beyond are clipped; bilinear resampling never leaves the range)."""
    k, draws, _ = distorted.shape
    side = math.isqrt(originals.shape[1])
    mosaic, lefts, tops = augmentation_mosaic(originals, distorted)
    fig = Figure(figsize=(1.0 + 0.9 * (draws + 1), 0.9 * k + 1.1), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(np.clip(mosaic, 0.0, 1.0), cmap=colormaps["gray_r"].with_extremes(bad="0.85"),
              vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([lefts[0] + side / 2, (lefts[1] + lefts[-1] + side) / 2],
                  ["training digit", f"{draws} distorted draws of it"])
    ax.set_yticks([top + side / 2 for top in tops], [f"label {int(t)}" for t in labels])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(f"Training digits as the net sees them, drawn afresh each time they are "
                 f"used\n{description}", fontsize=9.5)
    return _save(fig, path)


def augmentation_mosaic(originals: np.ndarray, distorted: np.ndarray
                        ) -> tuple[np.ndarray, list[int], list[int]]:
    """One image of k rows: digit r, a wide gap, then its draws; NaN between tiles. Returns it
    with the left column of every tile in a row and the top row of every row of tiles."""
    k, draws, pixels = distorted.shape
    side = math.isqrt(pixels)
    gap, wide = 2, 10  # pixels between draws, and between the original and its draws
    step = side + gap
    lefts = [gap] + [wide + col * step for col in range(1, draws + 1)]
    tops = [gap + row * step for row in range(k)]
    mosaic = np.full((k * step + gap, lefts[-1] + side + gap), np.nan)
    tiles = np.concatenate([np.asarray(originals, dtype=np.float64)[:, None],
                            np.asarray(distorted, dtype=np.float64)], axis=1)
    for row, top in enumerate(tops):
        for col, left in enumerate(lefts):
            mosaic[top:top + side, left:left + side] = tiles[row, col].reshape(side, side)
    return mosaic, lefts, tops


def plot_gradcheck(result: GradcheckResult, path: str | os.PathLike[str]) -> Path:
    """A bar chart of rel_error per parameter and compared pair of a gradient check, on a log
    scale. An exact agreement (0) is drawn at 1e-18, below every real error."""
    pairs = list(dict.fromkeys((c.a, c.b) for c in result.comparisons))
    params = list(dict.fromkeys(c.param for c in result.comparisons))
    fig, ax = _figure((8, 4.5))
    width = 0.8 / max(len(pairs), 1)
    positions = np.arange(len(params))
    for i, (a, b) in enumerate(pairs):
        errors = [max(result.find(a, b, p).rel_error, 1e-18) for p in params]
        ax.bar(positions + (i - (len(pairs) - 1) / 2) * width, errors, width,
               label=f"{a} vs {b}")
    ax.set_yscale("log")
    ax.set_xticks(positions, params)
    ax.set_ylabel("relative error  ||a - b|| / (||a|| + ||b||)")
    cfg = result.config
    ax.set_title(f"Gradient agreement: {cfg['input_size']}-{cfg['hidden']}-{cfg['output_size']} "
                 f"{cfg['activation']}, batch {cfg['batch']}, {cfg['dtype']}, "
                 f"order {cfg['order']}, h = {cfg['h']:g}")
    ax.legend(fontsize="small")
    return _save(fig, path)


# --- helpers ---


def _class_names(class_names: Sequence[str] | None) -> list[str]:
    return [str(c) for c in class_names] if class_names is not None else list("0123456789")


def _figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG (whatever the suffix of ``path``) atomically."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return target


def _series(epochs: Sequence[dict[str, Any]], x_key: str, y_key: str) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """(x, y) of the evaluations that recorded a finite ``y_key``."""
    pairs = [(e[x_key], e[y_key]) for e in epochs
             if e.get(y_key) is not None and math.isfinite(e[y_key])]
    if not pairs:
        return np.empty(0), np.empty(0)
    x, y = np.asarray(pairs, dtype=np.float64).T
    return x, y


def _tile_figure(tiles: np.ndarray, labels: Sequence[str], title: str, cmap: Any, vmin: float,
                 vmax: float, label_size: float) -> Figure:
    """Many small images as one mosaic in a single axes, each with a label above it: one
    imshow draws in a fraction of the time a grid of subplots takes."""
    n, side, _ = tiles.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    gap, band = max(2, side // 7), max(6, side // 3)
    cell_w, cell_h = side + gap, side + band
    mosaic = np.full((rows * cell_h + gap, cols * cell_w + gap), np.nan)
    width = 1.3 * cols  # inches of mosaic; the figure is wide enough for its title too
    fig = Figure(figsize=(max(6.5, width + 0.3), width * mosaic.shape[0] / mosaic.shape[1] + 0.9),
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    for i, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        top, left = (i // cols) * cell_h + band, (i % cols) * cell_w + gap
        mosaic[top:top + side, left:left + side] = tile
        ax.text(left + side / 2, top - 1, label, ha="center", va="bottom", fontsize=label_size)
    ax.imshow(mosaic, cmap=cmap.with_extremes(bad="0.88"), vmin=vmin, vmax=vmax,
              interpolation="nearest")
    fig.suptitle(title, fontsize=11)
    return fig


def _legend(ax: Axes, loc: str = "best") -> None:
    if ax.get_lines():
        ax.legend(loc=loc, fontsize="small")
    ax.grid(True, alpha=0.3)


def _say(ax: Axes, text: str, size: float = 12) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=size)


def _run_colours(n: int) -> list[Any]:
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / (n - 1)) for i in range(n)]


def _as_square_images(images: np.ndarray) -> np.ndarray:
    """(N, side, side) from (N, side*side), (N, 1, side, side) or (N, side, side)."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ValueError(f"flattened images must have a square pixel count, got {arr.shape}")
        arr = arr.reshape(-1, side, side)
    if arr.ndim != 3:
        raise ValueError(f"images must be (N, 784), (N, 1, 28, 28) or (N, 28, 28), got "
                         f"{arr.shape}")
    return arr
