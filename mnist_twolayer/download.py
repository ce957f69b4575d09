"""Fetching a dataset's files into its folder: from a local folder, else from mirror to mirror
over HTTP with timeouts, retries with backoff, resume of a partial file by Range, and a lock so
that one process at a time writes into a folder.

Nothing unverified ever enters the dataset folder: a file arrives under a hidden temporary name
and is renamed into place only after its decompressed payload's sha256 matches the registry
(see :mod:`datasets`), which also caches its parsed array on the way.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3
from tqdm import tqdm

from . import __version__, idx
from .datasets import (
    ENV_DATA_DIR,
    DataFile,
    DatasetSpec,
    dataset_dir,
    file_key,
    get_spec,
    load_verified,
    verify_payload,
    write_cache,
)
from .errors import DatasetError
from .fileio import folder_lock, replace_durably, write_json_atomic

log = logging.getLogger(__name__)

ENV_MIRROR = "MNIST_TWOLAYER_MIRROR"


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
    """Hold ``folder``'s lock so one process at a time fetches into it (a second one waits)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(folder, wait=True, on_wait=lambda: log.info(
                "waiting for another process downloading into %s", folder)))
        except OSError as exc:
            raise DatasetError(f"cannot write to {folder} ({exc.strerror or exc}); choose "
                               f"another place with --data-dir or {ENV_DATA_DIR}") from None
        yield


def _check_writable(folder: Path) -> None:
    """Refuse a folder nothing can be written into before any source is tried: the failure is
    the folder's, not the sources'. The probe is an anonymous file, gone when closed."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise DatasetError(f"cannot write to {folder} ({exc.strerror or exc}); choose another "
                           f"place with --data-dir or {ENV_DATA_DIR}") from None


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
        load_verified(folder, f, spec)
    except DatasetError as exc:
        log.info("%s will be fetched again: %s", f.filename, exc)
        return False
    return True


def _install(candidate: Path, folder: Path, f: DataFile, spec: DatasetSpec) -> Path:
    """Verify ``candidate`` and rename it into the cache; on failure delete it and raise _Skip.

    The array is cached on the way, since verifying it has already parsed it.
    """
    try:
        array = verify_payload(candidate, f, spec)
    except DatasetError as exc:
        candidate.unlink(missing_ok=True)
        raise _Skip(str(exc).replace(f"{candidate}: ", "")) from None
    dest = folder / f.filename
    replace_durably(candidate, dest)
    write_cache(folder, f, file_key(dest), array)
    return dest


def _copy_from(source_dir: Path, folder: Path, f: DataFile, spec: DatasetSpec) -> Path:
    """Copy the gz file from ``source_dir``, or gzip its decompressed IDX file (named without
    ``.gz``, as some distributions ship them); either is verified by its payload."""
    gz, plain = source_dir / f.filename, source_dir / f.stem
    if not gz.is_file() and not plain.is_file():
        raise _Skip(f"neither {f.filename} nor {f.stem} is there")
    tmp = folder / f".{f.filename}.copy"  # a fixed name is safe: the caller holds the lock
    try:
        if gz.is_file():
            shutil.copyfile(gz, tmp)
        elif plain.stat().st_size > idx.MAX_PAYLOAD_BYTES:
            raise _Skip(f"{f.stem} is larger than {idx.MAX_PAYLOAD_BYTES} bytes")
        else:
            with open(plain, "rb") as source, open(tmp, "wb") as raw, gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, mtime=0) as out:
                shutil.copyfileobj(source, out)
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
    """Whether the host name did not resolve (no network, no such host), which no retry fixes.

    urllib3 2 says so with NameResolutionError, urllib3 1.26 with a NewConnectionError; both
    are caused by the resolver's socket.gaierror, so the cause chain is what is looked at.
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None),
                    *current.args]
    return False


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
            delay=0.5,  # a transfer that fails at once leaves its one error line and no bar
        ) as bar:
            for chunk in response.raw.stream(1 << 16, decode_content=False):
                out.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if total is not None and received != total:
        # urllib3 2 raises ProtocolError for this itself; 1.26 ends the stream quietly
        log.info("%s: %d of %d bytes", url, received, total)
        raise _Retry("connection broken mid-transfer (truncated body)")


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
            _check_writable(folder)
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
