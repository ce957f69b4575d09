"""Where a training run is, and the checkpoint file that lets it continue bit for bit.

``checkpoint.npz`` holds, without pickle: the parameters (``param/W1`` ...), the optimizer's
state arrays by group (``velocity/W1`` for momentum and Nesterov, ``adagrad_h/``,
``rmsprop_h/``, ``adam_m/`` and ``adam_v/``), the best parameters so far by validation
(``best/W1`` ...), the epoch's batch order (``permutation``), and one JSON member ``meta`` with
the config, the training state, the batch generator's state and the history. Everything else a
run reports (epoch, best epoch, time to accuracy, early stop) is read from the history, and the
optimizer's update count (Adam's t) is the iteration: neither is stored twice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .errors import CheckpointError, MnistTwoLayerError
from .fileio import read_npz, save_npz_atomic
from .history import History, history_problem, new_history
from .network import PARAM_NAMES

CHECKPOINT_FORMAT = 2
"""Format 1 (until 2026-11-23) also stored what the history tells; it still reads."""


@dataclass
class TrainState:
    """Where a run is, besides its network and optimizer: what resume needs to continue."""

    iteration: int = 0
    position: int = 0  # the next row of ``permutation`` to draw
    elapsed: float = 0.0  # seconds of training so far
    mean: float = 0.0  # the standardization of the training inputs (0 and 1: none)
    std: float = 1.0
    # where each cycle of the learning-rate schedule began: one cycle, unless a finished run
    # was given more budget (train --resume DIR --epochs N), which starts another
    schedule_starts: list[int] = field(default_factory=lambda: [0])
    permutation: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    history: History = field(default_factory=new_history)


# The scalar fields and the schedule's starts go into meta["state"], the two arrays' worth
# (permutation, history) into their own members.
_SCALARS = {f.name: f.type for f in dataclasses.fields(TrainState)
            if f.name not in ("permutation", "history", "schedule_starts")}
_STATE = (*_SCALARS, "schedule_starts")


@dataclass
class Checkpoint:
    """Everything a checkpoint file holds, checked for its own consistency on reading."""

    config: TrainConfig
    state: TrainState
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    best_params: dict[str, np.ndarray] | None
    rng_state: dict[str, Any]

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically: the previous one stays until this one is whole."""
        state = self.state
        arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in self.params.items()}
        arrays.update(self.optimizer_state)
        if self.best_params is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_params.items()})
        arrays["permutation"] = state.permutation
        meta = {"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(),
                "rng_state": self.rng_state, "history": state.history,
                "state": {name: getattr(state, name) for name in _STATE}}
        arrays["meta"] = np.array(json.dumps(meta))
        save_npz_atomic(path, arrays)


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint at ``path``; any damage is a CheckpointError naming it, never pickle."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here; is this a run folder?")
    arrays = read_npz(path, "checkpoint")
    if "meta" not in arrays and {"sizes", *PARAM_NAMES} <= arrays.keys():
        raise CheckpointError(f"{path}: a saved model (model.npz), not a training checkpoint; "
                              f"evaluate and predict take it, not --resume")
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except KeyError:
        raise CheckpointError(f"{path}: damaged or not a checkpoint (no 'meta' member)") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: damaged or not a checkpoint (meta is not JSON: {exc})"
                              ) from None
    try:
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: damaged or not a checkpoint (meta is not an object)")
        if meta.get("format") not in (1, CHECKPOINT_FORMAT):
            raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r} is not "
                                  f"{CHECKPOINT_FORMAT}; it was written by another version")
        for key, value in arrays.items():
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise CheckpointError(f"{path}: array {key} holds NaN or inf")
        missing = {"config", "state", "rng_state", "history"} - set(meta)
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks {', '.join(sorted(missing))}")
        config = TrainConfig.from_dict(dict(meta["config"]))
        config.validate()  # wrong types fail here; sizes are checked against the trainer
        if problem := history_problem(meta["history"]):
            raise CheckpointError(f"{path}: {problem}")
        scalars = {name: meta["state"][name] for name in _SCALARS}
        for name, kind in _SCALARS.items():
            if not isinstance(scalars[name], (int, float) if kind == "float" else int):
                raise TypeError(f"state {name} is not a number of type {kind}")
        starts = meta["state"].get("schedule_starts", [0])  # older checkpoints: one cycle
        if not (isinstance(starts, list) and starts[:1] == [0]
                and all(type(i) is int for i in starts) and starts == sorted(set(starts))):
            raise TypeError("state schedule_starts is not a list of increasing iterations "
                            "from 0")
        state = TrainState(**scalars, schedule_starts=starts,
                           permutation=arrays.pop("permutation"), history=meta["history"])
        if not isinstance(meta["rng_state"], dict):
            raise TypeError("the random generator state is not an object")
    except MnistTwoLayerError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({exc})") from None
    except KeyError as exc:
        raise CheckpointError(f"{path}: damaged or not a checkpoint (no {exc})") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: damaged or not a checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    groups = {group: {k.split("/", 1)[1]: v for k, v in arrays.items()
                      if k.startswith(group + "/")} for group in ("param", "best")}
    optimizer_state = {k: v for k, v in arrays.items() if not k.startswith(("param/", "best/"))}
    return Checkpoint(config, state, groups["param"], optimizer_state, groups["best"] or None,
                      meta["rng_state"])
