"""What decides a run: :class:`TrainConfig`, the presets, and the one place a run's settings are
checked before any data loads.

A setting that belongs to the network (hidden size, activation, init, dtype) or to the optimizer
(learning rate, momentum, betas, eps, weight decay) is checked by the function that network and
optimizer use themselves, so every check is written once and says the same thing wherever it
fires.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import ConfigError, check_choice
from .network import GRADIENT_METHODS, check_net_settings
from .optim import (
    OPTIMIZER_SETTINGS,
    OPTIMIZERS,
    SCHEDULES,
    SGD,
    check_optimizer_settings,
    optimizer_class,
)

SAMPLINGS = ("permutation", "replacement")


@dataclass
class TrainConfig:
    """Everything that decides a run. Saved as ``config.json``; presets fill it in."""

    dataset: str = "mnist"
    hidden: int = 256
    activation: str = "sigmoid"
    epochs: int | None = 8
    iters: int | None = None
    batch_size: int = 100
    lr: float = 0.2
    optimizer: str = "momentum"
    momentum: float = 0.9  # momentum and nesterov
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float | None = None  # adagrad, rmsprop, adam; None: the optimizer's default
    decay_rate: float = 0.99  # rmsprop
    weight_decay: float = 0.0
    schedule: str = "cosine"
    init: str = "xavier"
    weight_init_std: float = 0.01
    dtype: str = "float32"
    seed: int = 0
    val_size: int = 0
    train_size: int | None = None
    sampling: str = "permutation"
    gradient: str = "backprop"
    standardize: bool = True
    augment_shift: int = 0
    patience: int | None = None
    eval_every: int | None = None  # iterations between evaluations (None: once an epoch)
    preset: str = "default"

    def validate(self, n_train_available: int | None = None) -> None:
        """Raise ConfigError for any setting that cannot work (with this much training data,
        when ``n_train_available`` is given)."""
        check_net_settings(self.hidden, self.init, self.dtype, self.activation)
        check_optimizer_settings(self.optimizer, self.lr, self.weight_decay,
                                 self.optimizer_settings())
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("sampling", self.sampling, SAMPLINGS)
        check_choice("gradient method", self.gradient, GRADIENT_METHODS)
        checks: list[tuple[bool, str]] = [
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.val_size >= 0, f"validation size must be >= 0, got {self.val_size}"),
            (0 <= self.augment_shift <= 4,
             f"augmentation shift must be 0..4 pixels, got {self.augment_shift}"),
            ((self.epochs is None) != (self.iters is None),
             "give the budget as epochs or as iterations, not both"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.iters is None or self.iters >= 1, f"iterations must be >= 1, got {self.iters}"),
            (self.patience is None or self.patience >= 1,
             f"patience must be >= 1, got {self.patience}"),
            (self.eval_every is None or self.eval_every >= 1,
             f"evaluations must be at least 1 iteration apart, got {self.eval_every}"),
            (self.patience is None or self.val_size > 0,
             "early stopping (--patience) needs a validation split (--val-size)"),
            (self.weight_init_std > 0, "weight_init_std must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if n_train_available is None:
            return
        if self.val_size >= n_train_available:
            raise ConfigError(f"validation size {self.val_size} leaves no training data: the "
                              f"training set has {n_train_available} samples")
        available = n_train_available - self.val_size
        if self.train_size is not None and not 1 <= self.train_size <= available:
            raise ConfigError(f"train size must be 1..{available} (training samples left after "
                              f"the validation split), got {self.train_size}")
        n_train = self.train_size or available
        if self.batch_size > n_train:
            raise ConfigError(f"batch size {self.batch_size} is larger than the {n_train} "
                              f"training samples")

    def optimizer_settings(self) -> dict[str, Any]:
        """The optimizer hyperparameters besides lr and weight decay (each optimizer takes the
        ones it uses; None means its default)."""
        return {name: getattr(self, name) for name in OPTIMIZER_SETTINGS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config ``values`` describe; configs written before a setting existed (no
        ``activation``, no ``optimizer`` but ``nesterov``) read as the run they described."""
        values = _legacy_optimizer(dict(values))
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)


def setting_names() -> tuple[str, ...]:
    """The names of the settings a preset fills in and a caller may override (every field but
    ``preset``, which names where the others came from)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "preset")


def _legacy_optimizer(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with an ``optimizer``: before it existed, ``momentum`` and ``nesterov`` chose
    plain SGD (momentum 0), momentum or Nesterov; a ``nesterov`` key is read that way."""
    nesterov = values.pop("nesterov", None)
    if "optimizer" not in values:
        momentum = values.get("momentum", TrainConfig.momentum)
        values["optimizer"] = "nesterov" if nesterov else "momentum" if momentum else "sgd"
    elif nesterov is not None and bool(nesterov) != (values["optimizer"] == "nesterov"):
        raise ConfigError(f"nesterov={nesterov} contradicts optimizer "
                          f"{values['optimizer']!r}")
    return values


