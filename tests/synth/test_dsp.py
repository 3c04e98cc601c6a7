"""Tests for gru_jax.synth.dsp: the audio is valid, speech-like, follows the voice, and is
determined by its random generator alone."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from gru_jax.synth import CorpusInfo, draw_channel, draw_voice, make_corpus, synthesize_utterance

from ._corpus_files import make_small_corpus, wav_files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    return make_small_corpus(tmp_path_factory.mktemp("synth") / "corpus")


def test_wavs_are_valid_speech_like_audio(corpus: CorpusInfo) -> None:
    durations = []
    for path in wav_files(corpus):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        samples, _ = sf.read(path, dtype="int16")
        assert samples.ndim == 1
        audio = samples.astype(np.float64) / 32768.0
        assert np.all(np.isfinite(audio))
        rms_dbfs = 20 * np.log10(np.sqrt(np.mean(audio**2)))
        assert -40.0 < rms_dbfs < -15.0, path
        assert np.max(np.abs(samples)) < 32767  # limited, never clipped
        durations.append(len(samples) / 16000)
    assert min(durations) >= 1.5 - 1e-3 and max(durations) <= 4.0 + 1e-3
    assert np.std(durations) > 0.2  # lengths vary, as in real corpora


def test_pitch_follows_the_speaker_voice(tmp_path: Path) -> None:
    info = make_corpus(tmp_path, 6, 2, seed=1, snr_db=None, progress=False)
    voices = {k: v["voice"] for k, v in json.loads(info.meta.read_text())["speakers"].items()}
    nominal, measured = [], []
    for speaker, voice in voices.items():
        f0s = []
        for path in sorted((info.wav_dir / speaker).glob("*/*.wav")):
            y, sr = sf.read(path, dtype="float32")
            f0 = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=256)
            rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0]
            f0s.append(np.median(f0[rms > 0.3 * rms.max()]))
        nominal.append(voice["f0_median_hz"])
        measured.append(np.mean(f0s))
    ratio = np.array(measured) / np.array(nominal)
    assert np.all((ratio > 0.8) & (ratio < 1.3)), ratio
    assert np.corrcoef(nominal, measured)[0, 1] > 0.9


def test_an_utterance_depends_only_on_its_generator() -> None:
    voice, channel = draw_voice(0, 0), draw_channel(0, 0, 0)

    def utterance(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return synthesize_utterance(voice, channel, rng, 16000, (1.0, 1.0), (20.0, 20.0))

    first = utterance(1)
    assert first.dtype == np.dtype("<i2") and first.shape == (16000,)
    assert np.array_equal(first, utterance(1))
    assert not np.array_equal(first, utterance(2))
