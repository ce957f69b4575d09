"""Figures, checked by what they draw: the lines, bars, cells and tiles read back from each
Figure's Axes are the history, matrix or images they came from. Every plot also writes a valid
PNG atomically from histories of any shape, and pyplot is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_twolayer.errors import ConfigError
from mnist_twolayer.gradcheck import Comparison, GradcheckResult
from mnist_twolayer.plots import (
    moving_average,
    plot_accuracy,
    plot_confusion,
    plot_gradcheck,
    plot_loss,
    plot_misclassified,
    plot_runs,
    plot_sweep,
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


# --- history figures: what is drawn is what the history holds ---


def lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every labelled line of ``ax`` as label -> (x, y)."""
    return {line.get_label(): (np.asarray(line.get_xdata(), dtype=np.float64),
                               np.asarray(line.get_ydata(), dtype=np.float64))
            for line in ax.get_lines() if not line.get_label().startswith("_")}


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [text.get_text() for text in legend.get_texts()]


def column(history: dict, key: str) -> np.ndarray:
    return np.array([record[key] for record in history["epochs"]], dtype=np.float64)


def test_loss_figure_draws_every_iteration_its_average_and_each_evaluation(tmp_path) -> None:
    history = make_history()  # 500 iterations: a moving average of 10
    fig = plot_loss(history, tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")
    ax = fig.axes[0]
    drawn = lines(ax)
    steps = np.arange(1, 501)
    losses = np.array(history["iteration_loss"])
    np.testing.assert_array_equal(drawn["minibatch loss"][0], steps)
    np.testing.assert_array_equal(drawn["minibatch loss"][1], losses)
    average = drawn["minibatch loss, moving average of 10"]
    np.testing.assert_array_equal(average[1], moving_average(losses, 10))
    assert average[1][9] == pytest.approx(losses[:10].mean(), rel=1e-15)  # 10 terms, no exp
    for split, label in (("val", "validation"), ("test", "test")):
        x, y = drawn[f"{label} loss (per evaluation)"]
        np.testing.assert_array_equal(x, column(history, "iteration"))
        np.testing.assert_array_equal(y, column(history, f"{split}_loss"))
    assert legend_texts(ax) == list(drawn)
    assert ax.get_yscale() == "log"  # 2.4 down to 0.05: more than 20x
    ax.figure.canvas.draw()
    labelled = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labelled) >= 4, labelled  # 1-2-5 steps: more than the decades alone
    assert (ax.get_title(), ax.get_xlabel()) == ("Loss: every minibatch, and each evaluation",
                                                 "iteration")
    val, test = (line for line in ax.get_lines() if "per evaluation" in line.get_label())
    # the validation curve, often on top of the test curve, stays visible over it
    assert val.get_linestyle() == "--" and val.get_marker() != test.get_marker()
    assert val.get_zorder() > test.get_zorder()


def test_loss_figure_of_a_short_flat_run_is_linear_and_unsmoothed() -> None:
    history = make_history(epochs=1, per_epoch=3, validation=False)
    history["iteration_loss"] = [0.5, 0.45, 0.4]
    ax = plot_loss(history).axes[0]
    drawn = lines(ax)
    assert sorted(drawn) == ["minibatch loss", "test loss (per evaluation)"]
    np.testing.assert_array_equal(drawn["minibatch loss"][1], [0.5, 0.45, 0.4])
    assert ax.get_yscale() == "linear"
    # 200 iterations would give a "moving average of 4": too short to be worth a second line
    short = plot_loss(make_history(epochs=2, per_epoch=100)).axes[0]
    assert not [label for label in lines(short) if "moving average" in label]


def test_loss_figure_marks_where_the_loss_stopped_being_finite() -> None:
    history = {"iteration_loss": [2.3, 1.9, float("nan"), float("inf")], "epochs": []}
    ax = plot_loss(history).axes[0]
    drawn = lines(ax)
    x, y = drawn["loss not finite from iteration 3"]
    np.testing.assert_array_equal(x, [3, 3])  # a vertical line at iteration 3
    np.testing.assert_array_equal(drawn["minibatch loss"][1], [2.3, 1.9, np.nan, np.nan])


