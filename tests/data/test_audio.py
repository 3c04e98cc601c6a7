import os

import numpy as np
import pytest
import soundfile as sf

from gru_jax.data.audio import AUDIO_REASONS, SILENCE_PEAK, AudioError, load_audio

SR = 16000


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


def write(path, wave, sr=SR, **kwargs) -> str:
    sf.write(path, wave, sr, **kwargs)
    return str(path)


def reason_of(path, **kwargs) -> str:
    with pytest.raises(AudioError) as info:
        load_audio(path, **kwargs)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: {info.value.reason}: ")
    return info.value.reason


def test_wav_roundtrip_float32_mono(tmp_path):
    wave = tone(440, 0.5)
    loaded = load_audio(write(tmp_path / "a.wav", wave, subtype="FLOAT"))
    assert loaded.dtype == np.float32 and loaded.ndim == 1
    np.testing.assert_array_equal(loaded, wave)


def test_pcm16_is_scaled_to_unit_range(tmp_path):
    wave = tone(440, 0.5, amp=0.9)
    loaded = load_audio(write(tmp_path / "a.wav", wave, subtype="PCM_16"))
    np.testing.assert_allclose(loaded, wave, atol=2 / 32768)


def test_multichannel_is_mean_of_channels(tmp_path):
    stereo = np.stack([tone(300, 0.5), tone(700, 0.5, amp=0.2)], axis=1)
    loaded = load_audio(write(tmp_path / "st.wav", stereo, subtype="FLOAT"))
    np.testing.assert_allclose(loaded, stereo.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("native_rate", [8000, 44100])
def test_other_rate_is_resampled_keeping_length_and_pitch(tmp_path, native_rate):
    path = write(tmp_path / "r.wav", tone(1000, 1.0, sr=native_rate), sr=native_rate)
    loaded = load_audio(path, sample_rate=SR)
    assert abs(len(loaded) - SR) <= 1
    assert abs(peak_frequency(loaded, SR) - 1000) <= 2
    assert np.abs(loaded).max() == pytest.approx(0.5, abs=0.02)


def test_flac_is_lossless_and_ogg_decodes(tmp_path):
    wave = tone(523, 1.0)
    pcm16 = np.round(wave * 32767).astype(np.int16)
    flac = load_audio(write(tmp_path / "a.flac", pcm16))
    np.testing.assert_array_equal(flac, pcm16 / np.float32(32768))
    ogg = load_audio(write(tmp_path / "a.ogg", wave, format="OGG", subtype="VORBIS"))
    assert abs(len(ogg) - len(wave)) <= 64
    assert abs(peak_frequency(ogg, SR) - 523) <= 2
    n = min(len(ogg), len(wave))
    assert np.corrcoef(ogg[:n], wave[:n])[0, 1] > 0.99


def test_segment_reads_only_that_span(tmp_path):
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    path = write(tmp_path / "seg.wav", wave, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, start=0.25, end=0.5), wave[4000:8000])
    np.testing.assert_array_equal(load_audio(path, start=0.75), wave[12000:])
    np.testing.assert_array_equal(load_audio(path, end=0.1), wave[:1600])
    np.testing.assert_array_equal(load_audio(path, start=0.9, end=5.0), wave[14400:])


def test_segment_of_resampled_file_has_target_rate_length(tmp_path):
    path = write(tmp_path / "seg8k.wav", tone(500, 2.0, sr=8000), sr=8000)
    assert abs(len(load_audio(path, start=0.5, end=1.5)) - SR) <= 1


def test_invalid_segment_bounds_are_value_errors(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 0.5))
    with pytest.raises(ValueError, match="start must be >= 0"):
        load_audio(path, start=-1.0)
    with pytest.raises(ValueError, match="end must be > start"):
        load_audio(path, start=0.3, end=0.2)


def test_missing(tmp_path):
    assert reason_of(tmp_path / "nope.wav") == "missing"


def test_directory_is_missing_file(tmp_path):
    assert reason_of(tmp_path) == "missing"


def test_corrupt_bytes_are_unreadable(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(os.urandom(2000))
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.reason == "unreadable"
    assert "Format not recognised" in info.value.detail


def test_empty_file(tmp_path):
    assert reason_of(write(tmp_path / "empty.wav", np.zeros(0, np.float32))) == "empty"


def test_segment_past_end_is_empty(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 0.5))
    assert reason_of(path, start=1.0, end=2.0) == "empty"


def test_nan_samples(tmp_path):
    wave = tone(440, 0.5)
    wave[100] = np.nan
    wave[200] = np.inf
    path = write(tmp_path / "nan.wav", wave, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.reason == "non_finite"
    assert info.value.detail.startswith("2 ")


def test_all_zero_is_silent(tmp_path):
    assert reason_of(write(tmp_path / "z.wav", np.zeros(SR, np.float32))) == "silent"


def test_near_silent_threshold(tmp_path):
    below = np.full(SR, SILENCE_PEAK * 0.5, np.float32)
    above = np.full(SR, SILENCE_PEAK * 2, np.float32)
    assert reason_of(write(tmp_path / "lo.wav", below, subtype="FLOAT")) == "silent"
    assert load_audio(write(tmp_path / "hi.wav", above, subtype="FLOAT")).max() > SILENCE_PEAK


def test_cancelling_channels_are_silent_after_mixdown(tmp_path):
    wave = tone(440, 0.5)
    stereo = np.stack([wave, -wave], axis=1)
    assert reason_of(write(tmp_path / "cancel.wav", stereo, subtype="FLOAT")) == "silent"


def test_float_overrange_is_clipped(tmp_path):
    loaded = load_audio(write(tmp_path / "loud.wav", tone(440, 0.5, amp=2.0), subtype="FLOAT"))
    assert loaded.max() == 1.0 and loaded.min() == -1.0


def test_audio_error_is_a_value_error_and_pickles():
    import pickle

    err = AudioError("x.wav", "silent", "peak 0")
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.reason, again.detail, str(again)) == (
        "x.wav",
        "silent",
        "peak 0",
        "x.wav: silent: peak 0",
    )
    assert set(AUDIO_REASONS) >= {"missing", "unreadable", "empty", "non_finite", "too_short"}
    with pytest.raises(ValueError, match="unknown AudioError reason"):
        AudioError("x.wav", "bad_reason")
