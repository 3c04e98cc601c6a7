"""The streaming front end gives `compute_features` of the whole audio, however it is chunked."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gru_jax.data.features import CVN_FLOOR, FeatureConfig, compute_features
from gru_jax.infer.frontend import Frontend, FrontendState
from gru_jax.synth import draw_channel, draw_voice, synthesize_utterance

SR = 16000
HOP = 160
CHUNK = 4000  # the largest chunk a step takes, in samples
DURATIONS_S = (1.3, 0.6, 2.1)  # one stream each, so they end at different steps

CONFIGS = {
    "fbank": FeatureConfig(cmn="none", min_duration_s=0.0),
    "mfcc": FeatureConfig(kind="mfcc", cmn="none", min_duration_s=0.0),
    "fbank-cmn-vad": FeatureConfig(cmn="running", cmn_window=40, vad="running", min_duration_s=0.0),
    "fbank-cmvn": FeatureConfig(cmn="running", cvn=True, cmn_window=40, min_duration_s=0.0),
    "mfcc-cmvn-vad": FeatureConfig(
        kind="mfcc",
        cmn="running",
        cvn=True,
        cmn_window=25,
        vad="running",
        vad_threshold_db=-30.0,
        min_duration_s=0.0,
    ),
}
Step = Callable[[FrontendState, np.ndarray, np.ndarray], tuple[FrontendState, jax.Array, jax.Array]]
EXAMPLES = settings(
    max_examples=4,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@functools.cache
def frontend(name: str) -> tuple[Frontend, Step]:
    """One Frontend and jitted step per config, shared by every example (one compile each)."""
    fe = Frontend(CONFIGS[name], CHUNK)
    return fe, jax.jit(fe.step)


@functools.cache
def waves() -> tuple[np.ndarray, ...]:
    """Synthetic speech, faded 50 dB down over its first fifth and a stretch of its middle, so
    running VAD keeps quiet audio before the first loud frame and drops it after."""
    out = []
    for i, seconds in enumerate(DURATIONS_S):
        rng = np.random.default_rng(i)
        voice, channel = draw_voice(5, i), draw_channel(5, i, 0)
        pcm = synthesize_utterance(voice, channel, rng, SR, (seconds, seconds), (20.0, 20.0))
        gain = np.ones(len(pcm), np.float32)
        gain[: len(pcm) // 5] = gain[len(pcm) // 2 : len(pcm) * 7 // 10] = 10 ** (-50 / 20)
        out.append(pcm.astype(np.float32) / 32768 * gain)
    return tuple(out)


def with_tail(drawn: Sequence[int], n_samples: int) -> list[int]:
    """The drawn chunk sizes, cut at the stream's end, then whole chunks to finish it."""
    sizes, total = [], 0
    for size in drawn:
        sizes.append(min(size, n_samples - total))
        total += sizes[-1]
    while total < n_samples:
        sizes.append(min(CHUNK, n_samples - total))
        total += sizes[-1]
    return sizes


def stream(fe: Frontend, step: Step, streams: Sequence[np.ndarray], chunkings: Sequence[list[int]]):
    """Each stream's frames, concatenated over the chunks; a finished stream gets 0 samples."""
    state, outputs = fe.init(len(streams)), [[] for _ in streams]
    offsets = [0] * len(streams)
    for t in range(max(len(c) for c in chunkings)):
        audio = np.full((len(streams), CHUNK), np.nan, np.float32)  # past n_samples: never read
        n = np.zeros(len(streams), np.int32)
        for s, (wave, sizes) in enumerate(zip(streams, chunkings, strict=True)):
            n[s] = sizes[t] if t < len(sizes) else 0
            audio[s, : n[s]] = wave[offsets[s] : offsets[s] + n[s]]
            offsets[s] += n[s]
        state, frames, n_frames = step(state, audio, n)
        frames, n_frames = np.asarray(frames), np.asarray(n_frames)
        assert frames.shape == (len(streams), fe.max_frames, fe.n_features)
        for s in range(len(streams)):
            assert not frames[s, n_frames[s] :].any()
            outputs[s].append(frames[s, : n_frames[s]])
    assert offsets == [len(w) for w in streams]
    return [np.concatenate(o) for o in outputs]


