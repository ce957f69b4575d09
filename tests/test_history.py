"""history.py: the figures of merit read from a run's history, its two files and its checks,
on histories written by hand (the trainer's tests reach them only through minutes of training)."""

from __future__ import annotations

import json

import pytest

from mnist_twolayer.errors import ConfigError
from mnist_twolayer.history import (
    best_evaluation,
    evaluations_since_best,
    history_problem,
    load_history,
    new_history,
    time_to_accuracy,
    write_history,
)


def record(epoch: int, val: float | None, test: float | None, seconds: float) -> dict:
    return {"epoch": epoch, "iteration": 100 * epoch, "seconds": seconds, "lr": 0.1,
            "train_loss": 0.5, "train_accuracy": 0.9, "val_loss": None if val is None else 0.4,
            "val_accuracy": val, "test_loss": None if test is None else 0.3,
            "test_accuracy": test}


def history_of(*records: dict) -> dict:
    return {"iteration_loss": [2.3, 1.0], "epochs": list(records)}


def test_a_new_history_is_two_empty_lists():
    assert new_history() == {"iteration_loss": [], "epochs": []}
    assert new_history() is not new_history()


def test_the_best_evaluation_is_the_first_of_equal_highest_validation_accuracies():
    history = history_of(record(1, 0.90, 0.9, 1.0), record(2, 0.95, 0.9, 2.0),
                         record(3, 0.93, 0.9, 3.0), record(4, 0.95, 0.9, 4.0),
                         record(5, 0.94, 0.9, 5.0))
    index, best = best_evaluation(history)
    assert index == 1 and best["epoch"] == 2
    assert evaluations_since_best(history) == 3


def test_the_best_evaluation_may_be_the_first_or_the_last():
    assert best_evaluation(history_of(record(1, 0.9, None, 1.0), record(2, 0.8, None, 2.0)))[0] \
        == 0
    history = history_of(record(1, 0.8, None, 1.0), record(2, 0.9, None, 2.0))
    assert best_evaluation(history)[0] == 1
    assert evaluations_since_best(history) == 0


def test_without_a_validation_split_there_is_no_best_and_nothing_since():
    history = history_of(record(1, None, 0.9, 1.0), record(2, None, 0.95, 2.0))
    assert best_evaluation(history) is None
    assert evaluations_since_best(history) == 0
    assert best_evaluation(new_history()) is None


def test_a_record_without_validation_is_skipped_not_taken_for_the_best():
    history = history_of(record(1, None, 0.9, 1.0), record(2, 0.5, 0.9, 2.0),
                         record(3, None, 0.9, 3.0))
    assert best_evaluation(history)[0] == 1
    assert evaluations_since_best(history) == 1


def test_time_to_accuracy_is_the_first_evaluation_at_or_above_each_milestone():
    history = history_of(record(1, None, 0.9699, 1.5), record(2, None, 0.97, 3.25),
                         record(3, None, 0.975, 4.0), record(4, None, 0.9801, 6.5),
                         record(5, None, 0.99, 8.0))
    assert time_to_accuracy(history) == {"0.97": 3.25, "0.98": 6.5}
    assert time_to_accuracy(history, (0.5, 0.991)) == {"0.50": 1.5, "0.99": None}


def test_time_to_accuracy_of_a_run_that_never_got_there_is_none():
    history = history_of(record(1, 0.99, None, 1.0), record(2, 0.99, 0.96, 2.0))
    assert time_to_accuracy(history) == {"0.97": None, "0.98": None}
    assert time_to_accuracy(new_history()) == {"0.97": None, "0.98": None}


