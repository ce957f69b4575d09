"""The training loop: batches, updates, evaluation, history, checkpoints and resume.

A run lives in one folder. ``checkpoint.npz`` holds everything needed to continue bit for bit
(parameters, optimizer state, the batch generator's state, the position in the epoch, the
history so far); ``model.npz`` holds the network alone, ready for ``evaluate`` and ``predict``.
Every file is written to a temporary name and renamed, so an interrupted write never leaves a
damaged file behind and the previous checkpoint stays loadable.

Inputs may be standardized for training (a sigmoid net learns several times faster on centred
inputs); the exported model folds that shift and scale into W1 and b1, so it takes the book's
[0, 1] images like any other model.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .datasets import get_spec, load_mnist
from .errors import CheckpointError, ConfigError, TrainingError
from .fileio import read_npz, save_npz_atomic, write_json_atomic, write_text_atomic
from .network import DTYPES, GRADIENT_METHODS, INITS, PARAM_NAMES, TwoLayerNet
from .optim import SCHEDULES, SGD, make_schedule

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
ACCURACY_MILESTONES = (0.97, 0.98)
SAMPLINGS = ("permutation", "replacement")
EVAL_CHUNK = 10000
# A mean cross-entropy this large means logits of that size: the weights have blown up. An exact
# log-softmax keeps such a loss finite, so waiting for inf or NaN would train on garbage.
DIVERGED_LOSS = 1000.0


@dataclass
class TrainConfig:
    """Everything that decides a run. Saved as ``config.json``; presets fill it in."""

    dataset: str = "mnist"
    hidden: int = 256
    epochs: int | None = 8
    iters: int | None = None
    batch_size: int = 100
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "cosine"
    init: str = "xavier"
    weight_init_std: float = 0.01
    dtype: str = "float32"
    seed: int = 0
    val_size: int = 0
    train_size: int | None = None
    sampling: str = "permutation"
    gradient: str = "backprop"
    standardize: bool = True
    augment_shift: int = 0
    patience: int | None = None
    preset: str = "default"

    def validate(self, n_train_available: int | None = None) -> None:
        """Raise ConfigError for any setting that cannot work (with this much training data,
        when ``n_train_available`` is given)."""
        checks: list[tuple[bool, str]] = [
            (self.hidden >= 1, f"hidden size must be at least 1, got {self.hidden}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"learning rate must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (not self.nesterov or self.momentum > 0,
             "Nesterov momentum needs --momentum greater than 0"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.schedule in SCHEDULES,
             f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
            (self.init in INITS, f"unknown init {self.init!r}; choose one of {', '.join(INITS)}"),
            (self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose float32 or float64"),
            (self.sampling in SAMPLINGS,
             f"unknown sampling {self.sampling!r}; choose one of {', '.join(SAMPLINGS)}"),
            (self.gradient in GRADIENT_METHODS,
             f"unknown gradient {self.gradient!r}; choose one of {', '.join(GRADIENT_METHODS)}"),
            (self.val_size >= 0, f"validation size must be >= 0, got {self.val_size}"),
            (0 <= self.augment_shift <= 4,
             f"augmentation shift must be 0..4 pixels, got {self.augment_shift}"),
            ((self.epochs is None) != (self.iters is None),
             "give the budget as epochs or as iterations, not both"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.iters is None or self.iters >= 1, f"iterations must be >= 1, got {self.iters}"),
            (self.patience is None or self.patience >= 1,
             f"patience must be >= 1, got {self.patience}"),
            (self.patience is None or self.val_size > 0,
             "early stopping (--patience) needs a validation split (--val-size)"),
            (self.weight_init_std > 0, "weight_init_std must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if n_train_available is None:
            return
        if self.val_size >= n_train_available:
            raise ConfigError(f"validation size {self.val_size} leaves no training data: the "
                              f"training set has {n_train_available} samples")
        available = n_train_available - self.val_size
        if self.train_size is not None and not 1 <= self.train_size <= available:
            raise ConfigError(f"train size must be 1..{available} (training samples left after "
                              f"the validation split), got {self.train_size}")
        n_train = self.train_size or available
        if self.batch_size > n_train:
            raise ConfigError(f"batch size {self.batch_size} is larger than the {n_train} "
                              f"training samples")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)


PRESETS: dict[str, dict[str, Any]] = {
    # The book's ch. 4 job: hidden 50, N(0, 0.01^2) init, lr 0.1, batches of 100 drawn with
    # replacement, 10,000 iterations, plain SGD on [0, 1] inputs. In float32 (the book's images
    # are float32; its float64 weights only make every product twice as slow); --dtype float64
    # gives the book's arithmetic to the last bit.
    "book": dict(hidden=50, init="normal", weight_init_std=0.01, lr=0.1, momentum=0.0,
                 batch_size=100, epochs=None, iters=10000, sampling="replacement",
                 schedule="constant", standardize=False, dtype="float32"),
    # >= 98% test in a few seconds: 256 sigmoid units on standardized inputs, momentum, cosine.
    "default": dict(hidden=256, init="xavier", lr=0.2, momentum=0.9, batch_size=100, epochs=8,
                    iters=None, schedule="cosine", standardize=True, dtype="float32"),
    # As far as a sigmoid two-layer net goes: wide, longer, weight decay, +-2 pixel shifts.
    "best": dict(hidden=800, init="xavier", lr=0.1, momentum=0.9, nesterov=True,
                 batch_size=100, epochs=30, iters=None, schedule="cosine", weight_decay=5e-5,
                 augment_shift=2, standardize=True, dtype="float32"),
}


def config_from_preset(preset: str = "default", **overrides: Any) -> TrainConfig:
    """A config from a preset with ``overrides`` (None values are ignored) applied on top."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    given = {key: value for key, value in overrides.items() if value is not None}
    if "iters" in given and "epochs" not in given:
        values["epochs"] = None
    if "epochs" in given and "iters" not in given:
        values["iters"] = None
    values.update(given)
    return TrainConfig.from_dict(values)


