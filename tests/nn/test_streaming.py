"""The encoder over a stream equals the offline encoder on the whole utterance, however chunked."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gru_jax.nn import streaming
from gru_jax.nn.encoder import ModelConfig, SpeakerEncoder, init_params

F = 6
MAX_CHUNK = 9
CONFIGS = {
    "stats": ModelConfig(hidden=8, layers=2, embedding_dim=5, unroll=1, pooling="stats"),
    "attentive+residual+norm": ModelConfig(
        hidden=8,
        layers=2,
        embedding_dim=5,
        unroll=1,
        pooling="attentive",
        attention_dim=4,
        residual=True,
        layer_norm=True,
    ),
    "mean": ModelConfig(hidden=8, layers=1, embedding_dim=5, unroll=1, pooling="mean"),
}
PARAMS = {name: init_params(cfg, F, jax.random.key(3)) for name, cfg in CONFIGS.items()}


@partial(jax.jit, static_argnums=1)
def offline(params, cfg, feats, lengths):
    return SpeakerEncoder(cfg).apply({"params": params}, feats, lengths)


@partial(jax.jit, static_argnums=1)
def stream_step(params, cfg, state, frames, n_frames):
    return streaming.step(params, cfg, state, frames, n_frames)


def run_stream(name: str, utterances: list[np.ndarray], cuts: list[list[int]]) -> np.ndarray:
    """Feed each utterance in chunks (sizes from `cuts`, 0 allowed); all streams in one batch."""
    cfg, params = CONFIGS[name], PARAMS[name]
    n = len(utterances)
    state = streaming.init_state(cfg, n)
    positions = [0] * n
    emb = None
    for r in range(max(len(c) for c in cuts)):
        frames = np.zeros((n, MAX_CHUNK, F), np.float32)
        counts = np.zeros(n, np.int32)
        for s, (utt, sizes) in enumerate(zip(utterances, cuts, strict=True)):
            if r < len(sizes):
                take = utt[positions[s] : positions[s] + sizes[r]]
                frames[s, : len(take)] = take
                counts[s] = len(take)
                positions[s] += len(take)
        state, emb = stream_step(params, cfg, state, frames, counts)
    assert positions == [len(u) for u in utterances]
    np.testing.assert_array_equal(np.asarray(state.n_frames), positions)
    return np.asarray(emb)


def chunking(length: int):
    return st.lists(st.integers(0, MAX_CHUNK), min_size=1, max_size=8).map(
        lambda sizes: _cover(sizes, length)
    )


def _cover(sizes: list[int], length: int) -> list[int]:
    """Chunk sizes that add up to `length` (the drawn ones, cut or extended)."""
    out, left = [], length
    for size in sizes:
        out.append(min(size, left))
        left -= out[-1]
    while left:
        out.append(min(MAX_CHUNK, left))
        left -= out[-1]
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_stream_equals_offline_whatever_the_chunking(name, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    lengths = [int(n) for n in rng.integers(1, 30, size=3)]
    utterances = [rng.normal(size=(n, F)).astype(np.float32) for n in lengths]
    cuts = [data.draw(chunking(n)) for n in lengths]
    got = run_stream(name, utterances, cuts)
    padded = np.zeros((3, max(lengths), F), np.float32)
    for i, u in enumerate(utterances):
        padded[i, : len(u)] = u
    want = np.asarray(offline(PARAMS[name], CONFIGS[name], padded, np.array(lengths)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_state_size_does_not_depend_on_the_stream_length():
    cfg = CONFIGS["stats"]
    sizes = {jax.tree.map(lambda a: a.shape, streaming.init_state(cfg, 2)).__repr__()}
    state = streaming.init_state(cfg, 2)
    for _ in range(5):
        state, _ = stream_step(
            PARAMS["stats"], cfg, state, np.ones((2, MAX_CHUNK, F)), np.array([9, 4])
        )
        sizes.add(jax.tree.map(lambda a: a.shape, state).__repr__())
    assert len(sizes) == 1


def test_bidirectional_models_cannot_stream():
    with pytest.raises(ValueError, match="bidirectional"):
        streaming.init_state(ModelConfig(bidirectional=True), 1)
