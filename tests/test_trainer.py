"""The trainer on real MNIST: accuracy, the book's loop, resume, interrupts, divergence, files."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image
from tolerances import EPS32, assert_within, gamma, numpy_rel, sigmoid_rel, two_layer_bounds

from mnist_twolayer.errors import CheckpointError, ConfigError, TrainingError
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.trainer import (
    FIGURES,
    RUN_FILES,
    Trainer,
    TrainingInterrupted,
    config_from_preset,
    export_model,
    prepare_data,
    read_checkpoint,
    shift_images,
)

pytestmark = pytest.mark.slow


def record_steps(trainer: Trainer) -> list[tuple[dict, np.ndarray, np.ndarray, float, dict]]:
    """Make the trainer's net record every training step: (the parameters before it, x, t,
    the loss, the gradient), all copies."""
    steps = []
    compute = trainer.net.loss_and_gradient

    def recording(x, t, method="backprop"):
        before = {k: v.copy() for k, v in trainer.net.params.items()}
        loss, grads = compute(x, t, method)
        steps.append((before, x.copy(), np.array(t), loss, {k: g.copy() for k, g in grads.items()}))
        return loss, grads

    trainer.net.loss_and_gradient = recording
    return steps


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
    # the saved parameters on the same images through the same evaluate, one chunk of 10000
    # as the trainer's: bit-identical
    assert (loss, accuracy) == (metrics["test_loss"], metrics["test_accuracy"])


def test_export_folds_standardization_into_the_first_layer():
    rng = np.random.default_rng(3)
    net = TwoLayerNet(784, 20, 10, init="xavier", seed=1)
    x = rng.random((50, 784))
    mean, std = 0.13, 0.31
    exported = export_model(net, mean, std)
    # layer 1 either way, x @ (W1 / std) + (b1 - mean / std sum(W1)) or ((x - mean) / std) @ W1
    # + b1, rounds <= 788 times terms summing to (|x| + mean) @ |W1| / std + |b1|; then
    # sigmoid' <= 1/4 and sigmoid's own error, 21 roundings in layer 2 (|hidden| <= 1); softmax
    # moves each p by <= 2 p max |d logit| and rounds by 2 exp + gamma_10, on each side
    p = net.params
    hidden_error = gamma(788) * ((np.abs(x) + mean) @ np.abs(p["W1"]) / std + np.abs(p["b1"]))
    logit_error = ((hidden_error / 4 + sigmoid_rel(numpy_rel("exp"))) @ np.abs(p["W2"])
                   + gamma(21) * (np.abs(p["W2"]).sum(axis=0) + np.abs(p["b2"])))
    np.testing.assert_allclose(exported.predict(x), net.predict((x - mean) / std),
                               rtol=4 * np.max(logit_error) + 2 * (2 * numpy_rel("exp")
                                                                   + gamma(10)))


def test_standardized_data_keeps_the_raw_test_images(mnist):
    """The saved model is measured on the test images evaluate loads, not on a rebuilt copy:
    (x - mean) / std * std + mean is not x again in float32."""
    data = prepare_data(config_from_preset("default"))
    raw = mnist[1][0]
    np.testing.assert_array_equal(data.x_test_raw, raw)
    # float32: mean and std rounded (u mean / std), each pixel's subtraction and division
    # (2 u of its standardized value <= m); the float64 mean of them all
    m = float(np.abs(data.x_train).max())
    assert abs(float(data.x_train.mean(dtype=np.float64))) <= (
        EPS32 / 2 * (data.mean / data.std + 2 * m) + gamma(data.x_train.size) * m)
    rebuilt = data.x_test * np.float32(data.std) + np.float32(data.mean)
    assert not np.array_equal(rebuilt, raw)


def test_book_preset_trains_in_float32_by_default(tmp_path):
    trainer = Trainer(config_from_preset("book", iters=1), tmp_path / "book")
    assert trainer.net.params["W1"].dtype == np.float32
    assert trainer.data.x_train.dtype == np.float32


def test_book_preset_matches_a_plain_book_loop(tmp_path):
    """The first iterations of --preset book --dtype float64 are the book's ch. 4 loop, update
    for update: the book's batch draws (gathered in ascending row order), at every step the
    book's loss and gradient of the same parameters (to rounding, see two_layer_bounds: step
    by step, as rounding differences would grow along a trajectory), and its update."""
    iters = 30
    trainer = Trainer(config_from_preset("book", iters=iters, dtype="float64"),
                      tmp_path / "book")
    x_train, t_train = trainer.data.x_train, trainer.data.t_train
    assert trainer.net.params["W1"].dtype == np.float64
    # a sample std of 39200 normals is off by ~0.36%: 2% is 5.6 of those
    assert np.std(trainer.net.params["W1"]) == pytest.approx(0.01, rel=0.02)
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = trainer.rng.bit_generator.state
    steps = record_steps(trainer)
    trainer.run()
    assert len(steps) == iters
    assert trainer.state.history["iteration_loss"] == [step[3] for step in steps]
    for i, (params, x_seen, t_seen, loss, grads) in enumerate(steps):
        batch = rng.choice(len(x_train), 100)
        np.testing.assert_array_equal(x_seen, x_train[np.sort(batch)])
        np.testing.assert_array_equal(t_seen, t_train[np.sort(batch)])
        x, t = x_train[batch], t_train[batch]
        z1 = 1 / (1 + np.exp(-(x @ params["W1"] + params["b1"])))
        a2 = z1 @ params["W2"] + params["b2"]
        y = np.exp(a2 - a2.max(axis=1, keepdims=True))
        y /= y.sum(axis=1, keepdims=True)
        dy = y.copy()
        dy[np.arange(100), t] -= 1
        dy /= 100
        book = {"W2": z1.T @ dy, "b2": dy.sum(axis=0)}
        dz1 = dy @ params["W2"].T * z1 * (1 - z1)
        book["W1"], book["b1"] = x.T @ dz1, dz1.sum(axis=0)
        bounds = two_layer_bounds(params, x, t)
        assert loss == pytest.approx(-np.mean(np.log(y[np.arange(100), t])), rel=0,
                                     abs=2 * bounds.loss)
        after = steps[i + 1][0] if i + 1 < iters else trainer.net.params
        for key in params:
            assert_within(grads[key], book[key], 2 * bounds.gradient[key])
            np.testing.assert_array_equal(after[key], params[key] - 0.1 * grads[key])


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
    arrays, meta = read_checkpoint(tmp_path / "parted" / "checkpoint.npz")
    assert meta["state"]["iteration"] == stop_at
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
    arrays, meta = read_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert np.all(np.isfinite(arrays["param/W1"]))


def test_a_signal_right_after_a_diverging_update_keeps_the_last_good_checkpoint(tmp_path):
    """The update of iteration 1 overflows the weights; SIGINT arrives before iteration 2
    looks at its loss. The non-finite weights must not replace the checkpoint."""
    trainer = Trainer(_small_config(lr=1e300, momentum=0.0), tmp_path / "run")
    _interrupt_at(trainer, 1, signal.SIGINT)
    with pytest.raises(TrainingError, match=r"the weights stopped being finite after iteration "
                                            r"1 .*training diverged: lower the learning rate"):
        trainer.run()
    arrays, meta = read_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert meta["state"]["iteration"] == 0


def test_validation_split_keeps_the_best_model_and_stops_early(tmp_path):
    trainer = Trainer(_small_config(epochs=40, patience=2, lr=2.0, momentum=0.9),
                      tmp_path / "run")
    metrics = trainer.run()
    assert metrics["stopped_early"]
    assert metrics["epochs"] < 40
    best = max(r["val_accuracy"] for r in trainer.state.history["epochs"])
    assert metrics["val_accuracy"] == best
    assert metrics["model_from_epoch"] == trainer.state.best_epoch
    assert {"epoch": metrics["model_from_epoch"], "val_accuracy": best}.items() <= next(
        r for r in trainer.state.history["epochs"] if r["val_accuracy"] == best).items()


def test_every_gradient_path_trains_the_same_net(tmp_path):
    """From one seed, backprop, autograd and finite-difference training see the same batches
    and, at every step, the same loss and gradient of the same parameters: to rounding for
    autograd, to the numerical gradient's error for numerical (two_layer_bounds; step by
    step, as those differences would grow along a trajectory)."""
    runs, losses = {}, {}
    for gradient in ("backprop", "autograd", "numerical"):
        config = config_from_preset("default", gradient=gradient, train_size=500, hidden=10,
                                    epochs=1, batch_size=50, dtype="float64")
        trainer = Trainer(config, tmp_path / gradient)
        runs[gradient] = record_steps(trainer)
        trainer.run()
        losses[gradient] = trainer.state.history["iteration_loss"]
    assert losses["backprop"][-1] < 0.8 * losses["backprop"][0]
    net = TwoLayerNet(784, 10, 10, seed=0)
    for gradient in ("autograd", "numerical"):
        assert len(runs[gradient]) == 10
        for (params, x, t, loss, grads), (_, x_bp, t_bp, _, _) in zip(
                runs[gradient], runs["backprop"], strict=True):
            np.testing.assert_array_equal(x, x_bp)
            np.testing.assert_array_equal(t, t_bp)
            net.params = params
            expected_loss, expected = net.loss_and_gradient(x, t)
            bounds = two_layer_bounds(params, x, t)
            assert loss == pytest.approx(expected_loss, rel=0, abs=2 * bounds.loss)
            for key in params:
                own = (bounds.gradient[key] if gradient == "autograd" else
                       bounds.difference[key] + bounds.vectorized[key])
                assert_within(grads[key], expected[key], bounds.gradient[key] + own)


@pytest.mark.parametrize("overrides, message", [
    (dict(val_size=60000), "validation size 60000 leaves no training data: the training set "
                           "has 60000 samples"),
    (dict(train_size=59001, val_size=1000), "train size must be 1..59000 (training samples "
                                            "left after the validation split), got 59001"),
    (dict(batch_size=600, train_size=500), "batch size 600 is larger than the 500 training "
                                           "samples"),
    (dict(patience=3), "early stopping (--patience) needs a validation split (--val-size)"),
])
def test_settings_that_cannot_work_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as info:
        Trainer(config_from_preset("default", **overrides), tmp_path / "run")
    assert str(info.value) == message


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of book, default, "
                                          "best"):
        config_from_preset("fast")


def test_damaged_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="checkpoint.npz: not a readable .npz file, "
                                              "perhaps truncated or damaged"):
        read_checkpoint(path)


def test_shift_images_moves_each_digit_within_bounds():
    image = np.zeros((1, 784), dtype=np.float32)
    image[0, 14 * 28 + 14] = 1.0
    rng = np.random.default_rng(0)
    shifted = shift_images(np.repeat(image, 200, axis=0), 2, rng, background=0.0)
    rows, cols = np.divmod(shifted.argmax(axis=1), 28)
    assert shifted.sum(axis=1).tolist() == [1.0] * 200
    assert set(rows.tolist()) == set(range(12, 17)) and set(cols.tolist()) == set(range(12, 17))


def test_a_wrong_setting_is_reported_before_any_data_is_looked_for(tmp_path):
    """An empty data folder would mean a download; the setting is refused first."""
    config = config_from_preset("default", momentum=0.0, nesterov=True)
    with pytest.raises(ConfigError, match="Nesterov momentum needs --momentum greater than 0"):
        prepare_data(config, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
