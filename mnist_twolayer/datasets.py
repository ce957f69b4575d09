"""MNIST-layout datasets: a registry, where the files live, download / verify / cache, and the
book's ``load_mnist``.

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
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
import urllib3
from tqdm import tqdm

from . import __version__, idx
from .errors import ConfigError, DatasetError
from .fileio import atomic_path, replace_durably, write_json_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock, renames stay atomic
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

ENV_DATA_DIR = "MNIST_TWOLAYER_DATA"
ENV_MIRROR = "MNIST_TWOLAYER_MIRROR"
SPLITS = ("train", "test")
KINDS = ("images", "labels")
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
    num_classes: int = 10

    def file(self, split: str, kind: str) -> DataFile:
        return next(f for f in self.files if f.split == split and f.kind == kind)


def mnist_layout(name: str, sha256: dict[str, str], mirrors: Sequence[str],
                 local_dirs: Sequence[str | Path] = ()) -> DatasetSpec:
    """A dataset with MNIST's four file names; ``sha256`` maps each name without ``.gz``
    (``train-images-idx3-ubyte``, ...) to its payload sha256."""
    stems = {("train", "images"): "train-images-idx3-ubyte",
             ("train", "labels"): "train-labels-idx1-ubyte",
             ("test", "images"): "t10k-images-idx3-ubyte",
             ("test", "labels"): "t10k-labels-idx1-ubyte"}
    files = tuple(DataFile(split, kind, f"{stem}.gz", sha256[stem])
                  for (split, kind), stem in stems.items())
    return DatasetSpec(name, files, tuple(mirrors), tuple(Path(d) for d in local_dirs))


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
    ),
)}


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


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds one sub-folder per dataset (see :func:`locate_data_dir`)."""
    return locate_data_dir(data_dir)[0]


