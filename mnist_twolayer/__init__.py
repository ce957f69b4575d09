"""mnist_twolayer: a NumPy two-layer network trainer for MNIST.

The public API keeps the names of "Deep Learning from Scratch" (ch. 4-5)::

    from mnist_twolayer import load_mnist, TwoLayerNet

    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=False)
    net = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, seed=0)
    grads = net.gradient(x_train[:100], t_train[:100])            # backprop
    numeric = net.numerical_gradient(x_train[:3], t_train[:3])     # central differences
"""

__version__ = "0.1.0"  # before the imports: download puts it in its User-Agent

from .config import TrainConfig, config_from_preset  # noqa: E402
from .datasets import load_mnist
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    MnistTwoLayerError,
    NoDigitError,
    TrainingError,
    TrainingInterrupted,
)
from .functions import (
    cross_entropy_error,
    numerical_diff,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax,
    sum_squared_error,
)
from .gradcheck import gradcheck_mnist, run_gradcheck
from .gradient import gradient_descent, numerical_gradient
from .network import TwoLayerNet
from .optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from .trainer import Trainer

__all__ = [
    "SGD",
    "AdaGrad",
    "Adam",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageError",
    "MnistTwoLayerError",
    "Momentum",
    "Nesterov",
    "NoDigitError",
    "RMSprop",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "TwoLayerNet",
    "__version__",
    "config_from_preset",
    "cross_entropy_error",
    "gradcheck_mnist",
    "gradient_descent",
    "load_mnist",
    "numerical_diff",
    "numerical_gradient",
    "relu",
    "relu_grad",
    "run_gradcheck",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "sum_squared_error",
]
