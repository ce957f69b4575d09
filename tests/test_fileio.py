"""Crash-safe writes give the file the mode any other new file would get."""

from __future__ import annotations

import os
import stat

import pytest

from mnist_twolayer.fileio import write_text_atomic


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