def test_accuracy_figure_draws_each_split_per_epoch(tmp_path) -> None:
    history = make_history(epochs=4)
    fig = plot_accuracy(history, tmp_path / "accuracy.png")
    assert_png(tmp_path / "accuracy.png")
    ax = fig.axes[0]
    drawn = lines(ax)
    kept = "test (97.30%, the kept model of epoch 4)"  # the best validation epoch is the last
    for split, label in (("train", "train (98.00% at the end)"),
                         ("val", "validation (97.40% at the end)"), ("test", kept)):
        x_drawn, y_drawn = drawn[label]
        np.testing.assert_array_equal(x_drawn, [1, 2, 3, 4])
        np.testing.assert_array_equal(y_drawn, column(history, f"{split}_accuracy"))
    assert legend_texts(ax) == ["train (98.00% at the end)", "validation (97.40% at the end)",
                                kept, "model kept: epoch 4"]
    np.testing.assert_array_equal(drawn["model kept: epoch 4"][0], [4, 4])


def test_accuracy_figure_marks_the_kept_epoch_and_reports_its_test_accuracy() -> None:
    """Early stopping keeps the best validation epoch: the legend reports that model's test
    accuracy (what metrics.json and confusion.png say), not the last evaluation's."""
    history = make_history(epochs=5)
    for record, val in zip(history["epochs"], (0.90, 0.95, 0.93, 0.92, 0.91), strict=True):
        record["val_accuracy"] = val
    ax = plot_accuracy(history).axes[0]
    drawn = lines(ax)
    best_test = history["epochs"][1]["test_accuracy"]
    assert f"test ({best_test:.2%}, the kept model of epoch 2)" in drawn
    np.testing.assert_array_equal(drawn["model kept: epoch 2"][0], [2, 2])
    given = lines(plot_accuracy(history, kept=(2, 0.9113)).axes[0])  # the trainer's figure
    assert "test (91.13%, the kept model of epoch 2)" in given


def test_accuracy_of_a_run_shorter_than_an_epoch_is_readable() -> None:
    """Two evaluations at epochs 0.5 and 1: points with room around them, percent ticks that
    differ from each other."""
    history = make_history(epochs=2, per_epoch=10)
    history["epochs"][0].update(epoch=0.5, iteration=10, test_accuracy=0.474)
    history["epochs"][1].update(epoch=1, iteration=20, test_accuracy=0.522)
    ax = plot_accuracy(history).axes[0]
    ax.figure.canvas.draw()
    low, high = ax.get_xlim()
    assert low < 0.5 - 0.1 and high > 1 + 0.1
    ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(set(ticks)) == len(ticks) >= 3


def test_accuracy_figure_leaves_out_a_split_the_run_lacks() -> None:
    drawn = lines(plot_accuracy(make_history(epochs=2, validation=False)).axes[0])
    assert [label.split(" (")[0] for label in drawn] == ["train", "test", "model kept: epoch 2"]


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


def test_runs_overlay_draws_each_runs_metric_and_its_counterpart(tmp_path: Path) -> None:
    runs = [("hidden 50", make_history(seed=1)), ("hidden 100", make_history(epochs=8, seed=2)),
            ("no validation", make_history(validation=False, seed=3))]
    fig = plot_runs(runs, tmp_path / "runs.png")
    assert_png(tmp_path / "runs.png", min_size=(1200, 500))
    accuracy_ax, loss_ax = fig.axes
    for ax, key in ((accuracy_ax, "test_accuracy"), (loss_ax, "test_loss")):
        drawn = list(lines(ax).items())
        assert len(drawn) == 3
        for (name, history), (label, (x, y)) in zip(runs, drawn, strict=True):
            final = column(history, key)[-1]
            assert label == f"{name} ({final:.2%})" if key.endswith("accuracy") else \
                label == f"{name} ({final:.4f})"
            np.testing.assert_array_equal(x, column(history, "epoch"))
            np.testing.assert_array_equal(y, column(history, key))
    assert (accuracy_ax.get_title(), loss_ax.get_title()) == ("Test accuracy", "Test loss")
    val = lines(plot_runs(runs, tmp_path / "val.png", metric="val_loss").axes[0])
    assert list(val) == ["hidden 50 (0.1049)", "hidden 100 (0.0537)", "no validation (no data)"]
    assert val["no validation (no data)"][0].size == 0


@pytest.mark.parametrize("x, label", [("iteration", "iteration"),
                                       ("seconds", "seconds of training")])
