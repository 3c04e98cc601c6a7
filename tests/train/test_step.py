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
