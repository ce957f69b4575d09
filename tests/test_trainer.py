"""The trainer on real MNIST: accuracy, the book's loop, resume, interrupts, divergence, files."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import TrainingError, TrainingInterrupted
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.trainer import FIGURES, RUN_FILES, Trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One epoch of the default preset: the run folder and its metrics."""
    run_dir = tmp_path_factory.mktemp("runs") / "default"
    metrics = Trainer(config_from_preset("default", epochs=1), run_dir).run()
    return run_dir, metrics


def test_one_epoch_of_the_default_preset_learns(default_run):
    run_dir, metrics = default_run
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["train_accuracy"] >= 0.95
    assert metrics["iterations"] == 600 and metrics["epochs"] == 1
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert set(saved["time_to_accuracy"]) == {"0.97", "0.98"}


def test_run_folder_holds_every_file_and_valid_pngs(default_run):
    run_dir, _ = default_run
    for name in RUN_FILES + FIGURES:
        assert (run_dir / name).is_file(), name
    for name in FIGURES:
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["iteration_loss"]) == 600
    assert [r["iteration"] for r in history["epochs"]] == [600]
    csv_lines = (run_dir / "history.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,iteration,seconds,lr,train_loss")
    assert len(csv_lines) == 2
    assert not list(run_dir.glob("*.tmp"))


def test_saved_model_takes_raw_inputs_and_matches_metrics(default_run, mnist):
    run_dir, metrics = default_run
    net = TwoLayerNet.load(run_dir / "model.npz")
    _, (x_test, t_test) = mnist
    loss, accuracy = net.evaluate(x_test, t_test)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=2e-4)
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-3)


def test_book_preset_trains_in_float32_by_default(tmp_path):
    trainer = Trainer(config_from_preset("book", iters=1), tmp_path / "book")
    assert trainer.net.params["W1"].dtype == np.float32
    assert trainer.data.x_train.dtype == np.float32


def test_book_preset_matches_a_plain_book_loop(tmp_path):
    """The first iterations of --preset book --dtype float64 are the book's ch. 4 loop, update
    for update (the batches are gathered in ascending row order: only rounding can differ)."""
    iters = 30
    trainer = Trainer(config_from_preset("book", iters=iters, dtype="float64"),
                      tmp_path / "book")
    x_train, t_train = trainer.data.x_train, trainer.data.t_train
    params = {k: v.copy() for k, v in trainer.net.params.items()}
    assert params["W1"].dtype == np.float64
    assert np.std(params["W1"]) == pytest.approx(0.01, rel=0.02)
    # Replay with plain numpy from the same initial weights and the same batch draws.
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = trainer.rng.bit_generator.state
    expected_losses = []
    for _ in range(iters):
        batch = rng.choice(len(x_train), 100)
        x, t = x_train[batch], t_train[batch]
        z1 = 1 / (1 + np.exp(-(x @ params["W1"] + params["b1"])))
        a2 = z1 @ params["W2"] + params["b2"]
        y = np.exp(a2 - a2.max(axis=1, keepdims=True))
        y /= y.sum(axis=1, keepdims=True)
        expected_losses.append(-np.mean(np.log(y[np.arange(100), t])))
        dy = y.copy()
        dy[np.arange(100), t] -= 1
        dy /= 100
        grads = {"W2": z1.T @ dy, "b2": dy.sum(axis=0)}
        dz1 = dy @ params["W2"].T * z1 * (1 - z1)
        grads["W1"], grads["b1"] = x.T @ dz1, dz1.sum(axis=0)
        for key in params:
            params[key] -= 0.1 * grads[key]
    trainer.run()
    np.testing.assert_allclose(trainer.state.history["iteration_loss"], expected_losses,
                               rtol=1e-12)
    for key in params:
        np.testing.assert_allclose(trainer.net.params[key], params[key], rtol=1e-9, atol=1e-15)


def _small_config(**overrides):
    """A quick run: 2000 training samples, 20 iterations an epoch, momentum, a val split."""
    values = dict(train_size=2000, val_size=1000, epochs=3, hidden=32, seed=7)
    values.update(overrides)
    return config_from_preset("default", **values)