@dataclass
class Data:
    """Arrays in the training space (standardized if asked), and how they got there."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray | None
    t_val: np.ndarray | None
    x_test: np.ndarray
    t_test: np.ndarray
    x_test_raw: np.ndarray  # the [0, 1] test images, as evaluate gives them to a saved model
    mean: float = 0.0
    std: float = 1.0


def _seed_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for init, the validation split and the batches."""
    children = np.random.SeedSequence(seed).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


def prepare_data(config: TrainConfig, data_dir: str | Path | None = None) -> Data:
    """Load the dataset, split off validation, take the training subset, standardize."""
    config.validate()  # before the data loads: a wrong setting should not wait for it
    dtype = np.dtype(config.dtype)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=True, flatten=True, dataset=config.dataset, data_dir=data_dir, dtype=dtype)
    config.validate(len(x_train))
    x_val = t_val = None
    if config.val_size or config.train_size:
        order = _seed_streams(config.seed)[1].permutation(len(x_train))
        val_idx, train_idx = order[:config.val_size], order[config.val_size:]
        if config.train_size:
            train_idx = train_idx[:config.train_size]
        if config.val_size:
            x_val, t_val = x_train[val_idx], t_train[val_idx]
        x_train, t_train = x_train[train_idx], t_train[train_idx]
    # (x - mean) / std cannot be undone exactly in float32, so the saved model is measured on
    # a copy of the test images taken before standardizing
    data = Data(x_train, t_train, x_val, t_val, x_test, t_test,
                x_test.copy() if config.standardize else x_test)
    if config.standardize:
        data.mean, data.std = _mean_and_std(x_train)
        for x in (data.x_train, data.x_val, data.x_test):
            if x is not None:
                x -= dtype.type(data.mean)
                x /= dtype.type(data.std)
    return data


