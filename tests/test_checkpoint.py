"""checkpoint.py: the training state and its file, on checkpoints built by hand and read back by
a reader written here (np.load of the members, json of meta); the fault suite,
test_faults_files.py, damages a trainer's own checkpoint every other way."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mnist_twolayer.checkpoint import CHECKPOINT_FORMAT, Checkpoint, TrainState, read_checkpoint
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import CheckpointError

CONFIG = config_from_preset("default", dataset="mini", hidden=3, val_size=100)
PARAMS = {"W1": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "b1": np.float32([0.5, -1, 2]),
          "W2": np.float32([[1.25], [-3], [0.125]]), "b2": np.float32([9.5])}
HISTORY = {"iteration_loss": [2.25, 1.5], "epochs": [
    {"epoch": 1, "iteration": 2, "seconds": 0.75, "lr": 0.2, "train_loss": 1.5,
     "train_accuracy": 0.5, "val_loss": 1.75, "val_accuracy": 0.25, "test_loss": 1.0,
     "test_accuracy": 0.75}]}
RNG_STATE = np.random.Generator(np.random.PCG64(7)).bit_generator.state


def _checkpoint() -> Checkpoint:
    state = TrainState(iteration=2, position=4, elapsed=1.5, mean=0.125, std=0.25,
                       schedule_starts=[0, 2], permutation=np.array([3, 0, 2, 1, 4, 5]),
                       history=json.loads(json.dumps(HISTORY)))
    velocity = {f"velocity/{k}": v * 2 for k, v in PARAMS.items()}
    best = {k: v - 1 for k, v in PARAMS.items()}
    return Checkpoint(CONFIG, state, dict(PARAMS), velocity, best, RNG_STATE)


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _meta(path: Path) -> dict:
    return json.loads(str(_members(path)["meta"][()]))


def _rewrite(path: Path, change) -> None:
    """The checkpoint at ``path`` with ``change(members, meta)`` applied, written back."""
    members = _members(path)
    meta = json.loads(str(members["meta"][()]))
    change(members, meta)
    members["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as handle:
        np.savez(handle, **members)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.npz"
    _checkpoint().save(path)
    return path


def test_a_new_train_state_starts_at_the_beginning():
    state = TrainState()
    assert (state.iteration, state.position, state.elapsed, state.mean, state.std) == (
        0, 0, 0.0, 0.0, 1.0)
    assert state.schedule_starts == [0]
    assert state.permutation.shape == (0,) and state.permutation.dtype == np.int64
    assert state.history == {"iteration_loss": [], "epochs": []}
    other = TrainState()
    other.schedule_starts.append(5)
    other.history["epochs"].append({})
    assert TrainState().schedule_starts == [0] and TrainState().history["epochs"] == []


def test_the_file_holds_each_array_under_its_name_and_meta_as_json(saved):
    members = _members(saved)
    assert set(members) == {"param/W1", "param/b1", "param/W2", "param/b2", "velocity/W1",
                            "velocity/b1", "velocity/W2", "velocity/b2", "best/W1", "best/b1",
                            "best/W2", "best/b2", "permutation", "meta"}
    for key, value in PARAMS.items():
        assert members[f"param/{key}"].dtype == np.float32
        np.testing.assert_array_equal(members[f"param/{key}"], value)
        np.testing.assert_array_equal(members[f"velocity/{key}"], value * 2)
        np.testing.assert_array_equal(members[f"best/{key}"], value - 1)
    np.testing.assert_array_equal(members["permutation"], [3, 0, 2, 1, 4, 5])
    meta = _meta(saved)
    assert meta == {"format": 2, "config": CONFIG.to_dict(), "rng_state": RNG_STATE,
                    "history": HISTORY,
                    "state": {"iteration": 2, "position": 4, "elapsed": 1.5, "mean": 0.125,
                              "std": 0.25, "schedule_starts": [0, 2]}}
    assert CHECKPOINT_FORMAT == 2


def test_a_checkpoint_without_best_parameters_has_no_best_members(tmp_path):
    checkpoint = _checkpoint()
    checkpoint.best_params = None
    checkpoint.save(tmp_path / "c.npz")
    assert not any(key.startswith("best/") for key in _members(tmp_path / "c.npz"))
    assert read_checkpoint(tmp_path / "c.npz").best_params is None


def test_read_checkpoint_gives_back_what_was_saved(saved):
    back = read_checkpoint(saved)
    assert back.config == CONFIG
    for key, value in PARAMS.items():
        assert back.params[key].dtype == np.float32
        np.testing.assert_array_equal(back.params[key], value)
        np.testing.assert_array_equal(back.best_params[key], value - 1)
    assert set(back.params) == set(PARAMS) and set(back.best_params) == set(PARAMS)
    assert set(back.optimizer_state) == {f"velocity/{k}" for k in PARAMS}
    for key, value in PARAMS.items():
        np.testing.assert_array_equal(back.optimizer_state[f"velocity/{key}"], value * 2)
    state = back.state
    assert (state.iteration, state.position, state.elapsed, state.mean, state.std) == (
        2, 4, 1.5, 0.125, 0.25)
    assert type(state.iteration) is int and type(state.elapsed) is float
    assert state.schedule_starts == [0, 2]
    np.testing.assert_array_equal(state.permutation, [3, 0, 2, 1, 4, 5])
    assert state.history == HISTORY
    assert back.rng_state == RNG_STATE


def test_a_format_1_checkpoint_and_one_without_schedule_starts_read(saved):
    def older(members, meta):
        meta["format"] = 1
        del meta["state"]["schedule_starts"]
    _rewrite(saved, older)
    back = read_checkpoint(saved)
    assert back.state.schedule_starts == [0]
    assert back.state.iteration == 2


def test_whole_number_seconds_and_statistics_read_as_numbers(saved):
    _rewrite(saved, lambda a, m: m["state"].update(elapsed=3, mean=0, std=1))
    state = read_checkpoint(saved).state
    assert (state.elapsed, state.mean, state.std) == (3, 0, 1)


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    return str(info.value).removeprefix(f"{path}: ")


def test_no_file_is_no_checkpoint(tmp_path):
    assert _refusal(tmp_path / "checkpoint.npz") == "no checkpoint here; is this a run folder?"
    (tmp_path / "checkpoint.npz").mkdir()
    assert _refusal(tmp_path / "checkpoint.npz") == "no checkpoint here; is this a run folder?"


DAMAGED = "damaged or not a checkpoint"
STARTS = (f"{DAMAGED} (TypeError: state schedule_starts is not a list of increasing "
          f"iterations from 0)")


@pytest.mark.parametrize("change, message", [
    (lambda a, m: m.pop("config"), "checkpoint lacks config"),
    (lambda a, m: [m.pop("history"), m.pop("rng_state")], "checkpoint lacks history, rng_state"),
    (lambda a, m: m.pop("state"), "checkpoint lacks state"),
    (lambda a, m: m.update(format=0), "checkpoint format 0 is not 2; it was written by another "
                                      "version"),
    (lambda a, m: m.pop("format"), "checkpoint format None is not 2; it was written by another "
                                   "version"),
    (lambda a, m: m.update(format="2"), "checkpoint format '2' is not 2; it was written by "
                                        "another version"),
    (lambda a, m: m["state"].update(elapsed="1.5"),
     f"{DAMAGED} (TypeError: state elapsed is not a number of type float)"),
    (lambda a, m: m["state"].update(std=None),
     f"{DAMAGED} (TypeError: state std is not a number of type float)"),
    (lambda a, m: m["state"].update(iteration=2.0),
     f"{DAMAGED} (TypeError: state iteration is not a number of type int)"),
    (lambda a, m: m["state"].update(position=[4]),
     f"{DAMAGED} (TypeError: state position is not a number of type int)"),
    (lambda a, m: m["state"].pop("mean"), f"{DAMAGED} (no 'mean')"),
    (lambda a, m: m["state"].update(schedule_starts=[1, 2]), STARTS),
    (lambda a, m: m["state"].update(schedule_starts=[]), STARTS),
    (lambda a, m: m["state"].update(schedule_starts=[0, 2, 2]), STARTS),
    (lambda a, m: m["state"].update(schedule_starts=[0, 5, 3]), STARTS),
    (lambda a, m: m["state"].update(schedule_starts=[0, 2.0]), STARTS),
    (lambda a, m: m["state"].update(schedule_starts=[0, True]), STARTS),
    (lambda a, m: m["state"].update(schedule_starts="0"), STARTS),
    (lambda a, m: m.update(rng_state=[1, 2]),
     f"{DAMAGED} (TypeError: the random generator state is not an object)"),
    (lambda a, m: m.update(history={"epochs": []}),
     "not a history file (no epochs / iteration_loss)"),
    (lambda a, m: m["config"].update(lr=-1.0),
     f"{DAMAGED} (learning rate must be a positive number, got -1.0)"),
    (lambda a, m: m.update(config=[1]), f"{DAMAGED} (TypeError: cannot convert dictionary "
                                        f"update sequence element #0 to a sequence)"),
    (lambda a, m: a.__setitem__("best/b2", np.float32([np.inf])),
     "array best/b2 holds NaN or inf"),
    (lambda a, m: a.__setitem__("velocity/W2", np.float64([[0], [math.nan], [0]])),
     "array velocity/W2 holds NaN or inf"),
    (lambda a, m: a.__setitem__("permutation", np.array([0.0, -math.inf])),
     "array permutation holds NaN or inf"),
    (lambda a, m: a.pop("permutation"), f"{DAMAGED} (no 'permutation')"),
])
def test_each_damage_is_one_checkpoint_error_saying_what(saved, change, message):
    _rewrite(saved, change)
    assert _refusal(saved) == message


def test_schedule_starts_that_increase_from_0_read(saved):
    _rewrite(saved, lambda a, m: m["state"].update(schedule_starts=[0, 3, 10]))
    assert read_checkpoint(saved).state.schedule_starts == [0, 3, 10]


def test_a_model_file_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, sizes=np.array([2, 3, 1]), **PARAMS)
    assert _refusal(path) == ("a saved model (model.npz), not a training checkpoint; evaluate "
                              "and predict take it, not --resume")
    np.savez(path, sizes=np.array([2, 3, 1]), **{k: v for k, v in PARAMS.items() if k != "b2"})
    assert _refusal(path) == f"{DAMAGED} (no 'meta' member)"


def test_meta_that_is_no_json_object_is_refused(saved):
    _rewrite(saved, lambda a, m: None)
    members = _members(saved)
    for meta, message in (("[1]", f"{DAMAGED} (meta is not an object)"),
                          ('"text"', f"{DAMAGED} (meta is not an object)"),
                          ("{", f"{DAMAGED} (meta is not JSON: Expecting property name enclosed "
                                f"in double quotes: line 1 column 2 (char 1))")):
        members["meta"] = np.array(meta)
        np.savez(saved, **members)
        assert _refusal(saved) == message


def test_damaged_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="checkpoint.npz: not a readable .npz file, "
                                              "perhaps truncated or damaged"):
        read_checkpoint(path)


def test_the_meta_member_makes_a_checkpoint_even_beside_a_models_arrays(saved):
    """Only a file without meta is taken for a model: these extra members are read as the
    optimizer's state, which the trainer then refuses as not its own."""
    _rewrite(saved, lambda a, m: a.update(sizes=np.array([2, 3, 1]), **PARAMS))
    back = read_checkpoint(saved)
    assert set(back.optimizer_state) == {"sizes", *PARAMS, *(f"velocity/{k}" for k in PARAMS)}
