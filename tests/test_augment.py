"""augment.py: the distortions of training digits, against exact expectations and a slow
per-image reference; and in a training run: resume and seeds stay bit-identical, and
augmentation.png shows the distortions without touching the batch stream."""

from __future__ import annotations

import dataclasses
import json
import math
import signal

import numpy as np
import pytest
from faults_support import interrupt_at
from tolerances import gamma

from mnist_twolayer import plots
from mnist_twolayer.augment import (
    AUGMENTATIONS,
    Distortions,
    Scratch,
    _levels,
    affine_sources,
    draw_affine,
    elastic_displacements,
    gaussian_matrix,
    pixel_grid,
    sample_bilinear,
    shift_images,
)
from mnist_twolayer.config import config_from_preset
from mnist_twolayer.errors import TrainingInterrupted
from mnist_twolayer.run_folder import AUGMENTATION_FIGURE
from mnist_twolayer.trainer import Trainer

SIDE = 28
CENTRE = (SIDE - 1) / 2
MEAN, STD = 0.1307, 0.3081  # MNIST's pixel statistics, near enough for a standardized space
BACKGROUND = (0.0 - MEAN) / STD  # what 0 ink is there


def replay(rng: np.random.Generator) -> np.random.Generator:
    """A generator in the same state as ``rng``, to draw what ``rng`` will draw."""
    copy = np.random.default_rng()
    copy.bit_generator.state = rng.bit_generator.state
    return copy


