"""Pooled statistics against NumPy, and their gradient against the plain formula."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru_jax.nn.pooling import STD_EPSILON, masked_mean_std, weighted_mean_std


@pytest.mark.parametrize("time_axis", [0, 1])
def test_weighted_mean_std_matches_two_pass_numpy(time_axis):
    """One-pass statistics agree with the two-pass formula, also for frames far from zero."""
    rng = np.random.default_rng(3)
    frames = 3.0 + 0.1 * rng.standard_normal((50, 6, 8))  # [T, B, D]: mean 3, std 0.1
    frames[:, 0] = rng.uniform(-1, 1, (50, 8))  # and one GRU-like (|x| < 1) sequence
    weights = rng.uniform(0, 1, (50, 6)) * (rng.uniform(size=(50, 6)) < 0.7)
    weights /= weights.sum(0, keepdims=True)
    mean = (weights[..., None] * frames).sum(0)
    var = (weights[..., None] * (frames - mean) ** 2).sum(0)
    if time_axis == 1:
        frames, weights = frames.transpose(1, 0, 2), weights.T
    got_mean, got_std = weighted_mean_std(
        jnp.asarray(frames, jnp.float32), jnp.asarray(weights, jnp.float32), time_axis=time_axis
    )
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_std, np.sqrt(var + STD_EPSILON), rtol=1e-5)  # one-pass: 2e-4


def test_weighted_mean_std_gradient_matches_the_plain_formula():
    """Cutting the mean's path in the variance loses nothing when the weights sum to 1."""
    rng = np.random.default_rng(4)
    frames = jnp.asarray(rng.standard_normal((20, 3, 5)), jnp.float32)
    scores = jnp.asarray(rng.standard_normal((20, 3)), jnp.float32)
    probe = jnp.asarray(rng.standard_normal((3, 10)), jnp.float32)

    def plain(frames, weights):
        mean = jnp.sum(weights[..., None] * frames, axis=0)
        var = jnp.sum(weights[..., None] * jnp.square(frames - mean), axis=0)
        return mean, jnp.sqrt(var + STD_EPSILON)

    def loss(stats, frames, scores):  # attention-like weights that depend on the inputs
        weights = jax.nn.softmax(scores + frames.sum(-1), axis=0)
        return jnp.sum(jnp.concatenate(stats(frames, weights), axis=-1) * probe)

    ours = jax.grad(partial(loss, weighted_mean_std), argnums=(0, 1))(frames, scores)
    reference = jax.grad(partial(loss, plain), argnums=(0, 1))(frames, scores)
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("time_axis", [0, 1])
def test_masked_mean_std_uses_each_rows_own_frames(time_axis):
    rng = np.random.default_rng(5)
    frames = rng.standard_normal((9, 3, 4)).astype(np.float32)  # [T, B, D]
    lengths = np.array([9, 4, 0])  # length 0 pools the first frame
    want = [frames[: max(n, 1), b] for b, n in enumerate(lengths)]
    if time_axis == 1:
        frames = frames.transpose(1, 0, 2)
    mean, std = masked_mean_std(jnp.asarray(frames), jnp.asarray(lengths), time_axis)
    np.testing.assert_allclose(mean, [w.mean(0) for w in want], atol=1e-6)
    np.testing.assert_allclose(std, [np.sqrt(w.var(0) + STD_EPSILON) for w in want], rtol=1e-5)
