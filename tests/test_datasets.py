"""load_mnist on the real MNIST, where data lives, the verified cache, and files that must
never become arrays."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import Tiny, register

from mnist_twolayer import datasets, idx
from mnist_twolayer.datasets import load_mnist
from mnist_twolayer.download import download
from mnist_twolayer.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parent.parent
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_TEN = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


# --- the real MNIST ---


def test_defaults_are_the_books(mnist) -> None:
    (x_train, t_train), (x_test, t_test) = mnist
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert t_train.shape == (60000,) and t_test.shape == (10000,)
    assert t_train.dtype == t_test.dtype == np.uint8
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert np.bincount(t_train).tolist() == TRAIN_COUNTS
    assert np.bincount(t_test).tolist() == TEST_COUNTS
    assert t_train[:10].tolist() == FIRST_TEN


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_every_combination(mnist, normalize: bool, flatten: bool, one_hot_label: bool) -> None:
    (x_ref, t_ref), (x_ref_test, _) = mnist
    (x, t), (x_test, t_test) = load_mnist(normalize, flatten, one_hot_label)
    assert x.shape == ((60000, 784) if flatten else (60000, 1, 28, 28))
    assert x_test.shape == ((10000, 784) if flatten else (10000, 1, 28, 28))
    if normalize:
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x.reshape(60000, 784), x_ref)
    else:
        assert x.dtype == np.uint8 and x.max() == 255
        np.testing.assert_array_equal(x.reshape(60000, 784) / np.float32(255), x_ref)
    if one_hot_label:
        assert t.shape == (60000, 10) and t_test.shape == (10000, 10)
        assert t.dtype == np.float32
        assert set(np.unique(t).tolist()) == {0.0, 1.0}
        assert (t.sum(axis=1) == 1).all()
        np.testing.assert_array_equal(t.argmax(axis=1), t_ref)
    else:
        np.testing.assert_array_equal(t, t_ref)
    assert x.flags.writeable and x.flags.c_contiguous


def test_float64_is_exact_division() -> None:
    (_, _), (x, t) = load_mnist(dtype=np.float64, one_hot_label=True)
    (_, _), (raw, _) = load_mnist(normalize=False)
    assert x.dtype == t.dtype == np.float64
    np.testing.assert_array_equal(x, raw / 255.0)


def test_non_float_dtype_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_mnist(dtype=np.int32)
    assert str(info.value) == "dtype must be a floating type such as float32, got int32"


def test_unknown_dataset() -> None:
    with pytest.raises(DatasetError) as info:
        load_mnist(dataset="emnist")
    assert str(info.value) == "unknown dataset 'emnist' (known: fashion-mnist, mnist)"


def test_dataset_info_of_the_shipped_mnist() -> None:
    info = datasets.dataset_info("mnist", REPO / "data")
    assert info["dataset"] == "mnist" and info["path"] == str(REPO / "data" / "mnist")
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        s = info["splits"][split]
        assert s["present"] and s["verified"] and s["error"] is None
        assert s["samples"] == sum(counts) and s["label_counts"] == counts


# --- where data lives ---


def test_data_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    assert datasets.locate_data_dir() == (REPO / "data", "checkout")
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(tmp_path / "env"))
    assert datasets.locate_data_dir() == (tmp_path / "env", "environment")
    assert datasets.locate_data_dir(tmp_path / "arg") == (tmp_path / "arg", "argument")
    monkeypatch.delenv(datasets.ENV_DATA_DIR)
    monkeypatch.setattr(datasets, "_checkout_data_dir", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.locate_data_dir() == (tmp_path / "xdg" / "mnist_twolayer", "user cache")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.locate_data_dir()[0] == tmp_path / "home" / ".cache" / "mnist_twolayer"
    assert datasets.dataset_dir("fashion-mnist", "~") == tmp_path / "home" / "fashion-mnist"


def test_env_data_dir_is_used_by_load(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    download("tiny", tiny.data_dir, from_dir=tiny.source)
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(tiny.data_dir))
    (_, t), _ = load_mnist(dataset="tiny", download=False)
    np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])


# --- the cache ---


def _installed(tiny: Tiny) -> Path:
    download("tiny", tiny.data_dir, from_dir=tiny.source)
    return tiny.folder


def test_loads_return_the_written_arrays(tiny: Tiny) -> None:
    _installed(tiny)
    (x, t), (x_test, t_test) = load_mnist(False, False, dataset="tiny", data_dir=tiny.data_dir)
    np.testing.assert_array_equal(x[:, 0], tiny.arrays["train", "images"])
    np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])
    np.testing.assert_array_equal(x_test[:, 0], tiny.arrays["test", "images"])
    np.testing.assert_array_equal(t_test, tiny.arrays["test", "labels"])


def test_cached_load_skips_the_gz(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _installed(tiny)
    assert sorted(p.name for p in folder.glob("*.npy*")) == sorted(
        f"{f.stem}.npy{ext}" for f in tiny.spec.files for ext in ("", ".json"))

    def no_gz(path: object, max_bytes: int = 0) -> bytearray:
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(idx, "read_payload", no_gz)
    (_, t), _ = load_mnist(dataset="tiny", data_dir=tiny.data_dir)
    np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])


def test_changed_gz_invalidates_the_cache(tiny: Tiny) -> None:
    folder = _installed(tiny)
    labels = folder / "train-labels-idx1-ubyte.gz"
    wrong = tiny.arrays["train", "labels"].copy()
    wrong[0] = (wrong[0] + 1) % 10
    idx.write_idx(labels, wrong)  # a different payload: the cached array must not survive
    with pytest.raises(DatasetError) as info:
        load_mnist(dataset="tiny", data_dir=tiny.data_dir)
    assert str(info.value).startswith(f"{labels}: payload sha256 ")
    assert str(info.value).endswith(
        "(corrupt or wrong file); run `python -m mnist_twolayer download --dataset tiny` to "
        "fetch it again")


def test_touched_gz_is_verified_again(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _installed(tiny)
    gz = folder / "t10k-labels-idx1-ubyte.gz"
    os.utime(gz, ns=(0, 0))
    calls = []
    real = idx.read_payload
    monkeypatch.setattr(idx, "read_payload", lambda p, *a: calls.append(Path(p)) or real(p, *a))
    load_mnist(dataset="tiny", data_dir=tiny.data_dir)
    assert calls == [gz]
    load_mnist(dataset="tiny", data_dir=tiny.data_dir)  # re-cached against the new mtime
    assert calls == [gz]


@pytest.mark.parametrize("damage", ["truncate npy", "garbage sidecar", "sidecar not an object",
                                    "resized npy"])
def test_damaged_cache_is_rebuilt(tiny: Tiny, damage: str) -> None:
    folder = _installed(tiny)
    npy = folder / "train-images-idx3-ubyte.npy"
    if damage == "truncate npy":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "garbage sidecar":
        npy.with_name(npy.name + ".json").write_text("{not json")
    elif damage == "sidecar not an object":
        npy.with_name(npy.name + ".json").write_text("[]")
    else:  # a well-formed npy of the wrong array with a sidecar adjusted to match its size
        np.save(npy, np.zeros((21, 28, 28), dtype=np.uint8))
        meta_path = npy.with_name(npy.name + ".json")
        meta = json.loads(meta_path.read_text())
        meta["npy_size"] = npy.stat().st_size
        meta_path.write_text(json.dumps(meta))
    (x, _), _ = load_mnist(False, False, dataset="tiny", data_dir=tiny.data_dir)
    np.testing.assert_array_equal(x[:, 0], tiny.arrays["train", "images"])
    assert np.load(npy, allow_pickle=False).shape == (20, 28, 28)


def test_clear_cache(tiny: Tiny) -> None:
    folder = _installed(tiny)
    removed = datasets.clear_cache("tiny", tiny.data_dir)
    assert len(removed) == 8
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        f.filename for f in tiny.spec.files)


def test_unwritable_cache_still_loads(tiny: Tiny, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    folder = _installed(tiny)
    datasets.clear_cache("tiny", tiny.data_dir)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "save", refuse)
    (_, t), _ = load_mnist(dataset="tiny", data_dir=tiny.data_dir)
    np.testing.assert_array_equal(t, tiny.arrays["train", "labels"])
    assert "cannot cache train-images-idx3-ubyte.gz" in caplog.text
    assert not list(folder.glob("*.npy*"))


# --- files that must never become arrays ---


def test_missing_files_without_download(tiny: Tiny) -> None:
    with pytest.raises(DatasetError) as info:
        load_mnist(dataset="tiny", data_dir=tiny.data_dir, download=False)
    assert str(info.value) == (
        f"tiny: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,"
        f" t10k-labels-idx1-ubyte.gz missing in {tiny.folder}; run `python -m mnist_twolayer "
        f"download --dataset tiny` or pass download=True")


def test_damaged_gzip_in_the_cache(tiny: Tiny) -> None:
    folder = _installed(tiny)
    datasets.clear_cache("tiny", tiny.data_dir)
    gz = folder / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-10])
    with pytest.raises(DatasetError) as info:
        load_mnist(dataset="tiny", data_dir=tiny.data_dir)
    assert str(info.value) == (
        f"{gz}: damaged gzip file (Compressed file ended before the end-of-stream marker was "
        "reached); run `python -m mnist_twolayer download --dataset tiny` to fetch it again")
    assert not (folder / "train-labels-idx1-ubyte.npy").exists()


def test_corrupted_real_mnist_gz_is_an_error(tmp_path: Path) -> None:
    """A flipped label in a well-formed gz: the payload hash catches what parsing cannot."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in datasets.DATASETS["mnist"].files:
        shutil.copy(REPO / "data" / "mnist" / f.filename, folder / f.filename)
    labels = folder / "train-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(labels.read_bytes()))
    payload[8] = 7  # the first label, 5 in the real file
    labels.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=tmp_path, download=False)
    assert str(info.value).startswith(f"{labels}: payload sha256 ")
    assert "does not match train-labels-idx1-ubyte.gz's 65a50cbbf4e906d7..." in str(info.value)
    assert not (folder / "train-labels-idx1-ubyte.npy").exists()
    assert (folder / "train-images-idx3-ubyte.npy").exists()  # the good file was cached


