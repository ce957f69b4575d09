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

from .augment import AUGMENTATIONS, Distortions
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
    augment: str = "none"  # distortions of the training digits (see augment.py)
    max_shift: float = 2.0  # pixels, in y and in x (shift: whole pixels; affine: any)
    max_rotation: float = 15.0  # degrees
    max_scale: float = 0.15  # size between 1 - max_scale and 1 + max_scale
    max_shear: float = 15.0  # degrees of slant
    elastic_alpha: float = 34.0  # pixels
    elastic_sigma: float = 4.0  # pixels
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
        self._check_augmentation()
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

    def _check_augmentation(self) -> None:
        check_choice("augmentation", self.augment, AUGMENTATIONS)
        for name, low, high, unit in AUGMENT_LIMITS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low <= value <= high):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{name} ({flag}) must be in [{low:g}, {high:g}] {unit}, "
                                  f"got {value}")
        if self.augment == "shift" and self.max_shift != int(self.max_shift):
            raise ConfigError(f"--augment shift moves digits by whole pixels: max_shift "
                              f"(--max-shift) must be a whole number, got {self.max_shift}")

    def distortions(self) -> Distortions:
        """What ``augment`` and its limits ask of :mod:`augment`."""
        return Distortions(self.augment, self.max_shift, self.max_rotation, self.max_scale,
                           self.max_shear, self.elastic_alpha, self.elastic_sigma)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config ``values`` describe; configs written before a setting existed (no
        ``activation``, no ``optimizer`` but ``nesterov``, ``augment_shift`` for ``augment``)
        read as the run they described."""
        values = _legacy_optimizer(_legacy_augment(dict(values)))
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)


# (setting, low, high, unit): the range each distortion limit is checked against
AUGMENT_LIMITS = (
    ("max_shift", 0, 4, "pixels"),
    ("max_rotation", 0, 90, "degrees"),
    ("max_scale", 0, 0.5, "(a fraction of the size)"),
    ("max_shear", 0, 45, "degrees"),
    ("elastic_alpha", 0, 100, "pixels"),
    ("elastic_sigma", 0.5, 14, "pixels"),
)
_AUGMENT_LIMIT_NAMES = tuple(name for name, *_ in AUGMENT_LIMITS)
# which settings each distortion reads: giving another one is a mistake worth a word
_AUGMENT_SETTINGS = {"shift": {"max_shift"},
                     "affine": {"max_shift", "max_rotation", "max_scale", "max_shear"},
                     "elastic": {"elastic_alpha", "elastic_sigma"}}


def _legacy_augment(values: dict[str, Any]) -> dict[str, Any]:
    """A config saved before 2026-11-24 had ``augment_shift`` (pixels, 0 for none) where it now
    has ``augment`` and ``max_shift``: read it as what it meant."""
    if "augment_shift" not in values or "augment" in values:
        return values
    shift = values.pop("augment_shift")
    values.update(augment="shift" if shift else "none", max_shift=shift)
    return values


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
    # Strong in about two minutes: wide, longer, weight decay, +-2 pixel shifts.
    "best": dict(hidden=800, init="xavier", lr=0.1, optimizer="nesterov", momentum=0.9,
                 batch_size=100, epochs=30, iters=None, schedule="cosine", weight_decay=5e-5,
                 augment="shift", max_shift=2, standardize=True, dtype="float32"),
    "book-ch4": _BOOK_CH4,
    # The book's ch. 5 job (ch05/train_neuralnet.py): the same with a ReLU hidden layer.
    "book-ch5": dict(_BOOK_CH4, activation="relu"),
    # As good as a two-layer net has been (Simard et al. 2003: 0.7% error with elastic
    # distortions): `best`'s net and optimizer, a fresh elastic distortion of every digit every
    # time, half the learning rate and six times the epochs. Chosen on a validation split (the
    # README's Training section has the runs); about a quarter of an hour on two cores.
    "record": dict(hidden=800, init="xavier", lr=0.05, optimizer="nesterov", momentum=0.9,
                   batch_size=100, epochs=180, iters=None, schedule="cosine",
                   weight_decay=5e-5, augment="elastic", elastic_alpha=34.0, elastic_sigma=4.0,
                   standardize=True, dtype="float32"),
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
    config = TrainConfig.from_dict(values)
    used = set().union(*(settings for kind, settings in _AUGMENT_SETTINGS.items()
                         if kind in config.augment.split("+")))
    if unused := [name for name in _AUGMENT_LIMIT_NAMES if name in given and name not in used]:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        raise ConfigError(f"{flags} changes nothing with --augment {config.augment}; "
                          f"choose a distortion that uses it (see --help)")
    return config


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
    drawn never changes the initial weights or the validation split, and drawing a figure
    (augmentation.png) never changes the batches."""

    init: np.random.Generator
    split: np.random.Generator
    batches: np.random.Generator
    figures: np.random.Generator  # spawned fourth: the first three are as they always were


def seed_streams(seed: int) -> SeedStreams:
    return SeedStreams(*(np.random.default_rng(child)
                         for child in np.random.SeedSequence(seed).spawn(4)))
