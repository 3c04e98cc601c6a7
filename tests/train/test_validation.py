"""Validation trials: balanced, from the held-out speakers, genuine pairs across sessions."""

import numpy as np
import pytest

from gru_jax.train.validation import sample_trials


def corpus(n_speakers=6, sessions_per_speaker=3, per_session=3):
    labels, sessions = [], []
    for speaker in range(n_speakers):
        for session in range(sessions_per_speaker):
            labels += [speaker] * per_session
            sessions += [f"s{speaker}-{session}"] * per_session
    return np.array(labels), np.array(sessions)


def test_genuine_pairs_cross_sessions_and_impostors_cross_speakers():
    labels, sessions = corpus()
    i, j, target = sample_trials(labels, 1000, seed=0, sessions=sessions)
    assert target.sum() == 500 and len(target) == 1000
    genuine = target == 1
    assert np.all(labels[i[genuine]] == labels[j[genuine]])
    assert np.all(sessions[i[genuine]] != sessions[j[genuine]])
    assert np.all(labels[i[~genuine]] != labels[j[~genuine]])
    # without sessions, a fair share of genuine pairs comes from one recording
    i, j, target = sample_trials(labels, 1000, seed=0)
    same = sessions[i[target == 1]] == sessions[j[target == 1]]
    assert 0.1 < same.mean() < 0.4
    assert np.all(i[target == 1] != j[target == 1])


def test_a_single_session_speaker_still_gives_genuine_pairs():
    labels, sessions = corpus(sessions_per_speaker=1)
    i, j, target = sample_trials(labels, 200, seed=1, sessions=sessions)
    genuine = target == 1
    assert np.all(labels[i[genuine]] == labels[j[genuine]]) and np.all(i[genuine] != j[genuine])


def test_too_few_speakers_is_an_error():
    with pytest.raises(ValueError, match=">= 2 speakers"):
        sample_trials(np.zeros(5, np.int32), 10, seed=0)
