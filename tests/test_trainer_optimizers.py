"""The trainer with each ch. 6 optimizer and with ReLU: the optimizer's state in the checkpoint,
bit-identical resume, checkpoints and configs from before either existed, the saved model."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults_support import interrupt_at

from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import CheckpointError, TrainingInterrupted
from mnist_twolayer.network import PARAM_NAMES, TwoLayerNet
from mnist_twolayer.optim import OPTIMIZERS
from mnist_twolayer.trainer import Trainer

pytestmark = pytest.mark.slow

GROUPS = {"sgd": (), "momentum": ("velocity",), "nesterov": ("velocity",),
          "adagrad": ("adagrad_h",), "rmsprop": ("rmsprop_h",), "adam": ("adam_m", "adam_v")}


def _config(optimizer: str, **overrides: Any):
    """36 iterations on the 600 digits of ``mini`` with a validation split, weight decay and a
    cosine schedule: every piece of state matters."""
    values = dict(dataset="mini", optimizer=optimizer, hidden=16, batch_size=50, epochs=3,
                  val_size=100, weight_decay=1e-3, seed=5)
    values.update(overrides)
    return config_from_preset("default", **values)



def _interrupted(run_dir: Path, config, data_dir: Path, at: int = 17) -> None:
    trainer = Trainer(config, run_dir, data_dir=data_dir)
    interrupt_at(trainer, at, signal.SIGINT)
    with pytest.raises(TrainingInterrupted):
        trainer.run()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_resumes_bit_identically(optimizer, mini_env, tmp_path):
    whole = Trainer(_config(optimizer), tmp_path / "whole", data_dir=mini_env)
    whole.run()
    _interrupted(tmp_path / "parted", _config(optimizer), mini_env)
    saved = read_checkpoint(tmp_path / "parted" / "checkpoint.npz")
    assert saved.state.iteration == 17
    assert set(saved.optimizer_state) == {f"{group}/{key}" for group in GROUPS[optimizer]
                                          for key in PARAM_NAMES}
    resumed = Trainer.resume(tmp_path / "parted", data_dir=mini_env)
    assert resumed.optimizer.steps == 17
    resumed.run()
    for key, value in whole.net.params.items():
        assert np.array_equal(resumed.net.params[key], value), key
    assert resumed.state.history["iteration_loss"] == whole.state.history["iteration_loss"]
    losses = whole.state.history["iteration_loss"]
    assert np.mean(losses[-6:]) < 0.9 * np.mean(losses[:6])  # it learns, even adam at 0.001


@pytest.fixture(scope="module")
def adam_checkpoint(mini_env, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "adam"
    _interrupted(run_dir, _config("adam"), mini_env)
    return run_dir / "checkpoint.npz"


def _rewritten(checkpoint: Path, out: Path, change) -> Path:
    """A copy of ``checkpoint`` in run folder ``out`` with ``change(arrays, meta)`` applied."""
    with np.load(checkpoint, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(str(arrays["meta"][()]))
    change(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    out.mkdir()
    np.savez(out / "checkpoint.npz", **arrays)
    return out


@pytest.mark.parametrize("change, message", [
    (lambda a, m: a.pop("adam_v/W1"),
     "adam_v/ arrays are missing or do not fit the parameters (W2, b1, b2 found)"),
    (lambda a, m: a.__setitem__("adam_m/b2", np.zeros(3, np.float32)),
     "adam_m/ arrays are missing or do not fit the parameters (W1, W2, b1, b2 found)"),
    (lambda a, m: m["config"].update(optimizer="rmsprop", beta1=0.9),
     "adam_m/W1, adam_m/W2, adam_m/b1, adam_m/b2, adam_v/W1, adam_v/W2, adam_v/b1, adam_v/b2 "
     "are not state of the rmsprop optimizer this run uses"),
    (lambda a, m: a.__setitem__("velocity/W1", a["adam_m/W1"]),
     "velocity/W1 are not state of the adam optimizer this run uses"),
])
def test_optimizer_state_that_does_not_fit_is_a_checkpoint_error(change, message,
                                                                 adam_checkpoint, mini_env,
                                                                 tmp_path):
    run_dir = _rewritten(adam_checkpoint, tmp_path / "run", change)
    with pytest.raises(CheckpointError) as info:
        Trainer.resume(run_dir, data_dir=mini_env)
    assert str(info.value) == f"{run_dir / 'checkpoint.npz'}: {message}"


def test_a_checkpoint_from_before_optimizer_resumes_as_it_would_have(mini_env, tmp_path):
    """A Nesterov run's checkpoint as written until 2026-11-24 (config with ``nesterov``, no
    ``optimizer``, ``activation`` or betas) continues to the same bits as an unbroken run."""
    config = _config("nesterov", weight_decay=0.0)
    whole = Trainer(config, tmp_path / "whole", data_dir=mini_env)
    whole.run()
    _interrupted(tmp_path / "new", config, mini_env)

    def as_before(arrays: dict, meta: dict) -> None:
        for key in ("optimizer", "activation", "beta1", "beta2", "eps", "decay_rate"):
            del meta["config"][key]
        meta["config"]["nesterov"] = True

    old = _rewritten(tmp_path / "new" / "checkpoint.npz", tmp_path / "old", as_before)
    resumed = Trainer.resume(old, data_dir=mini_env)
    assert (resumed.config.optimizer, resumed.config.activation) == ("nesterov", "sigmoid")
    resumed.run()
    for key, value in whole.net.params.items():
        assert np.array_equal(resumed.net.params[key], value), key


def test_a_relu_run_saves_a_relu_model_that_gives_its_metrics(mnist, tmp_path):
    """Standardized inputs, so the export folds them into W1 and b1: the model file must say
    relu and reproduce metrics.json's test numbers exactly (the same arithmetic); read as a
    sigmoid net, the same weights score otherwise."""
    config = config_from_preset("default", activation="relu", train_size=3000, hidden=32,
                                epochs=2, lr=0.05)
    metrics = Trainer(config, tmp_path / "run").run()
    model = TwoLayerNet.load(tmp_path / "run" / "model.npz")
    assert model.activation == "relu"
    assert model.metadata["config"]["activation"] == "relu"
    _, (x_test, t_test) = mnist
    loss, accuracy = model.evaluate(x_test, t_test)
    assert (accuracy, loss) == (metrics["test_accuracy"], metrics["test_loss"])
    assert metrics["test_accuracy"] > 0.8
    as_sigmoid = TwoLayerNet(784, 32, 10, dtype=model.dtype, activation="sigmoid")
    for key in PARAM_NAMES:
        as_sigmoid.params[key][...] = model.params[key]
    assert abs(as_sigmoid.accuracy(x_test, t_test) - accuracy) > 0.05


def test_the_trainer_builds_its_net_with_the_runs_activation(mini_env, tmp_path):
    trainer = Trainer(_config("sgd", activation="relu"), tmp_path / "run", data_dir=mini_env)
    assert trainer.net.activation == "relu" and "Relu1" in trainer.net.layers