def _interrupt_at(trainer: Trainer, call: int, signum: int) -> None:
    """Deliver a real signal to this process during the gradient of iteration ``call``."""
    original = trainer.net.loss_and_gradient
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    trainer.net.loss_and_gradient = wrapped


@pytest.mark.parametrize("signum, stop_at", [(signal.SIGINT, 25), (signal.SIGTERM, 40)])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, signum, stop_at):
    whole = Trainer(_small_config(), tmp_path / "whole")
    whole.run()

    parted = Trainer(_small_config(), tmp_path / "parted")
    _interrupt_at(parted, stop_at, signum)
    with pytest.raises(TrainingInterrupted) as info:
        parted.run()
    assert info.value.iteration == stop_at
    assert read_checkpoint(tmp_path / "parted" / "checkpoint.npz").state.iteration == stop_at
    saved = json.loads((tmp_path / "parted" / "history.json").read_text())
    assert len(saved["iteration_loss"]) == stop_at

    resumed = Trainer.resume(tmp_path / "parted")
    resumed.run()
    for key, value in whole.net.params.items():
        assert np.array_equal(resumed.net.params[key], value), key
    assert resumed.state.history["iteration_loss"] == whole.state.history["iteration_loss"]
    whole_model = np.load(tmp_path / "whole" / "model.npz")
    resumed_model = np.load(tmp_path / "parted" / "model.npz")
    for key in ("W1", "b1", "W2", "b2"):
        assert np.array_equal(whole_model[key], resumed_model[key])


def test_divergence_stops_with_a_hint_and_keeps_the_last_checkpoint(tmp_path):
    trainer = Trainer(_small_config(lr=1e6, momentum=0.0), tmp_path / "run")
    with pytest.raises(TrainingError, match=r"training diverged: lower the learning rate"):
        trainer.run()
    assert np.all(np.isfinite(read_checkpoint(tmp_path / "run" / "checkpoint.npz").params["W1"]))


def test_a_signal_right_after_a_diverging_update_keeps_the_last_good_checkpoint(tmp_path):
    """The update of iteration 1 overflows the weights; SIGINT arrives before iteration 2
    looks at its loss. The non-finite weights must not replace the checkpoint."""
    trainer = Trainer(_small_config(lr=1e300, momentum=0.0), tmp_path / "run")
    _interrupt_at(trainer, 1, signal.SIGINT)
    with pytest.raises(TrainingError, match=r"the weights stopped being finite after iteration "
                                            r"1 .*training diverged: lower the learning rate"):
        trainer.run()
    assert read_checkpoint(tmp_path / "run" / "checkpoint.npz").state.iteration == 0


def test_validation_split_keeps_the_best_model_and_stops_early(tmp_path):
    trainer = Trainer(_small_config(epochs=40, patience=2, lr=2.0, momentum=0.9),
                      tmp_path / "run")
    metrics = trainer.run()
    assert metrics["stopped_early"]
    assert metrics["epochs"] < 40
    best = max(r["val_accuracy"] for r in trainer.state.history["epochs"])
    assert metrics["val_accuracy"] == best
    assert metrics["model_from_epoch"] == next(
        r["epoch"] for r in trainer.state.history["epochs"] if r["val_accuracy"] == best)
    assert {"epoch": metrics["model_from_epoch"], "val_accuracy": best}.items() <= next(
        r for r in trainer.state.history["epochs"] if r["val_accuracy"] == best).items()


def test_every_gradient_path_trains_the_same_net(tmp_path):
    """From one seed, backprop, autograd and finite-difference training end at the same
    parameters: to rounding for autograd, to the numerical gradient's error for numerical."""
    params, losses = {}, {}
    for gradient in ("backprop", "autograd", "numerical"):
        config = config_from_preset("default", gradient=gradient, train_size=500, hidden=10,
                                    epochs=1, batch_size=50, dtype="float64")
        trainer = Trainer(config, tmp_path / gradient)
        trainer.run()
        params[gradient], losses[gradient] = trainer.net.params, trainer.state.history[
            "iteration_loss"]
    assert losses["backprop"][-1] < 0.8 * losses["backprop"][0]
    for key, expected in params["backprop"].items():
        np.testing.assert_allclose(params["autograd"][key], expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(params["numerical"][key], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses["numerical"], losses["backprop"], rtol=1e-7)


