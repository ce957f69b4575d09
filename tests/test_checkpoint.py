"""checkpoint.py: the training state and its file (the fault suite, test_faults_files.py,
damages it every other way)."""

from __future__ import annotations

import pytest

from mnist_twolayer.checkpoint import read_checkpoint
from mnist_twolayer.errors import CheckpointError


def test_damaged_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="checkpoint.npz: not a readable .npz file, "
                                              "perhaps truncated or damaged"):
        read_checkpoint(path)
