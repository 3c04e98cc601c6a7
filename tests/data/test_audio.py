import os
from pathlib import Path

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


# --- containers soundfile cannot open (PyAV) ---------------------------------------------------


def write_m4a(path, wave: np.ndarray, sr: int = SR) -> str:
    """AAC in an MP4 container, as VoxCeleb2 ships it, encoded in-process with PyAV."""
    import av

    planar = np.ascontiguousarray(np.atleast_2d(wave.T).astype(np.float32))  # [channels, n]
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr, layout=layout)
        for first in range(0, planar.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, first : first + 1024]), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = sr, first
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


def speech_like(seconds: float, sr: int = SR) -> np.ndarray:
    """A modulated harmonic tone with a little noise: broadband enough that AAC keeps its shape."""
    t = np.arange(round(seconds * sr)) / sr
    voiced = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6))
    noise = np.random.default_rng(0).standard_normal(len(t)) * 0.02
    return (0.25 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + noise).astype(np.float32)


def test_m4a_decodes_like_its_source(tmp_path):
    wave = speech_like(1.3)
    source = load_audio(write(tmp_path / "a.wav", wave, subtype="FLOAT"))
    decoded = load_audio(write_m4a(tmp_path / "a.m4a", wave))
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(len(decoded) - len(source)) <= 1024  # within one AAC frame
    n = min(len(decoded), len(source))
    assert np.corrcoef(decoded[:n], source[:n])[0, 1] > 0.9  # aligned: no encoder delay left


def test_m4a_segment_is_that_span_of_the_whole_file(tmp_path):
    path = write_m4a(tmp_path / "seg.m4a", speech_like(2.0))
    whole = load_audio(path)
    for start, end in [(0.5, 1.0), (1.2, None), (None, 0.3), (1.9, 5.0)]:
        segment = load_audio(path, start=start, end=end)
        first = round((start or 0) * SR)
        expected = whole[first : round(end * SR) if end is not None else None]
        assert len(segment) == len(expected)
        np.testing.assert_allclose(segment, expected, atol=1e-4)  # a seek decodes the same


def test_m4a_stereo_at_another_rate_is_mixed_and_resampled(tmp_path):
    left, right = tone(1000, 1.0, sr=44100), tone(1000, 1.0, sr=44100, amp=0.1)
    loaded = load_audio(write_m4a(tmp_path / "st.m4a", np.stack([left, right], 1), sr=44100))
    assert abs(len(loaded) - SR) <= 1024 * SR // 44100 + 1
    assert abs(peak_frequency(loaded, SR) - 1000) <= 2
    assert np.abs(loaded[1000:-1000]).max() == pytest.approx(0.3, abs=0.03)  # mean of channels


def test_corrupt_m4a_is_unreadable(tmp_path):
    good = write_m4a(tmp_path / "good.m4a", speech_like(0.8))
    truncated = tmp_path / "truncated.m4a"
    truncated.write_bytes(Path(good).read_bytes()[:300])
    assert reason_of(truncated) == "unreadable"
    noise = tmp_path / "noise.m4a"
    noise.write_bytes(np.random.default_rng(1).bytes(3000))
    assert reason_of(noise) == "unreadable"
    assert reason_of(tmp_path / "absent.m4a") == "missing"


def test_m4a_checks_are_those_of_every_file(tmp_path):
    assert reason_of(write_m4a(tmp_path / "z.m4a", np.zeros(SR, np.float32))) == "silent"
    assert reason_of(write_m4a(tmp_path / "a.m4a", speech_like(0.5)), start=2.0) == "empty"


def test_unknown_extension_falls_back_to_pyav_and_reports_both_decoders(tmp_path):
    wave = speech_like(0.8)
    renamed = tmp_path / "a.audio"
    renamed.write_bytes(Path(write_m4a(tmp_path / "a.m4a", wave)).read_bytes())
    loaded = load_audio(renamed)
    n = min(len(loaded), len(wave))
    assert np.corrcoef(loaded[:n], wave[:n])[0, 1] > 0.9
    junk = tmp_path / "junk.audio"
    junk.write_bytes(b"\x00" * 4000)
    with pytest.raises(AudioError) as info:
        load_audio(junk)
    assert info.value.reason == "unreadable"
    assert "soundfile:" in info.value.detail and "PyAV:" in info.value.detail


def test_a_container_without_audio_is_unreadable(tmp_path):
    import av

    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 32
        for k in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * k, np.uint8), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.reason == "unreadable" and "no audio stream" in info.value.detail
