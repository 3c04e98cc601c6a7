"""Validation during training: EER of cosine scores on trials among held-out speakers."""

from __future__ import annotations

from typing import Any

import numpy as np

from gru_jax.data.prepare import TrainingData
from gru_jax.eval.metrics import cosine_scores, eer
from gru_jax.infer.embedding import Embedder


def sample_trials(labels: np.ndarray, n_trials: int, seed: int) -> tuple[np.ndarray, ...]:
    """Balanced genuine/impostor pairs (i, j, target) over utterances with speaker `labels`."""
    rng = np.random.default_rng(seed)
    by_speaker = [np.flatnonzero(labels == s) for s in np.unique(labels)]
    multi = [u for u in by_speaker if len(u) >= 2]
    if not multi or len(by_speaker) < 2:
        raise ValueError("validation needs >= 2 speakers and a speaker with >= 2 utterances")
    half = n_trials // 2
    first, second = [], []
    for _ in range(half):
        utts = multi[rng.integers(len(multi))]
        i, j = rng.choice(utts, 2, replace=False)
        first.append(i)
        second.append(j)
    for _ in range(n_trials - half):
        a, b = rng.choice(len(by_speaker), 2, replace=False)
        first.append(rng.choice(by_speaker[a]))
        second.append(rng.choice(by_speaker[b]))
    target = np.r_[np.ones(half, np.int32), np.zeros(n_trials - half, np.int32)]
    return np.asarray(first), np.asarray(second), target


def validation_eer(
    embedder: Embedder, encoder_params: Any, data: TrainingData, n_trials: int, seed: int
) -> float:
    """EER of `n_trials` sampled trials (a fixed sample for a seed) among the held-out speakers."""
    emb = embedder.embed_source(encoder_params, data.store, data.val_indices)
    labels = data.store_speaker_codes(data.val_indices)
    i, j, target = sample_trials(labels, n_trials, seed)
    scores = np.asarray(cosine_scores(emb, emb, i, j))
    return float(eer(scores, target)[0])
