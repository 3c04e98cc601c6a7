"""Streaming embeddings from audio: equal to offline, batched streams, bad chunks refused."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from gru_jax.data.audio import load_audio
from gru_jax.infer.model import EmbeddingModel
from gru_jax.infer.streaming import StreamError, StreamingEmbedder

RATE = 16000


@pytest.fixture(scope="module")
def running_model(run):
    """The trained run's encoder with causal (running) normalisation and VAD: streamable exactly."""
    encoder = run.model.encoder
    features = dataclasses.replace(encoder.features, cmn="running", vad="running")
    return EmbeddingModel(dataclasses.replace(encoder, features=features))


@pytest.fixture(scope="module")
def waves(run):
    files = sorted(run.corpus.wav_dir.rglob("*.wav"))[:3]
    return files, [load_audio(f, RATE) for f in files]


@pytest.fixture(scope="module")
def embedder(running_model):
    return StreamingEmbedder(running_model, n_streams=3, max_chunk_s=0.25)


def _push_in_chunks(embedder, waves, seed):
    """Feed every wave in random chunks (10-600 ms, some longer than the step's maximum)."""
    rng = np.random.default_rng(seed)
    for s in range(len(waves)):
        embedder.open(s)
    positions = [0] * len(waves)
    while any(p < len(w) for p, w in zip(positions, waves, strict=True)):
        chunks = {}
        for s, wave in enumerate(waves):
            if positions[s] < len(wave) and rng.random() < 0.8:  # streams advance unevenly
                size = int(rng.integers(160, 9600))
                chunks[s] = wave[positions[s] : positions[s] + size]
                positions[s] += len(chunks[s])
        if chunks:
            embedder.push(chunks, RATE)
    return [embedder.close(s) for s in range(len(waves))]


@pytest.mark.parametrize("seed", [0, 1])
def test_final_stream_embedding_equals_the_offline_one(embedder, running_model, waves, seed):
    files, audio = waves
    streamed = np.stack(_push_in_chunks(embedder, audio, seed))
    offline = running_model.embed_files(files)
    np.testing.assert_allclose(streamed, offline, rtol=1e-4, atol=1e-4 * np.abs(offline).max())


def test_streams_start_and_end_independently(embedder, running_model, waves):
    files, audio = waves
    embedder.open("a")
    update = embedder.push({"a": audio[0][:4000]}, RATE)["a"]
    assert update.seconds == pytest.approx(0.25) and update.n_frames > 0
    embedder.open("b")
    embedder.push({"a": audio[0][4000:], "b": audio[1][:8000]}, RATE)
    first = embedder.close("a")
    embedder.open("c")  # takes a's slot, from scratch
    embedder.push({"b": audio[1][8000:], "c": audio[2]}, RATE)
    second, third = embedder.close("b"), embedder.close("c")
    offline = running_model.embed_files(files)
    for got, want in zip((first, second, third), offline, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize(
    "chunk, rate, message",
    [
        (np.full(800, np.nan, np.float32), RATE, "NaN"),
        ((np.ones(800) * 3000).astype(np.int16), RATE, "floating point"),
        (np.zeros(800, np.float32), 8000, "8000 Hz"),
        (np.zeros(0, np.float32), RATE, "empty"),
        (np.zeros((800, 2), np.float32), RATE, "mono"),
    ],
    ids=["nan", "int16", "rate", "empty", "stereo"],
)
def test_bad_chunks_are_refused_and_leave_the_state_alone(
    embedder, running_model, waves, chunk, rate, message
):
    files, audio = waves
    embedder.open("x")
    embedder.push({"x": audio[0][:5000]}, RATE)
    with pytest.raises(StreamError, match=message):
        embedder.push({"x": chunk}, rate)
    embedder.push({"x": audio[0][5000:]}, RATE)
    want = running_model.embed_files(files[:1])[0]
    np.testing.assert_allclose(embedder.close("x"), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    with pytest.raises(StreamError, match="not open"):
        embedder.push({"x": audio[0][:800]}, RATE)


def test_a_model_with_utterance_normalisation_streams_with_running_variants(run, caplog):
    with caplog.at_level(logging.WARNING):
        embedder = StreamingEmbedder(run.model, n_streams=1)
    assert embedder.features.cmn == "running" and "running variants" in caplog.text
