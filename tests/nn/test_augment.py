"""SpecAugment masks and dropout drawn per row: bounds, determinism, independence of the split."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru_jax.core.config import ConfigError
from gru_jax.nn.augment import SpecAugmentConfig, row_dropout, row_keys, spec_augment


def _runs(mask: np.ndarray) -> int:
    """Number of maximal runs of True in a 1-D bool array."""
    return int(np.sum(np.diff(np.concatenate([[0], mask.astype(int)])) == 1))


def test_spec_augment_masks_within_lengths_and_bounds():
    cfg = SpecAugmentConfig(enabled=True, time_masks=2, max_time=4, freq_masks=2, max_freq=3)
    lengths = np.array([30, 30, 9, 1, 0])
    feats = np.ones((len(lengths), 30, 12), np.float32)
    augment = jax.jit(partial(spec_augment, cfg=cfg))
    outputs = [
        np.asarray(augment(row_keys(jax.random.key(seed), 0, len(lengths)), feats, lengths))
        for seed in range(12)
    ]
    for out in outputs:
        for b, length in enumerate(lengths):
            zero = out[b] == 0
            assert not zero[length:].any(), "padding frames must stay untouched"
            frames = zero[:length].all(axis=1)
            assert _runs(frames) <= cfg.time_masks and frames.sum() <= cfg.time_masks * cfg.max_time
            kept = zero[:length][~frames]
            if len(kept):
                bins = kept.all(axis=0)
                assert _runs(bins) <= cfg.freq_masks and bins.sum() <= cfg.freq_masks * cfg.max_freq
                np.testing.assert_array_equal(kept, np.broadcast_to(bins, kept.shape))
    masked = np.stack(outputs) == 0
    assert masked[:, :2].any(axis=(2, 3)).all(), "full-length utterances get masked"
    assert any(not np.array_equal(out[0], out[1]) for out in outputs), "masks are per utterance"


def test_spec_augment_is_deterministic_per_key_and_independent_of_the_batch_split():
    cfg = SpecAugmentConfig(enabled=True)
    feats = jnp.asarray(np.random.default_rng(7).normal(size=(4, 20, 8)), jnp.float32)
    lengths = jnp.array([20, 12, 20, 7])
    keys = row_keys(jax.random.key(1), 0, 4)
    whole = spec_augment(keys, feats, lengths, cfg)
    np.testing.assert_array_equal(whole, spec_augment(keys, feats, lengths, cfg))
    # two devices with two rows each draw what one device with four rows draws
    halves = [spec_augment(row_keys(jax.random.key(1), 2 * d, 2), feats[2 * d : 2 * d + 2],
                           lengths[2 * d : 2 * d + 2], cfg) for d in range(2)]  # fmt: skip
    np.testing.assert_array_equal(whole, jnp.concatenate(halves))
    other = spec_augment(row_keys(jax.random.key(2), 0, 4), feats, lengths, cfg)
    assert not np.array_equal(whole, other)


def test_row_dropout_scales_kept_values_and_is_per_row():
    x = jnp.ones((50, 3, 40))
    keys = row_keys(jax.random.key(0), 0, 3)
    out = np.asarray(row_dropout(keys, x, 0.25, salt=1))
    assert set(np.unique(out).tolist()) <= {0.0, float(np.float32(1.0) / np.float32(0.75))}
    assert 0.2 < (out == 0).mean() < 0.3
    np.testing.assert_array_equal(out[:, 1:], row_dropout(keys[1:], x[:, 1:], 0.25, salt=1))
    assert not np.array_equal(out, row_dropout(keys, x, 0.25, salt=2))
    np.testing.assert_array_equal(row_dropout(keys, x, 0.0, salt=1), x)


def test_spec_augment_config_rejects_negative_counts():
    with pytest.raises(ValueError, match=r"SpecAugmentConfig.max_time"):
        SpecAugmentConfig(max_time=-1)
    with pytest.raises(ConfigError, match=r"SpecAugmentConfig.enabled"):
        SpecAugmentConfig(enabled="yes")
