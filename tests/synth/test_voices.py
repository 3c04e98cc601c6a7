"""Tests for gru_jax.synth.voices: voices, session ids and channels are keyed, plausible and
distinct."""

from __future__ import annotations

import numpy as np

from gru_jax.synth import draw_channel, draw_session_ids, draw_voice
from gru_jax.synth.voices import F0_BY_SEX, HIGHPASS_HZ, LOWPASS_HZ, SEX_PROBABILITIES

from ._corpus_files import SESSION_ID


def test_a_voice_depends_on_its_seed_and_speaker_only() -> None:
    assert draw_voice(3, 5) == draw_voice(3, 5)
    assert draw_voice(3, 5) != draw_voice(3, 6)
    assert draw_voice(3, 5) != draw_voice(4, 5)


def test_voices_stay_in_their_ranges() -> None:
    for speaker_index in range(50):
        voice = draw_voice(0, speaker_index)
        assert voice.sex in SEX_PROBABILITIES
        f0_lo, f0_hi = F0_BY_SEX[voice.sex][2:]
        assert f0_lo <= voice.f0_median_hz <= f0_hi
        assert 0.8 <= voice.formant_scale <= 1.25
        formants = np.array(voice.formants_hz)
        assert formants.shape == (12, 5) and np.all(np.diff(formants, axis=1) >= 0)
        assert len(voice.fricative_bands_hz) == 4
        assert all(0 < lo < hi for lo, hi in voice.fricative_bands_hz)


def test_session_ids_are_unique_and_a_longer_list_extends_a_shorter_one() -> None:
    ids = draw_session_ids(0, 1, 20)
    assert len(set(ids)) == 20 and all(SESSION_ID.match(i) for i in ids)
    assert draw_session_ids(0, 1, 5) == ids[:5]
    assert draw_session_ids(0, 2, 5) != ids[:5]


def test_each_session_has_its_own_channel() -> None:
    channels = [draw_channel(0, 1, session) for session in range(3)]
    assert channels[0] == draw_channel(0, 1, 0)
    assert len(set(channels)) == 3 and draw_channel(0, 2, 0) != channels[0]
    for channel in channels:
        assert HIGHPASS_HZ[0] <= channel.highpass_hz <= HIGHPASS_HZ[1]
        assert LOWPASS_HZ[0] <= channel.lowpass_hz <= LOWPASS_HZ[1]
        assert -28.0 <= channel.level_dbfs <= -22.0
