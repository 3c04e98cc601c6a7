"""The encoder over a stream: frames arrive in chunks, memory stays constant.

A unidirectional GRU needs only its last state to continue, so a stream's encoder state is one
state per layer plus the pooling statistics of the frames so far. Pooling statistics are merged
chunk by chunk with the parallel (Chan et al.) update of a weighted mean and sum of squared
deviations, in the frame of reference of the largest attention score seen so far (an online
softmax), so mean+std and attentive statistics pooling give what the offline encoder gives for
the whole stream, up to rounding. Statistics pooling is attentive pooling with every score 0.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gru_jax.nn.encoder import GRULayer, ModelConfig
from gru_jax.nn.pooling import STD_EPSILON, AttentiveStatsPooling

F32 = jnp.float32


class PoolState(NamedTuple):
    """Weighted statistics of a stream's frames so far, weights scaled by exp(-max_score)."""

    max_score: jax.Array  # [S]; -inf before the first frame
    weight: jax.Array  # [S]
    mean: jax.Array  # [S, D]
    sq_dev: jax.Array  # [S, D] weighted sum of squared deviations from the mean


class EncoderState(NamedTuple):
    hidden: tuple[jax.Array, ...]  # one [S, H] state per layer
    pool: PoolState
    n_frames: jax.Array  # [S] frames encoded so far


def check_streamable(cfg: ModelConfig) -> None:
    if cfg.bidirectional:
        raise ValueError(
            "a bidirectional model reads each utterance backwards from its end, so it cannot "
            "embed audio as it arrives; stream with a unidirectional model"
        )


def pooled_width(cfg: ModelConfig) -> int:
    """Width of the frames that are pooled (the last layer's output)."""
    return cfg.hidden


def init_state(cfg: ModelConfig, n_streams: int) -> EncoderState:
    check_streamable(cfg)
    width = pooled_width(cfg)
    return EncoderState(
        hidden=tuple(jnp.zeros((n_streams, cfg.hidden), F32) for _ in range(cfg.layers)),
        pool=PoolState(
            max_score=jnp.full((n_streams,), -jnp.inf, F32),
            weight=jnp.zeros((n_streams,), F32),
            mean=jnp.zeros((n_streams, width), F32),
            sq_dev=jnp.zeros((n_streams, width), F32),
        ),
        n_frames=jnp.zeros((n_streams,), jnp.int32),
    )


def _chunk_statistics(frames: jax.Array, scores: jax.Array, valid: jax.Array) -> PoolState:
    """The statistics of one chunk: frames [T, S, D], scores and valid [T, S]."""
    masked = jnp.where(valid, scores, -jnp.inf)
    top = masked.max(axis=0)
    safe_top = jnp.where(jnp.isfinite(top), top, 0.0)
    w = jnp.where(valid, jnp.exp(masked - safe_top), 0.0)
    total = w.sum(axis=0)
    share = w / jnp.maximum(total, 1e-30)
    mean = jnp.einsum("ts,tsd->sd", share, frames, precision=jax.lax.Precision.HIGHEST)
    dev = frames - mean[None]
    sq_dev = jnp.einsum("ts,tsd->sd", w, dev * dev, precision=jax.lax.Precision.HIGHEST)
    return PoolState(top, total, mean, sq_dev)


def merge(a: PoolState, b: PoolState) -> PoolState:
    """Statistics of the union of two sets of frames (Chan et al.'s pairwise update)."""
    top = jnp.maximum(a.max_score, b.max_score)
    safe = jnp.where(jnp.isfinite(top), top, 0.0)
    scale = lambda m: jnp.where(jnp.isfinite(m), jnp.exp(m - safe), 0.0)
    wa, wb = a.weight * scale(a.max_score), b.weight * scale(b.max_score)
    total = wa + wb
    frac_b = jnp.where(total > 0, wb / jnp.maximum(total, 1e-30), 0.0)[:, None]
    delta = b.mean - a.mean
    mean = a.mean + delta * frac_b
    sq_dev = (
        a.sq_dev * scale(a.max_score)[:, None]
        + b.sq_dev * scale(b.max_score)[:, None]
        + delta * delta * (wa[:, None] * frac_b)
    )
    return PoolState(top, total, mean, sq_dev)


def step(
    params: Any, cfg: ModelConfig, state: EncoderState, frames: jax.Array, n_frames: jax.Array
) -> tuple[EncoderState, jax.Array]:
    """Encode one chunk of frames [S, T, F] (n_frames[s] valid, at the front) and return the new
    state and every stream's embedding of all its frames so far [S, E] (undefined while a
    stream has no frames: `state.n_frames` says)."""
    check_streamable(cfg)
    x = jnp.swapaxes(frames.astype(F32), 0, 1)
    lengths = n_frames.astype(jnp.int32)
    hidden = []
    for layer in range(cfg.layers):
        x, h = GRULayer(cfg).apply(
            {"params": params[f"layer_{layer}"]}, x, lengths, initial_state=state.hidden[layer]
        )
        hidden.append(h)
    valid = jnp.arange(x.shape[0])[:, None] < lengths[None, :]
    x = jnp.where(valid[..., None], x, 0.0)
    if cfg.pooling == "attentive":
        pooling = AttentiveStatsPooling(cfg.attention_dim)
        scores = pooling.apply({"params": params["pooling"]}, x, method="scores")
    else:
        scores = jnp.zeros(valid.shape, F32)
    pool = merge(state.pool, _chunk_statistics(x, scores, valid))
    new_state = EncoderState(tuple(hidden), pool, state.n_frames + lengths)
    return new_state, embed_pooled(params, cfg, pool)


def embed_pooled(params: Any, cfg: ModelConfig, pool: PoolState) -> jax.Array:
    """The embedding layer applied to a stream's pooled statistics."""
    if cfg.pooling == "mean":
        pooled = pool.mean
    else:
        var = pool.sq_dev / jnp.maximum(pool.weight, 1e-30)[:, None]
        pooled = jnp.concatenate([pool.mean, jnp.sqrt(var + STD_EPSILON)], axis=-1)
    return nn.Dense(cfg.embedding_dim).apply({"params": params["embedding"]}, pooled)
