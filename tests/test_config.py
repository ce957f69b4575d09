"""config.py: presets, overrides and the one place a run's settings are checked."""

from __future__ import annotations

import pytest

from mnist_twolayer.config import PRESETS, TrainConfig, config_from_preset, setting_names
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
])
def test_network_and_optimizer_settings_are_checked_by_their_own_rules(overrides, message):
    """The same words as TwoLayerNet and SGD use: one check, written once."""
    with pytest.raises(ConfigError) as info:
        config_from_preset("default", **overrides).validate()
    assert str(info.value) == message


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of book, default, "
                                          "best"):
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