def dataset_dir(name: str = "mnist", data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding dataset ``name``'s gz files and their cache."""
    return resolve_data_dir(data_dir) / get_spec(name).name


# --- verification and the .npy cache ---


def _stat_key(path: Path) -> dict[str, int]:
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


def _verify_payload(path: Path, f: DataFile, spec: DatasetSpec) -> np.ndarray:
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
                or meta.get("gz") != _stat_key(folder / f.filename)
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


def _write_cache(folder: Path, f: DataFile, gz_key: dict[str, int], array: np.ndarray) -> None:
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


def _load_file(folder: Path, f: DataFile, spec: DatasetSpec) -> np.ndarray:
    """The verified array of one file: from the cache, else from the gz (then cached)."""
    gz = folder / f.filename
    cached = _load_cached(folder, f, spec)
    if cached is not None:
        return cached
    try:
        key = _stat_key(gz)
    except FileNotFoundError:
        raise DatasetError(f"{gz}: file not found") from None
    array = _verify_payload(gz, f, spec)
    if _stat_key(gz) == key:  # the gz did not change while we read it
        _write_cache(folder, f, key, array)
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


# --- download ---


@dataclass(frozen=True)
class Fetched:
    """What :func:`download` did for one file: ``action`` is present, copied or downloaded."""

    filename: str
    action: str
    source: str | None
    path: Path


class _Retry(Exception):
    """A failure worth another attempt at the same URL (timeout, 5xx, cut-off body)."""


class _Skip(Exception):
    """A failure that another attempt at the same URL will not fix (404, bad payload)."""


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` so one process at a time fetches into it."""
    try:
        handle = open(folder / ".lock", "a+b")
    except OSError as exc:
        raise DatasetError(f"cannot write to {folder} ({exc.strerror or exc}); choose another "
                           f"place with --data-dir or {ENV_DATA_DIR}") from None
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process downloading into %s", folder)
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def mirror_list(name: str = "mnist", mirrors: Sequence[str] = ()) -> list[str]:
    """The mirrors to try, in order: ``mirrors`` (``--mirror``), then ``MNIST_TWOLAYER_MIRROR``
    (URLs separated by spaces or commas), then the registry's."""
    env = os.environ.get(ENV_MIRROR, "").replace(",", " ").split()
    result: list[str] = []
    for url in (*mirrors, *env, *get_spec(name).mirrors):
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise DatasetError(f"mirror {url!r} is not an http:// or https:// URL "
                               f"(for a local folder use --from DIR)")
        url = url.rstrip("/") + "/"
        if url not in result:
            result.append(url)
    return result


def _is_verified(folder: Path, f: DataFile, spec: DatasetSpec) -> bool:
    try:
        _load_file(folder, f, spec)
    except DatasetError as exc:
        log.info("%s will be fetched again: %s", f.filename, exc)
        return False
    return True


def _install(candidate: Path, folder: Path, f: DataFile, spec: DatasetSpec) -> Path:
    """Verify ``candidate`` and rename it into the cache; on failure delete it and raise _Skip.

    The array is cached on the way, since verifying it has already parsed it.
    """
    try:
        array = _verify_payload(candidate, f, spec)
    except DatasetError as exc:
        candidate.unlink(missing_ok=True)
        raise _Skip(str(exc).replace(f"{candidate}: ", "")) from None
    dest = folder / f.filename
    replace_durably(candidate, dest)
    _write_cache(folder, f, _stat_key(dest), array)
    return dest


def _copy_from(source_dir: Path, folder: Path, f: DataFile, spec: DatasetSpec) -> Path:
    source = source_dir / f.filename
    if not source.is_file():
        raise _Skip("no such file")
    tmp = folder / f".{f.filename}.copy"  # a fixed name is safe: the caller holds the lock
    try:
        shutil.copyfile(source, tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _Skip(f"cannot copy ({exc.strerror or exc})") from None
    return _install(tmp, folder, f, spec)


def _reason(exc: BaseException) -> str:
    """A short, one-line account of a network failure."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return "read timeout (the server stopped sending)"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        urllib3.exceptions.ProtocolError)):
        return "connection broken mid-transfer (truncated body)"
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else exc
        text = str(getattr(inner, "reason", inner))  # urllib3's MaxRetryError wraps the cause
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        return f"connection failed ({errno.group(1) if errno else text})".splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _unresolvable(exc: BaseException) -> bool:
    inner = exc.args[0] if exc.args else None
    return isinstance(getattr(inner, "reason", None), urllib3.exceptions.NameResolutionError)


@dataclass(frozen=True)
class _Http:
    session: requests.Session
    timeout: tuple[float, float]
    retries: int
    backoff: float
    quiet: bool


def _http_attempt(http: _Http, url: str, part: Path, f: DataFile) -> None:
    """One GET of ``url`` into ``part``, resuming what an earlier attempt at the same URL left.

    A partial file is kept for the next attempt; its sidecar remembers the URL and validators
    so bytes from one mirror (whose gz may differ) are never spliced onto another's.
    """
    part_meta = part.with_name(part.name + ".json")
    offset = 0
    headers = {"Accept-Encoding": "identity"}
    try:
        meta = json.loads(part_meta.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("the sidecar is not a JSON object")
        offset = part.stat().st_size if meta.get("url") == url else 0
    except (OSError, ValueError):
        meta = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator := meta.get("etag") or meta.get("last_modified"):
            headers["If-Range"] = validator
    with http.session.get(url, headers=headers, stream=True, timeout=http.timeout) as response:
        status = response.status_code
        if status == 416 and offset:
            if response.headers.get("Content-Range", "") == f"bytes */{offset}":
                return  # an earlier attempt already received every byte
            part.unlink(missing_ok=True)
            raise _Retry("server refused to resume (HTTP 416)")
        if status in (408, 429) or status >= 500:
            raise _Retry(f"HTTP {status} {response.reason}")
        if status not in (200, 206):
            raise _Skip(f"HTTP {status} {response.reason}")
        total: int | None = None
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink(missing_ok=True)
                raise _Retry(f"unexpected Content-Range {content_range!r}")
            size = content_range.rpartition("/")[2]
            total = int(size) if size.isdigit() else None
            mode = "ab"
            log.info("resuming %s at byte %d", url, offset)
        else:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            offset, mode = 0, "wb"
        write_json_atomic(part_meta, {"url": url, "etag": response.headers.get("ETag"),
                                      "last_modified": response.headers.get("Last-Modified")})
        with open(part, mode) as out, tqdm(
            desc=f.filename, total=total, initial=offset, unit="B", unit_scale=True,
            unit_divisor=1024, leave=False, disable=http.quiet or not sys.stderr.isatty(),
        ) as bar:
            for chunk in response.raw.stream(1 << 16, decode_content=False):
                out.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if total is not None and received != total:
        raise _Retry(f"truncated body ({received} of {total} bytes)")


def _download_from(http: _Http, base: str, folder: Path, f: DataFile,
                   spec: DatasetSpec) -> Path:
    url = base + f.filename
    part = folder / f".{f.filename}.part"
    reason = ""
    for attempt in range(http.retries + 1):
        if attempt:
            time.sleep(http.backoff * 2 ** (attempt - 1))
        try:
            _http_attempt(http, url, part, f)
        except _Retry as exc:
            reason = str(exc)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            reason = _reason(exc)
            if _unresolvable(exc):
                raise _Skip(reason) from None  # no network or no such host: retrying won't help
        else:
            part.with_name(part.name + ".json").unlink(missing_ok=True)
            return _install(part, folder, f, spec)
        log.info("%s: attempt %d failed: %s", url, attempt + 1, reason)
    tries = http.retries + 1
    raise _Skip(f"{reason} (after {tries} attempt{'s' if tries > 1 else ''})")


def download(name: str = "mnist", data_dir: str | os.PathLike[str] | None = None,
             mirrors: Sequence[str] = (), force: bool = False,
             from_dir: str | os.PathLike[str] | None = None, quiet: bool = False, *,
             timeout: tuple[float, float] = (10.0, 30.0), retries: int = 2,
             backoff: float = 1.0) -> list[Fetched]:
    """Make every file of dataset ``name`` present and verified in its folder.

    Files that already verify are kept unless ``force``. Others come from ``from_dir`` only
    when it is given, else from the registry's local folders (Debian's fashion-mnist) and then
    the mirrors of :func:`mirror_list`, each URL tried ``1 + retries`` times with exponential
    ``backoff`` seconds between attempts; ``timeout`` is (connect, read) seconds. A file that
    fails verification never enters the folder. When every source fails, one DatasetError
    lists each source and why. A lock file keeps two processes from fetching at once.
    """
    spec = get_spec(name)
    folder = dataset_dir(name, data_dir)
    sources: list[Path | str]
    if from_dir is not None:
        from_dir = Path(from_dir).expanduser()
        if not from_dir.is_dir():
            raise DatasetError(f"--from {from_dir}: no such folder")
        sources = [from_dir]
    else:
        sources = [d for d in spec.local_dirs if d.is_dir()]
        sources += mirror_list(name, mirrors)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {folder} ({exc.strerror or exc}); choose another "
                           f"place with --data-dir or {ENV_DATA_DIR}") from None
    http = _Http(requests.Session(), timeout, retries, backoff, quiet)
    http.session.headers["User-Agent"] = f"mnist_twolayer/{__version__}"
    results = []
    with http.session, _locked(folder):
        for f in spec.files:
            if not force and (folder / f.filename).is_file() and _is_verified(folder, f, spec):
                results.append(Fetched(f.filename, "present", None, folder / f.filename))
                continue
            failures = []
            for source in sources:
                try:
                    if isinstance(source, Path):
                        path = _copy_from(source, folder, f, spec)
                        results.append(Fetched(f.filename, "copied", str(source), path))
                    else:
                        path = _download_from(http, source, folder, f, spec)
                        results.append(Fetched(f.filename, "downloaded", source, path))
                    break
                except _Skip as exc:
                    failures.append(f"{source}: {exc}")
                    log.info("%s from %s failed: %s", f.filename, source, exc)
                except OSError as exc:  # the folder (read-only, full), not the source, failed
                    raise DatasetError(f"cannot write {f.filename} into {folder} "
                                       f"({exc.strerror or exc}); free space there or choose "
                                       f"another place with --data-dir or {ENV_DATA_DIR}") from None
            else:
                hint = "" if from_dir else "; for a local copy use --from DIR or --mirror URL"
                raise DatasetError(f"could not get {name} file {f.filename}: "
                                   f"{'; '.join(failures) or 'no sources'}{hint}")
    return results


_download = download  # load_raw's ``download`` argument shadows the name there


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
        _download(dataset, data_dir)
    result = {}
    for split in SPLITS:
        images_file, labels_file = spec.file(split, "images"), spec.file(split, "labels")
        try:
            images = _load_file(folder, images_file, spec)
            labels = _load_file(folder, labels_file, spec)
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
                    arrays[kind] = _load_file(folder, f, spec)
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
