"""The trainer on real MNIST: accuracy, the book's loop, resume, interrupts, divergence, files."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal

import numpy as np
import pytest
from PIL import Image
from tolerances import assert_within, two_layer_bounds

from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.data import export_model
from mnist_twolayer.errors import TrainingError, TrainingInterrupted
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.run_folder import FIGURES, RUN_FILES
from mnist_twolayer.trainer import Trainer

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
    """Three epochs of the default preset (crosses 97% test on the way): the run folder, its
    metrics, and the raw [0, 1] test images' standardization."""
    run_dir = tmp_path_factory.mktemp("runs") / "default"
    trainer = Trainer(config_from_preset("default", epochs=3), run_dir)
    metrics = trainer.run()
    return run_dir, metrics, trainer


def test_three_epochs_of_the_default_preset_learn(default_run):
    run_dir, metrics, _ = default_run
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["train_accuracy"] >= 0.97
    assert metrics["iterations"] == 1800 and metrics["epochs"] == 3
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_time_to_accuracy_is_the_first_evaluation_at_each_milestone(default_run):
    _, metrics, _ = default_run
    records = json.loads((default_run[0] / "history.json").read_text())["epochs"]
    expected = {f"{m:.2f}": next((r["seconds"] for r in records if r["test_accuracy"] >= m),
                                 None) for m in (0.97, 0.98)}
    assert expected["0.97"] is not None  # the run does cross 97%: the pin below means something
    assert metrics["time_to_accuracy"] == expected
    assert [r["seconds"] for r in records] == sorted(r["seconds"] for r in records)


def test_run_folder_holds_every_file(default_run):
    run_dir, _, _ = default_run
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES + FIGURES)
    for name in FIGURES:  # what they draw is test_plots.py's part
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["iteration_loss"]) == 1800
    assert [r["iteration"] for r in history["epochs"]] == [600, 1200, 1800]
    assert [r["epoch"] for r in history["epochs"]] == [1, 2, 3]
    rows = list(csv.DictReader(io.StringIO((run_dir / "history.csv").read_text())))
    assert list(rows[0]) == ["epoch", "iteration", "seconds", "lr", "train_loss",
                             "train_accuracy", "val_loss", "val_accuracy", "test_loss",
                             "test_accuracy"]
    for row, record in zip(rows, history["epochs"], strict=True):
        assert {k: float(v) for k, v in row.items() if v} == {
            k: v for k, v in record.items() if v is not None}


def test_saved_model_takes_raw_inputs_and_is_what_metrics_measured(default_run, mnist):
    run_dir, metrics, trainer = default_run
    net = TwoLayerNet.load(run_dir / "model.npz")
    _, (x_test, t_test) = mnist
    # the run measured this very model on these very images: the same numbers, bit for bit
    assert net.evaluate(x_test, t_test) == (metrics["test_loss"], metrics["test_accuracy"])
    # and the exported model is the trained net on standardized inputs, not some other net
    standardized = (x_test.astype(np.float64) - trainer.data.mean) / trainer.data.std
    trained = trainer.net.predict(standardized.astype(np.float32)).argmax(axis=1)
    agree = np.mean(net.predict(x_test).argmax(axis=1) == trained)
    assert agree >= 0.999  # float32 rounding of the folded W1 may flip a near tie or two


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


def test_the_model_kept_is_the_best_validation_epochs_and_the_run_stops_after_patience(
        tmp_path):
    """lr 2 with momentum overshoots, so validation accuracy peaks early and then falls: the
    run stops exactly ``patience`` evaluations after its best one, and model.npz holds that
    epoch's parameters (standardization folded in), bit for bit, not the last epoch's."""
    trainer = Trainer(_small_config(epochs=40, patience=3, lr=2.0, momentum=0.9),
                      tmp_path / "run")
    snapshots = []
    trainer.on_epoch = lambda record: snapshots.append(
        {k: v.copy() for k, v in trainer.net.params.items()})
    metrics = trainer.run()
    records = trainer.state.history["epochs"]
    accuracies = [r["val_accuracy"] for r in records]
    best = accuracies.index(max(accuracies))  # the first of equal bests
    assert len(records) - 1 - best == 3  # patience 3: three evaluations without a better one
    assert len(records) < 40 and metrics["stopped_early"] is True
    assert metrics["model_from_epoch"] == records[best]["epoch"] == best + 1
    assert metrics["val_accuracy"] == max(accuracies)
    kept = TwoLayerNet(784, 32, 10, dtype=np.float32, seed=0)
    for key, value in snapshots[best].items():
        kept.params[key][...] = value
    expected = export_model(kept, trainer.data.mean, trainer.data.std)
    saved = TwoLayerNet.load(tmp_path / "run" / "model.npz")
    for key in ("W1", "b1", "W2", "b2"):
        assert np.array_equal(saved.params[key], expected.params[key]), key
        assert not np.array_equal(saved.params[key], snapshots[-1][key])  # not the last epoch


