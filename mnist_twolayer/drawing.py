"""How every figure is made and written: a matplotlib Figure on an Agg canvas (never pyplot,
so plotting neither opens windows nor changes the backend of an interactive session), the
house layout and legends, mosaics of small images, and a PNG written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .fileio import atomic_path

DPI = 120
Target = str | os.PathLike[str] | None
"""Where a figure's PNG goes; None draws it without writing a file."""


def class_names_or_digits(class_names: Sequence[str] | None) -> list[str]:
    """The names to label classes with: the given ones, else the digits."""
    return [str(c) for c in class_names] if class_names is not None else list("0123456789")


def figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A Figure of ``size`` inches on an Agg canvas, laid out by matplotlib, and its Axes."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save(fig: Figure, path: Target) -> Figure:
    """Write ``fig`` as a PNG (whatever the suffix of ``path``) atomically, if a path is given;
    return it, so callers and tests can read back what was drawn."""
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return fig


def tile_figure(tiles: np.ndarray, labels: Sequence[str], title: str, cmap: Any, vmin: float,
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


def legend(ax: Axes, loc: str = "best") -> None:
    """A small legend (when something is drawn) and a light grid."""
    if ax.get_lines():
        ax.legend(loc=loc, fontsize="small")
    ax.grid(True, alpha=0.3)


def say(ax: Axes, text: str, size: float = 12) -> None:
    """A message in the middle of the axes, for a figure with nothing to draw."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=size)


def run_colours(n: int) -> list[Any]:
    """``n`` colours that tell runs apart: tab10, tab20, or a viridis ramp beyond."""
    cmap = colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"]
    if n <= 20:
        return [cmap(i) for i in range(n)]
    return [cmap(i / (n - 1)) for i in range(n)]


def as_square_images(images: np.ndarray) -> np.ndarray:
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
