"""Exception families. Each carries a message meant for a person: what was wrong, where, and
what to do. The CLI prints any of them as one ``error: ...`` line and exits 2."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path


class MnistTwoLayerError(Exception):
    """Base of every error a user can cause; never a bug in this package."""


class DatasetError(MnistTwoLayerError):
    """A dataset could not be found, downloaded, verified or parsed."""


class CheckpointError(MnistTwoLayerError):
    """A model or checkpoint file is missing, damaged or does not fit."""


class ConfigError(MnistTwoLayerError):
    """A setting (flag, preset, argument) has a value that cannot work."""


def check_choice(what: str, value: object, choices: Sequence[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices``, in the one wording every setting uses."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


class ImageError(MnistTwoLayerError):
    """An input image cannot be read or prepared."""


class NoDigitError(ImageError):
    """An image that reads fine but holds no digit (a blank page): the digit pad answers it
    with "no digit" rather than an error."""


class TrainingError(MnistTwoLayerError):
    """Training cannot go on (for example the loss diverged)."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived during training; the checkpoint and history were saved.

    Not a user error: the CLI answers it with the resume hint and exit status 130.
    """

    def __init__(self, run_dir: Path, iteration: int, signum: int) -> None:
        self.run_dir, self.iteration, self.signum = run_dir, iteration, signum
        super().__init__(f"interrupted by {signal.Signals(signum).name} at iteration {iteration}; "
                         f"checkpoint saved in {run_dir}")
