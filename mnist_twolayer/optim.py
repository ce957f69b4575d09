"""Optimizers and learning-rate schedules.

SGD follows PyTorch's formulation so that momentum, Nesterov and weight decay compose the way
practitioners expect::

    g = grad + weight_decay * param          (weights only, never biases)
    v = momentum * v + g
    param -= lr * (g + momentum * v)         (Nesterov)   or   lr * v   (classic)

With ``momentum=0`` this is the book's plain ``param -= lr * grad``. Updates are in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from .errors import ConfigError, check_choice

SCHEDULES = ("constant", "step", "cosine")


def check_sgd_settings(lr: float, momentum: float, nesterov: bool, weight_decay: float) -> None:
    """Refuse settings SGD cannot work with; TrainConfig checks a run's settings here before
    any data loads."""
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"learning rate must be a positive number, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
    if nesterov and momentum == 0.0:
        raise ConfigError("Nesterov momentum needs --momentum greater than 0")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ConfigError(f"weight decay must be >= 0, got {weight_decay}")


class SGD:
    """Minibatch SGD with optional momentum / Nesterov and L2 weight decay on weights."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, *, nesterov: bool = False,
                 weight_decay: float = 0.0, decay_keys: tuple[str, ...] = ("W1", "W2")) -> None:
        check_sgd_settings(lr, momentum, nesterov, weight_decay)
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.decay_keys = decay_keys
        self.velocity: dict[str, np.ndarray] = {}

    def update(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray],
               lr: float | None = None) -> None:
        """Apply one step to ``params`` in place. ``grads`` may be modified (it is scratch)."""
        step = self.lr if lr is None else lr
        for key, param in params.items():
            grad = grads[key]
            if self.weight_decay and key in self.decay_keys:
                grad = grad + param.dtype.type(self.weight_decay) * param
            if self.momentum:
                velocity = self.velocity.get(key)
                if velocity is None:
                    velocity = self.velocity[key] = np.zeros_like(param)
                velocity *= self.momentum
                velocity += grad
                direction = grad + param.dtype.type(self.momentum) * velocity if self.nesterov \
                    else velocity
            else:
                direction = grad
            param -= param.dtype.type(step) * direction

    def state_dict(self) -> dict[str, np.ndarray]:
        """The arrays that must be saved for a bit-identical resume."""
        return {f"velocity/{key}": value for key, value in self.velocity.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.velocity = {key.split("/", 1)[1]: np.array(value)
                         for key, value in state.items() if key.startswith("velocity/")}


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
