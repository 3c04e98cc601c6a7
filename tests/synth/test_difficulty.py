"""The calibration that voices.py documents: a trivial statistic finds speakers, but not easily."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_curve

from gru_jax.synth import CorpusInfo, make_corpus

from ._corpus_files import read_list


def mean_mfcc_cosine_eer(info: CorpusInfo) -> float:
    trials = read_list(info.trials)
    embeddings = {}
    for path in sorted({p for _, a, b in trials for p in (a, b)}):
        y, sr = sf.read(info.wav_dir / path, dtype="float32")
        mean = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20).mean(axis=1)
        embeddings[path] = mean / np.linalg.norm(mean)
    labels = np.array([int(label) for label, _, _ in trials])
    scores = np.array([embeddings[a] @ embeddings[b] for _, a, b in trials])
    fpr, tpr, _ = roc_curve(labels, scores)
    i = np.argmin(np.abs(1.0 - tpr - fpr))
    return float((fpr[i] + 1.0 - tpr[i]) / 2.0)


@pytest.mark.slow
def test_trivial_baseline_is_informative_but_far_from_solved(tmp_path: Path) -> None:
    # Calibrated over seeds 0-7 at this size: EER 0.20-0.28 (mean 0.24); the default 40x12
    # corpus gives 0.22. Speaker information is there, but session channels, background
    # noise and content keep a per-utterance spectral mean from solving the task.
    info = make_corpus(tmp_path, 16, 6, seed=0, n_test_speakers=15, progress=False)
    eer = mean_mfcc_cosine_eer(info)
    assert eer < 0.45  # better than chance
    assert 0.10 < eer < 0.38
