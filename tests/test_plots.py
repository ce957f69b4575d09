"""Figures and the numbers behind them: every plot writes a valid PNG atomically from histories
of any shape (empty, one epoch, no validation, a diverged loss), and pyplot is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_twolayer.errors import ConfigError
from mnist_twolayer.plots import (
    moving_average,
    plot_accuracy,
    plot_confusion,
    plot_loss,
    plot_misclassified,
    plot_runs,
    plot_weights,
)


def make_history(epochs: int = 5, per_epoch: int = 100, validation: bool = True,
                 seed: int = 0) -> dict:
    """A history in the trainer's format with plausible, decreasing losses."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, epochs * per_epoch + 1)
    losses = (2.3 * np.exp(-steps / 80) + 0.1) * np.exp(rng.normal(0, 0.3, steps.size))
    records = []
    for e in range(1, epochs + 1):
        accuracy = 1 - 0.1 * 0.7 ** e
        records.append({"epoch": e, "iteration": e * per_epoch, "seconds": 0.5 * e, "lr": 0.1,
                        "train_loss": 0.3 * 0.8 ** e, "train_accuracy": accuracy + 0.004,
                        "val_loss": 0.32 * 0.8 ** e if validation else None,
                        "val_accuracy": accuracy - 0.002 if validation else None,
                        "test_loss": 0.33 * 0.8 ** e, "test_accuracy": accuracy - 0.003})
    return {"iteration_loss": losses.tolist(), "epochs": records}


