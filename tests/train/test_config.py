"""The training config tree: presets, overrides, resuming rules, and older saved layouts."""

from __future__ import annotations

import functools

import pytest

from gru_jax.core.config import ConfigError, config_hash, to_dict
from gru_jax.infer.checkpoint import encoder_configs, upgrade_config
from gru_jax.train.config import from_saved, resumed_config, with_overrides
from gru_jax.train.presets import PRESETS
from tests.train._tiny import tiny_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_round_trips(name):
    cfg = PRESETS[name]()
    assert from_saved(to_dict(cfg)) == cfg
    assert cfg.trainer.batch_size % max(cfg.data.speakers_per_batch, 1) == 0


@pytest.mark.parametrize(
    "field", ["model.residual", "model.bidirectional", "model.layer_norm", "spec_augment.enabled"]
)
def test_set_false_switches_a_bool_off(field):
    on = with_overrides(tiny_config(), {field: "true"})
    off = with_overrides(on, {field: "False"})
    value = lambda cfg: functools.reduce(getattr, field.split("."), cfg)
    assert value(on) is True and value(off) is False


def test_feature_hash_is_canonical():
    a = with_overrides(tiny_config(), {"data.features.fmax": "8000"})
    b = with_overrides(tiny_config(), {"data.features.fmax": "8000.0"})
    assert a.data.features.hash() == b.data.features.hash()
    assert config_hash(a) == config_hash(b)


def test_model_input_width_is_the_feature_width():
    cfg = with_overrides(tiny_config(), {"data.features.n_mels": "40"})
    assert cfg.n_features == 40
    with pytest.raises(ConfigError, match="unknown"):
        with_overrides(cfg, {"model.n_features": "40"})


def test_bad_override_values_are_config_errors():
    with pytest.raises(ConfigError, match=r"ModelConfig.hidden must be >= 1"):
        with_overrides(tiny_config(), {"model.hidden": "0"})
    with pytest.raises(ConfigError, match=r"trainer.steps='x': expected an integer"):
        with_overrides(tiny_config(), {"trainer.steps": "x"})
    for kind in ("ge2e", "ge2e+aam"):
        with pytest.raises(ConfigError, match="GE2E needs speaker-balanced"):
            with_overrides(tiny_config(), {"loss.kind": kind})


def test_resuming_allows_only_changes_that_keep_the_math():
    saved = tiny_config(trainer={"steps": 6})
    longer = resumed_config(saved, tiny_config(trainer={"steps": 12, "log_every": 3}))
    assert longer.trainer.steps == 12 and longer.optim.decay_steps == 6  # schedule horizon kept
    stretched = resumed_config(saved, tiny_config(trainer={"steps": 12}, optim={"decay_steps": 12}))
    assert stretched.optim.decay_steps == 12
    with pytest.raises(ConfigError, match=r"trainer.seed: saved 0, asked 1"):
        resumed_config(saved, tiny_config(trainer={"seed": 1}))
    with pytest.raises(ConfigError, match=r"model.hidden"):
        resumed_config(saved, tiny_config(model={"hidden": 8}))


def test_configs_saved_before_sections_existed_are_upgraded():
    old = {
        "features": to_dict(tiny_config().data.features),
        "model": {**to_dict(tiny_config().model), "n_features": 24},
        "loss": to_dict(tiny_config().loss),
        "optim": {k: v for k, v in to_dict(tiny_config().optim).items() if k != "decay_steps"},
        "steps": 6,
        "batch_size": 16,
        "crop_frames": 60,
        "min_frames": 30,
        "speakers_per_batch": 0,
        "spec_augment": False,
        "seed": 0,
        "log_every": 2,
        "eval_every": 3,
        "checkpoint_every": 2,
        "keep_checkpoints": 3,
        "val_speakers": 3,
        "val_trials": 200,
        "max_bad_steps": 5,
        "eval_max_frames": 32000,
    }
    assert from_saved(old) == tiny_config(data={"crop_cmn": False})  # as those runs trained
    features, model = encoder_configs(old)
    assert features == tiny_config().data.features and model == tiny_config().model
    assert upgrade_config(to_dict(tiny_config())) == to_dict(tiny_config())
    sectioned = to_dict(tiny_config())
    del sectioned["data"]["crop_cmn"]  # a run saved before the field: trained without it
    assert from_saved(sectioned) == tiny_config(data={"crop_cmn": False})