def test_a_run_without_patience_uses_its_whole_budget_and_keeps_the_best_epoch(tmp_path):
    trainer = Trainer(_small_config(epochs=6, lr=2.0, momentum=0.9), tmp_path / "run")
    metrics = trainer.run()
    assert len(trainer.state.history["epochs"]) == 6 and metrics["stopped_early"] is False
    accuracies = [r["val_accuracy"] for r in trainer.state.history["epochs"]]
    assert metrics["model_from_epoch"] == accuracies.index(max(accuracies)) + 1


def _replay_config(schedule, **overrides):
    """A float64 run with batches drawn with replacement: easy to replay by hand."""
    values = dict(train_size=500, hidden=10, batch_size=50, iters=24, lr=0.5, momentum=0.0,
                  schedule=schedule, sampling="replacement", dtype="float64", seed=3)
    values.update(overrides)
    return config_from_preset("default", **values)


@pytest.mark.parametrize("schedule, lr_at", [
    ("constant", lambda i: 0.5),
    ("step", lambda i: 0.5 * 0.1 ** (i // 8)),  # x0.1 every third of the 24 iterations
    ("cosine", lambda i: 0.25 * (1 + math.cos(math.pi * i / 24))),
])
def test_the_loop_applies_the_schedules_learning_rate_at_every_iteration(tmp_path, schedule,
                                                                           lr_at):
    """Replayed by hand: the same batches, the net's own backprop gradient, and
    params -= lr(i) * grad with the schedule's formula written out here. Every update and
    every recorded lr match; a loop that kept the base lr would not."""
    trainer = Trainer(_replay_config(schedule), tmp_path / "run")
    net = TwoLayerNet(784, 10, 10, dtype=np.float64, seed=0)
    for key, value in trainer.net.params.items():
        net.params[key][...] = value
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = trainer.rng.bit_generator.state
    x_train, t_train = trainer.data.x_train, trainer.data.t_train
    for i in range(24):
        rows = np.sort(rng.integers(0, 500, 50))
        grads = net.gradient(x_train[rows], t_train[rows])
        for key in net.params:
            net.params[key] -= lr_at(i) * grads[key]
    trainer.run()
    for key in net.params:
        assert np.array_equal(trainer.net.params[key], net.params[key]), key
    assert [r["lr"] for r in trainer.state.history["epochs"]] == [lr_at(i) for i in (9, 19, 23)]


def test_weight_decay_moves_weights_by_lr_wd_w_more_and_leaves_biases_alone(tmp_path):
    """One update from the same start on the same batch: with weight decay wd, each weight
    ends lr * wd * w0 lower than without, and every bias ends exactly where it did."""
    plain = Trainer(_replay_config("constant", iters=1), tmp_path / "plain")
    decayed = Trainer(_replay_config("constant", iters=1, weight_decay=0.01), tmp_path / "wd")
    start = {k: v.copy() for k, v in plain.net.params.items()}
    plain.run()
    decayed.run()
    for key in ("W1", "W2"):
        moved = plain.net.params[key] - decayed.net.params[key]
        # two float64 updates of values below 1 in size: each rounds by at most ulp(1) = 2.2e-16
        np.testing.assert_allclose(moved, 0.5 * 0.01 * start[key], rtol=0, atol=4.5e-16)
        assert np.abs(moved).max() > 100 * 4.5e-16  # the decay is far above that rounding
    for key in ("b1", "b2"):
        assert np.array_equal(plain.net.params[key], decayed.net.params[key]), key


def test_nesterov_updates_follow_the_formula_through_the_loop(tmp_path):
    """Nesterov momentum 0.9 over a few updates, replayed by hand in PyTorch's form
    (v = mu v + g; p -= lr (g + mu v)), which is what optim.SGD documents."""
    trainer = Trainer(_replay_config("constant", iters=5, momentum=0.9, nesterov=True),
                      tmp_path / "run")
    net = TwoLayerNet(784, 10, 10, dtype=np.float64, seed=0)
    for key, value in trainer.net.params.items():
        net.params[key][...] = value
    velocity = {k: np.zeros_like(v) for k, v in net.params.items()}
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = trainer.rng.bit_generator.state
    x_train, t_train = trainer.data.x_train, trainer.data.t_train
    for _ in range(5):
        rows = np.sort(rng.integers(0, 500, 50))
        grads = net.gradient(x_train[rows], t_train[rows])
        for key in net.params:
            velocity[key] = 0.9 * velocity[key] + grads[key]
            net.params[key] -= 0.5 * (grads[key] + 0.9 * velocity[key])
    trainer.run()
    for key in net.params:  # the same operations in the same order: the same bits
        assert np.array_equal(trainer.net.params[key], net.params[key]), key
    plain = Trainer(_replay_config("constant", iters=5, momentum=0.9), tmp_path / "classic")
    plain.run()
    assert not np.allclose(plain.net.params["W2"], trainer.net.params["W2"], rtol=0,
                           atol=1e-6)  # and classic momentum is a different run


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


