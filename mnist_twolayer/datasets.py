"""MNIST-layout datasets: a registry, where the files live, the verified cache, and the book's
``load_mnist``. Fetching files over HTTP (or from a local folder) is :mod:`download`'s job.

Trust flows from one place: the registry's sha256 of each *decompressed* payload (gz bytes
differ between mirrors, payloads do not). A gz file is verified when it first arrives or is
first loaded; its parsed array is then cached as ``.npy`` beside it with a JSON sidecar that
records the gz's size, mtime and inode, so a cached load costs one ``stat`` and one
``np.load(allow_pickle=False)``, and any change to the gz sends it through verification again.

Where data lives (first match wins): the ``data_dir`` argument (``--data-dir``), the
``MNIST_TWOLAYER_DATA`` environment variable, the repository's ``data/`` when running from a
source checkout, else ``$XDG_CACHE_HOME/mnist_twolayer`` (``~/.cache/mnist_twolayer``). Each
dataset has its own folder under it, named after the dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import idx
from .errors import ConfigError, DatasetError
from .fileio import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

ENV_DATA_DIR = "MNIST_TWOLAYER_DATA"
SPLITS = ("train", "test")
KINDS = ("images", "labels")
DIGITS = tuple("0123456789")
_CACHE_FORMAT = 1


# --- registry ---


@dataclass(frozen=True)
class DataFile:
    """One gz file of a dataset and the sha256 of its decompressed IDX payload."""

    split: str
    kind: str
    filename: str
    sha256: str

    @property
    def stem(self) -> str:
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to fetch and check one dataset; see :func:`mnist_layout`."""

    name: str
    files: tuple[DataFile, ...]
    mirrors: tuple[str, ...]
    local_dirs: tuple[Path, ...] = ()
    image_shape: tuple[int, int] = (28, 28)
    class_names: tuple[str, ...] = DIGITS

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def digits(self) -> bool:
        """Whether the classes are the digits 0-9 (what ``predict`` and the pad read)."""
        return self.class_names == DIGITS

    def file(self, split: str, kind: str) -> DataFile:
        return next(f for f in self.files if f.split == split and f.kind == kind)


def mnist_layout(name: str, sha256: dict[str, str], mirrors: Sequence[str],
                 local_dirs: Sequence[str | Path] = (),
                 class_names: Sequence[str] = DIGITS) -> DatasetSpec:
    """A dataset with MNIST's four file names; ``sha256`` maps each name without ``.gz``
    (``train-images-idx3-ubyte``, ...) to its payload sha256."""
    stems = {("train", "images"): "train-images-idx3-ubyte",
             ("train", "labels"): "train-labels-idx1-ubyte",
             ("test", "images"): "t10k-images-idx3-ubyte",
             ("test", "labels"): "t10k-labels-idx1-ubyte"}
    files = tuple(DataFile(split, kind, f"{stem}.gz", sha256[stem])
                  for (split, kind), stem in stems.items())
    return DatasetSpec(name, files, tuple(mirrors), tuple(Path(d) for d in local_dirs),
                       class_names=tuple(class_names))


#: Adding another MNIST-layout dataset (KMNIST, ...) is one more ``mnist_layout(...)`` here.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    mnist_layout(
        "mnist",
        {"train-images-idx3-ubyte":
             "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "train-labels-idx1-ubyte":
             "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "t10k-images-idx3-ubyte":
             "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "t10k-labels-idx1-ubyte":
             "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
    ),
    mnist_layout(
        "fashion-mnist",
        {"train-images-idx3-ubyte":
             "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train-labels-idx1-ubyte":
             "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "t10k-images-idx3-ubyte":
             "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "t10k-labels-idx1-ubyte":
             "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/"
                 "fashion/"),
        local_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
    ),
)}


def class_names(dataset: str | None, num_classes: int) -> tuple[str, ...]:
    """The names of a model's classes: its dataset's, or the class numbers when the dataset is
    unknown here or has another number of classes."""
    spec = DATASETS.get(dataset or "mnist")
    if spec is None or spec.num_classes != num_classes:
        return tuple(str(k) for k in range(num_classes))
    return spec.class_names


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``, or a DatasetError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise DatasetError(f"unknown dataset {name!r} (known: {known})") from None


# --- where data lives ---


def _checkout_data_dir() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "data").is_dir():
        return root / "data"
    return None


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist_twolayer"


