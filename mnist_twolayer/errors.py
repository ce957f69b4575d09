"""Exception families. Each carries a message meant for a person: what was wrong, where, and
what to do. The CLI prints any of them as one ``error: ...`` line and exits 2."""


class MnistTwoLayerError(Exception):
    """Base of every error a user can cause; never a bug in this package."""


class DatasetError(MnistTwoLayerError):
    """A dataset could not be found, downloaded, verified or parsed."""


class CheckpointError(MnistTwoLayerError):
    """A model or checkpoint file is missing, damaged or does not fit."""


class ConfigError(MnistTwoLayerError):
    """A setting (flag, preset, argument) has a value that cannot work."""


class ImageError(MnistTwoLayerError):
    """An input image cannot be read or prepared."""


class TrainingError(MnistTwoLayerError):
    """Training cannot go on (for example the loss diverged)."""