def assert_png(path: Path, min_size: tuple[int, int] = (500, 250)) -> np.ndarray:
    """The file is a complete PNG of a sensible size with something drawn on it, and the
    atomic write left no temporary file behind."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_size[0] and im.height >= min_size[1]
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 5  # not a blank canvas
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    return pixels


# --- numbers ---


def test_moving_average_short_histories_and_divergence() -> None:
    np.testing.assert_allclose(moving_average([4.0, 2.0, 3.0], window=10), [4.0, 3.0, 3.0])
    np.testing.assert_allclose(moving_average([1.0, 3.0, 5.0, 7.0], window=2),
                               [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(moving_average([1.0, 2.0], window=1), [1.0, 2.0])
    assert moving_average([], window=5).shape == (0,)
    smoothed = moving_average([1.0, np.nan, 3.0, np.inf, 5.0], window=2)
    np.testing.assert_allclose(smoothed, [1.0, 1.0, 3.0, 3.0, 5.0])
    assert np.isnan(moving_average([np.nan], window=3)).all()


# --- history figures ---


def test_loss_and_accuracy_figures(tmp_path: Path) -> None:
    history = make_history()
    assert plot_loss(history, tmp_path / "loss.png") == tmp_path / "loss.png"
    assert_png(tmp_path / "loss.png")
    plot_accuracy(history, tmp_path / "accuracy.png")
    assert_png(tmp_path / "accuracy.png")


@pytest.mark.parametrize("history", [
    {"iteration_loss": [], "epochs": []},
    {"iteration_loss": [2.3]},
    make_history(epochs=1, per_epoch=3),
    make_history(epochs=3, validation=False),
    {"iteration_loss": [2.3, 1.9, float("nan"), float("inf")],
     "epochs": [{"epoch": 1, "iteration": 2, "seconds": 0.1, "lr": 1e6, "train_loss": 1.9,
                 "train_accuracy": 0.3, "val_loss": None, "val_accuracy": None,
                 "test_loss": float("nan"), "test_accuracy": 0.1}]},
], ids=["empty", "no-epochs", "one-epoch", "no-validation", "diverged"])
def test_history_figures_cope_with_any_shape(history: dict, tmp_path: Path) -> None:
    plot_loss(history, tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")
    plot_accuracy(history, tmp_path / "accuracy.png")
    assert_png(tmp_path / "accuracy.png")


def test_runs_overlay(tmp_path: Path) -> None:
    runs = [("hidden 50", make_history(seed=1)), ("hidden 100", make_history(epochs=8, seed=2)),
            ("no validation", make_history(validation=False, seed=3))]
    plot_runs(runs, tmp_path / "runs.png")
    assert_png(tmp_path / "runs.png", min_size=(1200, 500))
    plot_runs(runs, tmp_path / "val.png", metric="val_loss")
    assert_png(tmp_path / "val.png")


def test_runs_refuse_unknown_metric_and_nothing_to_plot(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown metric 'accuracy'; choose one of "
                                          "train_accuracy, train_loss"):
        plot_runs([("a", make_history())], tmp_path / "x.png", metric="accuracy")
    with pytest.raises(ConfigError, match="no runs to plot"):
        plot_runs([], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# --- prediction and weight figures ---


@pytest.fixture(scope="module")
def test_digits(mnist) -> tuple[np.ndarray, np.ndarray]:
    (_, _), (x_test, t_test) = mnist
    return x_test[:1000], t_test[:1000]


def fake_predictions(t: np.ndarray, error_rate: float, seed: int = 0) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    rng = np.random.default_rng(seed)
    wrong = rng.random(t.size) < error_rate
    pred = np.where(wrong, (t.astype(int) + rng.integers(1, 10, t.size)) % 10, t)
    probs = rng.dirichlet(np.ones(10), t.size)
    return pred, probs


def test_confusion_figure(test_digits, tmp_path: Path) -> None:
    _, t = test_digits
    pred, _ = fake_predictions(t, 0.05)
    plot_confusion(t, pred, tmp_path / "confusion.png")
    assert_png(tmp_path / "confusion.png", min_size=(700, 700))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    plot_confusion(t, pred, tmp_path / "fashion.png", class_names=names)
    assert_png(tmp_path / "fashion.png", min_size=(700, 700))


@pytest.mark.parametrize("layout", ["flat", "channel", "square", "uint8"])
def test_misclassified_grid_takes_any_image_layout(layout: str, test_digits,
                                                   tmp_path: Path) -> None:
    x, t = test_digits
    x = np.asarray(x[:200])
    images = {"flat": x, "channel": x.reshape(-1, 1, 28, 28), "square": x.reshape(-1, 28, 28),
              "uint8": np.round(x * 255).astype(np.uint8)}[layout]
    pred, probs = fake_predictions(t[:200], 0.1)
    plot_misclassified(images, t[:200], pred, probs, tmp_path / "wrong.png", max_items=12)
    assert_png(tmp_path / "wrong.png", min_size=(400, 400))


def test_misclassified_with_probability_vector_and_with_no_mistakes(test_digits,
                                                                     tmp_path: Path) -> None:
    x, t = test_digits
    pred, probs = fake_predictions(t[:50], 0.2)
    plot_misclassified(x[:50], t[:50], pred, probs.max(axis=1), tmp_path / "p.png")
    assert_png(tmp_path / "p.png", min_size=(400, 400))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    plot_misclassified(x[:50], t[:50], pred, probs, tmp_path / "named.png", class_names=names)
    assert_png(tmp_path / "named.png", min_size=(400, 400))
    plot_misclassified(x[:50], t[:50], t[:50], probs, tmp_path / "none.png")
    assert_png(tmp_path / "none.png", min_size=(300, 150))


def test_misclassified_refuses_mismatched_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same length"):
        plot_misclassified(np.zeros((3, 784)), np.zeros(3, int), np.zeros(2, int),
                           np.zeros((3, 10)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="square pixel count"):
        plot_misclassified(np.zeros((3, 780)), np.zeros(3, int), np.ones(3, int),
                           np.zeros((3, 10)), tmp_path / "x.png")


def test_weights_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.01, (784, 100)).astype(np.float32)
    w1[:, 3] = 0.0  # a dead unit must not divide by zero
    plot_weights(w1, tmp_path / "weights.png")
    assert_png(tmp_path / "weights.png", min_size=(800, 800))
    plot_weights(w1[:, :5], tmp_path / "few.png")
    assert_png(tmp_path / "few.png", min_size=(300, 200))
    with pytest.raises(ValueError, match="square pixel count"):
        plot_weights(np.zeros((100, 5)).T, tmp_path / "bad.png")


# --- how files are written ---


def test_a_failed_write_keeps_the_old_figure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "accuracy.png"
    plot_accuracy(make_history(), target)
    before = target.read_bytes()

    def broken_savefig(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken_savefig)
    with pytest.raises(OSError, match="No space left"):
        plot_accuracy(make_history(epochs=2), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png"]


def test_plotting_never_imports_pyplot(tmp_path: Path) -> None:
    code = (
        "import sys, matplotlib\n"
        "from mnist_twolayer.plots import plot_accuracy\n"
        f"plot_accuracy({{'epochs': [{{'epoch': 1, 'test_accuracy': 0.9}}]}}, {str(tmp_path)!r}"
        " + '/a.png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "TkAgg"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert_png(tmp_path / "a.png")


def test_commands_that_draw_nothing_never_import_matplotlib() -> None:
    """matplotlib costs a second or more to import; predict, info, download and gradcheck
    (and building the parser for any command) must not pay it."""
    code = ("import sys\n"
            "from mnist_twolayer import cli\n"
            "cli.build_parser()\n"
            "import mnist_twolayer.images, mnist_twolayer.download, mnist_twolayer.gradcheck\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
