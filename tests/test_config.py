"""config.py: presets, overrides and the one place a run's settings are checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnist_twolayer.checkpoint import Checkpoint, TrainState, read_checkpoint
from mnist_twolayer.config import (
    PRESETS,
    TrainConfig,
    config_from_preset,
    seed_streams,
    setting_names,
)
from mnist_twolayer.data import prepare_data
from mnist_twolayer.errors import ConfigError


@pytest.mark.parametrize("overrides, message", [
    (dict(val_size=60000), "validation size 60000 leaves no training data: the training set "
                           "has 60000 samples"),
    (dict(train_size=59001, val_size=1000), "train size must be 1..59000 (training samples "
                                            "left after the validation split), got 59001"),
    (dict(batch_size=600, train_size=500), "batch size 600 is larger than the 500 training "
                                           "samples"),
    (dict(patience=3), "early stopping (--patience) needs a validation split (--val-size)"),
])
def test_settings_that_cannot_work_are_config_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        config_from_preset("default", **overrides).validate(n_train_available=60000)
    assert str(info.value) == message


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden=0), "hidden_size must be a positive integer, not 0"),
    (dict(init="zeros"), "unknown init 'zeros'; choose one of normal, xavier, he"),
    (dict(dtype="float16"), "dtype must be float32 or float64, not float16"),
    (dict(lr=-1.0), "learning rate must be a positive number, got -1.0"),
    (dict(momentum=1.0), "momentum must be in [0, 1), got 1.0"),
    (dict(schedule="linear"), "unknown schedule 'linear'; choose one of constant, step, cosine"),
    (dict(sampling="shuffle"), "unknown sampling 'shuffle'; choose one of permutation, "
                               "replacement"),
    (dict(gradient="guess"), "unknown gradient method 'guess'; choose one of backprop, "
                             "autograd, numerical"),
    (dict(activation="tanh"), "unknown activation 'tanh'; choose one of sigmoid, relu"),
    (dict(optimizer="lion"), "unknown optimizer 'lion'; choose one of sgd, momentum, nesterov, "
                             "adagrad, rmsprop, adam"),
    (dict(optimizer="adam", beta1=1.0), "beta1 must be in [0, 1), got 1.0"),
    (dict(optimizer="adam", beta2=1.5), "beta2 must be in [0, 1), got 1.5"),
    (dict(optimizer="rmsprop", decay_rate=1.0), "decay rate must be in [0, 1), got 1.0"),
    (dict(optimizer="adagrad", eps=-1.0), "eps must be a positive number, got -1.0"),
    (dict(optimizer="adam", lr=0.0), "learning rate must be a positive number, got 0.0"),
])
def test_network_and_optimizer_settings_are_checked_by_their_own_rules(overrides, message):
    """The same words as TwoLayerNet and SGD use: one check, written once."""
    with pytest.raises(ConfigError) as info:
        config_from_preset("default", **overrides).validate()
    assert str(info.value) == message


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of book, default, "
                                          "best, book-ch4, book-ch5, record"):
        config_from_preset("fast")


def test_overrides_replace_the_preset_and_iters_replace_epochs():
    config = config_from_preset("book", hidden=64, lr=None, epochs=2)
    assert (config.hidden, config.lr, config.epochs, config.iters) == (64, 0.1, 2, None)
    assert config_from_preset("default", iters=5).epochs is None
    assert config.preset == "book"
    assert set(setting_names()) == set(TrainConfig.__dataclass_fields__) - {"preset"}
    assert all(set(values) <= set(setting_names()) for values in PRESETS.values())


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown config keys: colour, size"):
        TrainConfig.from_dict({"hidden": 3, "size": 1, "colour": "red"})


def test_a_wrong_setting_is_reported_before_any_data_is_looked_for(tmp_path):
    """An empty data folder would mean a download; the setting is refused first."""
    config = config_from_preset("default", momentum=0.0, nesterov=True)
    with pytest.raises(ConfigError, match="Nesterov momentum needs --momentum greater than 0"):
        prepare_data(config, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset, overrides, optimizer, lr", [
    # before --optimizer, --momentum and --nesterov chose among these three; they still do
    ("book", dict(momentum=0.9), "momentum", 0.1),
    ("default", dict(momentum=0.0), "sgd", 0.2),
    ("default", dict(momentum=0.5), "momentum", 0.2),
    ("default", dict(nesterov=True), "nesterov", 0.2),
    ("best", dict(nesterov=False), "momentum", 0.1),
    ("book", dict(nesterov=True, momentum=0.5), "nesterov", 0.1),
    # a preset's lr carries over within the SGD family ...
    ("default", dict(optimizer="sgd"), "sgd", 0.2),
    ("book", dict(optimizer="nesterov"), "nesterov", 0.1),
    # ... adagrad, rmsprop and adam take their own default unless --lr is given
    ("default", dict(optimizer="adam"), "adam", 0.001),
    ("book", dict(optimizer="adagrad"), "adagrad", 0.01),
    ("default", dict(optimizer="rmsprop", lr=0.003), "rmsprop", 0.003),
])
def test_the_optimizer_and_its_learning_rate_follow_the_flags(preset, overrides, optimizer, lr):
    config = config_from_preset(preset, **overrides)
    assert (config.optimizer, config.lr) == (optimizer, lr)
    config.validate()


def test_legacy_momentum_keeps_its_value_and_new_optimizers_their_settings():
    assert config_from_preset("book", nesterov=True, momentum=0.5).momentum == 0.5
    config = config_from_preset("default", optimizer="adam", beta1=0.8, eps=1e-7)
    assert (config.beta1, config.beta2, config.eps) == (0.8, 0.999, 1e-7)
    assert config.optimizer_settings() == dict(momentum=0.9, beta1=0.8, beta2=0.999, eps=1e-7,
                                               decay_rate=0.99)


@pytest.mark.parametrize("overrides, message", [
    (dict(optimizer="adam", momentum=0.5), "--momentum does not apply to adam (it is a setting "
                                           "of momentum, nesterov)"),
    (dict(optimizer="sgd", beta1=0.5), "--beta1 does not apply to sgd (it is a setting of "
                                       "adam)"),
    (dict(decay_rate=0.9), "--decay-rate does not apply to momentum (it is a setting of "
                           "rmsprop)"),
    (dict(optimizer="momentum", eps=1e-8), "--eps does not apply to momentum (it is a setting "
                                           "of adagrad, rmsprop, adam)"),
    (dict(optimizer="adam", nesterov=True), "--nesterov means --optimizer nesterov; it does not "
                                            "go with --optimizer adam"),
])
def test_a_setting_the_chosen_optimizer_does_not_use_is_refused(overrides, message):
    with pytest.raises(ConfigError) as info:
        config_from_preset("default", **overrides)
    assert str(info.value) == message


# --- augmentation settings ---

NEW_SETTINGS = ("augment", "max_shift", "max_rotation", "max_scale", "max_shear",
                "elastic_alpha", "elastic_sigma")  # what replaced augment_shift on 2026-11-24


@pytest.mark.parametrize("overrides, message", [
    (dict(augment="blur"), "unknown augmentation 'blur'; choose one of none, shift, affine, "
                           "elastic, affine+elastic"),
    (dict(augment="shift", max_shift=5), "max_shift (--max-shift) must be in [0, 4] pixels, "
                                         "got 5"),
    (dict(augment="shift", max_shift=1.5), "--augment shift moves digits by whole pixels: "
                                           "max_shift (--max-shift) must be a whole number, "
                                           "got 1.5"),
    (dict(augment="affine", max_rotation=91.0), "max_rotation (--max-rotation) must be in "
                                                "[0, 90] degrees, got 91.0"),
    (dict(augment="affine", max_scale=0.6), "max_scale (--max-scale) must be in [0, 0.5] (a "
                                            "fraction of the size), got 0.6"),
    (dict(augment="affine", max_shear=-1.0), "max_shear (--max-shear) must be in [0, 45] "
                                             "degrees, got -1.0"),
    (dict(augment="elastic", elastic_alpha=float("nan")), "elastic_alpha (--elastic-alpha) "
                                                          "must be in [0, 100] pixels, got nan"),
    (dict(augment="elastic", elastic_sigma=0.1), "elastic_sigma (--elastic-sigma) must be in "
                                                 "[0.5, 14] pixels, got 0.1"),
    (dict(augment="affine+elastic", elastic_sigma="4"), "elastic_sigma (--elastic-sigma) must "
                                                        "be in [0.5, 14] pixels, got 4"),
])
def test_augmentation_settings_out_of_range_are_config_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        config_from_preset("default", **overrides).validate()
    assert str(info.value) == message


@pytest.mark.parametrize("overrides, message", [
    (dict(max_rotation=10.0), "--max-rotation changes nothing with --augment none; choose a "
                              "distortion that uses it (see --help)"),
    (dict(augment="elastic", max_shift=1.0, max_shear=5.0),
     "--max-shift, --max-shear changes nothing with --augment elastic; choose a distortion "
     "that uses it (see --help)"),
    (dict(augment="shift", elastic_sigma=3.0), "--elastic-sigma changes nothing with --augment "
                                               "shift; choose a distortion that uses it (see "
                                               "--help)"),
])
def test_a_limit_the_chosen_distortion_does_not_use_is_refused(overrides, message):
    with pytest.raises(ConfigError) as info:
        config_from_preset("default", **overrides)
    assert str(info.value) == message


def test_a_config_written_before_optimizer_and_activation_reads_as_its_run():
    """config.json (and a checkpoint's config) as written until 2026-11-24."""
    old = dict(dataset="mnist", hidden=800, epochs=30, iters=None, batch_size=100, lr=0.1,
               momentum=0.9, nesterov=True, weight_decay=5e-05, schedule="cosine",
               init="xavier", weight_init_std=0.01, dtype="float32", seed=0, val_size=0,
               train_size=None, sampling="permutation", gradient="backprop", standardize=True,
               augment_shift=2, patience=None, preset="best")
    assert TrainConfig.from_dict(old) == config_from_preset("best")
    assert TrainConfig.from_dict(dict(old, nesterov=False)).optimizer == "momentum"
    book = TrainConfig.from_dict(dict(old, momentum=0.0, nesterov=False))
    assert (book.optimizer, book.activation) == ("sgd", "sigmoid")
    with pytest.raises(ConfigError, match="nesterov=True contradicts optimizer 'adam'"):
        TrainConfig.from_dict(dict(old, optimizer="adam"))


def test_book_presets():
    """book-ch4 is book; book-ch5 is the same job with ReLU (ch05/train_neuralnet.py)."""
    assert config_from_preset("book-ch4").to_dict() == dict(
        config_from_preset("book").to_dict(), preset="book-ch4")
    ch5 = config_from_preset("book-ch5")
    assert dict(ch5.to_dict(), activation="sigmoid", preset="book") == config_from_preset(
        "book").to_dict()
    assert (ch5.activation, ch5.hidden, ch5.init, ch5.weight_init_std, ch5.lr, ch5.optimizer,
            ch5.batch_size, ch5.sampling, ch5.iters, ch5.schedule, ch5.standardize) == (
        "relu", 50, "normal", 0.01, 0.1, "sgd", 100, "replacement", 10000, "constant", False)


def test_each_distortion_takes_its_own_limits():
    config = config_from_preset("default", augment="affine+elastic", max_shift=1.5,
                                max_rotation=10.0, max_scale=0.1, max_shear=5.0,
                                elastic_alpha=30.0, elastic_sigma=5.0)
    d = config.distortions()
    assert (d.kind, d.max_shift, d.max_rotation, d.max_scale, d.max_shear, d.elastic_alpha,
            d.elastic_sigma) == ("affine+elastic", 1.5, 10.0, 0.1, 5.0, 30.0, 5.0)
    assert config_from_preset("best").distortions().kind == "shift"
    assert config_from_preset("best").distortions().max_shift == 2


@pytest.mark.parametrize("shift, kind", [(2, "shift"), (0, "none")])
def test_a_config_saved_before_augment_existed_reads_as_it_meant(shift, kind):
    old = {k: v for k, v in config_from_preset("best").to_dict().items()
           if k not in NEW_SETTINGS}
    config = TrainConfig.from_dict({**old, "augment_shift": shift})
    assert (config.augment, config.max_shift) == (kind, shift)
    config.validate()


def test_a_checkpoint_saved_before_augment_existed_still_loads(tmp_path):
    """Its meta holds augment_shift and none of the new settings."""
    params = {"W1": np.zeros((784, 4), np.float32), "b1": np.zeros(4, np.float32),
              "W2": np.zeros((4, 10), np.float32), "b2": np.zeros(10, np.float32)}
    path = tmp_path / "checkpoint.npz"
    Checkpoint(config_from_preset("best", hidden=4), TrainState(), params, {}, None,
               np.random.default_rng(0).bit_generator.state).save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = dict(archive)
    meta = json.loads(str(arrays["meta"][()]))
    for name in NEW_SETTINGS:
        del meta["config"][name]
    meta["config"]["augment_shift"] = 2
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    loaded = read_checkpoint(path).config
    assert (loaded.augment, loaded.max_shift, loaded.hidden) == ("shift", 2, 4)


def test_the_figure_stream_leaves_the_other_streams_as_they_were():
    """The figures' generator was spawned fourth: the first three, and with them every run
    made before it existed, are unchanged."""
    streams = seed_streams(5)
    children = np.random.SeedSequence(5).spawn(3)
    for stream, child in zip(streams[:3], children, strict=True):
        assert stream.random() == np.random.default_rng(child).random()
    assert streams.figures.random() != streams.batches.random()
