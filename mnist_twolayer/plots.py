"""Every figure: a run folder's, drawn from a training history or a model's predictions, and
the comparisons (runs, sweeps, gradient checks).

Every function returns its Figure (what it drew can be read back from the Axes) and, given a
path, writes it as a PNG (see :mod:`drawing` for how figures are made and written).

The history format (written by the trainer) is::

    {"iteration_loss": [float, ...],
     "epochs": [{"epoch": 1, "iteration": 600, "seconds": 1.2, "lr": 0.1,
                 "train_loss": ..., "train_accuracy": ...,
                 "val_loss": ... or None, "val_accuracy": ... or None,
                 "test_loss": ..., "test_accuracy": ...}, ...]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FormatStrFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    PercentFormatter,
)

from .drawing import (
    Target,
    as_square_images,
    class_names_or_digits,
    figure,
    legend,
    run_colours,
    save,
    say,
    tile_figure,
)
from .errors import ConfigError, check_choice
from .history import METRICS, RUN_AXES, best_evaluation
from .metrics import confusion_matrix

if TYPE_CHECKING:
    from .gradcheck import GradcheckResult


SPLITS = (("train", "train", "tab:blue"), ("val", "validation", "tab:orange"),
          ("test", "test", "tab:green"))
# Validation and test curves often lie on top of each other: different markers and dashes keep
# both visible, validation drawn over test.
EVALUATION_STYLE = {
    "train": dict(marker="o", markersize=5, linestyle="-", zorder=2),
    "val": dict(marker="s", markersize=6, linestyle="--", markerfacecolor="none", zorder=4),
    "test": dict(marker="o", markersize=4, linestyle="-", zorder=3),
}
MIN_SMOOTHING = 5
"""A moving average over fewer iterations than this smooths nothing worth a second line."""


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


def plot_loss(history: dict[str, Any], path: Target = None) -> Figure:
    """Minibatch loss of every iteration (thin) with its moving average once there are enough
    iterations to smooth, and the validation and test loss at each evaluation. A loss that
    stopped being finite is marked where it happened, since that is why such a run ended."""
    fig, ax = figure((9, 5))
    losses = np.asarray(history.get("iteration_loss", []), dtype=np.float64)
    finite = np.isfinite(losses)
    shown = [losses[finite]]
    if losses.size:
        losses = np.where(finite, losses, np.nan)
        steps = np.arange(1, losses.size + 1)
        window = int(np.clip(losses.size // 50, 1, 200))
        if window >= MIN_SMOOTHING:
            ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.6,
                    label="minibatch loss")
            ax.plot(steps, moving_average(losses, window), color="tab:blue", linewidth=2,
                    label=f"minibatch loss, moving average of {window}")
        else:  # too few iterations to smooth
            ax.plot(steps, losses, ".-", color="tab:blue", linewidth=1.2, markersize=3,
                    label="minibatch loss")
    if not finite.all():
        first = int(np.argmin(finite)) + 1
        ax.axvline(first, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"loss not finite from iteration {first}")
    for split, label, colour in SPLITS[1:]:
        x, y = _series(history.get("epochs", []), "iteration", f"{split}_loss")
        if x.size:
            style = EVALUATION_STYLE[split]
            ax.plot(x, y, color=colour, linewidth=1.5, label=f"{label} loss (per evaluation)",
                    **style)
            shown.append(y)
    values = np.concatenate(shown)
    if not values.size:
        say(ax, "no loss recorded yet")
    elif values.min() > 0 and values.max() / values.min() > 20:
        ax.set_yscale("log")  # the loss falls by orders of magnitude: show them all
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set(title="Loss: every minibatch, and each evaluation", xlabel="iteration",
           ylabel="cross-entropy loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend(ax)
    return save(fig, path)


def plot_accuracy(history: dict[str, Any], path: Target = None,
                  kept: tuple[float, float] | None = None) -> Figure:
    """Train, validation and test accuracy at each evaluation. ``kept`` is (epoch, test
    accuracy) of the model the run kept (the best validation epoch, else the last): marked with
    a line, and the test legend reports that model's accuracy, not the last evaluation's."""
    fig, ax = figure((8, 5))
    epochs = history.get("epochs", [])
    if kept is None and epochs:
        best = best_evaluation(history)
        record = best[1] if best is not None else epochs[-1]
        if record.get("test_accuracy") is not None:
            kept = (record["epoch"], record["test_accuracy"])
    for split, label, colour in SPLITS:
        x, y = _series(epochs, "epoch", f"{split}_accuracy")
        if not x.size:
            continue
        if split == "test" and kept is not None:
            what = f"{kept[1]:.2%}, the kept model of epoch {kept[0]:g}"
        else:
            what = f"{y[-1]:.2%} at the end"
        ax.plot(x, y, color=colour, linewidth=1.8, label=f"{label} ({what})",
                **EVALUATION_STYLE[split])
    if ax.get_lines():
        if kept is not None and len(epochs) > 1:
            ax.axvline(kept[0], color="0.35", linestyle=":", linewidth=1.2,
                       label=f"model kept: epoch {kept[0]:g}")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))  # decimals follow the axis' span
        if len(epochs) <= 2:  # one or two points: show them with room around
            ax.margins(x=0.3, y=0.3)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        say(ax, "no evaluation recorded yet")
    ax.set(title="Accuracy at each evaluation", xlabel="epoch", ylabel="accuracy")
    legend(ax, loc="lower right")
    return save(fig, path)


def plot_runs(runs: Sequence[tuple[str, dict[str, Any]]], path: Target = None,
              metric: str = "test_accuracy", x: str = "epoch") -> Figure:
    """Several runs side by side: ``metric`` (left) and its counterpart (accuracy and loss of
    the same split, right) against ``x`` (epoch, iteration or seconds), one colour per run. A
    run without the metric is listed as "no data"; when no run has it, that is an error."""
    check_choice("metric", metric, METRICS)
    check_choice("x axis", x, tuple(RUN_AXES))
    if not runs:
        raise ConfigError("no runs to plot")
    lacking = [name for name, history in runs if not _series(
        history.get("epochs", []), x, metric)[0].size]
    if len(lacking) == len(runs):
        raise ConfigError(f"no run has {metric} (none of {', '.join(lacking)}); runs without a "
                          f"validation split have no val_* metrics")
    split, kind = metric.split("_")
    other = f"{split}_{'loss' if kind == 'accuracy' else 'accuracy'}"
    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colours = run_colours(len(runs))
    for (name, history), colour in zip(runs, colours, strict=True):
        epochs = history.get("epochs", [])
        for ax, key in zip(axes, (metric, other), strict=True):
            xs, ys = _series(epochs, x, key)
            final = "no data" if not ys.size else (f"{ys[-1]:.2%}" if key.endswith("accuracy")
                                                  else f"{ys[-1]:.4f}")
            ax.plot(xs, ys, "o-", color=colour, linewidth=1.6, markersize=4,
                    label=f"{name} ({final})")
    split_name = dict((s, label) for s, label, _ in SPLITS)[split]
    for ax, key in zip(axes, (metric, other), strict=True):
        is_accuracy = key.endswith("accuracy")
        ax.set(title=f"{split_name} {'accuracy' if is_accuracy else 'loss'}".capitalize(),
               xlabel=RUN_AXES[x], ylabel="accuracy" if is_accuracy else "cross-entropy loss")
        if is_accuracy:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        if x != "seconds":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right" if is_accuracy else "upper right", fontsize="small",
                  title="run (last value)", title_fontsize="small")
    fig.suptitle(f"{len(runs)} run{'s' if len(runs) != 1 else ''} compared")
    return save(fig, path)


def plot_sweep(runs: Sequence[tuple[str, dict[str, Any]]], path: Target = None,
               title: str = "", families: int = 1) -> Figure:
    """The runs of one comparison (same job and seed, one thing changed), as the book's ch. 6
    figures draw them: the minibatch loss of every iteration, smoothed, on a log scale (left),
    and the test accuracy at each evaluation (right). A run that stopped early (diverged) shows
    what it had; its name says why.

    ``runs`` may come in ``families`` consecutive groups of equal size (each init for sigmoid,
    then for ReLU): a run's colour then says its place in its family, its line style the
    family. Otherwise each run has its own colour, every other one dashed, so that two runs
    that coincide both stay visible.
    """
    if not runs:
        raise ConfigError("no runs to plot")
    if families < 1 or len(runs) % families:
        raise ConfigError(f"{len(runs)} runs do not split into {families} families")
    size = len(runs) // families
    colours = run_colours(size)
    fig = Figure(figsize=(13, 6), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    longest = max(len(history.get("iteration_loss", [])) for _, history in runs)
    window = int(np.clip(longest // 40, 1, 200))
    finals = []
    for i, (name, history) in enumerate(runs):
        dashes = ("-", "--", ":", "-.")[i // size % 4] if families > 1 else (
            "-" if i % 2 == 0 else "--")
        # broken lines on top of solid ones, which would hide them where they coincide
        style = dict(color=colours[i % size], linewidth=1.6, linestyle=dashes,
                     zorder=2 if dashes == "-" else 2.5)
        losses = np.asarray(history.get("iteration_loss", []), dtype=np.float64)
        smooth = moving_average(losses, window)
        loss_ax.plot(np.arange(1, losses.size + 1), smooth, **style,
                     label=f"{name} ({smooth[-1]:.3f})" if losses.size else f"{name} (no data)")
        x, y = _series(history.get("epochs", []), "iteration", "test_accuracy")
        accuracy_ax.plot(x, y, **style, marker="o", markersize=4,
                         label=f"{name} ({y[-1]:.2%})" if y.size else f"{name} (no data)")
        finals += [y[-1]] if y.size else []
    loss_ax.set_yscale("log")
    loss_ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))  # 0.2, 0.3, 0.5, 1, 2
    loss_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    loss_ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    loss_ax.set(title=f"Minibatch loss (moving average of {window})", xlabel="iteration",
                ylabel="cross-entropy loss")
    accuracy_ax.set(title="Test accuracy", xlabel="iteration", ylabel="accuracy")
    accuracy_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    accuracy_ax.set_xlim(loss_ax.get_xlim())
    if finals:  # from a little below the worst final accuracy: the ranking is what matters
        accuracy_ax.set_ylim(max(0.0, min(finals) - 0.03), 1.0)
    for ax, heading in ((loss_ax, "run (last loss)"), (accuracy_ax, "run (last accuracy)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize="small",
                  title=heading, title_fontsize="small", frameon=False)
    fig.suptitle(title)
    return save(fig, path)


# --- figures from predictions and weights ---


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, path: Target = None,
                   class_names: Sequence[str] | None = None) -> Figure:
    """Confusion matrix with the count in every cell; colour on a power scale (count^0.4) so
    the few mistakes show beside the large diagonal."""
    names = class_names_or_digits(class_names)
    k = len(names)
    cm = confusion_matrix(y_true, y_pred, num_classes=k)
    side = max(6.5, 0.62 * k + 2.5)
    fig, ax = figure((side + 1.2, side))
    vmax = max(1, int(cm.max()))
    norm = PowerNorm(gamma=0.4, vmin=0, vmax=vmax)
    image = ax.imshow(cm, cmap="Blues", norm=norm)
    ticks = [0] + [10**e for e in range(int(np.log10(vmax)) + 1)]
    fig.colorbar(image, ax=ax, shrink=0.8, ticks=ticks,
                 label="count (colour ~ count^0.4, so small counts show)")
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
    return save(fig, path)


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                       probs: np.ndarray, path: Target = None, max_items: int = 36,
                       class_names: Sequence[str] | None = None) -> Figure:
    """A grid of wrongly classified digits, most confident mistakes first, each labelled
    "true → predicted (p)". ``probs`` is (N, classes) or the (N,) probability of the
    prediction; images are (N, 784), (N, 1, 28, 28) or (N, 28, 28) in any range."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    pics = as_square_images(images)
    probs = np.asarray(probs, dtype=np.float64)
    if not len(t) == len(p) == len(pics) == len(probs):
        raise ValueError("images, y_true, y_pred and probs must have the same length")
    confidence = probs[np.arange(len(p)), p] if probs.ndim == 2 else probs.ravel()
    wrong = np.flatnonzero(t != p)
    if not wrong.size:
        fig, ax = figure((6, 2.5))
        ax.set_axis_off()
        say(ax, f"No misclassified digits: all {len(t)} are correct.", size=13)
        ax.set_title("Misclassified digits")
        return save(fig, path)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:max(1, max_items)]
    tiles = pics[shown].astype(np.float64)
    low = tiles.min(axis=(1, 2), keepdims=True)
    span = tiles.max(axis=(1, 2), keepdims=True) - low
    tiles = np.divide(tiles - low, span, out=np.zeros_like(tiles), where=span > 0)
    names = class_names_or_digits(class_names)
    labels = [f"{names[t[i]]} → {names[p[i]]} ({confidence[i]:.2f})" for i in shown]
    title = (f"Misclassified: {len(wrong)} of {len(t)} wrong; showing {len(shown)}, most "
             "confident first\neach: true → predicted, and the probability given to the "
             "prediction")
    fig = tile_figure(tiles, labels, title, colormaps["gray_r"], 0.0, 1.0,
                       label_size=9 if class_names is None else 6.5)
    return save(fig, path)


