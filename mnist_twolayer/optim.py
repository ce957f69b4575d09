"""The book's ch. 6 optimizers and the learning-rate schedules.

Every optimizer follows ``torch.optim``'s definition, so that momentum, weight decay and a
changing learning rate compose the way practitioners expect, and keeps the book's class names
(``common/optimizer.py``)::

    g = grad + weight_decay * param                 (L2 decay: weights only, never biases)
    SGD       param -= lr * g
    Momentum  v = momentum * v + g;  param -= lr * v
    Nesterov  v = momentum * v + g;  param -= lr * (g + momentum * v)
    AdaGrad   h += g * g;  param -= lr * g / (sqrt(h) + eps)
    RMSprop   h = decay_rate * h + (1 - decay_rate) * g * g;  param -= lr * g / (sqrt(h) + eps)
    Adam      m += (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g;  t += 1
              param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

Where the book writes them otherwise: its Momentum and Nesterov keep ``-lr * v`` as their
velocity, which is the same update while lr is constant and differs once a schedule changes
it (ours applies today's lr to the whole velocity); its Adam adds eps to ``sqrt(v)`` before the
bias correction, i.e. an eps larger by ``1 / sqrt(1 - beta2**t)`` (31.6 times at step 1); its
eps is 1e-7 everywhere, torch's (ours) 1e-10 for AdaGrad and 1e-8 for RMSprop and Adam.
Updates are in place and in the parameters' dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from .errors import ConfigError, check_choice

SCHEDULES = ("constant", "step", "cosine")


def _check_lr_and_decay(lr: float, weight_decay: float) -> None:
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}")


def _check_eps(eps: float) -> None:
    if not (eps > 0 and math.isfinite(eps)):
        raise ConfigError(f"eps must be a positive number, got {eps}")


class Optimizer:
    """What every optimizer shares: the learning rate, weight decay on the weights, the count
    of updates, and its per-parameter state arrays (``state[group][key]``), created at the
    first update and saved by group (``velocity/W1``, ``adam_m/W1`` ...)."""

    name: ClassVar[str]
    default_lr: ClassVar[float]
    """The learning rate its constructor defaults to (the book's and torch's)."""
    settings: ClassVar[tuple[str, ...]] = ()
    """Its hyperparameters besides lr and weight decay, named as TrainConfig names them."""
    groups: ClassVar[tuple[str, ...]] = ()
    """The state arrays it keeps per parameter."""

    def __init__(self, lr: float, *, weight_decay: float = 0.0,
                 decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.decay_keys = decay_keys
        self.steps = 0  # updates taken (Adam's t)
        self.state: dict[str, dict[str, np.ndarray]] = {group: {} for group in self.groups}

    @staticmethod
    def check(lr: float, weight_decay: float = 0.0, **settings: Any) -> None:
        """Refuse settings this optimizer cannot work with; TrainConfig checks a run's settings
        here before any data loads."""
        _check_lr_and_decay(lr, weight_decay)

    @property
    def state_groups(self) -> tuple[str, ...]:
        """The groups of state arrays this optimizer holds (and a checkpoint with it) after its
        first update."""
        return self.groups

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray],
               lr: float | None = None) -> None:
        """Apply one step to ``params`` in place (at learning rate ``lr``, default
        ``self.lr``: the schedule's value). ``grads`` are left as they are."""
        step = self.lr if lr is None else lr
        self.steps += 1
        for key, param in params.items():
            grad = grads[key]
            if self.weight_decay and key in self.decay_keys:
                grad = grad + param.dtype.type(self.weight_decay) * param
            self._apply(key, param, grad, step)

    def _apply(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def _buffer(self, group: str, key: str, like: np.ndarray) -> np.ndarray:
        buffer = self.state[group].get(key)
        if buffer is None:
            buffer = self.state[group][key] = np.zeros_like(like)
        return buffer

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays that must be saved for a bit-identical resume (with :attr:`steps`)."""
        return {f"{group}/{key}": value for group in self.state_groups
                for key, value in self.state[group].items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray], steps: int = 0) -> None:
        """Take over arrays written by :meth:`state_dict` after ``steps`` updates."""
        self.state = {group: {name.split("/", 1)[1]: np.array(value)
                              for name, value in state.items()
                              if name.split("/", 1)[0] == group}
                      for group in self.groups}
        self.steps = steps


class SGD(Optimizer):
    """Minibatch SGD, as ``torch.optim.SGD``: optional momentum / Nesterov and L2 weight decay
    on weights. With ``momentum=0`` it is the book's plain ``param -= lr * grad``."""

    name = "sgd"
    default_lr = 0.01
    groups = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, *, nesterov: bool = False,
                 weight_decay: float = 0.0, decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        SGD.check(lr, weight_decay, momentum=momentum, nesterov=nesterov)
        self.momentum = momentum
        self.nesterov = nesterov
        super().__init__(lr, weight_decay=weight_decay, decay_keys=decay_keys)

    @staticmethod
    def check(lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
              nesterov: bool = False, **settings: Any) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check_fraction("momentum", momentum)
        if nesterov and momentum == 0.0:
            raise ConfigError("Nesterov momentum needs --momentum greater than 0")

    @property
    def state_groups(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum else ()

    @property
    def velocity(self) -> dict[str, np.ndarray]:
        return self.state["velocity"]

    def _apply(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        if self.momentum:
            velocity = self._buffer("velocity", key, param)
            velocity *= self.momentum
            velocity += grad
            direction = grad + param.dtype.type(self.momentum) * velocity if self.nesterov \
                else velocity
        else:
            direction = grad
        param -= param.dtype.type(lr) * direction


class Momentum(SGD):
    """The book's Momentum: SGD with momentum (0.9 unless told)."""

    name = "momentum"
    settings = ("momentum",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, *, weight_decay: float = 0.0,
                 decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        super().__init__(lr, momentum, weight_decay=weight_decay, decay_keys=decay_keys)


class Nesterov(SGD):
    """The book's Nesterov: SGD with Nesterov momentum (0.9 unless told)."""

    name = "nesterov"
    settings = ("momentum",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, *, weight_decay: float = 0.0,
                 decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        super().__init__(lr, momentum, nesterov=True, weight_decay=weight_decay,
                         decay_keys=decay_keys)

    @staticmethod
    def check(lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
              **settings: Any) -> None:
        SGD.check(lr, weight_decay, momentum=momentum, nesterov=True)


class AdaGrad(Optimizer):
    """Per-parameter steps that shrink with the sum of squared gradients so far."""

    name = "adagrad"
    default_lr = 0.01
    settings = ("eps",)
    groups = ("adagrad_h",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, *, weight_decay: float = 0.0,
                 decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        AdaGrad.check(lr, weight_decay, eps=eps)
        self.eps = eps
        super().__init__(lr, weight_decay=weight_decay, decay_keys=decay_keys)

    @staticmethod
    def check(lr: float, weight_decay: float = 0.0, eps: float = 1e-10,
              **settings: Any) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check_eps(eps)

    def _apply(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        h = self._buffer("adagrad_h", key, param)
        h += grad * grad
        kind = param.dtype.type
        param -= kind(lr) * grad / (np.sqrt(h) + kind(self.eps))


class RMSprop(Optimizer):
    """AdaGrad with a forgetting sum: an exponential moving average of squared gradients."""

    name = "rmsprop"
    default_lr = 0.01
    settings = ("decay_rate", "eps")
    groups = ("rmsprop_h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, eps: float = 1e-8, *,
                 weight_decay: float = 0.0, decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        RMSprop.check(lr, weight_decay, decay_rate=decay_rate, eps=eps)
        self.decay_rate = decay_rate
        self.eps = eps
        super().__init__(lr, weight_decay=weight_decay, decay_keys=decay_keys)

    @staticmethod
    def check(lr: float, weight_decay: float = 0.0, decay_rate: float = 0.99,
              eps: float = 1e-8, **settings: Any) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check_fraction("decay rate", decay_rate)
        _check_eps(eps)

    def _apply(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        h = self._buffer("rmsprop_h", key, param)
        kind = param.dtype.type
        h *= kind(self.decay_rate)
        h += kind(1.0 - self.decay_rate) * grad * grad
        param -= kind(lr) * grad / (np.sqrt(h) + kind(self.eps))


class Adam(Optimizer):
    """Momentum on the gradient and RMSprop's scale, both bias-corrected for their zero start."""

    name = "adam"
    default_lr = 0.001
    settings = ("beta1", "beta2", "eps")
    groups = ("adam_m", "adam_v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, *, weight_decay: float = 0.0,
                 decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        Adam.check(lr, weight_decay, beta1=beta1, beta2=beta2, eps=eps)
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        super().__init__(lr, weight_decay=weight_decay, decay_keys=decay_keys)

    @staticmethod
    def check(lr: float, weight_decay: float = 0.0, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8, **settings: Any) -> None:
        _check_lr_and_decay(lr, weight_decay)
        _check_fraction("beta1", beta1)
        _check_fraction("beta2", beta2)
        _check_eps(eps)

    def _apply(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        m = self._buffer("adam_m", key, param)
        v = self._buffer("adam_v", key, param)
        kind = param.dtype.type
        m += kind(1.0 - self.beta1) * (grad - m)
        v *= kind(self.beta2)
        v += kind(1.0 - self.beta2) * grad * grad
        step_size = lr / (1.0 - self.beta1 ** self.steps)
        denominator = np.sqrt(v)
        denominator /= kind(math.sqrt(1.0 - self.beta2 ** self.steps))
        denominator += kind(self.eps)
        param -= kind(step_size) * m / denominator


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}
OPTIMIZER_SETTINGS = ("momentum", "beta1", "beta2", "eps", "decay_rate")
"""Every optimizer hyperparameter besides lr and weight decay (each optimizer uses some)."""


def optimizer_class(name: str) -> type[Optimizer]:
    check_choice("optimizer", name, tuple(OPTIMIZERS))
    return OPTIMIZERS[name]


def check_optimizer_settings(name: str, lr: float, weight_decay: float,
                             settings: Mapping[str, Any]) -> None:
    """Refuse what optimizer ``name`` cannot work with: its own check, which its constructor
    runs too (``settings`` may hold others' hyperparameters; None means its default)."""
    cls = optimizer_class(name)
    cls.check(lr, weight_decay, **_own_settings(cls, settings))


def make_optimizer(name: str, lr: float, weight_decay: float = 0.0,
                   settings: Mapping[str, Any] | None = None) -> Optimizer:
    """Optimizer ``name`` with the hyperparameters it uses from ``settings`` (None: its
    default)."""
    cls = optimizer_class(name)
    return cls(lr, weight_decay=weight_decay, **_own_settings(cls, settings or {}))


def _own_settings(cls: type[Optimizer], settings: Mapping[str, Any]) -> dict[str, Any]:
    return {name: settings[name] for name in cls.settings if settings.get(name) is not None}


def make_schedule(name: str, base_lr: float, total_iterations: int, *,
                  step_every: int | None = None, gamma: float = 0.1) -> Callable[[int], float]:
    """Return ``lr(iteration)`` for iteration 0 .. total_iterations - 1.

    constant: base_lr throughout. step: multiply by ``gamma`` every ``step_every`` iterations
    (default: a third of the run). cosine: half a cosine from base_lr down to 0 at the end.
    A schedule is a pure function of the iteration, so a checkpoint only needs the iteration.
    """
    check_choice("schedule", name, SCHEDULES)
    if name == "constant":
        return lambda iteration: base_lr
    if name == "step":
        every = step_every or max(total_iterations // 3, 1)
        return lambda iteration: base_lr * gamma ** (iteration // every)
    total = max(total_iterations, 1)  # cosine
    return lambda iteration: 0.5 * base_lr * (1.0 + math.cos(math.pi * iteration / total))
