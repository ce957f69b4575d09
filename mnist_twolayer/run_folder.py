"""What a run folder holds, and one process at a time in it.

A run lives in one folder: ``config.json``, ``history.json`` / ``.csv`` (see :mod:`history`),
``checkpoint.npz`` (see :mod:`checkpoint`), and at the end ``model.npz``, ``metrics.json`` and
the figures (and ``augmentation.png`` in a run that distorts its digits). The trainer writes
them; evaluate, predict, plot and the digit pad read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import CheckpointError, ConfigError
from .fileio import FolderInUse, folder_lock

RUN_FILES = ("config.json", "history.json", "history.csv", "metrics.json", "model.npz",
             "checkpoint.npz")
FIGURES = ("loss.png", "accuracy.png", "confusion.png", "misclassified.png", "weights.png")
AUGMENTATION_FIGURE = "augmentation.png"  # in runs that distort their training digits


@contextmanager
def hold_run_folder(run_dir: Path, new: bool) -> Iterator[None]:
    """Hold the run folder for this process: a second train or --resume on it is refused in
    one line, and writes nothing. A folder this command created and left empty (a data load
    that failed) is removed while still held, so a failed command leaves nothing behind and
    never removes a folder another process won."""
    if not new and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir / 'checkpoint.npz'}: no checkpoint here; is this a "
                              f"run folder?" if not run_dir.exists() else
                              f"{run_dir} is a file; resume takes the run folder that holds "
                              f"checkpoint.npz")
    try:
        run_dir.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    try:
        with folder_lock(run_dir, wait=False):
            try:
                yield
            finally:
                if created and not any(run_dir.iterdir()):
                    with suppress(OSError):  # filled meanwhile: not ours to remove
                        run_dir.rmdir()
    except FolderInUse as busy:
        raise ConfigError(f"{run_dir} is in use by process {busy.holder or '(unknown)'}, a "
                          f"train or --resume running there; wait for it to end or choose "
                          f"another --out") from None