def plot_weights(W1: np.ndarray, path: Target = None, max_units: int = 64) -> Figure:
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
    fig = tile_figure(tiles, labels, title, colormaps["RdBu_r"], -1.0, 1.0, label_size=8)
    return save(fig, path)


def plot_augmentation(originals: np.ndarray, distorted: np.ndarray, labels: Sequence[int],
                      description: str, path: Target = None) -> Figure:
    """What the net is trained on: each training digit (left, set apart) beside its distorted
    draws. ``originals`` is (k, pixels), ``distorted`` (k, draws, pixels), both as [0, 1] ink
    (values beyond are clipped; bilinear resampling never leaves the range)."""
    k, draws, _ = distorted.shape
    side = math.isqrt(originals.shape[1])
    mosaic, lefts, tops = augmentation_mosaic(originals, distorted)
    fig, ax = figure((1.0 + 0.9 * (draws + 1), 0.9 * k + 1.1))
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
    return save(fig, path)


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



GRADCHECK_FLOOR = 1e-18
"""Where the gradcheck chart's log axis starts: below every real error, where an exact
agreement (0) is drawn."""


def plot_gradcheck(result: GradcheckResult, path: Target = None) -> Figure:
    """Bars of rel_error per parameter and compared pair of a gradient check on a log scale,
    growing from GRADCHECK_FLOOR, and a dashed line at each tolerance a pair is held to,
    labelled with its pairs (a pair held on its max abs difference, the two numerical paths,
    says so in the legend)."""
    pairs = list(dict.fromkeys((c.a, c.b) for c in result.comparisons))
    params = list(dict.fromkeys(c.param for c in result.comparisons))
    verdicts = {(v.a, v.b): v for v in result.verdicts()}
    fig, ax = figure((9, 5.5))
    width = 0.8 / max(len(pairs), 1)
    positions = np.arange(len(params))
    colours = run_colours(len(pairs))
    for i, ((a, b), colour) in enumerate(zip(pairs, colours, strict=True)):
        errors = np.array([max(result.find(a, b, p).rel_error, GRADCHECK_FLOOR)
                           for p in params])
        verdict = verdicts[(a, b)]
        held = (f"held to {verdict.tolerance:.0e}" if verdict.measure == "rel_error" else
                f"held on max abs diff to {verdict.tolerance:.0e}")
        ax.bar(positions + (i - (len(pairs) - 1) / 2) * width, errors - GRADCHECK_FLOOR, width,
               bottom=GRADCHECK_FLOOR, color=colour, label=f"{a} vs {b} ({held})")
    held_to: dict[float, list[str]] = {}
    for verdict in verdicts.values():
        if verdict.measure == "rel_error":
            held_to.setdefault(verdict.tolerance, []).append(f"{verdict.a} vs {verdict.b}")
    for tolerance, names in held_to.items():  # one line per tolerance, saying whose it is
        ax.axhline(tolerance, color="0.3", linestyle="--", linewidth=1.1)
        ax.annotate(f"tolerance {tolerance:.0e}: {'; '.join(names)}", (0.005, tolerance),
                    xycoords=("axes fraction", "data"), xytext=(0, 3),
                    textcoords="offset points", fontsize=7, color="0.25")
    ax.set_yscale("log")
    ax.set_ylim(bottom=GRADCHECK_FLOOR)
    ax.set_xticks(positions, params)
    ax.set_ylabel("relative error  ||a - b|| / (||a|| + ||b||)")
    cfg = result.config
    ax.set_title(f"Gradient agreement: {cfg['input_size']}-{cfg['hidden']}-{cfg['output_size']} "
                 f"{cfg['activation']}, batch {cfg['batch']}, {cfg['dtype']}, "
                 f"order {cfg['order']}, h = {cfg['h']:g}")
    ax.grid(True, axis="y", alpha=0.3)
    # below the axes, never over a bar; dashed lines: each pair's tolerance
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize="small", title="pair compared (dashed lines: the tolerances)",
               title_fontsize="small")
    return save(fig, path)


def _series(epochs: Sequence[dict[str, Any]], x_key: str, y_key: str) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """(x, y) of the evaluations that recorded a finite ``y_key``."""
    pairs = [(e[x_key], e[y_key]) for e in epochs
             if e.get(y_key) is not None and math.isfinite(e[y_key])]
    if not pairs:
        return np.empty(0), np.empty(0)
    x, y = np.asarray(pairs, dtype=np.float64).T
    return x, y