def _mean_and_std(x: np.ndarray, rows: int = EVAL_CHUNK) -> tuple[float, float]:
    """Mean and standard deviation of all of ``x`` in float64, a chunk of rows at a time
    (``x.std(dtype=np.float64)`` would hold a float64 copy of the whole training set)."""
    mean = float(x.mean(dtype=np.float64))
    squares = sum(float(np.square(np.subtract(x[i:i + rows], mean, dtype=np.float64)).sum())
                  for i in range(0, len(x), rows))
    return mean, math.sqrt(squares / x.size) or 1.0


def export_model(net: TwoLayerNet, mean: float, std: float) -> TwoLayerNet:
    """A copy of ``net`` that takes raw [0, 1] inputs: the standardization folded into layer 1.

    ((x - mean) / std) @ W1 + b1  ==  x @ (W1 / std) + (b1 - (mean / std) * W1.sum(axis=0))
    """
    exported = TwoLayerNet(net.input_size, net.hidden_size, net.output_size,
                           dtype=net.dtype, seed=0)
    for key in PARAM_NAMES:
        exported.params[key][...] = net.params[key]
    if mean != 0.0 or std != 1.0:
        w1 = net.params["W1"].astype(np.float64)
        exported.params["W1"][...] = w1 / std
        exported.params["b1"][...] = net.params["b1"] - (mean / std) * w1.sum(axis=0)
    return exported


def shift_images(x: np.ndarray, max_shift: int, rng: np.random.Generator,
                 background: float) -> np.ndarray:
    """Each 28x28 image moved by its own random (dy, dx) in [-max_shift, max_shift]."""
    n = len(x)
    side = int(math.isqrt(x.shape[1]))
    padded = np.pad(x.reshape(n, side, side), ((0, 0), (max_shift,) * 2, (max_shift,) * 2),
                    constant_values=background)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (side, side), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return windows[np.arange(n), dy, dx].reshape(n, -1)


