"""Validation during training: EER of cosine scores on trials among held-out speakers."""

from __future__ import annotations

from typing import Any

import numpy as np

from gru_jax.data.prepare import TrainingData
from gru_jax.eval.metrics import cosine_scores, eer
from gru_jax.infer.distributed import gather_rows, gather_strings
from gru_jax.infer.embedding import Embedder


def sample_trials(
    labels: np.ndarray, n_trials: int, seed: int, sessions: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Balanced genuine/impostor pairs (i, j, target) over utterances with speaker `labels`.

    With `sessions` (per utterance), a genuine pair comes from two sessions of its speaker
    whenever the speaker has more than one, as in VoxCeleb-style test lists: two utterances of
    one recording share its channel and background, which a test list's genuine pairs mostly do
    not."""
    rng = np.random.default_rng(seed)
    by_speaker = [np.flatnonzero(labels == s) for s in np.unique(labels)]
    multi = [u for u in by_speaker if len(u) >= 2]
    if not multi or len(by_speaker) < 2:
        raise ValueError("validation needs >= 2 speakers and a speaker with >= 2 utterances")
    half = n_trials // 2
    first, second = [], []
    for _ in range(half):
        utts = multi[rng.integers(len(multi))]
        i = rng.choice(utts)
        others = utts[utts != i]
        if sessions is not None:
            elsewhere = others[sessions[others] != sessions[i]]
            others = elsewhere if len(elsewhere) else others
        first.append(i)
        second.append(rng.choice(others))
    for _ in range(n_trials - half):
        a, b = rng.choice(len(by_speaker), 2, replace=False)
        first.append(rng.choice(by_speaker[a]))
        second.append(rng.choice(by_speaker[b]))
    target = np.r_[np.ones(half, np.int32), np.zeros(n_trials - half, np.int32)]
    return np.asarray(first), np.asarray(second), target


def validation_embeddings(
    embedder: Embedder, encoder_params: Any, data: TrainingData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, speakers, sessions) of every held-out utterance of every process, in
    utterance-id order, so the result does not depend on how the corpus is split over
    processes."""
    ids, speakers, sessions, vectors = [], [], [], []
    for part in data.parts:
        ids += part.store.ids[part.val_indices].tolist()
        speakers += part.store.speakers[part.val_indices].tolist()
        sessions += part.store.sessions[part.val_indices].tolist()
        vectors.append(embedder.embed_source(encoder_params, part.store, part.val_indices))
    ids, speakers, sessions = (
        gather_strings(ids),
        gather_strings(speakers),
        gather_strings(sessions),
    )
    vectors = gather_rows(np.concatenate(vectors))
    order = np.argsort(np.asarray(ids))
    return vectors[order], np.asarray(speakers)[order], np.asarray(sessions)[order]


def validation_eer(
    embedder: Embedder, encoder_params: Any, data: TrainingData, n_trials: int, seed: int
) -> float:
    """EER of `n_trials` sampled trials (a fixed sample for a seed) among the held-out speakers;
    genuine pairs across sessions where the corpus has them."""
    emb, speakers, sessions = validation_embeddings(embedder, encoder_params, data)
    labels = np.unique(speakers, return_inverse=True)[1].astype(np.int32)
    i, j, target = sample_trials(labels, n_trials, seed, sessions)
    scores = np.asarray(cosine_scores(emb, emb, i, j))
    return float(eer(scores, target)[0])
