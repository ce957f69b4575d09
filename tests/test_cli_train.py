"""train / evaluate / predict / plot as a user runs them."""

from __future__ import annotations

import argparse
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
from faults_support import read_only
from PIL import Image

from mnist_twolayer import plots
from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.cli import build_parser, main
from mnist_twolayer.images import image_to_mnist
from mnist_twolayer.network import TwoLayerNet

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


def test_evaluate_reports_the_runs_numbers_and_per_class_counts(trained, mnist, monkeypatch,
                                                                 capsys):
    drawn = {}
    for name in ("plot_confusion", "plot_misclassified"):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _real=real, _name=name, **k: (
            drawn.__setitem__(_name, a), _real(*a, **k))[1])
    assert main(["evaluate", str(trained / "model.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = json.loads((trained / "metrics.json").read_text())
    # the run measured its saved model on the very images evaluate loads: the same numbers
    assert (report["test_accuracy"], report["test_loss"]) == (metrics["test_accuracy"],
                                                              metrics["test_loss"])
    _, (x_test, t_test) = mnist
    predicted = TwoLayerNet.load(trained / "model.npz").predict(x_test).argmax(axis=1)
    assert report["test_accuracy"] == np.count_nonzero(predicted == t_test) / 10000
    for k, row in enumerate(report["per_class"]):  # counted here, one class at a time
        hits = int(np.count_nonzero((predicted == k) & (t_test == k)))
        assert row == {"class": k, "name": str(k), "support": int(np.count_nonzero(t_test == k)),
                       "precision": hits / int(np.count_nonzero(predicted == k)),
                       "recall": hits / int(np.count_nonzero(t_test == k))}
    assert [row["support"] for row in report["per_class"]] == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the figures are drawn from these labels and predictions (what they show: test_plots.py)
    assert report["figures"] == [str(trained / "confusion.png"),
                                 str(trained / "misclassified.png")]
    np.testing.assert_array_equal(drawn["plot_confusion"][0], t_test)
    np.testing.assert_array_equal(drawn["plot_confusion"][1], predicted)
    np.testing.assert_array_equal(drawn["plot_misclassified"][2], predicted)


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


def test_predict_save_prepared_writes_what_the_network_saw(trained, mnist, tmp_path, capsys):
    _, (x_test, t_test) = mnist
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _digit_png(x_test[0], tmp_path / "a" / "digit.png")
    second = _digit_png(x_test[1], tmp_path / "b" / "digit.png")  # the same stem
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "made" / "seen by the net"  # missing parents are made, as for a run
    model = str(trained / "model.npz")
    assert main(["predict", model, str(first), str(bad), str(second), "--save-prepared",
                 str(out), "--json"]) == 2
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [p.get("prepared") for p in predictions] == [str(out / "digit.png"), None,
                                                        str(out / "digit-2.png")]
    assert sorted(p.name for p in out.iterdir()) == ["digit-2.png", "digit.png"]
    for source, saved in ((first, "digit.png"), (second, "digit-2.png")):
        with Image.open(out / saved) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
            exact = image_to_mnist(source).reshape(28, 28).astype(np.float64) * 255
            np.testing.assert_array_equal(np.asarray(image), np.round(exact).astype(np.uint8))
    assert main(["predict", model, str(first), "--save-prepared", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"prepared images: 1 written to {out}"


def test_predict_save_prepared_never_overwrites_an_input(trained, mnist, tmp_path, capsys):
    _, (x_test, _) = mnist
    source = _digit_png(x_test[0], tmp_path / "digit.png")
    before = source.read_bytes()
    assert main(["predict", str(trained / "model.npz"), str(source), "--save-prepared",
                 str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: --save-prepared {tmp_path}: {source} is one of the input "
                            f"images; choose another folder\n")
    assert captured.out == "" and source.read_bytes() == before


@pytest.mark.parametrize("case", ["a file", "a file as parent", "a file as grandparent",
                                  "read-only", "read-only parent", "read-only grandparent"])
def test_predict_save_prepared_is_refused_before_the_model_is_read(case, tmp_path, capsys):
    """The model named does not exist, so only a check made before it is read can answer."""
    (tmp_path / "file").write_text("in the way")
    (tmp_path / "locked").mkdir()
    file_new_out = tmp_path / "file" / "new" / "out"
    locked_new_out = tmp_path / "locked" / "new" / "out"
    folder, message = {
        "a file": (tmp_path / "file", f"{tmp_path / 'file'} is a file; it names a folder"),
        "a file as parent": (tmp_path / "file" / "out", f"{tmp_path / 'file' / 'out'}: cannot "
                             f"create the folder ({tmp_path / 'file'} is not a folder)"),
        "read-only": (tmp_path / "locked", f"{tmp_path / 'locked'}: the folder is not writable"),
        "read-only parent": (tmp_path / "locked" / "out", f"{tmp_path / 'locked' / 'out'}: "
                             f"cannot create the folder ({tmp_path / 'locked'} is not writable)"),
        # the nearest folder that exists on the path decides
        "a file as grandparent": (file_new_out, f"{file_new_out}: cannot "
                                  f"create the folder ({tmp_path / 'file'} is not a folder)"),
        "read-only grandparent": (locked_new_out, f"{locked_new_out}: "
                                  f"cannot create the folder ({tmp_path / 'locked'} is not "
                                  f"writable)"),
    }[case]
    with read_only(tmp_path / "locked") if "read-only" in case else contextlib.nullcontext():
        code = main(["predict", str(tmp_path / "nowhere" / "model.npz"), "x.png",
                     "--save-prepared", str(folder)])
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (2, "", f"error: --save-prepared {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "locked"]
    assert list((tmp_path / "locked").iterdir()) == []


def test_predict_save_prepared_makes_no_folder_when_no_image_is_prepared(trained, tmp_path,
                                                                         capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "prepared"
    assert main(["predict", str(trained / "model.npz"), str(bad), str(tmp_path / "none.png"),
                 "--save-prepared", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == f"prepared images: none written ({out} not made)\n"
    assert captured.err.count("\nerror: ") == 1 and captured.err.startswith("error: ")
    assert not out.exists()


def test_plot_overlays_the_runs_histories(trained, tmp_path, monkeypatch, capsys):
    given = []
    real = plots.plot_runs
    monkeypatch.setattr(plots, "plot_runs", lambda runs, *a, **k: (given.append(runs),
                                                                    real(runs, *a, **k))[1])
    out = tmp_path / "both.png"
    assert main(["plot", str(trained), str(trained), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    history = json.loads((trained / "history.json").read_text())
    assert given == [[("run", history), ("run", history)]]
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
    assert "interrupted by SIGINT at iteration " in err
    assert f"resume with: python -m mnist_twolayer train --resume {run_dir}" in err
    stopped = read_checkpoint(run_dir / "checkpoint.npz").state.iteration
    assert 0 < stopped < 400 * 30
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["iteration_loss"]) == stopped


def test_resume_refuses_new_settings(tmp_path, trained, capsys):
    assert main(["train", "--resume", str(trained), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --resume continues a run with its saved settings (only its budget, "
                   "--epochs or --iters, may grow); drop --lr\n")


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


def test_momentum_help_states_the_range_the_flag_accepts():
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    (momentum,) = (a for a in sub.choices["train"]._actions if "--momentum" in a.option_strings)
    assert momentum.help.startswith("momentum and nesterov: momentum in [0, 0.999] (default 0.9)")
    assert (momentum.type("0"), momentum.type("0.999")) == (0.0, 0.999)
    for outside, why in (("-0.001", "must be at least 0"), ("0.9991", "must be at most 0.999")):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^'{outside}' {why}$"):
            momentum.type(outside)


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


def _sweep(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot_accuracy.py"), *flags, "--runs-dir",
         str(tmp_path / "runs"), "--out", str(tmp_path / "sweep.png")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "sweep.png") as image:
        assert image.format == "PNG"
    return result


def test_each_sweep_has_its_own_default_values(tmp_path):
    """Issue 15: --sweep lr used to try the hidden sizes 25, 50, 100, 200 as learning rates."""
    printed = _sweep(tmp_path, "--sweep", "lr", "--epochs", "1", "--train-size", "300").stdout
    assert [line.split(":")[0] for line in printed.splitlines()[:-1]] == [
        "lr=0.05", "lr=0.2", "lr=0.8"]


def test_the_optimizer_sweep_runs_each_at_its_default_lr_on_the_books_job(tmp_path):
    printed = _sweep(tmp_path, "--sweep", "optimizer", "--values", "sgd,adam", "--iters", "20",
                     "--train-size", "500").stdout.splitlines()
    assert [line.split(":")[0] for line in printed] == ["sgd, lr 0.01", "adam, lr 0.001",
                                                        f"wrote {tmp_path / 'sweep.png'}"]
    config = json.loads((tmp_path / "runs" / "optimizer-adam" / "config.json").read_text())
    assert {key: config[key] for key in ("optimizer", "lr", "hidden", "init", "batch_size",
                                         "activation", "iters", "seed")} == dict(
        optimizer="adam", lr=0.001, hidden=100, init="he", batch_size=128, activation="relu",
        iters=20, seed=0)


def test_the_init_sweep_tries_each_init_with_each_activation(tmp_path):
    printed = _sweep(tmp_path, "--sweep", "init", "--values", "normal,he", "--iters", "10",
                     "--train-size", "300").stdout.splitlines()
    assert [line.split(":")[0] for line in printed[:-1]] == [
        "sigmoid, N(0, 0.01²)", "sigmoid, He", "relu, N(0, 0.01²)", "relu, He"]
    assert (tmp_path / "runs" / "activation-relu-init-he" / "model.npz").is_file()


def test_a_diverged_run_is_reported_and_the_figure_still_drawn(tmp_path):
    printed = _sweep(tmp_path, "--sweep", "lr", "--values", "0.1,1e6", "--epochs", "1",
                     "--train-size", "500").stdout.splitlines()
    assert printed[0].startswith("lr=0.1: test accuracy ")
    assert printed[1].startswith("lr=1000000.0: diverged (the loss reached ")
    assert printed[2] == f"wrote {tmp_path / 'sweep.png'}"


@pytest.mark.parametrize("optimizer, settings", [
    ("sgd", {}), ("momentum", {}), ("nesterov", {"momentum": 0.8}),
    ("adagrad", {}), ("rmsprop", {"decay_rate": 0.9}),
    ("adam", {"activation": "relu", "beta1": 0.8, "eps": 1e-7}),
])
def test_every_optimizer_trains_from_the_cli(optimizer, settings, mini_env, tmp_path):
    """Four epochs on the 600 digits of ``mini``, each optimizer at its default lr (the
    preset's 0.2 for the SGD family): the loss falls and the 200 test digits come out far
    above chance."""
    run_dir = tmp_path / optimizer
    flags = [text for name, value in settings.items()
             for text in (f"--{name.replace('_', '-')}", str(value))]
    assert main(["train", "--optimizer", optimizer, *flags, "--dataset", "mini", "--data-dir",
                 str(mini_env), "--hidden", "32", "--batch-size", "50", "--epochs", "4",
                 "--out", str(run_dir), "--quiet"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optimizer"] == optimizer
    assert config["lr"] == {"adagrad": 0.01, "rmsprop": 0.01, "adam": 0.001}.get(optimizer, 0.2)
    assert {name: config[name] for name in settings} == settings
    losses = json.loads((run_dir / "history.json").read_text())["iteration_loss"]
    assert np.mean(losses[-6:]) < 0.75 * np.mean(losses[:6])
    assert json.loads((run_dir / "metrics.json").read_text())["test_accuracy"] >= 0.6


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
