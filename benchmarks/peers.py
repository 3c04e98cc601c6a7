"""The systems a trained encoder is compared with: each turns 16 kHz waveforms into vectors that
the library's own scoring (cosine, AS-norm, EER, minDCF, top-k) then treats alike.

- `GruSystem`: a gru-jax encoder (trained, or `EmbeddingModel.untrained` of the same shape: what
  the training adds).
- `MfccStatistics`: per-utterance mean and standard deviation of MFCCs, z-normalised with
  statistics of training utterances; the classic no-learning baseline, strong when voices differ
  mostly in spectral envelope and channel.
- `Resemblyzer`: the pretrained GE2E LSTM of Resemblyzer 0.1.4 (weights ship in its wheel),
  the open peer most like this toolkit's encoder. An optional benchmark dependency:
  ``pip install --no-deps resemblyzer==0.1.4 webrtcvad-wheels`` beside ``torch==2.13.0``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from gru_jax.data.features import FeatureConfig, compute_features
from gru_jax.infer.model import EmbeddingModel

SAMPLE_RATE = 16000


class System(Protocol):
    name: str

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """[N, E] float32 vectors of mono 16 kHz waveforms, comparable by cosine."""
        ...


class GruSystem:
    def __init__(self, name: str, model: EmbeddingModel):
        self.name, self.model = name, model

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        cfg = self.model.features
        return self.model.embed_features([compute_features(w, cfg) for w in waves])


MFCC = FeatureConfig(kind="mfcc", n_mels=40, n_mfcc=30, cmn="none")


class MfccStatistics:
    """Mean and std of each MFCC over the utterance, then each dimension z-normalised with the
    mean and std of those vectors over training utterances (so no coefficient dominates the
    cosine by its scale)."""

    name = "MFCC mean+std, z-norm"

    def __init__(self, training_waves: Sequence[np.ndarray], cfg: FeatureConfig = MFCC):
        self.cfg = cfg
        raw = self._statistics(training_waves)
        self.mean, self.std = raw.mean(axis=0), raw.std(axis=0) + 1e-6

    def _statistics(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        feats = [compute_features(w, self.cfg) for w in waves]
        return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) for f in feats])

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        return ((self._statistics(waves) - self.mean) / self.std).astype(np.float32)


def resemblyzer_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("resemblyzer", "torch"))


class Resemblyzer:
    name = "Resemblyzer (pretrained GE2E LSTM)"

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        from resemblyzer import preprocess_wav

        # preprocess_wav trims silence with webrtcvad, as Resemblyzer's own users do; a crop
        # it empties is embedded untrimmed rather than dropped, so every system scores every trial.
        vectors = []
        for wave in waves:
            trimmed = preprocess_wav(wave, source_sr=SAMPLE_RATE)
            usable = trimmed if len(trimmed) >= SAMPLE_RATE // 2 else wave
            vectors.append(self._encoder.embed_utterance(usable))
        return np.stack(vectors).astype(np.float32)
