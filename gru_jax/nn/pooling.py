"""Utterance-level pooling of frame outputs: masked mean and std, attentive statistics."""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

STD_EPSILON = 1e-5  # inside the sqrt of pooled stds: a finite gradient at zero variance


def weighted_mean_std(
    frames: jax.Array, weights: jax.Array, time_axis: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Mean and std over time of frames ([T, B, D], or [B, T, D] with time_axis=1) under
    weights ([T, B] or [B, T]) that sum to 1 over time.

    Both weighted sums are contractions over time, which XLA runs as matmuls rather than as
    long elementwise reductions. The variance is two-pass (centred on the mean) for accuracy,
    with the mean's gradient path cut: it contributes -2 * sum_t w_t (x_t - mean) = 0 when the
    weights sum to 1, and computing that zero is expensive. HIGHEST precision keeps
    accelerators from rounding the products to bfloat16.
    """
    spec = {0: "tb,tbd->bd", 1: "bt,btd->bd"}[time_axis]
    frames = frames.astype(jnp.float32)
    contract = partial(jnp.einsum, spec, weights, precision=lax.Precision.HIGHEST)
    mean = contract(frames)
    centred = frames - jnp.expand_dims(lax.stop_gradient(mean), time_axis)
    return mean, jnp.sqrt(contract(jnp.square(centred)) + STD_EPSILON)


def masked_mean_std(
    frames: jax.Array, lengths: jax.Array, time_axis: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Mean and std over each sequence's first `lengths[b]` frames (at least one frame)."""
    n_frames = frames.shape[time_axis]
    lengths = jnp.clip(lengths, 1, n_frames)
    t = jnp.arange(n_frames)
    valid = t[:, None] < lengths[None, :] if time_axis == 0 else t[None, :] < lengths[:, None]
    per_row = lengths[None, :] if time_axis == 0 else lengths[:, None]
    return weighted_mean_std(frames, valid / per_row, time_axis)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018): attention-weighted mean and std.

    The score e_t = v . tanh(W h_t + b) has no bias of its own: softmax over time ignores it.
    """

    attention_dim: int

    def setup(self) -> None:
        self.attention = nn.Dense(self.attention_dim)
        self.score = nn.Dense(1, use_bias=False)

    def scores(self, frames: jax.Array) -> jax.Array:
        """e_t for frames [..., D] -> [...] (a stream pools with these, see `nn.streaming`)."""
        return self.score(jnp.tanh(self.attention(frames)))[..., 0]

    def __call__(self, frames: jax.Array, valid: jax.Array) -> jax.Array:
        weights = jax.nn.softmax(jnp.where(valid, self.scores(frames), -jnp.inf), axis=0)
        return jnp.concatenate(weighted_mean_std(frames, weights), axis=-1)
