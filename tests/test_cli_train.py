"""train / evaluate / predict / plot as a user runs them."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, user_picture
from PIL import Image

from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.cli import main

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd or REPO)


@pytest.fixture(scope="module")
def trained_with_output(tmp_path_factory) -> tuple[Path, str]:
    """A model from one epoch of the default preset, trained through the CLI, and what the
    command printed."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--epochs", "1", "--out", str(run_dir), "--quiet"]) == 0
    return run_dir, printed.getvalue()


@pytest.fixture(scope="module")
def trained(trained_with_output) -> Path:
    return trained_with_output[0]


def test_train_prints_a_summary(trained_with_output):
    run_dir, printed = trained_with_output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95
    assert printed == (f"test accuracy {metrics['test_accuracy']:.2%} (loss "
                       f"{metrics['test_loss']:.4f}) after 600 iterations in "
                       f"{metrics['seconds']:.1f} s\nrun folder: {run_dir}\n")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preset"] == "default" and config["epochs"] == 1 and config["hidden"] == 256


def test_evaluate_json_agrees_with_the_run(trained, capsys):
    assert main(["evaluate", str(trained / "model.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = json.loads((trained / "metrics.json").read_text())
    # the run measured its saved model on the very images evaluate loads
    assert (report["test_accuracy"], report["test_loss"]) == (metrics["test_accuracy"],
                                                              metrics["test_loss"])
    assert [row["support"] for row in report["per_class"]] == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert all(row["precision"] > 0.9 and row["recall"] > 0.9 for row in report["per_class"])
    for figure in report["figures"]:
        assert Path(figure).is_file()


def _digit_png(image: np.ndarray, path: Path) -> Path:
    user_picture(image).save(path)
    return path


def test_predict_names_digits_drawn_from_mnist_test_images(trained, mnist, tmp_path, capsys):
    _, (x_test, t_test) = mnist
    picks = [int(np.flatnonzero(t_test == digit)[0]) for digit in range(10)]
    paths = [str(_digit_png(x_test[i], tmp_path / f"digit{t_test[i]}.png")) for i in picks]
    assert main(["predict", str(trained / "model.npz"), *paths, "--top-k", "3", "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    named = [p["digit"] for p in predictions]
    assert sum(n == d for n, d in zip(named, range(10), strict=True)) >= 9, named
    assert all(len(p["top_k"]) == 3 for p in predictions)


def test_predict_reports_a_bad_image_and_goes_on(trained, mnist, tmp_path, capsys):
    _, (x_test, t_test) = mnist
    good = _digit_png(x_test[0], tmp_path / "good.png")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert main(["predict", str(trained / "model.npz"), str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{good}: {t_test[0]} (")
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert str(bad) in captured.err


def test_plot_overlays_runs(trained, tmp_path, capsys):
    out = tmp_path / "both.png"
    assert main(["plot", str(trained), str(trained), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_sigint_saves_a_loadable_checkpoint_and_says_how_to_resume(tmp_path):
    """The CLI side of an interrupt; that resuming is bit-identical is test_trainer's and
    test_faults_training's part."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_twolayer", "train", "--train-size", "3000", "--hidden",
         "32", "--epochs", "400", "--out", str(run_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "history.json").exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume with: python -m mnist_twolayer train --resume {run_dir}" in err
    stopped = read_checkpoint(run_dir / "checkpoint.npz").state.iteration
    assert 0 < stopped < 400 * 30
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["iteration_loss"]) == stopped


def test_resume_refuses_new_settings(tmp_path, trained, capsys):
    assert main(["train", "--resume", str(trained), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --resume continues a run with its saved settings; drop --lr\n")


def test_an_existing_run_is_not_overwritten(trained, capsys):
    before = (trained / "model.npz").read_bytes()
    assert main(["train", "--out", str(trained), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"error: {trained} already holds a run; continue it with --resume {trained} or choose "
        f"another --out\n")
    assert (trained / "model.npz").read_bytes() == before


def test_divergence_is_one_line_and_exit_2(tmp_path):
    result = _cli("train", "--lr", "1e6", "--momentum", "0", "--train-size", "1000",
                  "--hidden", "16", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "training diverged: lower the learning rate (--lr)" in result.stderr
    read_checkpoint(tmp_path / "run" / "checkpoint.npz")


@pytest.mark.parametrize("flags, message", [
    (["--lr", "0"], "argument --lr: '0' must be greater than 0"),
    (["--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
    (["--hidden", "-1"], "argument --hidden: '-1' must be greater than 0"),
    (["--batch-size", "abc"], "argument --batch-size: 'abc' is not an integer"),
    (["--epochs", "0"], "argument --epochs: '0' must be greater than 0"),
    (["--momentum", "1"], "argument --momentum: '1' must be at most 0.999"),
    (["--preset", "fast"], "argument --preset: invalid choice: 'fast'"),
    (["--epochs", "2", "--iters", "5"], "argument --iters: not allowed with argument --epochs"),
    (["--val-size", "60000"], "validation size 60000 leaves no training data"),
    (["--batch-size", "100000"], "batch size 100000 is larger than the 60000 training samples"),
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
])
def test_bad_train_flags_are_one_line(flags, message, tmp_path, capsys):
    assert main(["train", *flags, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.parametrize("args, message", [
    (["evaluate", "missing.npz"], "missing.npz"),
    (["predict", "missing.npz", "x.png"], "missing.npz"),
    (["plot", "no-such-run"], "error: no-such-run is not a run folder: no history.json"),
])
def test_missing_paths_are_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_plot_accuracy_script_runs_a_sweep(tmp_path):
    out = tmp_path / "sweep.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot_accuracy.py"), "--values", "8,16",
         "--epochs", "1", "--train-size", "500", "--runs-dir", str(tmp_path / "runs"),
         "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("hidden=8: test accuracy ")
    assert (tmp_path / "runs" / "hidden-16" / "model.npz").is_file()
    with Image.open(out) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize("flags, augment, max_shift", [
    (["--augment-shift", "3"], "shift", 3),  # the older spelling still works
    (["--augment-shift", "0", "--preset", "best"], "none", 2),
    (["--augment", "affine", "--max-shift", "1.5", "--max-rotation", "5"], "affine", 1.5),
])
def test_augment_flags_reach_the_config(flags, augment, max_shift, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", *flags, "--iters", "1", "--train-size", "100", "--hidden", "4",
                 "--out", str(run_dir), "--quiet"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["augment"], config["max_shift"]) == (augment, max_shift)
    assert (run_dir / "augmentation.png").exists() == (augment != "none")