@dataclass
class TrainState:
    """Where a run is: everything besides the network and optimizer that resume needs."""

    iteration: int = 0
    epoch: int = 0
    position: int = 0
    permutation: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    elapsed: float = 0.0
    best_val_accuracy: float = -1.0
    best_epoch: float = 0
    evals_since_best: int = 0
    stopped_early: bool = False
    history: dict[str, list] = field(
        default_factory=lambda: {"iteration_loss": [], "epochs": []})
    time_to_accuracy: dict[str, float | None] = field(
        default_factory=lambda: {f"{m:.2f}": None for m in ACCURACY_MILESTONES})


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; the checkpoint and history were saved."""

    def __init__(self, run_dir: Path, iteration: int, signum: int) -> None:
        self.run_dir, self.iteration, self.signum = run_dir, iteration, signum
        super().__init__(f"interrupted at iteration {iteration}; checkpoint saved in {run_dir}")


# What every per-epoch record of a history holds: numbers, or null for a split the run lacks.
HISTORY_COLUMNS = ("epoch", "iteration", "seconds", "lr", "train_loss", "train_accuracy",
                   "val_loss", "val_accuracy", "test_loss", "test_accuracy")
RUN_FILES = ("config.json", "history.json", "history.csv", "metrics.json", "model.npz",
             "checkpoint.npz")
FIGURES = ("loss.png", "accuracy.png", "confusion.png", "misclassified.png", "weights.png")


class Trainer:
    """Trains a TwoLayerNet on a config and keeps the run folder up to date."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, *,
                 data_dir: str | Path | None = None, quiet: bool = True,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.on_epoch = on_epoch
        self.data = prepare_data(config, data_dir)
        init_rng, _, self.rng = _seed_streams(config.seed)
        spec = get_spec(config.dataset)
        self.net = TwoLayerNet(self.data.x_train.shape[1], config.hidden, spec.num_classes,
                               config.weight_init_std, init=config.init,
                               dtype=np.dtype(config.dtype), seed=init_rng)
        self.optimizer = SGD(config.lr, config.momentum, nesterov=config.nesterov,
                             weight_decay=config.weight_decay)
        self.n_train = len(self.data.x_train)
        self.iters_per_epoch = max(self.n_train // config.batch_size, 1)
        self.total_iterations = config.iters or config.epochs * self.iters_per_epoch
        self.lr_at = make_schedule(config.schedule, config.lr, self.total_iterations)
        self.state = TrainState()
        self.best_params: dict[str, np.ndarray] | None = None
        self._signal: int | None = None

    # --- resume ---

    @classmethod
    def resume(cls, run_dir: str | Path, *, data_dir: str | Path | None = None,
               quiet: bool = True,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> Trainer:
        """Rebuild a trainer from ``run_dir/checkpoint.npz``, exactly where it stopped.

        A checkpoint that does not fit (a member or field missing, a shape or dtype wrong) is a
        CheckpointError naming the file, never a half-restored trainer.
        """
        if Path(run_dir).is_file():
            raise CheckpointError(f"{run_dir} is a file; resume takes the run folder that holds "
                                  f"checkpoint.npz")
        path = Path(run_dir) / "checkpoint.npz"
        arrays, meta = read_checkpoint(path)
        try:
            config = TrainConfig.from_dict(dict(meta["config"]))
            config.validate()  # wrong types fail here; sizes are checked by __init__
            s, history = meta["state"], dict(meta["history"])
            if not all(isinstance(history[k], list) for k in ("iteration_loss", "epochs")):
                raise TypeError("the history does not hold lists")
            state = TrainState(
                iteration=s["iteration"], epoch=s["epoch"], position=s["position"],
                permutation=arrays["permutation"], elapsed=s["elapsed"],
                best_val_accuracy=s["best_val_accuracy"], best_epoch=s["best_epoch"],
                evals_since_best=s["evals_since_best"], stopped_early=s["stopped_early"],
                history=history, time_to_accuracy=s["time_to_accuracy"])
            mean, std = float(s["mean"]), float(s["std"])
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise CheckpointError(f"{path}: damaged or not a checkpoint ({what})") from None
        trainer = cls(config, run_dir, data_dir=data_dir, quiet=quiet, on_epoch=on_epoch)
        for key in PARAM_NAMES:
            expected = trainer.net.params[key]
            value = arrays.get(f"param/{key}")
            if value is None or value.shape != expected.shape or value.dtype != expected.dtype:
                raise CheckpointError(f"{path}: parameter {key} is missing or does not fit the "
                                      f"config (expected {expected.shape} {expected.dtype})")
            expected[...] = value
        # The velocity (there after the first update with momentum) and the best parameters
        # (after the first evaluation with a validation split) are there, shaped like params.
        params = trainer.net.params
        for group, required in (("velocity", bool(config.momentum and state.iteration)),
                                ("best", bool(config.val_size and history["epochs"]))):
            found = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(group + "/")}
            if set(found) != (set(PARAM_NAMES) if required else set()) or any(
                    v.shape != params[k].shape or v.dtype != params[k].dtype
                    for k, v in found.items()):
                raise CheckpointError(f"{path}: {group}/ arrays are missing or do not fit the "
                                      f"parameters ({', '.join(sorted(found)) or 'none'} found)")
        trainer.optimizer.load_state_dict(arrays)
        if any(k.startswith("best/") for k in arrays):
            trainer.best_params = {k: arrays[f"best/{k}"].copy() for k in PARAM_NAMES}
        perm = state.permutation
        if (perm.ndim != 1 or perm.dtype.kind not in "iu" or perm.size not in (0, trainer.n_train)
                or (perm.size and not 0 <= perm.min() <= perm.max() < trainer.n_train)
                or not (isinstance(state.position, int) and 0 <= state.position <= perm.size)):
            raise CheckpointError(f"{path}: the batch order (permutation, position) does not fit "
                                  f"the {trainer.n_train} training samples")
        state.permutation = perm.astype(np.int64)
        try:
            trainer.rng.bit_generator.state = meta["rng_state"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: damaged random generator state ({exc})") from None
        trainer.state = state
        if abs(mean - trainer.data.mean) > 1e-12 or abs(std - trainer.data.std) > 1e-12:
            raise CheckpointError(f"{path}: the dataset changed since this run started "
                                  f"(input mean/std differ)")
        return trainer

    # --- the loop ---

    def _next_batch_indices(self) -> np.ndarray:
        """The rows of the next batch, in ascending order.

        Sampling with replacement draws what the book's ``np.random.choice(train_size,
        batch_size)`` draws (``integers`` is the same stream without choice's overhead). The
        order of rows within a batch changes nothing but rounding, and gathering them in memory
        order is a third faster than in random order.
        """
        batch = self.config.batch_size
        state = self.state
        if self.config.sampling == "replacement":
            return np.sort(self.rng.integers(0, self.n_train, batch))
        if state.position + batch > len(state.permutation):
            state.permutation = self.rng.permutation(self.n_train)
            state.position = 0
        indices = state.permutation[state.position:state.position + batch]
        state.position += batch
        return np.sort(indices)

    def _evaluate(self) -> dict[str, Any]:
        state, data, net = self.state, self.data, self.net
        epoch = state.iteration / self.iters_per_epoch
        record: dict[str, Any] = {
            "epoch": int(epoch) if epoch.is_integer() else round(epoch, 3),
            "iteration": state.iteration, "seconds": None,
            "lr": self.lr_at(max(state.iteration - 1, 0))}
        for name, x, t in (("train", data.x_train, data.t_train), ("val", data.x_val, data.t_val),
                           ("test", data.x_test, data.t_test)):
            if x is None:
                record[f"{name}_loss"] = record[f"{name}_accuracy"] = None
                continue
            loss, accuracy = net.evaluate(x, t, batch_size=EVAL_CHUNK)
            record[f"{name}_loss"], record[f"{name}_accuracy"] = float(loss), float(accuracy)
        return record

    def _after_evaluation(self, record: dict[str, Any], started: float) -> None:
        state = self.state
        record["seconds"] = state.elapsed + (time.perf_counter() - started)
        for key in state.time_to_accuracy:
            if state.time_to_accuracy[key] is None and record["test_accuracy"] >= float(key):
                state.time_to_accuracy[key] = record["seconds"]
        state.history["epochs"].append(record)
        if record["val_accuracy"] is not None:
            if record["val_accuracy"] > state.best_val_accuracy:
                state.best_val_accuracy = record["val_accuracy"]
                state.best_epoch = record["epoch"]
                state.evals_since_best = 0
                self.best_params = {k: v.copy() for k, v in self.net.params.items()}
            else:
                state.evals_since_best += 1
            if self.config.patience and state.evals_since_best >= self.config.patience:
                state.stopped_early = True
        logger.info("epoch %d iteration %d: test accuracy %.4f", state.epoch, state.iteration,
                    record["test_accuracy"])
        if self.on_epoch:
            self.on_epoch(record)

    def run(self) -> dict[str, Any]:
        """Train to the end of the budget (or early stop); write the run folder; return metrics.

        Raises TrainingInterrupted after saving when SIGINT / SIGTERM arrives, and TrainingError
        when the loss stops being finite (the last good checkpoint is left as it was).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "config.json", self.config.to_dict())
        state, config, net = self.state, self.config, self.net
        if state.iteration == 0:
            self.save_checkpoint()
        x_all, t_all = self.data.x_train, self.data.t_train
        background = (0.0 - self.data.mean) / self.data.std
        method = config.gradient
        losses = state.history["iteration_loss"]
        # Overflow is what divergence looks like: the loss checks below report it in one line,
        # so NumPy's warnings about it must not reach the terminal.
        with self._signals(), np.errstate(all="ignore"), tqdm(
                total=self.total_iterations, initial=state.iteration, disable=self.quiet or None,
                unit="it", leave=False, dynamic_ncols=True, file=sys.stderr) as bar:
            started = time.perf_counter()
            while state.iteration < self.total_iterations and not state.stopped_early:
                if self._signal is not None:
                    if not all(np.isfinite(p).all() for p in net.params.values()):
                        # the last update blew up before any loss could show it: keep the
                        # previous checkpoint rather than saving these weights
                        raise TrainingError(
                            f"the weights stopped being finite after iteration "
                            f"{state.iteration} (lr {self.lr_at(state.iteration - 1):g}); "
                            f"training diverged: lower the learning rate (--lr). The last good "
                            f"checkpoint is in {self.run_dir}")
                    state.elapsed += time.perf_counter() - started
                    self.save_checkpoint()
                    self.write_history()
                    raise TrainingInterrupted(self.run_dir, state.iteration, self._signal)
                indices = self._next_batch_indices()
                x_batch, t_batch = x_all[indices], t_all[indices]
                if config.augment_shift:
                    x_batch = shift_images(x_batch, config.augment_shift, self.rng, background)
                loss, grads = net.loss_and_gradient(x_batch, t_batch, method=method)
                if not loss < DIVERGED_LOSS:  # also catches NaN
                    raise self._diverged(loss, state.iteration + 1)
                self.optimizer.update(net.params, grads, self.lr_at(state.iteration))
                losses.append(float(loss))
                state.iteration += 1
                bar.update(1)
                end_of_epoch = state.iteration % self.iters_per_epoch == 0
                if end_of_epoch or state.iteration == self.total_iterations:
                    state.epoch += 1 if end_of_epoch else 0
                    record = self._evaluate()
                    if not record["train_loss"] < DIVERGED_LOSS:  # the last update blew up;
                        raise self._diverged(record["train_loss"], state.iteration)  # not saved
                    self._after_evaluation(record, started)
                    bar.set_postfix(epoch=state.epoch, loss=f"{loss:.3f}",
                                    test_acc=f"{record['test_accuracy']:.4f}")
                    state.elapsed += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint()
                    self.write_history()
        return self.finish()

    def _diverged(self, loss: float, iteration: int) -> TrainingError:
        return TrainingError(
            f"the loss reached {loss:.4g} at iteration {iteration} (lr "
            f"{self.lr_at(iteration - 1):g}); training diverged: lower the learning rate "
            f"(--lr). The last good checkpoint is in {self.run_dir}")

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """Turn SIGINT / SIGTERM into a flag the loop checks between iterations."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self._signal = signum

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # --- files ---

    def save_checkpoint(self) -> None:
        state = self.state
        arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in self.net.params.items()}
        arrays.update(self.optimizer.state_dict())
        if self.best_params is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_params.items()})
        arrays["permutation"] = state.permutation
        meta = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "rng_state": self.rng.bit_generator.state,
            "history": state.history,
            "state": {
                "iteration": state.iteration, "epoch": state.epoch, "position": state.position,
                "elapsed": state.elapsed, "best_val_accuracy": state.best_val_accuracy,
                "best_epoch": state.best_epoch, "evals_since_best": state.evals_since_best,
                "stopped_early": state.stopped_early,
                "time_to_accuracy": state.time_to_accuracy,
                "mean": self.data.mean, "std": self.data.std},
        }
        arrays["meta"] = np.array(json.dumps(meta))
        save_npz_atomic(self.run_dir / "checkpoint.npz", arrays)

    def write_history(self) -> None:
        history = self.state.history
        write_json_atomic(self.run_dir / "history.json", history)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(history["epochs"])
        write_text_atomic(self.run_dir / "history.csv", buffer.getvalue())

    def _kept_params(self) -> dict[str, np.ndarray]:
        """The parameters to keep: best by validation when there is a split, else the last."""
        return self.best_params if self.best_params is not None else self.net.params

    def finish(self) -> dict[str, Any]:
        """Write model.npz, metrics.json and the figures for the run as it now stands."""
        from . import plots

        state, data, config = self.state, self.data, self.config
        kept = TwoLayerNet(self.net.input_size, self.net.hidden_size, self.net.output_size,
                           dtype=self.net.dtype, seed=0)
        for key in PARAM_NAMES:
            kept.params[key][...] = self._kept_params()[key]
        model = export_model(kept, data.mean, data.std)
        # The saved model takes [0, 1] images: measure it on those, as `evaluate` will.
        x_test = data.x_test_raw
        test_loss, test_accuracy = model.evaluate(x_test, data.t_test, batch_size=EVAL_CHUNK)
        train_loss, train_accuracy = kept.evaluate(data.x_train, data.t_train,
                                                   batch_size=EVAL_CHUNK)
        metrics = {
            "dataset": config.dataset, "preset": config.preset,
            "test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
            "train_accuracy": float(train_accuracy), "train_loss": float(train_loss),
            "epochs": state.history["epochs"][-1]["epoch"] if state.history["epochs"] else 0,
            "iterations": state.iteration, "seconds": state.elapsed,
            "time_to_accuracy": state.time_to_accuracy, "stopped_early": state.stopped_early,
        }
        if self.best_params is not None:
            metrics["val_accuracy"] = state.best_val_accuracy
            metrics["model_from_epoch"] = state.best_epoch
        model.save(self.run_dir / "model.npz", metadata={
            "dataset": config.dataset, "preprocessing": {
                "normalize": "pixel / 255 in [0, 1]", "flatten": True,
                "standardization_folded_into_W1_b1": {"mean": data.mean, "std": data.std}},
            "config": config.to_dict(), "test_accuracy": float(test_accuracy)})
        write_json_atomic(self.run_dir / "metrics.json", metrics)
        probs = model.predict(x_test)
        predicted = probs.argmax(axis=1)
        plots.plot_loss(state.history, self.run_dir / "loss.png")
        plots.plot_accuracy(state.history, self.run_dir / "accuracy.png")
        plots.plot_confusion(data.t_test, predicted, self.run_dir / "confusion.png")
        plots.plot_misclassified(x_test, data.t_test, predicted, probs.max(axis=1),
                                 self.run_dir / "misclassified.png")
        plots.plot_weights(model.params["W1"], self.run_dir / "weights.png")
        return metrics