# The book's ch. 4 job: hidden 50, N(0, 0.01^2) init, lr 0.1, batches of 100 drawn with
# replacement, 10,000 iterations, plain SGD on [0, 1] inputs. In float32 (the book's images are
# float32; its float64 weights only make every product twice as slow); --dtype float64 gives the
# book's arithmetic to the last bit.
_BOOK_CH4 = dict(hidden=50, activation="sigmoid", init="normal", weight_init_std=0.01, lr=0.1,
                 optimizer="sgd", batch_size=100, epochs=None, iters=10000,
                 sampling="replacement", schedule="constant", standardize=False, dtype="float32")

PRESETS: dict[str, dict[str, Any]] = {
    "book": _BOOK_CH4,
    # >= 98% test in a few seconds: 256 sigmoid units on standardized inputs, momentum, cosine.
    "default": dict(hidden=256, init="xavier", lr=0.2, optimizer="momentum", momentum=0.9,
                    batch_size=100, epochs=8, iters=None, schedule="cosine", standardize=True,
                    dtype="float32"),
    # As far as a sigmoid two-layer net goes: wide, longer, weight decay, +-2 pixel shifts.
    "best": dict(hidden=800, init="xavier", lr=0.1, optimizer="nesterov", momentum=0.9,
                 batch_size=100, epochs=30, iters=None, schedule="cosine", weight_decay=5e-5,
                 augment_shift=2, standardize=True, dtype="float32"),
    "book-ch4": _BOOK_CH4,
    # The book's ch. 5 job (ch05/train_neuralnet.py): the same with a ReLU hidden layer.
    "book-ch5": dict(_BOOK_CH4, activation="relu"),
}


def config_from_preset(preset: str = "default", **overrides: Any) -> TrainConfig:
    """A config from a preset with ``overrides`` (None values are ignored) applied on top."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = _legacy_optimizer(dict(PRESETS[preset], preset=preset))
    given = {key: value for key, value in overrides.items() if value is not None}
    if "iters" in given and "epochs" not in given:
        values["epochs"] = None
    if "epochs" in given and "iters" not in given:
        values["iters"] = None
    _choose_optimizer(values["optimizer"], given)
    values.update(given)
    return TrainConfig.from_dict(values)


def _choose_optimizer(preset_optimizer: str, given: dict[str, Any]) -> None:
    """Settle ``given["optimizer"]`` and its learning rate, in place.

    Without ``optimizer``, the flags that chose it before it existed still do: ``nesterov``
    means Nesterov, and ``momentum`` on a plain-SGD or momentum preset means plain SGD (0) or
    momentum (> 0). A preset's learning rate was tuned for its optimizer: it carries over within
    the SGD family (an lr that multiplies the gradient), but AdaGrad, RMSprop and Adam take a
    step size per parameter, another quantity, so they get their own default lr unless ``lr``
    is given. A hyperparameter the chosen optimizer does not use is refused.
    """
    chosen = given.get("optimizer")
    nesterov = given.pop("nesterov", None)
    if nesterov and chosen not in (None, "nesterov"):
        raise ConfigError(f"--nesterov means --optimizer nesterov; it does not go with "
                          f"--optimizer {chosen}")
    optimizer, chosen_by_momentum = chosen or preset_optimizer, False
    if chosen is None and nesterov is not None:
        optimizer = "nesterov" if nesterov else (
            "momentum" if preset_optimizer == "nesterov" else preset_optimizer)
    if chosen is None and not nesterov and "momentum" in given and optimizer in (
            "sgd", "momentum"):
        optimizer, chosen_by_momentum = ("momentum" if given["momentum"] else "sgd"), True
    given["optimizer"] = optimizer
    cls = optimizer_class(optimizer)
    same_kind = issubclass(cls, SGD) and issubclass(optimizer_class(preset_optimizer), SGD)
    if "lr" not in given and optimizer != preset_optimizer and not same_kind:
        given["lr"] = cls.default_lr
    for name in OPTIMIZER_SETTINGS:
        if name in given and name not in cls.settings and not (
                name == "momentum" and chosen_by_momentum):
            users = [key for key, other in OPTIMIZERS.items() if name in other.settings]
            raise ConfigError(f"--{name.replace('_', '-')} does not apply to {optimizer} "
                              f"(it is a setting of {', '.join(users)})")


class SeedStreams(NamedTuple):
    """Independent random streams of one run, all from its seed: changing how the batches are
    drawn never changes the initial weights or the validation split."""

    init: np.random.Generator
    split: np.random.Generator
    batches: np.random.Generator


def seed_streams(seed: int) -> SeedStreams:
    return SeedStreams(*(np.random.default_rng(child)
                         for child in np.random.SeedSequence(seed).spawn(3)))