def test_runs_against_iterations_or_seconds(x: str, label: str) -> None:
    """Runs with 20 and 100 iterations per epoch side by side: by iteration (or seconds) they
    line up where by epoch they would not."""
    runs = [("short epochs", make_history(epochs=5, per_epoch=20)),
            ("long epochs", make_history(epochs=2, per_epoch=100))]
    ax = plot_runs(runs, x=x).axes[0]
    assert ax.get_xlabel() == label
    for (_, history), (xs, ys) in zip(runs, lines(ax).values(), strict=True):
        np.testing.assert_array_equal(xs, column(history, x))
        np.testing.assert_array_equal(ys, column(history, "test_accuracy"))


def test_runs_without_the_metric_are_named_and_none_at_all_is_an_error() -> None:
    runs = [("plain", make_history(validation=False)), ("held out", make_history())]
    drawn = lines(plot_runs(runs, metric="val_accuracy").axes[0])
    assert list(drawn) == ["plain (no data)", "held out (98.12%)"]
    with pytest.raises(ConfigError) as info:
        plot_runs(runs[:1], metric="val_accuracy")
    assert str(info.value) == ("no run has val_accuracy (none of plain); runs without a "
                               "validation split have no val_* metrics")
    with pytest.raises(ConfigError, match="unknown x axis 'time'; choose one of epoch, "
                                          "iteration, seconds"):
        plot_runs(runs, x="time")


def test_runs_refuse_unknown_metric_and_nothing_to_plot(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown metric 'accuracy'; choose one of "
                                          "train_accuracy, train_loss"):
        plot_runs([("a", make_history())], tmp_path / "x.png", metric="accuracy")
    with pytest.raises(ConfigError, match="no runs to plot"):
        plot_runs([], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_sweep_figure_draws_each_runs_smoothed_loss_and_test_accuracy(tmp_path: Path) -> None:
    """The longest run has 800 iterations: a moving average of 800 // 40 = 20. A run that
    diverged after 130 iterations keeps its curve; the name it is given says so."""
    long, short = make_history(epochs=8, seed=1), make_history(epochs=2, seed=2)
    diverged = {"iteration_loss": make_history(seed=3)["iteration_loss"][:130], "epochs":
                make_history(epochs=1, seed=3)["epochs"]}
    runs = [("adam", long), ("sgd", short), ("rmsprop: diverged after 130 iterations", diverged)]
    fig = plot_sweep(runs, tmp_path / "sweep.png", "The optimizers")
    assert_png(tmp_path / "sweep.png", min_size=(1200, 500))
    loss_ax, accuracy_ax = fig.axes
    assert fig._suptitle.get_text() == "The optimizers"  # get_suptitle(): matplotlib >= 3.8
    assert loss_ax.get_title() == "Minibatch loss (moving average of 20)"
    assert loss_ax.get_yscale() == "log"
    for (name, history), (label, (x, y)) in zip(runs, lines(loss_ax).items(), strict=True):
        smooth = moving_average(history["iteration_loss"], 20)
        assert label == f"{name} ({smooth[-1]:.3f})"
        np.testing.assert_array_equal(x, np.arange(1, len(history["iteration_loss"]) + 1))
        np.testing.assert_array_equal(y, smooth)
    for (name, history), (label, (x, y)) in zip(runs, lines(accuracy_ax).items(), strict=True):
        assert label == f"{name} ({column(history, 'test_accuracy')[-1]:.2%})"
        np.testing.assert_array_equal(x, column(history, "iteration"))
        np.testing.assert_array_equal(y, column(history, "test_accuracy"))
    # from 3 points below the worst final accuracy (the diverged run's 0.927) up to 100%
    assert accuracy_ax.get_ylim() == pytest.approx((0.927 - 0.03, 1.0), abs=1e-12)
    drawn = loss_ax.get_lines()
    assert [(line.get_linestyle(), line.get_zorder()) for line in drawn] == [
        ("-", 2), ("--", 2.5), ("-", 2)]  # dashed on top: coinciding runs both show
    assert len({line.get_color() for line in drawn}) == 3
    with pytest.raises(ConfigError, match="no runs to plot"):
        plot_sweep([], tmp_path / "x.png")


def test_sweep_figure_of_families_gives_a_colour_per_member_and_a_style_per_family() -> None:
    runs = [(f"{family}, {init}", make_history(seed=i)) for i, (family, init) in enumerate(
        (f, i) for f in ("sigmoid", "relu") for i in ("normal", "xavier", "he"))]
    drawn = plot_sweep(runs, families=2).axes[0].get_lines()
    assert [line.get_linestyle() for line in drawn] == ["-"] * 3 + ["--"] * 3
    assert [line.get_color() for line in drawn[:3]] == [line.get_color() for line in drawn[3:]]
    assert len({line.get_color() for line in drawn}) == 3
    with pytest.raises(ConfigError, match="5 runs do not split into 2 families"):
        plot_sweep(runs[:5], families=2)


# --- prediction and weight figures: the cells and tiles hold the numbers and images ---


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


def test_confusion_figure_shows_every_count(test_digits, tmp_path: Path) -> None:
    _, t = test_digits
    pred, _ = fake_predictions(t, 0.05)
    fig = plot_confusion(t, pred, tmp_path / "confusion.png")
    assert_png(tmp_path / "confusion.png", min_size=(700, 700))
    ax = fig.axes[0]
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (t.astype(int), pred), 1)
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    cells = {(int(round(text.get_position()[1])), int(round(text.get_position()[0]))):
             int(text.get_text()) for text in ax.texts}
    assert cells == {(i, j): int(expected[i, j]) for i in range(10) for j in range(10)}
    wrong = int(expected.sum() - np.trace(expected))
    assert ax.get_title() == (f"Confusion matrix: {wrong} of 1000 wrong (accuracy "
                              f"{np.trace(expected) / 1000:.2%})")
    assert [tick.get_text() for tick in ax.get_xticklabels()] == list("0123456789")
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    named = plot_confusion(t, pred, tmp_path / "fashion.png", class_names=names).axes[0]
    assert_png(tmp_path / "fashion.png", min_size=(700, 700))
    assert [tick.get_text() for tick in named.get_yticklabels()] == names