def test_labels_outside_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {("train", "images"): np.zeros((3, 28, 28), np.uint8),
              ("train", "labels"): np.array([1, 10, 2], np.uint8),
              ("test", "images"): np.zeros((1, 28, 28), np.uint8),
              ("test", "labels"): np.array([0], np.uint8)}
    register(monkeypatch, "badlabels", arrays, tmp_path / "badlabels")
    with pytest.raises(DatasetError) as info:
        load_mnist(dataset="badlabels", data_dir=tmp_path)
    path = tmp_path / "badlabels" / "train-labels-idx1-ubyte.gz"
    assert str(info.value) == (f"{path}: label 10 outside 0..9; run `python -m mnist_twolayer "
                               "download --dataset badlabels` to fetch it again")


def test_count_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {("train", "images"): np.zeros((3, 28, 28), np.uint8),
              ("train", "labels"): np.array([1, 2], np.uint8),
              ("test", "images"): np.zeros((1, 28, 28), np.uint8),
              ("test", "labels"): np.array([0], np.uint8)}
    register(monkeypatch, "short", arrays, tmp_path / "short")
    with pytest.raises(DatasetError) as info:
        load_mnist(dataset="short", data_dir=tmp_path)
    assert str(info.value) == (f"{tmp_path / 'short'}: train-images-idx3-ubyte.gz has 3 images "
                               "but train-labels-idx1-ubyte.gz has 2 labels")
    assert datasets.dataset_info("short", tmp_path)["splits"]["train"]["error"] == (
        "3 images but 2 labels")


def test_wrong_image_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {("train", "images"): np.zeros((2, 28, 27), np.uint8),
              ("train", "labels"): np.array([1, 2], np.uint8),
              ("test", "images"): np.zeros((1, 28, 28), np.uint8),
              ("test", "labels"): np.array([0], np.uint8)}
    register(monkeypatch, "narrow", arrays, tmp_path / "narrow")
    info = datasets.dataset_info("narrow", tmp_path)
    path = tmp_path / "narrow" / "train-images-idx3-ubyte.gz"
    assert info["splits"]["train"]["files"]["images"]["error"] == (
        f"{path}: images have shape (2, 28, 27), expected (N, 28, 28)")
    assert info["splits"]["train"]["verified"] is False
    assert info["splits"]["train"]["label_counts"] is None
    assert info["splits"]["test"]["verified"] is True
