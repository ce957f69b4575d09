"""Run folders as a newcomer meets them: what resume says, extending a finished run, the model
an interrupted run leaves to look at, evaluations every N iterations, and progress lines where
no progress bar can draw. On the 600-digit ``mini`` dataset (figures stubbed: test_plots.py)."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
from faults_support import interrupt_at

from mnist_twolayer import cli, cli_train
from mnist_twolayer.errors import ConfigError, TrainingInterrupted
from mnist_twolayer.network import TwoLayerNet
from mnist_twolayer.trainer import Trainer

BASE = ["train", "--dataset", "mini", "--hidden", "16", "--batch-size", "50", "--quiet"]
"""600 training digits in batches of 50: 12 iterations an epoch."""


def train(mini_env: Path, *args: str) -> int:
    return cli.main([*BASE, "--data-dir", str(mini_env), *args])


def cosine(base: float, start: int, end: int, iteration: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * (iteration - start) / (end - start)))


def test_resume_says_where_it_continues_from(mini_env, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):  # a run interrupted at iteration 7 of 24
        interrupted_run(mini_env, run, at=7)
    assert cli.main(["train", "--resume", str(run), "--data-dir", str(mini_env)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"resuming {run} at iteration 7 of 24"


def interrupted_run(mini_env: Path, run: Path, at: int) -> None:
    """A two-epoch run of BASE's shape that a real SIGINT stops during iteration ``at``."""
    from mnist_twolayer.config import config_from_preset

    config = config_from_preset("default", dataset="mini", hidden=16, batch_size=50, epochs=2)
    trainer = Trainer(config, run, data_dir=mini_env)
    interrupt_at(trainer, at, signal.SIGINT)
    trainer.run()


def test_an_interrupted_run_leaves_its_model_so_far_marked_partial(mini_env, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stop:
        interrupted_run(mini_env, run, at=16)
    assert stop.value.iteration == 16
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["partial"] is True and metrics["iterations"] == 16
    model = TwoLayerNet.load(run / "model.npz")  # evaluate and predict can look at it
    assert model.evaluate(*_mini_test())[1] == metrics["test_accuracy"]
    Trainer.resume(run, data_dir=mini_env).run()  # and the finished run replaces it
    assert json.loads((run / "metrics.json").read_text())["partial"] is False


def _mini_test():
    from faults_support import mini_arrays

    arrays = mini_arrays()
    return arrays["test", "images"].reshape(-1, 784) / np.float32(255), arrays["test", "labels"]


def test_resuming_a_finished_run_says_so_and_writes_its_outputs_again(mini_env, tmp_path,
                                                                      capsys):
    run = tmp_path / "run"
    assert train(mini_env, "--epochs", "1", "--out", str(run)) == 0
    (run / "metrics.json").unlink()  # as a run killed while writing its outputs would be
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--data-dir", str(mini_env)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{run} had finished (iteration 12 of 12): its model, metrics and "
                      f"figures are written again; more training: --resume {run} --epochs N "
                      f"or --iters N")
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 12


