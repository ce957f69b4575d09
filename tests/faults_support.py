"""Helpers shared by the test_faults_* suites: a small real-MNIST dataset registered for one
test, stubs that keep figures out of runs whose figures are not under test, a SIGKILL at a
chosen moment or iteration, and a folder made read-only."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnist_twolayer import idx, plots
from mnist_twolayer.datasets import DATASETS, DIGITS, mnist_layout

REPO = Path(__file__).resolve().parent.parent
MINI_TRAIN, MINI_TEST = 600, 200
_STEMS = {("train", "images"): "train-images-idx3-ubyte",
          ("train", "labels"): "train-labels-idx1-ubyte",
          ("test", "images"): "t10k-images-idx3-ubyte",
          ("test", "labels"): "t10k-labels-idx1-ubyte"}


@functools.lru_cache(maxsize=1)
def mini_arrays() -> dict[tuple[str, str], np.ndarray]:
    """The first 600 training and 200 test digits of the real MNIST."""
    arrays = {}
    for (split, kind), stem in _STEMS.items():
        n = MINI_TRAIN if split == "train" else MINI_TEST
        arrays[split, kind] = idx.read_idx(REPO / "data" / "mnist" / f"{stem}.gz")[:n].copy()
    return arrays


def register_mini(monkeypatch: pytest.MonkeyPatch, data_dir: Path, name: str = "mini",
                  class_names: tuple[str, ...] = DIGITS) -> Path:
    """Register dataset ``name`` (no mirrors; the mini digits, under ``class_names``) with its
    verified gz files in ``data_dir/name``; return ``data_dir`` for ``--data-dir``."""
    sha = {}
    for key, array in mini_arrays().items():
        idx.write_idx(data_dir / name / f"{_STEMS[key]}.gz", array)
        sha[_STEMS[key]] = hashlib.sha256(idx.encode_idx(array)).hexdigest()
    monkeypatch.setitem(DATASETS, name, mnist_layout(name, sha, mirrors=(),
                                                     class_names=class_names))
    return data_dir


def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the five figures of a run no-ops: matplotlib costs seconds and is tested elsewhere."""
    for name in ("plot_loss", "plot_accuracy", "plot_confusion", "plot_misclassified",
                 "plot_weights"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: None)


def one_error_line(err: str) -> str:
    """The text of the single ``error: ...`` line that ``err`` must be; fails otherwise."""
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert err.startswith("error: ") and "Traceback" not in err, repr(err)
    return err[len("error: "):-1]


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it exits or time runs out
    first. The process never outlives the call."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"not ready within {timeout} s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new entries, for root too (root ignores permission bits, so it
    gets the immutable attribute); skip when neither works here."""
    root = os.geteuid() == 0
    if not root:
        folder.chmod(0o555)
    elif not shutil.which("chattr"):
        pytest.skip("running as root, without chattr to make a folder read-only")
    else:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"running as root, and chattr +i fails here: {done.stderr.strip()}")
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip(f"{folder} stays writable here")
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def interrupt_at(trainer: Any, call: int, signum: int) -> None:
    """Deliver a real signal to this process during the gradient of iteration ``call`` of
    ``trainer`` (a Trainer), as a user's Ctrl-C or kill would."""
    original = trainer.net.loss_and_gradient
    calls = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    trainer.net.loss_and_gradient = wrapped
