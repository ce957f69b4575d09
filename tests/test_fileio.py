"""Crash-safe writes: the mode any other new file would get, and no temporary file left by a
killed writer survives the next write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from mnist_twolayer.fileio import atomic_path, remove_stale_temporaries, write_text_atomic


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_respects_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
        assert os.umask(umask) == umask  # reading it left it as it was
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode
    assert (tmp_path / "f.txt").read_text() == "x"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_write_removes_temporaries_that_dead_writers_left_and_keeps_live_ones(tmp_path):
    """A writer SIGKILLed mid-write leaves .NAME.mnist_twolayer.PID.RANDOM.tmp behind; the next
    write into the folder removes it once that process is gone, and leaves a live process's file
    alone, and any file without our mark (another program's, even of a dead process)."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)  # that process has exited
    dead = tmp_path / f".model.npz.mnist_twolayer.{dead_pid}.k2j4_x.tmp"
    live = tmp_path / f".model.npz.mnist_twolayer.{os.getppid()}.abc123.tmp"  # parent: running
    unrelated = [tmp_path / ".notes.tmp", tmp_path / "data.tmp", tmp_path / ".a.b.tmp",
                 tmp_path / f".model.npz.{dead_pid}.k2j4_x.tmp",
                 tmp_path / f"model.npz.mnist_twolayer.{dead_pid}.k2j4_x.tmp"]
    for path in (dead, live, *unrelated):
        path.write_text("half")
    write_text_atomic(tmp_path / "f.txt", "x")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["f.txt", live.name, *(p.name for p in unrelated)])


def test_the_temporary_name_carries_the_writer_pid(tmp_path):
    with atomic_path(tmp_path / "f.txt") as tmp:
        assert tmp.name.startswith(f".f.txt.mnist_twolayer.{os.getpid()}.")
        assert tmp.name.endswith(".tmp")
        assert remove_stale_temporaries(tmp_path) == []  # our own, in use
        tmp.write_text("x")
    assert os.listdir(tmp_path) == ["f.txt"]
