"""A run's history: the loss of every iteration and one record per evaluation, its two files
(history.json, history.csv), and the figures of merit read from it.

The history is the one record of how a run went, so what can be read from it is not stored a
second time: the best validation epoch, how many evaluations passed since, whether the run
stopped early and when the test accuracy first reached each milestone are functions of it. Its
format (history.json; history.csv holds the epoch records, one row each)::

    {"iteration_loss": [float, ...],
     "epochs": [{"epoch": 1, "iteration": 600, "seconds": 1.2, "lr": 0.1,
                 "train_loss": ..., "train_accuracy": ...,
                 "val_loss": ... or None, "val_accuracy": ... or None,
                 "test_loss": ..., "test_accuracy": ...}, ...]}

A record of an older or partial history may lack a column: :func:`recorded` reads a curve from
the records that have both of its columns.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .fileio import write_text_atomic

# What every per-evaluation record holds: numbers, or null for a split the run lacks.
HISTORY_COLUMNS = ("epoch", "iteration", "seconds", "lr", "train_loss", "train_accuracy",
                   "val_loss", "val_accuracy", "test_loss", "test_accuracy")
ACCURACY_MILESTONES = (0.97, 0.98)
METRICS = tuple(f"{split}_{kind}" for split in ("train", "val", "test")
                for kind in ("accuracy", "loss"))
"""The per-evaluation curves a history holds, by the names of their columns."""
RUN_AXES = {"epoch": "epoch", "iteration": "iteration", "seconds": "seconds of training"}
"""What a comparison of runs may put on the x axis: a history column, and its axis label."""

History = dict[str, list]


def new_history() -> History:
    return {"iteration_loss": [], "epochs": []}


def best_evaluation(history: History) -> tuple[int, dict[str, Any]] | None:
    """(index, record) of the first evaluation with the highest validation accuracy, or None
    when the run has no validation split."""
    best: tuple[int, dict[str, Any]] | None = None
    for index, record in enumerate(history["epochs"]):
        accuracy = record.get("val_accuracy")
        if accuracy is not None and (best is None or accuracy > best[1]["val_accuracy"]):
            best = index, record
    return best


def evaluations_since_best(history: History) -> int:
    """How many evaluations came after the best one by validation accuracy (0 without one)."""
    best = best_evaluation(history)
    return 0 if best is None else len(history["epochs"]) - 1 - best[0]


def time_to_accuracy(history: History, milestones: tuple[float, ...] = ACCURACY_MILESTONES
                     ) -> dict[str, float | None]:
    """Seconds of training until the first evaluation whose test accuracy reached each
    milestone (keyed "0.97", ...); None for a milestone never reached."""
    reached: dict[str, float | None] = {}
    for milestone in milestones:
        reached[f"{milestone:.2f}"] = next(
            (record["seconds"] for record in history["epochs"]
             if record.get("test_accuracy") is not None and record["test_accuracy"] >= milestone),
            None)
    return reached


def recorded(epochs: Sequence[dict[str, Any]], x_key: str, y_key: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the evaluations that recorded a value for ``x_key`` and a finite ``y_key``:
    the one answer to whether a run has a curve, so a figure and the note about runs without
    one agree (an older or partial record may lack a column)."""
    pairs = [(e[x_key], e[y_key]) for e in epochs
             if e.get(x_key) is not None and e.get(y_key) is not None
             and math.isfinite(e[y_key])]
    if not pairs:
        return np.empty(0), np.empty(0)
    x, y = np.asarray(pairs, dtype=np.float64).T
    return x, y


def write_history(run_dir: Path, history: History) -> None:
    """history.json (everything) and history.csv (one row per evaluation), each atomically.

    history.json is written without indentation: json's C encoder then writes it, twice as
    fast as its Python one, which matters for a file of 100,000 losses rewritten every epoch
    (history.csv is the table to read)."""
    write_text_atomic(run_dir / "history.json", json.dumps(history, allow_nan=False) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(history["epochs"])
    write_text_atomic(run_dir / "history.csv", buffer.getvalue())


def load_history(run_dir: str | Path) -> History:
    """The history.json of a run folder, checked for the two lists every run has."""
    path = Path(run_dir) / "history.json"
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is not a run folder: no history.json") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a history file ({exc})") from None
    if problem := history_problem(history):
        raise ConfigError(f"{path}: {problem}")
    return history


def history_problem(history: Any) -> str | None:
    """What makes ``history`` something other than a history (None if nothing does)."""
    if not isinstance(history, dict) or not {"epochs", "iteration_loss"} <= history.keys():
        return "not a history file (no epochs / iteration_loss)"
    losses, records = history["iteration_loss"], history["epochs"]
    if not isinstance(losses, list) or not all(map(_is_number, losses)):
        return "damaged history (iteration_loss is not a list of numbers)"
    for n, record in enumerate(records if isinstance(records, list) else [None]):
        if not isinstance(record, dict) or not _is_number(record.get("epoch")) or not all(
                record.get(key) is None or _is_number(record[key]) for key in HISTORY_COLUMNS):
            return f"damaged history (epoch record {n} is not a record of numbers)"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