def tiles(ax, side: int = 28) -> list[tuple[str, np.ndarray]]:
    """The (label, tile) pairs of a mosaic figure: each label sits centred above its tile."""
    mosaic = np.ma.filled(ax.images[0].get_array(), np.nan)
    found = []
    for text in ax.texts:
        x, y = text.get_position()
        left, top = int(round(x - side / 2)), int(round(y + 1))
        found.append((text.get_text(), mosaic[top:top + side, left:left + side]))
    return found


@pytest.mark.parametrize("layout", ["flat", "channel", "square", "uint8"])
def test_misclassified_grid_shows_the_most_confident_mistakes_first(layout: str, test_digits,
                                                                     tmp_path: Path) -> None:
    x, t = test_digits
    x = np.asarray(x[:200])
    images = {"flat": x, "channel": x.reshape(-1, 1, 28, 28), "square": x.reshape(-1, 28, 28),
              "uint8": np.round(x * 255).astype(np.uint8)}[layout]
    pred, probs = fake_predictions(t[:200], 0.1)
    fig = plot_misclassified(images, t[:200], pred, probs, tmp_path / "wrong.png", max_items=12)
    assert_png(tmp_path / "wrong.png", min_size=(400, 400))
    wrong = np.flatnonzero(t[:200] != pred)
    confidence = probs[np.arange(200), pred]
    order = sorted(wrong, key=lambda i: -confidence[i])[:12]
    shown = tiles(fig.axes[0])
    assert [label for label, _ in shown] == [
        f"{t[i]} → {pred[i]} ({confidence[i]:.2f})" for i in order]
    for (_, tile), i in zip(shown, order, strict=True):
        digit = images[i].reshape(28, 28).astype(np.float64)
        span = digit.max() - digit.min()
        np.testing.assert_allclose(tile, (digit - digit.min()) / span, rtol=0, atol=1e-15)
    assert fig.texts[0].get_text().startswith(f"Misclassified: {wrong.size} of 200 wrong; "
                                              f"showing 12, most confident first")


