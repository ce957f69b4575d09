"""Crash-safe file writing: every file is written to a temporary name in the same folder and
renamed into place, so a reader sees either the old file or the new one, never half of one.
And the one way .npz files are read back: without pickle, any damage a CheckpointError.

A temporary name carries our mark and the writer's process id
(``.NAME.mnist_twolayer.PID.RANDOM.tmp``). A process killed mid-write (SIGKILL, power loss)
leaves its temporary file behind; the next successful write into the same folder removes those
whose process is gone. Files without our mark are another program's and never touched.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock, renames stay atomic
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_MARK = "mnist_twolayer"
_TEMPORARY = re.compile(rf"^\..+\.{_MARK}\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file stands where a folder must be: say so
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename) from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{_MARK}.{os.getpid()}.", suffix=".tmp",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        replace_durably(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(target)  # a full disk's ENOSPC names no file: name the one lost
        raise
    remove_stale_temporaries(target.parent)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files in ``folder`` that a writer killed mid-write left behind (its
    process no longer exists); return them. Files of live processes are never touched."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None or _process_exists(int(match.group(1))):
            continue
        path = folder / name
        try:
            path.unlink()
        except OSError:  # gone already, or not ours to delete: leave it
            continue
        log.info("removed %s, left by a writer that no longer runs", path)
        removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or not a pid at all: not ours to judge
    return True


class FolderInUse(Exception):
    """Another process holds a folder's lock; ``holder`` is its process id, when known."""

    def __init__(self, folder: Path, holder: int | None) -> None:
        self.folder, self.holder = folder, holder
        super().__init__(f"{folder} is in use by process {holder or 'unknown'}")


@contextmanager
def folder_lock(folder: Path, *, wait: bool, on_wait: Callable[[], None] | None = None
                ) -> Iterator[None]:
    """Hold ``folder`` exclusively, so one process at a time writes into it.

    The lock is on the folder itself (flock on its descriptor), so taking it writes nothing
    there. With ``wait`` a second process blocks until the first is done (``on_wait`` is
    called first); without, it gets FolderInUse at once, naming the holder where the kernel
    says (/proc/locks). The kernel releases the lock of a process that dies, so a killed
    holder never blocks anyone. OSError if the folder cannot be opened.
    """
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise FolderInUse(folder, _lock_holder(fd)) from None
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock_holder(fd: int) -> int | None:
    """The process holding a flock on the file behind ``fd``, from Linux's /proc/locks."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii") as locks:
            for line in locks:
                fields = line.split()
                if "FLOCK" in fields and device in fields and "->" not in fields:
                    return int(fields[fields.index(device) - 1])
    except (OSError, ValueError):
        pass
    return None


def replace_durably(source: Path, target: Path) -> None:
    """Flush ``source`` to disk, then rename it over ``target`` (atomic within one folder)."""
    with open(source, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)


def _umask() -> int:
    """The process umask, read from /proc where Linux offers it: setting and restoring it
    would briefly give files made by other threads mode 0666."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def save_npz_atomic(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Save arrays uncompressed to ``path`` (an ``.npz``) atomically; object arrays refused."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"refusing to save object array {name!r}: it would need pickle")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write_npz(handle, arrays)


def write_npz(file: BinaryIO, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed .npz into the open binary ``file``: what np.savez
    writes, without pickle, and with the archive closed on every path, so a failed write (a
    full disk) raises once instead of again from an unclosed ZipFile's finalizer."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def read_npz(path: str | os.PathLike[str], kind: str) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, read without pickle. ``kind`` names what the file
    should be ("saved model", "checkpoint") in the CheckpointError any damage raises; no code
    from the file ever runs."""
    try:
        with open(path, "rb") as handle:  # decide by the magic, before numpy guesses pickle
            magic = handle.read(6)
        if magic == b"\x93NUMPY":
            raise CheckpointError(f"{path}: holds a single .npy array, not a {kind} (.npz)")
        if not magic.startswith(b"PK"):
            raise CheckpointError(f"{path}: not a readable .npz file (no zip header); the file "
                                  f"is damaged or not a {kind}")
        arrays = {}
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as exc:
                    raise CheckpointError(f"{path}: array {key!r} cannot be read without pickle "
                                          f"({exc}); not a file this package wrote") from None
                if not isinstance(arrays[key], np.ndarray):
                    raise CheckpointError(f"{path}: member {key!r} is not a NumPy array; the "
                                          f"file is damaged or not a {kind}")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable .npz file, perhaps truncated or damaged "
                              f"({exc})") from None
    return arrays