def test_a_finished_run_extended_starts_a_new_cosine_cycle(mini_env, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(mini_env, "--epochs", "2", "--out", str(run)) == 0
    assert cli.main(["train", "--resume", str(run), "--data-dir", str(mini_env), "--epochs",
                     "4", "--quiet"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert len(history["iteration_loss"]) == 48
    assert [r["iteration"] for r in history["epochs"]] == [12, 24, 36, 48]
    assert [r["epoch"] for r in history["epochs"]] == [1, 2, 3, 4]
    assert all(type(r["epoch"]) is int for r in history["epochs"])  # whole epochs: 1, not 1.0
    # each record's lr is the schedule's at the iteration before it: cycle 1 over 0..24,
    # cycle 2 (restarted from 0.2, the default preset's lr) over 24..48
    expected = [cosine(0.2, 0, 24, 11), cosine(0.2, 0, 24, 23), cosine(0.2, 24, 48, 35),
                cosine(0.2, 24, 48, 47)]
    assert [r["lr"] for r in history["epochs"]] == pytest.approx(expected, rel=1e-15, abs=0)
    assert json.loads((run / "config.json").read_text())["epochs"] == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["iterations"], metrics["epochs"]) == (48, 4)


def test_an_unfinished_run_extended_stretches_its_cycle(mini_env, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        interrupted_run(mini_env, run, at=7)
    trainer = Trainer.resume(run, data_dir=mini_env, epochs=3)
    trainer.run()
    records = trainer.state.history["epochs"]
    assert [r["lr"] for r in records] == pytest.approx(
        [cosine(0.2, 0, 36, i) for i in (11, 23, 35)], rel=1e-15, abs=0)


def test_a_budget_that_ends_before_the_run_is_refused(mini_env, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(mini_env, "--epochs", "2", "--out", str(run)) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--data-dir", str(mini_env), "--iters",
                     "20"]) == 2
    assert capsys.readouterr().err == (f"error: --iters 20 ends at iteration 20, but {run} is "
                                       f"at iteration 24 already\n")
    with pytest.raises(ConfigError, match="stopped early"):
        stopped = tmp_path / "stopped"
        assert train(mini_env, "--epochs", "30", "--val-size", "100", "--patience", "1",
                     "--lr", "3", "--out", str(stopped)) == 0
        Trainer.resume(stopped, data_dir=mini_env, epochs=40)


def test_eval_every_evaluates_every_n_iterations_and_at_the_end(mini_env, tmp_path):
    run = tmp_path / "run"
    assert train(mini_env, "--iters", "10", "--eval-every", "4", "--out", str(run)) == 0
    records = json.loads((run / "history.json").read_text())["epochs"]
    assert [r["iteration"] for r in records] == [4, 8, 10]
    assert [r["epoch"] for r in records] == [0.333, 0.667, 0.833]


def test_a_run_without_a_terminal_prints_progress_lines(mini_env, tmp_path, capsys,
                                                        monkeypatch):
    """Where stderr is a pipe or a file, no bar draws: a line every PROGRESS_EVERY seconds
    says how far the run is, so a slow one (a numerical gradient) is never silent."""
    monkeypatch.setattr(cli_train, "PROGRESS_EVERY", 0.0)
    assert cli.main(["train", "--dataset", "mini", "--data-dir", str(mini_env), "--hidden",
                     "16", "--batch-size", "50", "--iters", "5", "--out",
                     str(tmp_path / "run")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("iteration ")]
    assert [line.split(",")[0] for line in lines] == [
        f"iteration {i} of 5 ({i / 5:.0%})" for i in range(1, 5)]
    assert all(line.endswith(" s left") for line in lines)


def test_extend_sets_the_new_budget_and_starts_a_cycle_only_at_the_end(mini_env, tmp_path):
    """extend on a trainer placed by hand: no training needed to see what it sets."""
    from mnist_twolayer.config import config_from_preset

    config = config_from_preset("default", dataset="mini", hidden=4, batch_size=50, epochs=2)
    trainer = Trainer(config, tmp_path / "run", data_dir=mini_env)
    for kwargs in ({}, {"epochs": 3, "iters": 40}):
        with pytest.raises(ConfigError) as info:
            trainer.extend(**kwargs)
        assert str(info.value) == "give the new budget as epochs or as iterations"
    trainer.state.iteration = 24  # finished: its whole budget (2 epochs of 12) used
    with pytest.raises(ConfigError) as info:
        trainer.extend(epochs=2)
    assert str(info.value) == (f"--epochs 2 ends at iteration 24, but {tmp_path / 'run'} is at "
                               f"iteration 24 already")
    trainer.extend(epochs=3)
    assert (trainer.config.epochs, trainer.config.iters, trainer.total_iterations) == (3, None, 36)
    assert trainer.state.schedule_starts == [0, 24]
    trainer.state.iteration = 30  # unfinished: the current cycle stretches
    trainer.extend(iters=40)
    assert (trainer.config.epochs, trainer.config.iters, trainer.total_iterations) == (None, 40,
                                                                                       40)
    assert trainer.state.schedule_starts == [0, 24]
    assert trainer.config.hidden == 4 and config.epochs == 2  # the rest kept; a new config
    assert [trainer.lr_at(i) for i in (23, 24, 40 - 1)] == [
        cosine(0.2, 0, 24, 23), 0.2, cosine(0.2, 24, 40, 39)]


def test_an_evaluation_after_every_iteration_records_the_lr_each_one_used(mini_env, tmp_path,
                                                                          caplog):
    """Record i holds the columns of history.csv and nothing else, and the lr of the update
    before it: iteration 1's record the schedule's lr at 0 (the base), and so on. Its seconds
    of training grow and fit inside the wall time around the run (an order, not a speed), and
    each evaluation is logged with its test accuracy."""
    import logging
    import time

    from mnist_twolayer.config import config_from_preset
    from mnist_twolayer.history import HISTORY_COLUMNS

    config = config_from_preset("default", dataset="mini", hidden=4, batch_size=50, iters=3,
                                eval_every=1)
    trainer = Trainer(config, tmp_path / "run", data_dir=mini_env)
    caplog.set_level(logging.INFO, logger="mnist_twolayer.trainer")
    before = time.perf_counter()
    trainer.run()
    wall = time.perf_counter() - before
    records = trainer.state.history["epochs"]
    seconds = [r["seconds"] for r in records]
    assert 0 <= seconds[0] <= seconds[1] <= seconds[2] <= wall
    assert [m for m in caplog.messages if m.startswith("iteration ")] == [
        f"iteration {r['iteration']}: test accuracy {r['test_accuracy']:.4f}" for r in records]
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert all(set(r) == set(HISTORY_COLUMNS) for r in records)
    assert [r["lr"] for r in records] == [0.2, cosine(0.2, 0, 3, 1), cosine(0.2, 0, 3, 2)]


def test_permutation_sampling_draws_every_sample_once_an_epoch(mini_env, tmp_path):
    """12 batches of 50 from the 600 digits are a partition of them, the last one included;
    the 13th starts a new permutation from its first row."""
    from mnist_twolayer.config import config_from_preset

    config = config_from_preset("default", dataset="mini", hidden=4, batch_size=50, epochs=2)
    trainer = Trainer(config, tmp_path / "run", data_dir=mini_env)
    batches = [trainer._next_batch_indices() for _ in range(12)]
    assert all(len(b) == 50 and np.array_equal(b, np.sort(b)) for b in batches)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(600))
    assert trainer.state.position == 600
    first = trainer._next_batch_indices()
    assert trainer.state.position == 50
    assert np.array_equal(first, np.sort(trainer.state.permutation[:50]))


def test_a_run_folder_is_made_with_its_missing_parents(mini_env, tmp_path):
    from mnist_twolayer.config import config_from_preset

    config = config_from_preset("default", dataset="mini", hidden=4, batch_size=50, iters=1)
    run = tmp_path / "runs" / "deep" / "run"
    assert Trainer(config, run, data_dir=mini_env).run()["iterations"] == 1
    assert json.loads((run / "config.json").read_text()) == config.to_dict()


def test_shifted_batches_bring_in_the_standardized_blank_pixel(mini_env, tmp_path):
    """The first batch of a shift-augmented run, replayed: the same rows, shifted by the same
    draws, with (0 - mean) / std, a blank pixel in the standardized inputs, moved in."""
    from mnist_twolayer.augment import shift_images
    from mnist_twolayer.config import config_from_preset

    config = config_from_preset("default", dataset="mini", hidden=4, batch_size=50, iters=1,
                                sampling="replacement", augment="shift", max_shift=2.0)
    trainer = Trainer(config, tmp_path / "run", data_dir=mini_env)
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = trainer.rng.bit_generator.state
    seen = []
    original = trainer.net.loss_and_gradient

    def record(x, t, method="backprop"):
        seen.append(x.copy())
        return original(x, t, method)

    trainer.net.loss_and_gradient = record
    trainer.run()
    rows = np.sort(rng.integers(0, 600, 50))
    blank = (0.0 - trainer.data.mean) / trainer.data.std
    expected = shift_images(trainer.data.x_train[rows], 2, rng, blank)
    np.testing.assert_array_equal(seen[0], expected)
