"""Training-time randomness drawn per utterance: SpecAugment masks and dropout.

Every random draw is a function of a per-row key (`row_keys`: the step's key folded with the
row's index in the global batch), never of the device a row lands on. A run therefore takes the
same random masks on one device or eight, and can resume on another device count.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from gru_jax.core.config import Config


@dataclass(frozen=True)
class SpecAugmentConfig(Config):
    """SpecAugment (Park et al. 2019) on the features of training crops, on device."""

    enabled: bool = False
    time_masks: int = 2  # spans of frames set to zero per utterance
    max_time: int = 20  # widest time span, frames
    freq_masks: int = 2  # spans of feature bins set to zero per utterance
    max_freq: int = 10  # widest bin span

    def validate(self) -> None:
        for name in ("time_masks", "max_time", "freq_masks", "max_freq"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"SpecAugmentConfig.{name} must be >= 0, got {getattr(self, name)}"
                )


def row_keys(key: jax.Array, first_row: jax.Array | int, n_rows: int) -> jax.Array:
    """Keys of rows [first_row, first_row + n_rows) of a global batch: `key` folded with each index."""
    rows = first_row + jnp.arange(n_rows)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, rows)


def _spans(key: jax.Array, count: int, max_width: int, extent: jax.Array, size: int) -> jax.Array:
    """[size] bool: `count` spans of widths U{0..max_width}, inside [0, extent)."""
    width_key, start_key = jax.random.split(key)
    widths = jnp.minimum(jax.random.randint(width_key, (count,), 0, max_width + 1), extent)
    starts = jax.random.randint(start_key, (count,), 0, extent - widths + 1)
    pos = jnp.arange(size)
    inside = (pos >= starts[:, None]) & (pos < (starts + widths)[:, None])
    return jnp.any(inside, axis=0)


def spec_augment(
    keys: jax.Array, feats: jax.Array, lengths: jax.Array, cfg: SpecAugmentConfig
) -> jax.Array:
    """feats [B, T, F] with spans of frames and of bins set to 0, drawn per row from keys [B].

    Zero is the mean of normalised (CMVN) features. Time masks lie within each row's length and
    padding frames are never touched.
    """
    _, n_frames, n_feats = feats.shape
    zero = jnp.zeros((), feats.dtype)

    def one_row(key: jax.Array, row: jax.Array, length: jax.Array) -> jax.Array:
        time_key, freq_key = jax.random.split(key)
        in_time = _spans(time_key, cfg.time_masks, cfg.max_time, length, n_frames)
        in_freq = _spans(freq_key, cfg.freq_masks, cfg.max_freq, jnp.int32(n_feats), n_feats)
        valid = jnp.arange(n_frames) < length
        masked = valid[:, None] & (in_time[:, None] | in_freq[None, :])
        return jnp.where(masked, zero, row)

    return jax.vmap(one_row)(keys, feats, jnp.clip(lengths.astype(jnp.int32), 0, n_frames))


def row_dropout(keys: jax.Array, x: jax.Array, rate: float, salt: int) -> jax.Array:
    """Inverted dropout of time-major x [T, B, D] with each row's mask drawn from keys [B]."""
    if rate == 0.0:
        return x
    n_steps, _, width = x.shape
    draw = lambda k: jax.random.bernoulli(jax.random.fold_in(k, salt), 1.0 - rate, (n_steps, width))
    keep = jnp.swapaxes(jax.vmap(draw)(keys), 0, 1)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))
