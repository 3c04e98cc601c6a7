"""Loading an encoder reads only its parameters and configs, and refuses mismatched checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru_jax.core.config import ConfigError, to_dict
from gru_jax.core.rundir import RunDir
from gru_jax.data.features import FeatureConfig
from gru_jax.infer.checkpoint import checkpoint_manager, load_encoder
from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.mesh import data_mesh
from gru_jax.train import checkpoint
from gru_jax.train.config import DataConfig, TrainConfig
from gru_jax.train.step import initial_state, train_parts


def _config(hidden: int) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(features=FeatureConfig(n_mels=16)),
        model=ModelConfig(hidden=hidden, layers=1, embedding_dim=8),
    )


def _save(run_dir, state_cfg: TrainConfig, meta_cfg: TrainConfig, n_devices: int = 2):
    mesh = data_mesh(jax.devices()[:n_devices])
    state = initial_state(train_parts(state_cfg, 5), mesh, 0)
    manager = checkpoint_manager(RunDir(run_dir), create=True)
    meta = {"config": to_dict(meta_cfg), "class_names": list("abcde")}
    checkpoint.save(manager, 3, state, meta)
    manager.wait_until_finished()
    manager.close()
    return state


def test_only_the_encoder_is_restored_onto_one_device(tmp_path):
    state = _save(tmp_path, _config(16), _config(16), n_devices=4)
    encoder = load_encoder(tmp_path)
    assert encoder.step == 3 and encoder.class_names == tuple("abcde")
    assert encoder.model == _config(16).model and encoder.features.n_mels == 16
    leaves = jax.tree.leaves(encoder.params)
    assert all(len(leaf.sharding.device_set) == 1 for leaf in leaves)
    for got, want in zip(leaves, jax.tree.leaves(state.params["encoder"]), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert "head" not in encoder.params and jnp.ndim(leaves[0]) >= 1


def test_a_checkpoint_whose_arrays_do_not_match_its_config_is_refused(tmp_path):
    _save(tmp_path, _config(16), _config(24))
    with pytest.raises(ConfigError, match="do not match the model config"):
        load_encoder(tmp_path)


def test_missing_runs_and_steps_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        load_encoder(tmp_path)
    _save(tmp_path, _config(16), _config(16))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 7 \(kept: \[3\]\)"):
        load_encoder(tmp_path, step=7)