def load_history(run_dir: str | Path) -> dict[str, Any]:
    """The history.json of a run folder, checked for the two lists every run has."""
    path = Path(run_dir) / "history.json"
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is not a run folder: no history.json") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a history file ({exc})") from None
    if not isinstance(history, dict) or not {"epochs", "iteration_loss"} <= history.keys():
        raise ConfigError(f"{path}: not a history file (no epochs / iteration_loss)")
    losses, records = history["iteration_loss"], history["epochs"]
    if not isinstance(losses, list) or not all(map(_is_number, losses)):
        raise ConfigError(f"{path}: damaged history (iteration_loss is not a list of numbers)")
    for n, record in enumerate(records if isinstance(records, list) else [None]):
        if not isinstance(record, dict) or not _is_number(record.get("epoch")) or not all(
                record.get(key) is None or _is_number(record[key]) for key in HISTORY_COLUMNS):
            raise ConfigError(f"{path}: damaged history (epoch record {n} is not a record of "
                              f"numbers)")
    return history


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata of a checkpoint; any damage is a CheckpointError, never pickle."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here; is this a run folder?")
    arrays = read_npz(path, "checkpoint")
    try:
        if "meta" not in arrays and {"sizes", *PARAM_NAMES} <= arrays.keys():
            raise CheckpointError(f"{path}: a saved model (model.npz), not a training "
                                  f"checkpoint; evaluate and predict take it, not --resume")
        meta = json.loads(str(arrays.pop("meta")[()]))
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: damaged or not a checkpoint (meta is not an object)")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r} is not "
                                  f"{CHECKPOINT_FORMAT}; it was written by another version")
        for key, value in arrays.items():
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise CheckpointError(f"{path}: array {key} holds NaN or inf")
        missing = {"config", "state", "rng_state", "history"} - set(meta)
        if missing:
            raise CheckpointError(f"{path}: checkpoint lacks {', '.join(sorted(missing))}")
    except CheckpointError:
        raise
    except KeyError as exc:
        raise CheckpointError(f"{path}: damaged or not a checkpoint (no {exc} member)") from None
    except (ValueError, TypeError) as exc:  # meta that is not the JSON of a checkpoint
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({exc})") from None
    return arrays, meta