def assert_matches_offline(got: np.ndarray, wave: np.ndarray, cfg: FeatureConfig) -> None:
    """Equal to about 1e-4 of the features' range (float32 FFT against librosa's float64 one).

    CVN divides each frame by its window's spread, which is tiny for a band near the log floor
    or a window of a few frames, and so magnifies rounding that the offline float64 statistics
    do not have; the features are compared before that division, by multiplying it back.
    """
    expected = compute_features(wave, cfg)
    assert got.shape == expected.shape
    spread = window_spread(wave, cfg) if cfg.cvn else 1.0
    error = np.abs(got - expected) * spread
    assert error.max() <= 1e-4 * np.abs(expected * spread).max()


def window_spread(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The floored std that running CVN divides each frame by, from the kept raw frames."""
    raw = compute_features(wave, dataclasses.replace(cfg, cmn="none", cvn=False))
    raw = raw.astype(np.float64)
    w = cfg.cmn_window
    std = np.stack([raw[max(0, t - w + 1) : t + 1].std(axis=0) for t in range(len(raw))])
    return np.maximum(std, CVN_FLOOR)


chunk_size = st.one_of(st.just(0), st.integers(1, HOP - 1), st.integers(1, CHUNK))
chunkings = st.tuples(*(st.lists(chunk_size, max_size=12) for _ in DURATIONS_S))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@EXAMPLES
@given(drawn=chunkings)
@example(drawn=([1, 0, 7, 159, 161, 0, 511, 512, 513], [CHUNK], [0, 0, 0, HOP, 3 * HOP]))
def test_any_chunking_gives_the_offline_features(name, drawn):
    fe, step = frontend(name)
    chunks = [with_tail(d, len(w)) for d, w in zip(drawn, waves(), strict=True)]
    for got, wave in zip(stream(fe, step, waves(), chunks), waves(), strict=True):
        assert_matches_offline(got, wave, fe.cfg)


def test_the_audio_has_frames_for_running_vad_to_drop_and_to_keep():
    cfg = CONFIGS["fbank-cmn-vad"]
    for wave in waves():
        kept = {
            vad: len(compute_features(wave, dataclasses.replace(cfg, vad=vad)))
            for vad in ("none", "running", "utterance")
        }
        assert kept["none"] > kept["running"] > kept["utterance"]


def test_a_stream_of_one_chunk_each_matches_too():
    fe, step = frontend("fbank-cmn-vad")
    chunks = [with_tail([], len(w)) for w in waves()]
    for got, wave in zip(stream(fe, step, waves(), chunks), waves(), strict=True):
        assert_matches_offline(got, wave, fe.cfg)


def test_zero_samples_change_nothing():
    fe, step = frontend("mfcc-cmvn-vad")
    state = fe.init(3)
    audio = np.stack([w[:CHUNK] for w in waves()])
    state, _, _ = step(state, audio, np.array([CHUNK, 1234, 77], np.int32))
    same, frames, n_frames = step(state, np.full_like(audio, np.nan), np.zeros(3, np.int32))
    assert not np.asarray(n_frames).any() and not np.asarray(frames).any()
    for before, after in zip(state, same, strict=True):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def test_state_size_does_not_depend_on_the_stream_length():
    fe, step = frontend("fbank-cmn-vad")
    start = fe.init(3)
    state = start
    for t in range(12):
        audio = np.stack([np.resize(w, CHUNK) for w in waves()]) * (t % 3)
        state, _, _ = step(state, audio, np.full(3, CHUNK, np.int32))
    shapes = lambda tree: [(a.shape, a.dtype) for a in jax.tree.leaves(tree)]
    assert shapes(state) == shapes(start)
    cfg = fe.cfg
    per_stream_floats = 2 + (cfg.n_fft - 1) + 2 + cfg.cmn_window * cfg.n_mels
    assert sum(a.size for a in jax.tree.leaves(state)) == 3 * per_stream_floats


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"cmn": "utterance"}, "cmn"), ({"cmn": "none", "vad": "utterance"}, "vad")],
)
def test_utterance_modes_are_refused(changes, field):
    with pytest.raises(ValueError, match=f"{field}='utterance' needs the whole utterance"):
        Frontend(FeatureConfig(**changes), CHUNK)


def test_sizes_and_identity():
    fe = Frontend(CONFIGS["mfcc"], 1000)
    assert (fe.max_frames, fe.n_features) == (7, 30)  # ceil(1000 / 160)
    same = Frontend(FeatureConfig(kind="mfcc", cmn="none", min_duration_s=0.0), 1000)
    assert fe == same and hash(fe) == hash(same)  # usable as a static jit argument
    assert fe != Frontend(CONFIGS["mfcc"], 1001)
    with pytest.raises(ValueError, match="audio must be"):
        fe.step(fe.init(1), np.zeros((1, 999), np.float32), np.zeros(1, np.int32))