def test_misclassified_with_probability_vector_and_with_no_mistakes(test_digits,
                                                                     tmp_path: Path) -> None:
    x, t = test_digits
    pred, probs = fake_predictions(t[:50], 0.2)
    vector = plot_misclassified(x[:50], t[:50], pred, probs.max(axis=1), tmp_path / "p.png")
    assert_png(tmp_path / "p.png", min_size=(400, 400))
    wrong = np.flatnonzero(t[:50] != pred)
    assert sorted(label for label, _ in tiles(vector.axes[0])) == sorted(
        f"{t[i]} → {pred[i]} ({probs[i].max():.2f})" for i in wrong)
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    named = plot_misclassified(x[:50], t[:50], pred, probs, tmp_path / "named.png",
                               class_names=names)
    assert_png(tmp_path / "named.png", min_size=(400, 400))
    assert {label.split(" (")[0] for label, _ in tiles(named.axes[0])} == {
        f"{names[t[i]]} → {names[pred[i]]}" for i in wrong}
    none = plot_misclassified(x[:50], t[:50], t[:50], probs, tmp_path / "none.png")
    assert_png(tmp_path / "none.png", min_size=(300, 150))
    assert [text.get_text() for text in none.axes[0].texts] == [
        "No misclassified digits: all 50 are correct."]


def test_misclassified_refuses_mismatched_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same length"):
        plot_misclassified(np.zeros((3, 784)), np.zeros(3, int), np.zeros(2, int),
                           np.zeros((3, 10)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="square pixel count"):
        plot_misclassified(np.zeros((3, 780)), np.zeros(3, int), np.ones(3, int),
                           np.zeros((3, 10)), tmp_path / "x.png")


def test_weights_figure_shows_each_units_weights_on_its_own_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.01, (784, 100)).astype(np.float32)
    w1[:, 3] = 0.0  # a dead unit must not divide by zero
    fig = plot_weights(w1, tmp_path / "weights.png")
    assert_png(tmp_path / "weights.png", min_size=(800, 800))
    shown = tiles(fig.axes[0])
    assert [label for label, _ in shown] == [f"unit {j}" for j in range(64)]
    for j, (_, tile) in enumerate(shown):
        unit = w1[:, j].astype(np.float64).reshape(28, 28)
        scale = np.abs(unit).max()
        np.testing.assert_array_equal(tile, unit / scale if scale else unit)
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)
    few = plot_weights(w1[:, :5], tmp_path / "few.png")
    assert_png(tmp_path / "few.png", min_size=(300, 200))
    assert len(tiles(few.axes[0])) == 5
    with pytest.raises(ValueError, match="square pixel count"):
        plot_weights(np.zeros((100, 5)).T, tmp_path / "bad.png")


def test_gradcheck_chart_draws_each_pairs_errors(tmp_path: Path) -> None:
    comparisons = [Comparison("backprop", b, p, error, 0.0)
                   for b, errors in (("autograd", (1e-16, 2e-16, 0.0, 4e-16)),
                                     ("numerical_vectorized", (1e-9, 2e-9, 3e-9, 4e-9)))
                   for p, error in zip(("W1", "b1", "W2", "b2"), errors, strict=True)]
    result = GradcheckResult({"input_size": 784, "hidden": 50, "output_size": 10, "batch": 100,
                              "dtype": "float64", "activation": "sigmoid", "order": 2,
                              "h": 1e-4}, {}, comparisons, {})
    fig = plot_gradcheck(result, tmp_path / "gradcheck.png")
    assert_png(tmp_path / "gradcheck.png")
    ax = fig.axes[0]
    bars = [bar for bar in ax.patches if bar.get_width() < 1]
    # every bar grows from the axis' own floor (1e-18, where an exact 0 is drawn) to its error
    assert {bar.get_y() for bar in bars} == {1e-18} and ax.get_ylim()[0] == 1e-18
    tops = [bar.get_y() + bar.get_height() for bar in bars]
    np.testing.assert_allclose(tops, [1e-16, 2e-16, 1e-18, 4e-16, 1e-9, 2e-9, 3e-9, 4e-9],
                               rtol=1e-15)
    assert [text.get_text() for text in fig.legends[0].get_texts()] == [
        "backprop vs autograd (held to 1e-12)", "backprop vs numerical_vectorized (held to 1e-07)"]
    tolerance_lines = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert tolerance_lines == [1e-12, pytest.approx(1e-7 + 2.0**-52 / 1e-4)]
    assert sorted(text.get_text() for text in ax.texts) == [
        "tolerance 1e-07: backprop vs numerical_vectorized",
        "tolerance 1e-12: backprop vs autograd"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["W1", "b1", "W2", "b2"]


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
