"""What decides a run: :class:`TrainConfig`, the presets, and the one place a run's settings are
checked before any data loads.

A setting that belongs to the network (hidden size, init, dtype) or to the optimizer (learning
rate, momentum, weight decay) is checked by the function that network and optimizer use
themselves, so every check is written once and says the same thing wherever it fires.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .augment import AUGMENTATIONS, Distortions
from .errors import ConfigError, check_choice
from .network import GRADIENT_METHODS, check_net_settings
from .optim import SCHEDULES, check_sgd_settings

SAMPLINGS = ("permutation", "replacement")


@dataclass
class TrainConfig:
    """Everything that decides a run. Saved as ``config.json``; presets fill it in."""

    dataset: str = "mnist"
    hidden: int = 256
    epochs: int | None = 8
    iters: int | None = None
    batch_size: int = 100
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = False
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
    preset: str = "default"

    def validate(self, n_train_available: int | None = None) -> None:
        """Raise ConfigError for any setting that cannot work (with this much training data,
        when ``n_train_available`` is given)."""
        check_net_settings(self.hidden, self.init, self.dtype)
        check_sgd_settings(self.lr, self.momentum, self.nesterov, self.weight_decay)
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
        values = _upgrade(values)
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


def _upgrade(values: dict[str, Any]) -> dict[str, Any]:
    """A config saved before 2026-11-24 had ``augment_shift`` (pixels, 0 for none) where it now
    has ``augment`` and ``max_shift``: read it as what it meant."""
    if "augment_shift" not in values or "augment" in values:
        return values
    values = dict(values)
    shift = values.pop("augment_shift")
    values.update(augment="shift" if shift else "none", max_shift=shift)
    return values


def setting_names() -> tuple[str, ...]:
    """The names of the settings a preset fills in and a caller may override (every field but
    ``preset``, which names where the others came from)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "preset")


PRESETS: dict[str, dict[str, Any]] = {
    # The book's ch. 4 job: hidden 50, N(0, 0.01^2) init, lr 0.1, batches of 100 drawn with
    # replacement, 10,000 iterations, plain SGD on [0, 1] inputs. In float32 (the book's images
    # are float32; its float64 weights only make every product twice as slow); --dtype float64
    # gives the book's arithmetic to the last bit.
    "book": dict(hidden=50, init="normal", weight_init_std=0.01, lr=0.1, momentum=0.0,
                 batch_size=100, epochs=None, iters=10000, sampling="replacement",
                 schedule="constant", standardize=False, dtype="float32"),
    # >= 98% test in a few seconds: 256 sigmoid units on standardized inputs, momentum, cosine.
    "default": dict(hidden=256, init="xavier", lr=0.2, momentum=0.9, batch_size=100, epochs=8,
                    iters=None, schedule="cosine", standardize=True, dtype="float32"),
    # Strong in about two minutes: wide, longer, weight decay, +-2 pixel shifts.
    "best": dict(hidden=800, init="xavier", lr=0.1, momentum=0.9, nesterov=True,
                 batch_size=100, epochs=30, iters=None, schedule="cosine", weight_decay=5e-5,
                 augment="shift", max_shift=2, standardize=True, dtype="float32"),
    # As good as a two-layer net has been (Simard et al. 2003: 0.7% error with elastic
    # distortions): `best`'s net and optimizer, a fresh elastic distortion of every digit every
    # time, half the learning rate and six times the epochs. Chosen on a validation split (the
    # README's Training section has the runs); about 10 minutes on two cores.
    "record": dict(hidden=800, init="xavier", lr=0.05, momentum=0.9, nesterov=True,
                   batch_size=100, epochs=180, iters=None, schedule="cosine",
                   weight_decay=5e-5, augment="elastic", elastic_alpha=34.0, elastic_sigma=4.0,
                   standardize=True, dtype="float32"),
}


def config_from_preset(preset: str = "default", **overrides: Any) -> TrainConfig:
    """A config from a preset with ``overrides`` (None values are ignored) applied on top."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset], preset=preset)
    given = {key: value for key, value in overrides.items() if value is not None}
    if "iters" in given and "epochs" not in given:
        values["epochs"] = None
    if "epochs" in given and "iters" not in given:
        values["iters"] = None
    values.update(given)
    config = TrainConfig.from_dict(values)
    used = set().union(*(settings for kind, settings in _AUGMENT_SETTINGS.items()
                         if kind in config.augment.split("+")))
    if unused := [name for name in _AUGMENT_LIMIT_NAMES if name in given and name not in used]:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        raise ConfigError(f"{flags} changes nothing with --augment {config.augment}; "
                          f"choose a distortion that uses it (see --help)")
    return config


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