def locate_data_dir(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Return ``(data_dir, why)`` where ``why`` is ``argument``, ``environment``,
    ``checkout`` or ``user cache``: the resolution order of the module docstring."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "argument"
    if env := os.environ.get(ENV_DATA_DIR):
        return Path(env).expanduser(), "environment"
    if (checkout := _checkout_data_dir()) is not None:
        return checkout, "checkout"
    return _user_cache_dir(), "user cache"


def dataset_dir(name: str = "mnist", data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding dataset ``name``'s gz files and their cache."""
    return locate_data_dir(data_dir)[0] / get_spec(name).name


# --- verification and the .npy cache ---


def file_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _cache_paths(folder: Path, f: DataFile) -> tuple[Path, Path]:
    npy = folder / f"{f.stem}.npy"
    return npy, folder / f"{f.stem}.npy.json"


def _check_array(array: np.ndarray, f: DataFile, spec: DatasetSpec, source: str) -> None:
    """Reject arrays that verify by hash yet cannot be this file (a wrong registry entry)."""
    if array.dtype != np.uint8:
        raise DatasetError(f"{source}: element type {array.dtype}, expected uint8")
    if f.kind == "images":
        if array.ndim != 3 or array.shape[1:] != spec.image_shape:
            raise DatasetError(f"{source}: images have shape {array.shape}, expected "
                               f"(N, {spec.image_shape[0]}, {spec.image_shape[1]})")
    elif array.ndim != 1:
        raise DatasetError(f"{source}: labels have shape {array.shape}, expected (N,)")
    elif array.size and int(array.max()) >= spec.num_classes:
        raise DatasetError(f"{source}: label {int(array.max())} outside 0..{spec.num_classes - 1}")


def verify_payload(path: Path, f: DataFile, spec: DatasetSpec) -> np.ndarray:
    """Decompress, check the payload sha256 against the registry, parse and check the array."""
    payload = idx.read_payload(path)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != f.sha256:
        raise DatasetError(f"{path}: payload sha256 {digest[:16]}... does not match "
                           f"{f.filename}'s {f.sha256[:16]}... (corrupt or wrong file)")
    array = idx.parse_idx(payload, str(path))
    _check_array(array, f, spec, str(path))
    return array


def _load_cached(folder: Path, f: DataFile, spec: DatasetSpec) -> np.ndarray | None:
    """The cached array if its sidecar vouches for the gz as it is now, else None."""
    npy, meta_path = _cache_paths(folder, f)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if (not isinstance(meta, dict) or meta.get("format") != _CACHE_FORMAT
                or meta.get("sha256") != f.sha256
                or meta.get("gz") != file_key(folder / f.filename)
                or meta.get("npy_size") != npy.stat().st_size):
            log.info("cache of %s is stale", f.filename)
            return None
        array = np.load(npy, allow_pickle=False)
        _check_array(array, f, spec, str(npy))
        if list(array.shape) != meta.get("shape"):
            raise DatasetError(f"{npy}: shape {array.shape} differs from its sidecar")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, DatasetError) as exc:  # ValueError covers JSON and npy damage
        log.info("ignoring the cache of %s: %s", f.filename, exc)
        return None
    return array


def write_cache(folder: Path, f: DataFile, gz_key: dict[str, int], array: np.ndarray) -> None:
    """Write the .npy, then the sidecar that makes it valid; a failure only costs speed."""
    npy, meta_path = _cache_paths(folder, f)
    try:
        with atomic_path(npy) as tmp, open(tmp, "wb") as out:
            np.save(out, array, allow_pickle=False)
        write_json_atomic(meta_path, {
            "format": _CACHE_FORMAT, "sha256": f.sha256, "gz": gz_key,
            "npy_size": npy.stat().st_size, "shape": list(array.shape),
        })
    except OSError as exc:
        log.warning("cannot cache %s in %s (%s); loads will stay slow", f.filename, folder, exc)


def load_verified(folder: Path, f: DataFile, spec: DatasetSpec) -> np.ndarray:
    """The verified array of one file: from the cache, else from the gz (then cached)."""
    gz = folder / f.filename
    cached = _load_cached(folder, f, spec)
    if cached is not None:
        return cached
    try:
        key = file_key(gz)
    except FileNotFoundError:
        raise DatasetError(f"{gz}: file not found") from None
    array = verify_payload(gz, f, spec)
    if file_key(gz) == key:  # the gz did not change while we read it
        write_cache(folder, f, key, array)
    return array


def clear_cache(name: str = "mnist", data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Delete the parsed-array cache of a dataset (not its gz files); return what was removed.

    The next load verifies and parses the gz files again, which is what a "first load" costs.
    """
    spec = get_spec(name)
    folder = dataset_dir(name, data_dir)
    removed = []
    for f in spec.files:
        for path in _cache_paths(folder, f):
            if path.exists():
                path.unlink()
                removed.append(path)
    return removed


# --- loading ---


def _missing(folder: Path, spec: DatasetSpec) -> list[str]:
    return [f.filename for f in spec.files if not (folder / f.filename).is_file()]


def load_raw(dataset: str = "mnist", data_dir: str | os.PathLike[str] | None = None,
             download: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": (...)}`` as stored: uint8 (N, 28, 28) and (N,).

    Missing files are downloaded when ``download`` is true; a file that fails verification is
    an error, never an array.
    """
    spec = get_spec(dataset)
    folder = dataset_dir(dataset, data_dir)
    if missing := _missing(folder, spec):
        if not download:
            raise DatasetError(
                f"{dataset}: {', '.join(missing)} missing in {folder}; run `python -m "
                f"mnist_twolayer download --dataset {dataset}` or pass download=True")
        from .download import download as fetch  # download builds on this module

        fetch(dataset, data_dir)
    result = {}
    for split in SPLITS:
        images_file, labels_file = spec.file(split, "images"), spec.file(split, "labels")
        try:
            images = load_verified(folder, images_file, spec)
            labels = load_verified(folder, labels_file, spec)
        except DatasetError as exc:
            raise DatasetError(f"{exc}; run `python -m mnist_twolayer download --dataset "
                               f"{dataset}` to fetch it again") from None
        if len(images) != len(labels):
            raise DatasetError(
                f"{folder}: {images_file.filename} has {len(images)} images but "
                f"{labels_file.filename} has {len(labels)} labels")
        result[split] = (images, labels)
    return result


def _prepare(images: np.ndarray, labels: np.ndarray, normalize: bool, flatten: bool,
             one_hot_label: bool, dtype: np.dtype,
             num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(images)
    x: np.ndarray = images
    if normalize:
        x = np.empty(images.shape, dtype=dtype)
        np.divide(images, dtype.type(255), out=x, dtype=dtype)
    x = x.reshape(n, -1) if flatten else x.reshape(n, 1, *images.shape[1:])
    t: np.ndarray = labels
    if one_hot_label:
        t = np.zeros((n, num_classes), dtype=dtype)
        t[np.arange(n), labels] = 1
    return x, t


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False, *,
               dataset: str = "mnist", data_dir: str | os.PathLike[str] | None = None,
               dtype: Any = np.float32, download: bool = True,
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The book's loader: ``((x_train, t_train), (x_test, t_test))``.

    ``flatten`` gives images of shape (N, 784), else (N, 1, 28, 28); ``normalize`` gives
    values in [0, 1] as ``dtype``, else the stored uint8. Labels are uint8 class indices (one
    byte each: the cheapest type that indexes), or with ``one_hot_label`` (N, 10) in ``dtype``.
    """
    spec = get_spec(dataset)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ConfigError(f"dtype must be a floating type such as float32, got {dtype}")
    raw = load_raw(dataset, data_dir, download)
    train, test = (_prepare(*raw[split], normalize, flatten, one_hot_label, dtype,
                            spec.num_classes) for split in SPLITS)
    return train, test


# --- reporting ---


def dataset_info(name: str = "mnist",
                 data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where a dataset lives and, per split, whether its files are present and verify.

    A damaged file is reported (``verified`` false, ``error`` set), never raised, and gives no
    counts. Verifying a file the first time also caches it, as a load would.
    """
    from .download import mirror_list  # download builds on this module

    spec = get_spec(name)
    root, why = locate_data_dir(data_dir)
    folder = root / spec.name
    splits: dict[str, Any] = {}
    for split in SPLITS:
        files: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for kind in KINDS:
            f = spec.file(split, kind)
            entry: dict[str, Any] = {"file": f.filename, "present": (folder / f.filename).is_file(),
                                     "verified": False, "error": None}
            if entry["present"]:
                try:
                    arrays[kind] = load_verified(folder, f, spec)
                    entry["verified"] = True
                except DatasetError as exc:
                    entry["error"] = str(exc)
            files[kind] = entry
        error = None
        verified = len(arrays) == len(KINDS)
        if verified and len(arrays["images"]) != len(arrays["labels"]):
            verified = False
            error = (f"{len(arrays['images'])} images but {len(arrays['labels'])} labels")
        labels = arrays["labels"] if verified else None
        splits[split] = {
            "present": all(entry["present"] for entry in files.values()),
            "verified": verified,
            "samples": None if labels is None else len(labels),
            "label_counts": None if labels is None
            else np.bincount(labels, minlength=spec.num_classes).tolist(),
            "error": error,
            "files": files,
        }
    return {"dataset": spec.name, "data_dir": str(root), "data_dir_source": why,
            "path": str(folder), "mirrors": mirror_list(name), "splits": splits}