def drawn_levels(rng: np.random.Generator, n: int) -> np.ndarray:
    """The 16-bit levels K of n images' elastic fields as documented, (2, n, side, side): the
    raw 64-bit words of the bit generator, each read as four levels from its least significant
    16 bits up (by shifts, as any machine's integers give them)."""
    count = 2 * n * SIDE * SIDE
    words = [int(w) for w in rng.bit_generator.random_raw(-(-count // 4))]
    levels = [(w >> (16 * part)) & 0xFFFF for w in words for part in range(4)]
    return np.array(levels[:count], dtype=np.uint16).reshape(2, n, SIDE, SIDE)


def standardized(mnist, n: int, dtype=np.float32) -> np.ndarray:
    (x_train, _), _ = mnist
    return ((x_train[:n].astype(np.float64) - MEAN) / STD).astype(dtype)


# --- shift ---


def test_shift_moves_every_pixel_by_exactly_the_drawn_offsets(mnist):
    x = standardized(mnist, 64)
    rng = np.random.default_rng(3)
    dy, dx = 2 - replay(rng).integers(0, 5, size=(2, 64))  # down and right by these
    out = shift_images(x, 2, rng, BACKGROUND).reshape(64, SIDE, SIDE)
    images = x.reshape(64, SIDE, SIDE)
    for i in range(64):
        expected = np.full((SIDE, SIDE), BACKGROUND, dtype=np.float32)
        src = images[i, max(-dy[i], 0):SIDE - max(dy[i], 0), max(-dx[i], 0):SIDE - max(dx[i], 0)]
        expected[max(dy[i], 0):SIDE + min(dy[i], 0), max(dx[i], 0):SIDE + min(dx[i], 0)] = src
        assert np.array_equal(out[i], expected), (i, dy[i], dx[i])
    assert {-2, 2} <= set(dy.tolist()) and {-2, 2} <= set(dx.tolist())  # both signs, the limits


def test_a_single_pixel_lands_within_the_shift_limits():
    image = np.zeros((1, 784), dtype=np.float32)
    image[0, 14 * 28 + 14] = 1.0
    shifted = shift_images(np.repeat(image, 200, axis=0), 2, np.random.default_rng(0), 0.0)
    rows, cols = np.divmod(shifted.argmax(axis=1), 28)
    assert shifted.sum(axis=1).tolist() == [1.0] * 200
    assert set(rows.tolist()) == set(range(12, 17)) and set(cols.tolist()) == set(range(12, 17))


# --- bilinear sampling ---


def test_bilinear_sampling_of_a_constant_image_is_that_constant_everywhere():
    """Inside, across the border and far outside: a + f (b - a) with b == a is a, exactly."""
    rng = np.random.default_rng(1)
    images = np.full((5, SIDE, SIDE), BACKGROUND, dtype=np.float32)
    rows = rng.uniform(-40, 70, (5, SIDE, SIDE)).astype(np.float32)
    cols = rng.uniform(-40, 70, (5, SIDE, SIDE)).astype(np.float32)
    out = sample_bilinear(images, rows, cols, BACKGROUND)
    assert out.dtype == np.float32 and np.all(out == np.float32(BACKGROUND))


def test_bilinear_sampling_reproduces_a_linear_image_and_blends_into_the_background():
    """Bilinear interpolation is exact on a linear function; past the border the background
    comes in linearly over one pixel, and beyond it is all there is."""
    rows, cols = pixel_grid(SIDE, np.dtype(np.float64))
    image = (2.0 * rows - 0.5 * cols + 3.0)[None]
    at = np.array([[[3.25, 20.5], [26.9, 0.0], [-0.25, -3.0]]])  # (row, col) pairs
    out = sample_bilinear(image, at[..., 0, None], at[..., 1, None], background=-7.0)[0, :, 0]
    linear = lambda r, c: 2.0 * r - 0.5 * c + 3.0  # noqa: E731
    assert out[0] == pytest.approx(linear(3.25, 20.5), abs=1e-12)
    assert out[1] == pytest.approx(linear(26.9, 0.0), abs=1e-12)
    assert out[2] == -7.0
    half_out = sample_bilinear(image, np.array([[[-0.25]]]), np.array([[[5.0]]]), -7.0)
    assert half_out[0, 0, 0] == pytest.approx(0.75 * linear(0, 5) + 0.25 * -7.0, abs=1e-12)


# --- affine ---


def test_affine_with_zero_limits_is_the_identity(mnist):
    x = standardized(mnist, 20)
    out = Distortions("affine", max_shift=0, max_rotation=0, max_scale=0, max_shear=0).apply(
        x, np.random.default_rng(0), BACKGROUND)
    assert out.dtype == np.float32 and np.array_equal(out, x)


def test_a_quarter_turn_is_counterclockwise_about_the_centre():
    """A pixel up and to the right of the centre goes up and to the left."""
    image = np.zeros((1, SIDE, SIDE))
    image[0, 7, 20] = 1.0  # 6.5 above and 6.5 right of the centre (13.5, 13.5)
    rows, cols = pixel_grid(SIDE, np.dtype(np.float64))
    src = affine_sources(rows[None], cols[None], np.array([math.pi / 2]), np.ones(1),
                         np.zeros(1), np.zeros(1), np.zeros(1), side=SIDE)
    out = sample_bilinear(image, *src, background=0.0)[0]
    assert out[7, 7] == pytest.approx(1.0, abs=1e-12)
    assert np.abs(out).sum() == pytest.approx(1.0, abs=1e-12)


def test_a_drawn_rotation_maps_each_point_where_the_rotation_says():
    """Images holding their own column and row index, rotated by the angles the generator
    draws: each output pixel holds the position it came from, and rotating that position
    about the centre by the drawn angle gives the output pixel back."""
    n, rng = 16, np.random.default_rng(5)
    angle = np.radians(-30 + 60 * replay(rng).random((5, n))[0])
    rows, cols = pixel_grid(SIDE, np.dtype(np.float64))
    images = np.stack([np.broadcast_to(cols, (n, SIDE, SIDE)).reshape(n, -1),
                       np.broadcast_to(rows, (n, SIDE, SIDE)).reshape(n, -1)])
    rotate = Distortions("affine", max_shift=0, max_rotation=30, max_scale=0, max_shear=0)
    src_x = rotate.apply(images[0], replay(rng), background=np.nan).reshape(n, SIDE, SIDE)
    src_y = rotate.apply(images[1], rng, background=np.nan).reshape(n, SIDE, SIDE)
    inside = np.isfinite(src_x) & np.isfinite(src_y)
    assert inside.mean() > 0.7 and np.ptp(angle) > 0.5
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    back_x = CENTRE + cos * (src_x - CENTRE) + sin * (src_y - CENTRE)
    back_y = CENTRE - sin * (src_x - CENTRE) + cos * (src_y - CENTRE)
    assert np.abs(back_x - cols)[inside].max() < 1e-9
    assert np.abs(back_y - rows)[inside].max() < 1e-9


def test_affine_parameters_are_uniform_within_their_limits():
    angle, scale, shear, dy, dx = draw_affine(20000, np.random.default_rng(2), 10, 0.2, 5, 1.5)
    for values, low, high in ((np.degrees(angle), -10, 10), (scale, 0.8, 1.2),
                              (np.degrees(shear), -5, 5), (dy, -1.5, 1.5), (dx, -1.5, 1.5)):
        assert low <= values.min() < low + 0.01 * (high - low)
        assert high - 0.01 * (high - low) < values.max() <= high
        # the mean of 20000 uniforms is within 5 standard errors of the middle
        assert abs(values.mean() - (low + high) / 2) < 5 * (high - low) / math.sqrt(12 * 20000)


# --- elastic ---


def test_elastic_with_alpha_zero_is_the_identity(mnist):
    x = standardized(mnist, 20)
    out = Distortions("elastic", elastic_alpha=0.0).apply(x, np.random.default_rng(0),
                                                          BACKGROUND)
    assert out.dtype == np.float32 and np.array_equal(out, x)


def test_the_displacement_field_scales_exactly_with_alpha():
    rng = np.random.default_rng(9)
    once = elastic_displacements(8, SIDE, 17.0, 4.0, replay(rng))
    twice = elastic_displacements(8, SIDE, 34.0, 4.0, rng)
    for a, b in zip(once, twice, strict=True):  # powers of two scale without rounding
        assert np.array_equal(2 * a, b)


@pytest.mark.parametrize("sigma", [1.0, 4.0, 8.0])
def test_displacements_have_the_variance_and_smoothness_the_gaussian_gives(sigma):
    """For U uniform in [-1, 1] (variance 1/3) smoothed by G and scaled by alpha, pixel (i, j)
    has variance alpha^2 / 3 |G_i|^2 |G_j|^2 and neighbours (i, j), (i, j + 1) correlate as
    G_j . G_j+1 / (|G_j| |G_j+1|): about exp(-1 / (4 sigma^2)) in the middle. Checked on 4000
    fields, within 5 standard errors (variance: sqrt(2 / N) relative; correlation
    (1 - rho^2) / sqrt(N))."""
    n, alpha = 2000, 10.0
    dy, dx = elastic_displacements(n, SIDE, alpha, sigma, np.random.default_rng(4),
                                   dtype=np.float64)
    fields = np.concatenate([dy, dx])
    g = gaussian_matrix(SIDE, sigma)
    norms = np.linalg.norm(g, axis=1)
    variance = alpha**2 / 3 * (1 - 2.0**-32) * np.outer(norms**2, norms**2)
    measured = fields.var(axis=0)
    assert abs(np.mean(measured / variance) - 1) < 5 * math.sqrt(2 / len(fields))
    i, j = 14, 13
    rho = g[j] @ g[j + 1] / (norms[j] * norms[j + 1])
    assert rho == pytest.approx(math.exp(-1 / (4 * sigma**2)), abs=0.02)
    corr = np.corrcoef(fields[:, i, j], fields[:, i, j + 1])[0, 1]
    assert abs(corr - rho) < 5 * (1 - rho**2) / math.sqrt(len(fields))


def test_the_gaussian_matrix_smooths_like_a_normalized_gaussian_kernel():
    g = gaussian_matrix(SIDE, 4.0)
    assert np.array_equal(g, g.T)
    kernel = np.exp(-0.5 * (np.arange(-60, 61) / 4.0) ** 2)
    assert g[14, 14] == pytest.approx(1 / kernel.sum(), rel=1e-12, abs=0)
    assert g[14].sum() == pytest.approx(1.0, abs=2e-3)  # all but the tails beyond the border
    assert g[14, 18] / g[14, 14] == pytest.approx(math.exp(-0.5), rel=1e-12, abs=0)


# --- against a slow per-image reference ---


def reference(images: np.ndarray, kind: str, d: Distortions, rng: np.random.Generator,
              background: float) -> np.ndarray:
    """One image at a time, in float64, by the definitions: the forward affine matrix inverted
    by np.linalg.inv, the Gaussian smoothing as a double sum over the kernel, and bilinear
    interpolation pixel by pixel, with background outside the image."""
    n = len(images)
    affine = d.affine
    if affine:
        u = rng.random((5, n))
        limits = [(-d.max_rotation, d.max_rotation), (1 - d.max_scale, 1 + d.max_scale),
                  (-d.max_shear, d.max_shear), (-d.max_shift, d.max_shift),
                  (-d.max_shift, d.max_shift)]
        angle, scale, shear, ty, tx = (lo + (hi - lo) * u[k] for k, (lo, hi) in
                                       enumerate(limits))
    if d.elastic:
        uniform = (drawn_levels(rng, n).astype(np.float64) + 0.5) / 2**16 * 2 - 1
        offsets = np.arange(-4 * SIDE, 4 * SIDE + 1)
        norm = np.exp(-0.5 * (offsets / d.elastic_sigma) ** 2).sum()
        w = lambda t: np.exp(-0.5 * (t / d.elastic_sigma) ** 2) / norm  # noqa: E731
    out = np.empty_like(images)
    idx = np.arange(SIDE)
    for i in range(n):
        image = images[i].reshape(SIDE, SIDE)
        py, px = np.meshgrid(idx, idx, indexing="ij")
        py, px = py.astype(np.float64), px.astype(np.float64)
        if d.elastic:
            for axis, target in ((0, py), (1, px)):
                field = uniform[axis, i]
                smooth = np.zeros((SIDE, SIDE))
                for a in range(SIDE):
                    for b in range(SIDE):
                        smooth[a, b] = (w(a - idx)[:, None] * w(b - idx)[None, :]
                                        * field).sum()
                target += d.elastic_alpha * smooth
        if affine:
            a_, s_, h_ = np.radians(angle[i]), scale[i], np.radians(shear[i])
            rotate = np.array([[math.cos(a_), math.sin(a_)], [-math.sin(a_), math.cos(a_)]])
            forward = rotate @ np.array([[1, -math.tan(h_)], [0, 1]]) * s_
            inverse = np.linalg.inv(forward)
            rel = np.stack([px - CENTRE - tx[i], py - CENTRE - ty[i]])
            src = np.einsum("ab,bij->aij", inverse, rel) + CENTRE
            px, py = src[0], src[1]

        def pixel(r: int, c: int, image=image) -> float:
            return image[r, c] if 0 <= r < SIDE and 0 <= c < SIDE else background

        result = np.empty((SIDE, SIDE))
        for r in range(SIDE):
            for c in range(SIDE):
                y, x = py[r, c], px[r, c]
                y0, x0 = math.floor(y), math.floor(x)
                fy, fx = y - y0, x - x0
                result[r, c] = ((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1))
                                + fy * ((1 - fx) * pixel(y0 + 1, x0)
                                        + fx * pixel(y0 + 1, x0 + 1)))
        out[i] = result.ravel()
    return out


@pytest.mark.parametrize("kind", ["affine", "elastic", "affine+elastic"])
def test_the_vectorized_batch_equals_the_per_image_reference(kind, mnist):
    """In float64 the two differ only by rounding (1e-9 is ~10^6 ulps of values of order 10
    after a few hundred operations); strong limits so that borders and the background count."""
    d = Distortions(kind, max_shift=2.5, max_rotation=40, max_scale=0.3, max_shear=30,
                    elastic_alpha=60, elastic_sigma=3)
    x = standardized(mnist, 4, np.float64)
    rng = np.random.default_rng(12)
    expected = reference(x, kind, d, replay(rng), BACKGROUND)
    out = d.apply(x, rng, BACKGROUND)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-9)
    assert np.abs(out - x).max() > 1.0  # really distorted


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_float32_stays_float32_and_the_same_state_gives_the_same_batch(kind, mnist):
    x = standardized(mnist, 50)
    d = Distortions(kind)
    rng = np.random.default_rng(21)
    first = d.apply(x, replay(rng), BACKGROUND)
    second = d.apply(x, rng, BACKGROUND)
    assert first.dtype == np.float32 and first.shape == x.shape
    assert np.array_equal(first, second)
    if kind != "none":
        assert not np.array_equal(d.apply(x, rng, BACKGROUND), first)  # the state moved on
        # every image draws its own distortion (shift has only 25 to choose from)
        copies = d.apply(x[:1].repeat(8, axis=0), rng, BACKGROUND)
        assert len({row.tobytes() for row in copies}) >= (2 if kind == "shift" else 8)


def test_distorted_digits_keep_their_ink_range(mnist):
    """Bilinear weights are convex: nothing darker than the darkest pixel or lighter than the
    background appears (but for the rounding of three float32 lerps of values below 3: under
    3 * 3 * 2**-23 < 2e-6)."""
    x = standardized(mnist, 100)
    out = Distortions("affine+elastic").apply(x, np.random.default_rng(0), BACKGROUND)
    assert out.min() >= np.float32(BACKGROUND) - 2e-6 and out.max() <= x.max() + 2e-6
    assert out.min() < np.float32(BACKGROUND) + 1e-6 and out.max() > x.max() - 0.5


def test_distortions_describe_themselves():
    assert Distortions("none").describe() == "none"
    assert Distortions("shift", max_shift=3).describe() == "shift by whole pixels, up to ±3"
    assert Distortions("affine+elastic").describe() == (
        "affine: rotation ±15°, scale ±15%, shear ±15°, shift ±2 px + elastic: alpha 34 px, "
        "sigma 4 px")


# --- in a training run ---


def small_augmented_config(**overrides):
    """The mini dataset (600 training digits: 500 to train on, 100 held out), batches of 50:
    10 iterations an epoch, with momentum, a validation split and both distortions, so every
    draw of the batches and of the distortions is in play."""
    values = dict(dataset="mini", hidden=8, batch_size=50, epochs=3, val_size=100, seed=11,
                  augment="affine+elastic")
    values.update(overrides)
    return config_from_preset("default", **values)


@pytest.fixture(scope="module")
def whole_augmented(mini_env, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "whole"
    trainer = Trainer(small_augmented_config(), run_dir, data_dir=mini_env)
    trainer.run()
    return trainer


STOPS = sorted(np.random.default_rng(2026).choice(np.arange(1, 30), size=2, replace=False))


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", STOPS)
def test_an_augmented_run_interrupted_and_resumed_is_bit_identical(whole_augmented, mini_env,
                                                                   tmp_path, stop_at):
    parted = Trainer(small_augmented_config(), tmp_path / "parted", data_dir=mini_env)
    interrupt_at(parted, int(stop_at), signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        parted.run()
    assert info.value.iteration == stop_at
    resumed = Trainer.resume(tmp_path / "parted", data_dir=mini_env)
    resumed.run()
    assert resumed.state.history["iteration_loss"] == whole_augmented.state.history[
        "iteration_loss"]
    for key, value in whole_augmented.net.params.items():
        assert np.array_equal(resumed.net.params[key], value), key


@pytest.mark.slow
def test_the_same_seed_gives_the_same_augmented_run_and_the_figure_draws_aside(
        whole_augmented, mini_env, tmp_path, monkeypatch):
    """Run again with augmentation.png not drawn at all: the same losses and weights, so the
    figure's draws come from a stream of their own."""
    assert (whole_augmented.run_dir / AUGMENTATION_FIGURE).is_file()
    monkeypatch.setattr(Trainer, "_plot_augmentation", lambda self, background: None)
    again = Trainer(small_augmented_config(), tmp_path / "again", data_dir=mini_env)
    again.run()
    assert not (tmp_path / "again" / AUGMENTATION_FIGURE).exists()
    assert again.state.history["iteration_loss"] == whole_augmented.state.history[
        "iteration_loss"]
    for key, value in whole_augmented.net.params.items():
        assert np.array_equal(again.net.params[key], value), key
    other_seed = Trainer(small_augmented_config(seed=12), tmp_path / "other", data_dir=mini_env)
    other_seed.run()
    assert other_seed.state.history["iteration_loss"] != again.state.history["iteration_loss"]


@pytest.mark.slow
def test_distortions_change_what_the_net_learns_from(mini_env, tmp_path):
    """The same run without augmentation takes different steps from the first batch on (its
    first batch holds the same digits: the batch order does not depend on augmentation)."""
    plain = Trainer(small_augmented_config(augment="none", epochs=1), tmp_path / "plain",
                    data_dir=mini_env)
    plain.run()
    distorted = Trainer(small_augmented_config(epochs=1), tmp_path / "distorted",
                        data_dir=mini_env)
    distorted.run()
    assert plain.state.history["iteration_loss"][0] != distorted.state.history[
        "iteration_loss"][0]
    config = json.loads((tmp_path / "distorted" / "config.json").read_text())
    assert config["augment"] == "affine+elastic" and config["elastic_alpha"] == 34.0


@pytest.mark.slow
def test_the_record_preset_trains_with_elastic_distortions(mini_env, tmp_path):
    """A few iterations of --preset record: a 784-800-10 sigmoid net fed elastically distorted
    digits, its figure in the run folder, its settings in config.json."""
    trainer = Trainer(config_from_preset("record", dataset="mini", iters=3), tmp_path / "run",
                      data_dir=mini_env)
    metrics = trainer.run()
    assert metrics["iterations"] == 3 and trainer.net.params["W1"].shape == (784, 800)
    assert trainer.net.activation == "sigmoid"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["preset"], config["augment"], config["elastic_alpha"],
            config["elastic_sigma"]) == ("record", "elastic", 34.0, 4.0)
    assert (tmp_path / "run" / AUGMENTATION_FIGURE).is_file()


def test_the_augmentation_mosaic_puts_each_digit_beside_its_draws():
    """The figure's data: row r holds digit r, then a wider gap, then its draws in order."""
    originals = np.arange(3 * 4, dtype=np.float64).reshape(3, 4) / 20  # 2x2 "digits"
    distorted = 0.6 + np.arange(3 * 2 * 4, dtype=np.float64).reshape(3, 2, 4) / 100
    mosaic, lefts, tops = plots.augmentation_mosaic(originals, distorted)
    assert lefts[1] - lefts[0] > lefts[2] - lefts[1]  # the original stands apart
    for row, top in enumerate(tops):
        assert np.array_equal(mosaic[top:top + 2, lefts[0]:lefts[0] + 2],
                              originals[row].reshape(2, 2))
        for draw in range(2):
            left = lefts[1 + draw]
            assert np.array_equal(mosaic[top:top + 2, left:left + 2],
                                  distorted[row, draw].reshape(2, 2))
    assert np.isnan(mosaic).sum() == mosaic.size - 3 * 3 * 4  # the rest is the frame


# --- what the arithmetic is done in (mutation tests: each fails if a step leaves it) ---


def test_elastic_displacements_come_in_the_dtype_asked_and_differ_between_axes():
    dy, dx = elastic_displacements(3, SIDE, 34.0, 4.0, np.random.default_rng(2))
    assert dy.dtype == dx.dtype == np.float32 and dy.shape == dx.shape == (3, SIDE, SIDE)
    assert not np.array_equal(dy, dx)  # two fields, not one twice
    dy64, dx64 = elastic_displacements(3, SIDE, 34.0, 4.0, np.random.default_rng(2), np.float64)
    assert dy64.dtype == dx64.dtype == np.float64
    # the same uniforms: float32 is float64's field to float32's accuracy (34 px, 1e-6 rel)
    np.testing.assert_allclose(dy, dy64, rtol=0, atol=34 * 2e-6)
    np.testing.assert_allclose(dx, dx64, rtol=0, atol=34 * 2e-6)


def test_bilinear_sampling_takes_float64_positions_into_the_images_float32():
    """Positions are moved into the framed image in the images' dtype: 0.1 becomes
    float32(2.1) - 2 = 0.099999905 as the fraction, not float64's 0.1."""
    image = np.float32([[[0.0, 1.0], [0.0, 1.0]]])
    fraction = np.float32(np.float32(0.1 + 2) - np.float32(2))
    assert fraction != np.float32(0.1)
    out = sample_bilinear(image, np.zeros((1, 1, 1)), np.full((1, 1, 1), 0.1), background=0.0)
    assert out.dtype == np.float32 and out[0, 0, 0] == fraction
    out = sample_bilinear(image.transpose(0, 2, 1), np.full((1, 1, 1), 0.1), np.zeros((1, 1, 1)),
                          background=0.0)
    assert out.dtype == np.float32 and out[0, 0, 0] == fraction


def test_bilinear_sampling_broadcasts_one_grid_of_positions_over_the_batch():
    images = np.arange(2 * 9, dtype=np.float64).reshape(2, 3, 3)
    rows = np.float64([[[0.5, 1.0], [2.0, 1.25]]])
    cols = np.float64([[[0.0, 0.5], [1.0, 2.0]], [[0.25, 0.5], [1.0, 2.0]]])
    expected = sample_bilinear(images, np.broadcast_to(rows, cols.shape).copy(), cols, 0.0)
    np.testing.assert_array_equal(sample_bilinear(images, rows, cols, 0.0), expected)
    np.testing.assert_array_equal(sample_bilinear(images, cols, rows, 0.0),
                                  sample_bilinear(images, cols,
                                                  np.broadcast_to(rows, cols.shape).copy(), 0.0))
    # 0.5 between rows 0 and 1 of column 0 of image 0: (0 + 3) / 2
    assert expected[0, 0, 0] == 1.5


def test_flat_indices_are_summed_where_they_are_exact_even_when_the_images_dtype_is_not():
    """float16 holds integers exactly only up to 2048, less than the 3 x 32 x 32 pixels of three
    framed 28 x 28 images: the flat indices must then be summed in float64. Whole-pixel
    positions read pixels exactly, so the third image's pixels come back unchanged."""
    images = (np.arange(3 * SIDE * SIDE) % 2000).astype(np.float16).reshape(3, SIDE, SIDE)
    rows, cols = pixel_grid(SIDE, np.dtype(np.float16))
    out = sample_bilinear(images, np.broadcast_to(rows, images.shape).copy(),
                          np.broadcast_to(cols[::-1, ::-1], images.shape).copy(), 0.0)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, images[:, :, ::-1])
    assert len(np.unique(images[2])) == SIDE * SIDE  # every pixel its own value


def test_affine_sources_are_float32_arithmetic_on_a_float32_grid():
    """The map's coefficients are rounded to float32 once, then each source position is
    a * col + b * row + e (and c, d, f) in float32, operation for operation."""
    rows, cols = pixel_grid(SIDE, np.dtype(np.float32))
    angle, scale, shear = np.array([0.3, -0.2]), np.array([1.1, 0.9]), np.array([0.1, -0.25])
    shift_y, shift_x = np.array([1.5, -0.75]), np.array([-2.0, 0.5])
    src_y, src_x = affine_sources(rows, cols, angle, scale, shear, shift_y, shift_x, side=SIDE,
                                  plus=2)
    assert src_y.dtype == src_x.dtype == np.float32
    centre = (SIDE - 1) / 2
    cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
    a, b = (cos + tan * sin) / scale, (tan * cos - sin) / scale
    c, d = sin / scale, cos / scale
    e = centre + 2 - a * (centre + shift_x) - b * (centre + shift_y)
    f = centre + 2 - c * (centre + shift_x) - d * (centre + shift_y)
    f32 = np.float32
    for i in range(2):
        x = f32(a[i]) * cols
        x += f32(b[i]) * rows
        x += f32(e[i])
        y = f32(c[i]) * cols
        y += f32(d[i]) * rows
        y += f32(f[i])
        np.testing.assert_array_equal(src_x[i], x)
        np.testing.assert_array_equal(src_y[i], y)


def test_images_that_are_not_rows_of_square_pixels_are_refused():
    rng = np.random.default_rng(0)
    for shape in [(3, 783), (2, 4, 3)]:  # not square; square rows but not a 2-D batch
        with pytest.raises(ValueError) as info:
            shift_images(np.zeros(shape, np.float32), 2, rng, 0.0)
        assert str(info.value) == f"images must be (N, side * side), got {shape}"


def smoothed_levels(k: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """left @ K @ right in float32 for levels K (2, n, side, side): left = alpha / 32768 G
    times each field, then all the rows times right = G at once, the products (and shapes)
    the library takes, so the same bits."""
    g = gaussian_matrix(SIDE, sigma)
    left, right = (alpha / 32768 * g).astype(np.float32), g.astype(np.float32)
    rows = np.matmul(left, k.astype(np.float32).reshape(-1, SIDE, SIDE))
    return np.matmul(rows.reshape(-1, SIDE), right).reshape(k.shape)


def test_elastic_fields_are_the_smoothed_16_bit_uniforms_in_float32_operation_for_operation():
    """The fields written out here: K drawn as the documented (2, n, side, side) levels, then
    left @ K @ right - offset (:func:`smoothed_levels`) with left = alpha / 32768 G, right = G and
    offset = alpha (1 - 2^-16) G 1 G, each rounded to float32 once: the same products of the
    same shapes, so the same bits; and in float64, alpha G U G for U = (K + 1/2) / 2^15 - 1, to
    float64's rounding: ours takes two products of 28 terms of K / 2^15 <= 2 and subtracts the
    offset, the reference two of |U| <= 1, G >= 0: within (2 + 1) gamma(56) alpha (G 1 G) plus
    the subtraction's half ulp, so 4 gamma(56) alpha (G 1 G)."""
    n, alpha, sigma = 2, 34.0, 4.0
    rng = np.random.default_rng(5)  # its 3136 levels include a 0: the full range is drawn
    k = drawn_levels(replay(rng), n)
    assert k.min() == 0
    dy, dx = elastic_displacements(n, SIDE, alpha, sigma, rng)
    g = gaussian_matrix(SIDE, sigma)
    offset = (alpha * (1 - 2.0**-16) * g @ np.ones((SIDE, SIDE)) @ g).astype(np.float32)
    fields = smoothed_levels(k, alpha, sigma)
    np.testing.assert_array_equal(dy, fields[0] - offset)
    np.testing.assert_array_equal(dx, fields[1] - offset)
    u = (k.astype(np.float64) + 0.5) / 2**15 - 1
    dy64, dx64 = elastic_displacements(n, SIDE, alpha, sigma, replay(np.random.default_rng(5)),
                                       np.float64)
    bound = 4 * gamma(56) * alpha * (g @ np.ones((SIDE, SIDE)) @ g)
    for i in range(n):
        assert np.all(np.abs(dy64[i] - alpha * g @ u[0, i] @ g) <= bound)
        assert np.all(np.abs(dx64[i] - alpha * g @ u[1, i] @ g) <= bound)


def test_an_elastic_batch_is_the_written_out_float32_pipeline_bit_for_bit(mnist):
    """Positions (the smoothed levels minus offset, plus pixel and frame), clipped to the
    framed image, floor and fraction, four neighbours read by plain indexing from the image
    framed in background, and the blend top + fr (bottom - top) with top = tl + fc (tr - tl):
    each one float32 operation as written here, the index sums exact integers, so equal bit for
    bit. Pins what an image becomes for given levels, whatever the library does for speed."""
    n, alpha, sigma, side = 40, 34.0, 4.0, SIDE
    x = standardized(mnist, n)
    rng = np.random.default_rng(11)
    k = drawn_levels(replay(rng), n)
    out = Distortions("elastic", elastic_alpha=alpha, elastic_sigma=sigma).apply(x, rng,
                                                                                 BACKGROUND)
    f32 = np.float32
    g = gaussian_matrix(side, sigma)
    offset = (alpha * (1 - 2.0**-16) * g @ np.ones((side, side)) @ g).astype(f32)
    grid_rows, grid_cols = np.indices((side, side)).astype(f32)
    smoothed = smoothed_levels(k, alpha, sigma)
    r = smoothed[0] - (offset - grid_rows - f32(2))
    c = smoothed[1] - (offset - grid_cols - f32(2))
    r, c = np.clip(r, f32(1), f32(side + 2)), np.clip(c, f32(1), f32(side + 2))
    r0, c0 = np.floor(r), np.floor(c)
    fr, fc = r - r0, c - c0
    framed = np.pad(x.reshape(n, side, side), ((0, 0), (2, 2), (2, 2)),
                    constant_values=f32(BACKGROUND))
    i, y, x0 = np.arange(n)[:, None, None], r0.astype(int), c0.astype(int)
    tl, tr = framed[i, y, x0], framed[i, y, x0 + 1]
    bl, br = framed[i, y + 1, x0], framed[i, y + 1, x0 + 1]
    top, bottom = tl + fc * (tr - tl), bl + fc * (br - bl)
    expected = top + fr * (bottom - top)
    assert out.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(out, expected.reshape(n, -1))
    assert (r0 == 1).any() and (r0 == side + 2).any()  # the clip on both sides took part
    assert (c0 == 1).any() and (c0 == side + 2).any()


def test_scratch_hands_back_the_same_array_until_its_shape_or_dtype_changes():
    scratch = Scratch()
    a = scratch.get("a", (2, 3), np.float32)
    assert a.shape == (2, 3) and a.dtype == np.float32
    assert scratch.get("a", (2, 3), np.float32) is a
    b = scratch.get("a", (2, 3), np.float64)
    assert b.dtype == np.float64 and b.shape == (2, 3)
    c = scratch.get("a", (3, 2), np.float64)
    assert c.shape == (3, 2) and c is not b
    assert scratch.get("a", (3, 2), np.float64) is c
    assert scratch.get("other", (3, 2), np.float64) is not c


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.Philox, np.random.MT19937])
def test_levels_are_the_generators_own_16_bit_integers(bit_generator):
    """From a fresh generator the raw words cut four ways are exactly what
    ``integers(0, 2**16, dtype=uint16)`` draws; MT19937's raw words are 32-bit (cut four ways
    they would make every other pair of levels 0), so it goes through ``integers`` itself."""
    levels = _levels(np.random.Generator(bit_generator(11)), 4097)
    expected = np.random.Generator(bit_generator(11)).integers(0, 1 << 16, size=4097,
                                                               dtype=np.uint16)
    np.testing.assert_array_equal(levels, expected)


def test_replaced_limits_distort_with_their_own_fields(mnist):
    """dataclasses.replace makes a new scratch: the elastic origin written for sigma 4 must
    not be read by the copy with sigma 2."""
    x = standardized(mnist, 8)
    sigma4 = Distortions("elastic", elastic_sigma=4.0)
    sigma4.apply(x, np.random.default_rng(0), BACKGROUND)
    sigma2 = dataclasses.replace(sigma4, elastic_sigma=2.0)
    fresh = Distortions("elastic", elastic_sigma=2.0)
    np.testing.assert_array_equal(sigma2.apply(x, np.random.default_rng(5), BACKGROUND),
                                  fresh.apply(x, np.random.default_rng(5), BACKGROUND))
