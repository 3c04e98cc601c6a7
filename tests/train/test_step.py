"""The train step: the same run on any device count, and per-row randomness."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gru_jax.nn.mesh import data_mesh, put_rows
from gru_jax.train.loop import train_stream
from gru_jax.train.step import initial_state, make_train_step
from tests.train._tiny import tiny_config


@pytest.fixture
def data(tiny_data):
    return tiny_data


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _arrays(batch):
    return {
        "feats": batch.feats,
        "lengths": batch.lengths.astype(np.int32),
        "labels": batch.labels.astype(np.int32),
    }


def run_steps(cfg, data, n_devices: int, n_steps: int):
    mesh = data_mesh(jax.devices()[:n_devices])
    parts, step = make_train_step(cfg, data.n_classes, mesh)
    state = initial_state(parts, mesh, cfg.trainer.seed)
    stream = train_stream(cfg, data)
    losses = []
    for k in range(n_steps):
        state, metrics = step(state, put_rows(mesh, _arrays(stream.batch(k))))
        losses.append(float(metrics["loss"]))
    assert state.params["encoder"]["layer_0"]["fwd"]["w_hh"].sharding.mesh.size == n_devices
    return losses, _leaves(state.params)


@pytest.mark.parametrize(
    "sections",
    [{}, {"model": {"dropout": 0.3}, "spec_augment": {"enabled": True}}],
    ids=["plain", "dropout+specaugment"],
)
def test_four_devices_match_one_device(data, sections):
    """Random masks are drawn per row of the global batch, so they do not depend on the split."""
    assert jax.device_count() == 4, "conftest should provide 4 CPU devices"
    cfg = tiny_config(**sections)
    (loss1, params1), (loss4, params4) = (run_steps(cfg, data, n, 3) for n in (1, 4))
    np.testing.assert_allclose(loss1, loss4, rtol=1e-5)
    for a, b in zip(params1, params4, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(loss1[0], loss1[-1])  # the steps really trained


def test_dropout_and_specaugment_change_the_step(data):
    plain, _ = run_steps(tiny_config(), data, 1, 1)
    noisy, _ = run_steps(
        tiny_config(model={"dropout": 0.3}, spec_augment={"enabled": True}), data, 1, 1
    )
    assert plain[0] != pytest.approx(noisy[0], rel=1e-4)


def test_training_crops_are_normalised_as_utterances_of_their_length(data):
    """With utterance CMN (the default), each crop is centred on its own frames; `crop_cmn=false`
    keeps the stored frames, centred on their whole utterance."""
    centred = train_stream(tiny_config(), data).batch(0)
    stored = train_stream(tiny_config(data={"crop_cmn": False}), data).batch(0)
    np.testing.assert_array_equal(centred.index, stored.index)
    utterance_lengths = data.store.lengths[stored.index]
    offsets = []
    for row, n in enumerate(centred.lengths):
        frames = stored.feats[row, :n]
        np.testing.assert_allclose(centred.feats[row, :n], frames - frames.mean(axis=0), atol=1e-5)
        if n < utterance_lengths[row]:
            offsets.append(np.abs(frames.mean(axis=0)).max())
    assert offsets and min(offsets) > 1e-2  # a crop's mean is not its utterance's
