"""The training loop: batches, updates, evaluations, signals, and the run folder it keeps
(what it holds: :mod:`run_folder`). Every file is written to a temporary name and renamed, so
an interrupted write never leaves a damaged file behind and the previous checkpoint stays
loadable.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .checkpoint import Checkpoint, TrainState, read_checkpoint
from .config import TrainConfig, seed_streams
from .data import EVAL_CHUNK, export_model, prepare_data
from .datasets import get_spec
from .errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
from .fileio import write_json_atomic
from .history import best_evaluation, evaluations_since_best, time_to_accuracy, write_history
from .network import PARAM_NAMES, TwoLayerNet
from .optim import make_optimizer, make_schedule
from .run_folder import AUGMENTATION_FIGURE

logger = logging.getLogger(__name__)

# A mean cross-entropy this large means logits of that size: the weights have blown up. An exact
# log-softmax keeps such a loss finite, so waiting for inf or NaN would train on garbage.
DIVERGED_LOSS = 1000.0

BAR_DELAY = 0.5
"""Seconds before a progress bar appears (tqdm's ``delay``)."""

class Trainer:
    """Trains a TwoLayerNet on a config and keeps the run folder up to date."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, *,
                 data_dir: str | Path | None = None, quiet: bool = True,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None,
                 on_progress: Callable[[int, int, float], None] | None = None) -> None:
        """``on_epoch`` gets each evaluation's record; ``on_progress`` (iteration, total,
        seconds of training) after every iteration, for a caller that reports progress."""
        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.on_epoch = on_epoch
        self.on_progress = on_progress
        self.data = prepare_data(config, data_dir)
        streams = seed_streams(config.seed)
        self.rng = streams.batches
        self.figures_rng = streams.figures
        self.distortions = config.distortions()
        spec = get_spec(config.dataset)
        self.net = TwoLayerNet(self.data.x_train.shape[1], config.hidden, spec.num_classes,
                               config.weight_init_std, init=config.init,
                               dtype=np.dtype(config.dtype), seed=streams.init,
                               activation=config.activation)
        self.optimizer = make_optimizer(config.optimizer, config.lr, config.weight_decay,
                                        config.optimizer_settings())
        self.n_train = len(self.data.x_train)
        self.iters_per_epoch = max(self.n_train // config.batch_size, 1)
        self.total_iterations = config.iters or config.epochs * self.iters_per_epoch
        self.eval_every = config.eval_every or self.iters_per_epoch
        self._schedules: dict[tuple[int, int], Callable[[int], float]] = {}
        self.state = TrainState(mean=self.data.mean, std=self.data.std)
        self.best_params: dict[str, np.ndarray] | None = None
        self._signal: int | None = None

    # --- resume ---

    @classmethod
    def resume(cls, run_dir: str | Path, *, data_dir: str | Path | None = None,
               quiet: bool = True, on_epoch: Callable[[dict[str, Any]], None] | None = None,
               on_progress: Callable[[int, int, float], None] | None = None,
               epochs: int | None = None, iters: int | None = None) -> Trainer:
        """Rebuild a trainer from ``run_dir/checkpoint.npz``, exactly where it stopped; with
        ``epochs`` or ``iters``, continue to that budget instead (see :meth:`extend`).

        A checkpoint that does not fit (a member or field missing, a shape or dtype wrong) is a
        CheckpointError naming the file, never a half-restored trainer.
        """
        if Path(run_dir).is_file():
            raise CheckpointError(f"{run_dir} is a file; resume takes the run folder that holds "
                                  f"checkpoint.npz")
        path = Path(run_dir) / "checkpoint.npz"
        saved = read_checkpoint(path)
        trainer = cls(saved.config, run_dir, data_dir=data_dir, quiet=quiet, on_epoch=on_epoch,
                      on_progress=on_progress)
        trainer._restore(saved, path)
        if epochs is not None or iters is not None:
            trainer.extend(epochs=epochs, iters=iters)
        return trainer

    @property
    def finished(self) -> bool:
        """Whether the run has used its budget or stopped early."""
        return self.state.iteration >= self.total_iterations or self.stopped_early

    def extend(self, *, epochs: int | None = None, iters: int | None = None) -> None:
        """Set a new budget (one of ``epochs``, ``iters``) beyond where the run is.

        A finished run starts a new cycle of its schedule over the added iterations (a cosine
        restarts from the base learning rate, as warm restarts do; a step schedule steps again
        within the new cycle); an unfinished one stretches its current cycle to the new end.
        """
        if (epochs is None) == (iters is None):
            raise ConfigError("give the new budget as epochs or as iterations")
        config = self.config
        total = iters if iters is not None else epochs * self.iters_per_epoch
        flag = f"--iters {iters}" if iters is not None else f"--epochs {epochs}"
        if self.stopped_early:
            raise ConfigError(f"{self.run_dir} stopped early (patience {config.patience}): "
                              f"more budget would stop at once; its model is already the best "
                              f"of its evaluations")
        if total <= self.state.iteration:
            raise ConfigError(f"{flag} ends at iteration {total}, but {self.run_dir} is at "
                              f"iteration {self.state.iteration} already")
        if self.state.iteration == self.total_iterations:
            self.state.schedule_starts.append(self.state.iteration)
        self.config = dataclasses.replace(config, epochs=epochs, iters=iters)
        self.total_iterations = total

    def lr_at(self, iteration: int) -> float:
        """The learning rate of ``iteration``: the schedule over the cycle it falls in."""
        starts = self.state.schedule_starts
        k = bisect.bisect_right(starts, iteration) - 1
        start = starts[k]
        end = starts[k + 1] if k + 1 < len(starts) else self.total_iterations
        schedule = self._schedules.get((start, end))
        if schedule is None:
            schedule = self._schedules[start, end] = make_schedule(
                self.config.schedule, self.config.lr, end - start)
        return schedule(iteration - start)

    def _restore(self, saved: Checkpoint, path: Path) -> None:
        """Check that ``saved`` fits this trainer (built from its config), then take it over."""
        params, state, config = self.net.params, saved.state, saved.config
        for key in PARAM_NAMES:
            value = saved.params.get(key)
            if value is None or value.shape != params[key].shape or value.dtype != params[
                    key].dtype:
                raise CheckpointError(f"{path}: parameter {key} is missing or does not fit the "
                                      f"config (expected {params[key].shape} "
                                      f"{params[key].dtype})")
        # The optimizer's state arrays (there after its first update: velocity/, adam_m/ ...)
        # and the best parameters (after the first evaluation with a validation split) are
        # there, shaped like params; nothing else is.
        groups = self.optimizer.state_groups
        stray = sorted(k for k in saved.optimizer_state if k.split("/", 1)[0] not in groups)
        if stray:
            raise CheckpointError(f"{path}: {', '.join(stray)} are not state of the "
                                  f"{config.optimizer} optimizer this run uses")
        expected = [(group, {k.split("/", 1)[1]: v for k, v in saved.optimizer_state.items()
                             if k.split("/", 1)[0] == group}, bool(state.iteration))
                    for group in groups]
        expected.append(("best", saved.best_params or {},
                         bool(config.val_size and state.history["epochs"])))
        for group, found, required in expected:
            if set(found) != (set(PARAM_NAMES) if required else set()) or any(
                    v.shape != params[k].shape or v.dtype != params[k].dtype
                    for k, v in found.items()):
                raise CheckpointError(f"{path}: {group}/ arrays are missing or do not fit the "
                                      f"parameters ({', '.join(sorted(found)) or 'none'} found)")
        perm = state.permutation
        if (perm.ndim != 1 or perm.dtype.kind not in "iu" or perm.size not in (0, self.n_train)
                or (perm.size and not 0 <= perm.min() <= perm.max() < self.n_train)
                or not 0 <= state.position <= perm.size):
            raise CheckpointError(f"{path}: the batch order (permutation, position) does not fit "
                                  f"the {self.n_train} training samples")
        if abs(state.mean - self.data.mean) > 1e-12 or abs(state.std - self.data.std) > 1e-12:
            raise CheckpointError(f"{path}: the dataset changed since this run started "
                                  f"(input mean/std differ)")
        try:
            self.rng.bit_generator.state = saved.rng_state
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: damaged random generator state ({exc})") from None
        for key in PARAM_NAMES:
            params[key][...] = saved.params[key]
        self.optimizer.load_state_dict(saved.optimizer_state, steps=state.iteration)
        if saved.best_params:
            self.best_params = {k: v.copy() for k, v in saved.best_params.items()}
        state.permutation = perm.astype(np.int64)
        self.state = state

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
        state.history["epochs"].append(record)
        if best_evaluation(state.history) == (len(state.history["epochs"]) - 1, record):
            self.best_params = {k: v.copy() for k, v in self.net.params.items()}
        logger.info("iteration %d: test accuracy %.4f", state.iteration,
                    record["test_accuracy"])
        if self.on_epoch:
            self.on_epoch(record)

    @property
    def stopped_early(self) -> bool:
        """Whether ``patience`` evaluations in a row have not beaten the best validation
        accuracy (the loop stops then, before its budget)."""
        patience = self.config.patience
        return bool(patience) and evaluations_since_best(self.state.history) >= patience

    def run(self) -> dict[str, Any]:
        """Train to the end of the budget (or early stop); write the run folder; return metrics.

        Raises TrainingInterrupted after saving when SIGINT / SIGTERM arrives, and TrainingError
        when the loss stops being finite (the last good checkpoint is left as it was).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "config.json", self.config.to_dict())
        background = (0.0 - self.data.mean) / self.data.std
        if self.state.iteration == 0:
            self.save_checkpoint()
            if self.distortions.kind != "none":  # what the net will see, before it sees it
                self._plot_augmentation(background)
        with self._signals():  # a signal during the final writes waits for them to be whole
            self._train(background)
            return self.finish()

    def _train(self, background: float) -> None:
        """The iterations, until the budget is used, the run stops early, or a signal comes
        (then the checkpoint, the history and the partial outputs are written). ``background``
        is the value of a blank pixel in the training inputs (what distortions move in)."""
        state, config, net = self.state, self.config, self.net
        x_all, t_all = self.data.x_train, self.data.t_train
        distort = self.distortions.apply if self.distortions.kind != "none" else None
        method = config.gradient
        losses = state.history["iteration_loss"]
        # Overflow is what divergence looks like: the loss checks below report it in one line,
        # so NumPy's warnings about it must not reach the terminal. The bar waits a moment
        # before it shows, so a run that fails at once leaves that one line and nothing else.
        with np.errstate(all="ignore"), tqdm(
                total=self.total_iterations, initial=state.iteration, disable=self.quiet or None,
                unit="it", leave=False, dynamic_ncols=True, file=sys.stderr,
                delay=BAR_DELAY) as bar:
            started = time.perf_counter()
            while state.iteration < self.total_iterations and not self.stopped_early:
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
                    write_history(self.run_dir, state.history)
                    bar.close()
                    self.finish(partial=True)  # the model so far, to look at
                    raise TrainingInterrupted(self.run_dir, state.iteration, self._signal)
                indices = self._next_batch_indices()
                x_batch, t_batch = x_all[indices], t_all[indices]
                if distort:
                    x_batch = distort(x_batch, self.rng, background)
                loss, grads = net.loss_and_gradient(x_batch, t_batch, method=method)
                if not loss < DIVERGED_LOSS:  # also catches NaN
                    raise self._diverged(loss, state.iteration + 1)
                self.optimizer.update(net.params, grads, self.lr_at(state.iteration))
                losses.append(float(loss))
                state.iteration += 1
                bar.update(1)
                if self.on_progress:
                    self.on_progress(state.iteration, self.total_iterations,
                                     state.elapsed + time.perf_counter() - started)
                if (state.iteration % self.eval_every == 0
                        or state.iteration == self.total_iterations):
                    record = self._evaluate()
                    if not record["train_loss"] < DIVERGED_LOSS:  # the last update blew up;
                        raise self._diverged(record["train_loss"], state.iteration)  # not saved
                    self._after_evaluation(record, started)
                    bar.set_postfix(epoch=record["epoch"], loss=f"{loss:.3f}",
                                    test_acc=f"{record['test_accuracy']:.4f}")
                    state.elapsed += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint()
                    write_history(self.run_dir, state.history)

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
        Checkpoint(self.config, self.state, self.net.params, self.optimizer.state_dict(),
                   self.best_params, self.rng.bit_generator.state
                   ).save(self.run_dir / "checkpoint.npz")

    def _plot_augmentation(self, background: float, digits: int = 6, draws: int = 7) -> None:
        """augmentation.png: a few training digits, each beside ``draws`` distortions of it,
        drawn from the figures' own random stream so the batches stay as they are."""
        from . import plots

        rng, data = self.figures_rng, self.data
        labels = data.t_train
        classes = rng.permutation(np.unique(labels))[:digits]  # one digit each of a few labels
        picked = np.array([rng.choice(np.flatnonzero(labels == k)) for k in classes])
        originals = data.x_train[picked]
        distorted = self.distortions.apply(np.repeat(originals, draws, axis=0), rng, background)

        def ink(x: np.ndarray) -> np.ndarray:  # the training space back to [0, 1] for display
            return x * data.std + data.mean

        plots.plot_augmentation(ink(originals), ink(distorted).reshape(len(picked), draws, -1),
                                data.t_train[picked], self.distortions.describe(),
                                self.run_dir / AUGMENTATION_FIGURE)

    def _kept_params(self) -> dict[str, np.ndarray]:
        """The parameters to keep: best by validation when there is a split, else the last."""
        return self.best_params if self.best_params is not None else self.net.params

    def finish(self, partial: bool = False) -> dict[str, Any]:
        """Write model.npz, metrics.json and the figures for the run as it now stands
        (``partial``: an interrupted run, so marked in metrics.json)."""
        from . import plots

        state, data, config = self.state, self.data, self.config
        kept = TwoLayerNet(self.net.input_size, self.net.hidden_size, self.net.output_size,
                           dtype=self.net.dtype, seed=0, activation=self.net.activation)
        for key in PARAM_NAMES:
            kept.params[key][...] = self._kept_params()[key]
        model = export_model(kept, data.mean, data.std)
        # The saved model takes [0, 1] images: measure it on those, as `evaluate` will.
        x_test = data.x_test_raw
        test_loss, test_accuracy = model.evaluate(x_test, data.t_test, batch_size=EVAL_CHUNK)
        train_loss, train_accuracy = kept.evaluate(data.x_train, data.t_train,
                                                   batch_size=EVAL_CHUNK)
        records = state.history["epochs"]
        metrics = {
            "dataset": config.dataset, "preset": config.preset,
            "test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
            "train_accuracy": float(train_accuracy), "train_loss": float(train_loss),
            "epochs": records[-1]["epoch"] if records else 0,
            "iterations": state.iteration, "seconds": state.elapsed,
            "time_to_accuracy": time_to_accuracy(state.history),
            "stopped_early": self.stopped_early, "partial": partial,
        }
        if (best := best_evaluation(state.history)) is not None:
            metrics["val_accuracy"] = best[1]["val_accuracy"]
            metrics["model_from_epoch"] = best[1]["epoch"]
        model.save(self.run_dir / "model.npz", metadata={
            "dataset": config.dataset, "preprocessing": {
                "normalize": "pixel / 255 in [0, 1]", "flatten": True,
                "standardization_folded_into_W1_b1": {"mean": data.mean, "std": data.std}},
            "config": config.to_dict(), "test_accuracy": float(test_accuracy)})
        write_json_atomic(self.run_dir / "metrics.json", metrics)
        probs = model.predict(x_test)
        predicted = probs.argmax(axis=1)
        plots.plot_loss(state.history, self.run_dir / "loss.png")
        kept_epoch = metrics.get("model_from_epoch", metrics["epochs"])
        plots.plot_accuracy(state.history, self.run_dir / "accuracy.png",
                            kept=(kept_epoch, metrics["test_accuracy"]))
        names = get_spec(config.dataset).class_names
        plots.plot_confusion(data.t_test, predicted, self.run_dir / "confusion.png",
                             class_names=names)
        plots.plot_misclassified(x_test, data.t_test, predicted, probs.max(axis=1),
                                 self.run_dir / "misclassified.png", class_names=names)
        plots.plot_weights(model.params["W1"], self.run_dir / "weights.png")
        return metrics