def test_write_history_writes_the_json_and_one_csv_row_per_evaluation(tmp_path):
    history = history_of(record(1, None, 0.97, 1.5), record(2, 0.5, 0.98, 3.0))
    history["epochs"][0]["extra"] = "not a column"
    write_history(tmp_path, history)
    assert json.loads((tmp_path / "history.json").read_text()) == history
    # one line, as json's C encoder writes it (the indented form is the slow Python encoder)
    assert (tmp_path / "history.json").read_bytes() == (
        json.dumps(history, allow_nan=False) + "\n").encode()
    assert (tmp_path / "history.json").read_text().count("\n") == 1
    assert (tmp_path / "history.csv").read_bytes() == (  # bytes: "\n", not csv's "\r\n"
        b"epoch,iteration,seconds,lr,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,"
        b"test_accuracy\n"
        b"1,100,1.5,0.1,0.5,0.9,,,0.3,0.97\n"
        b"2,200,3.0,0.1,0.5,0.9,0.4,0.5,0.3,0.98\n")
    assert load_history(tmp_path) == history
    assert load_history(str(tmp_path)) == history


def test_load_history_refuses_what_is_not_a_history(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_history(tmp_path)
    assert str(info.value) == f"{tmp_path} is not a run folder: no history.json"
    path = tmp_path / "history.json"
    path.write_text("{oops")
    with pytest.raises(ConfigError) as info:
        load_history(tmp_path)
    assert str(info.value) == (f"{path}: not a history file (Expecting property name enclosed "
                               f"in double quotes: line 1 column 2 (char 1))")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"history.json: not a history file \('utf-8' codec"):
        load_history(tmp_path)
    path.write_text('{"epochs": []}')
    with pytest.raises(ConfigError) as info:
        load_history(tmp_path)
    assert str(info.value) == f"{path}: not a history file (no epochs / iteration_loss)"


def test_load_history_of_a_folder_named_history_json_is_a_config_error(tmp_path):
    (tmp_path / "history.json").mkdir()
    with pytest.raises(ConfigError, match=r"history.json: not a history file \(\[Errno 21\]"):
        load_history(tmp_path)


@pytest.mark.parametrize("history, problem", [
    ([], "not a history file (no epochs / iteration_loss)"),
    ({"epochs": []}, "not a history file (no epochs / iteration_loss)"),
    ({"iteration_loss": []}, "not a history file (no epochs / iteration_loss)"),
    ({"epochs": [], "iteration_loss": "1"},
     "damaged history (iteration_loss is not a list of numbers)"),
    ({"epochs": [], "iteration_loss": [1.0, "2"]},
     "damaged history (iteration_loss is not a list of numbers)"),
    ({"epochs": [], "iteration_loss": [1.0, True]},
     "damaged history (iteration_loss is not a list of numbers)"),
    ({"epochs": 3, "iteration_loss": []},
     "damaged history (epoch record 0 is not a record of numbers)"),
    ({"epochs": [{"epoch": 1}, []], "iteration_loss": []},
     "damaged history (epoch record 1 is not a record of numbers)"),
    ({"epochs": [{"epoch": 1}, {"iteration": 3}], "iteration_loss": []},
     "damaged history (epoch record 1 is not a record of numbers)"),
    ({"epochs": [{"epoch": 1}, {"epoch": False}], "iteration_loss": []},
     "damaged history (epoch record 1 is not a record of numbers)"),
    ({"epochs": [{"epoch": 1, "lr": "0.1"}], "iteration_loss": []},
     "damaged history (epoch record 0 is not a record of numbers)"),
    ({"epochs": [{"epoch": 1, "test_accuracy": "0.9"}], "iteration_loss": []},
     "damaged history (epoch record 0 is not a record of numbers)"),
])
def test_history_problem_names_what_is_wrong(history, problem):
    assert history_problem(history) == problem


def test_a_history_of_numbers_and_nulls_has_no_problem():
    assert history_problem(history_of(record(1, None, 0.9, 1.0), record(2, 0.5, 0.9, 2))) is None
    assert history_problem({"epochs": [{"epoch": 1.0, "extra": "x"}], "iteration_loss": [1]}) \
        is None
    assert history_problem(new_history()) is None
