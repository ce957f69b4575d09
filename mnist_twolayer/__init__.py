"""mnist_twolayer: a NumPy two-layer network trainer for MNIST.

The public API keeps the names of "Deep Learning from Scratch" (ch. 4-5).
"""

from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    MnistTwoLayerError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageError",
    "MnistTwoLayerError",
    "TrainingError",
    "__version__",
]
