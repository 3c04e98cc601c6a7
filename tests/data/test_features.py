import dataclasses
import json

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from gru_jax.core.config import ConfigError, from_dict, replace, to_dict, to_json
from gru_jax.data.audio import AudioError
from gru_jax.data.features import (
    FeatureConfig,
    compute_features,
    extract_features,
    feature_config_from_dict,
    utterance_cmvn,
)
from tests.data._audio import SR, speechlike

RAW = dict(cmn="none", cvn=False, vad="none", min_duration_s=0.0)


def reference_mel(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    emphasised = scipy.signal.lfilter([1.0, -cfg.preemphasis], [1.0], wave).astype(np.float32)
    return librosa.feature.melspectrogram(
        y=emphasised,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        center=False,
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )


def test_fbank_equals_librosa():
    wave = speechlike(1.0)
    cfg = FeatureConfig(kind="fbank", **RAW)
    expected = np.log(reference_mel(wave, cfg) + 1e-6).T
    feats = compute_features(wave, cfg)
    assert feats.dtype == np.float32 and feats.flags.c_contiguous
    np.testing.assert_allclose(feats, expected, atol=1e-4, rtol=0)


def test_mfcc_equals_librosa():
    wave = speechlike(1.0, seed=1)
    cfg = FeatureConfig(kind="mfcc", n_mfcc=30, **RAW)
    log_mel_db = librosa.power_to_db(reference_mel(wave, cfg), top_db=None)
    expected = librosa.feature.mfcc(S=log_mel_db, n_mfcc=30).T
    feats = compute_features(wave, cfg)
    np.testing.assert_allclose(feats, expected, atol=1e-4, rtol=1e-5)


def test_preemphasis_zero_disables_it():
    wave = speechlike(0.5)
    cfg = FeatureConfig(preemphasis=0.0, **RAW)
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=SR,
        n_fft=512,
        hop_length=160,
        win_length=400,
        center=False,
        n_mels=80,
        fmin=20.0,
        fmax=7600.0,
    )
    np.testing.assert_allclose(compute_features(wave, cfg), np.log(mel + 1e-6).T, atol=1e-4)


@pytest.mark.parametrize(("kind", "n_feats"), [("fbank", 80), ("mfcc", 30)])
@pytest.mark.parametrize("n_samples", [512, 8000, 16123])
def test_shapes(kind, n_feats, n_samples):
    cfg = FeatureConfig(kind=kind, **RAW)
    feats = compute_features(speechlike(n_samples / SR), cfg)
    assert feats.shape == (1 + (n_samples - 512) // 160, n_feats)
    assert cfg.n_features == n_feats


def test_derived_sizes():
    cfg = FeatureConfig(sample_rate=8000, win_ms=32.0, hop_ms=12.5, n_fft=256, fmax=4000.0)
    assert (cfg.win_length, cfg.hop_length) == (256, 100)


def test_cmn_zero_mean_and_cvn_unit_variance():
    wave = speechlike(1.0, seed=2)
    cmn = compute_features(wave, FeatureConfig(cmn="utterance", cvn=False, min_duration_s=0.0))
    np.testing.assert_allclose(cmn.mean(axis=0), 0.0, atol=1e-5)
    assert cmn.std(axis=0).min() > 0.05  # variance is left alone
    cmvn = compute_features(wave, FeatureConfig(kind="mfcc", cmn="utterance", cvn=True))
    np.testing.assert_allclose(cmvn.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(cmvn.std(axis=0), 1.0, atol=1e-4)


@pytest.mark.parametrize("cvn", [False, True])
def test_a_crop_of_normalised_features_renormalised_is_the_crop_normalised(cvn):
    """What training does to each crop of the stored (utterance-normalised) features gives the
    features a test utterance of just those frames would have."""
    raw = compute_features(speechlike(2.0, seed=4), FeatureConfig(kind="mfcc", **RAW))
    stored = compute_features(speechlike(2.0, seed=4), FeatureConfig(kind="mfcc", cvn=cvn))
    np.testing.assert_allclose(stored, utterance_cmvn(raw, cvn), atol=1e-4)
    crop = slice(40, 90)
    expected = utterance_cmvn(raw[crop], cvn)
    np.testing.assert_allclose(utterance_cmvn(stored[crop], cvn), expected, atol=1e-4)
    assert not np.allclose(stored[crop], expected, atol=1e-2)  # the crop's own statistics differ


def test_vad_drops_a_quiet_gap():
    gap = np.random.default_rng(3).standard_normal(SR).astype(np.float32) * 1e-4  # -70 dB
    wave = np.concatenate([speechlike(1.0, seed=4), gap, speechlike(1.0, seed=5)])
    full = compute_features(wave, FeatureConfig(**RAW))
    voiced = compute_features(wave, FeatureConfig(**{**RAW, "vad": "utterance"}))
    gap_frames = SR // 160
    assert abs((len(full) - len(voiced)) - gap_frames) <= 4
    # The kept frames are the loud ones, unchanged (no CMN here).
    np.testing.assert_array_equal(voiced[:90], full[:90])
    np.testing.assert_array_equal(voiced[-90:], full[-90:])


def test_vad_keeps_steady_signal():
    wave = speechlike(1.0)
    cfg = FeatureConfig(vad="utterance", min_duration_s=0.0)
    assert len(compute_features(wave, cfg)) == 1 + (SR - 512) // 160


def test_too_short_without_and_after_vad(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, speechlike(0.2), SR)
    with pytest.raises(AudioError) as info:
        extract_features(path, FeatureConfig(min_duration_s=0.5))
    assert (info.value.reason, info.value.path) == ("too_short", str(path))
    # 0.3 s of signal in 1.3 s passes without VAD, fails with it.
    wave = np.concatenate([speechlike(0.3), np.full(SR, 1e-5, np.float32)])
    assert len(compute_features(wave, FeatureConfig(min_duration_s=0.5))) > 0
    with pytest.raises(AudioError, match="after VAD"):
        compute_features(wave, FeatureConfig(vad="utterance", min_duration_s=0.5))


def test_exact_min_duration_passes():
    assert len(compute_features(speechlike(0.5), FeatureConfig(min_duration_s=0.5))) == 47


def test_shorter_than_one_frame_is_too_short():
    with pytest.raises(AudioError, match="<waveform>: too_short"):
        compute_features(speechlike(511 / SR), FeatureConfig(**RAW))


def test_extract_features_matches_compute_for_file_and_segment(tmp_path):
    wave = speechlike(1.0, seed=6)
    path = tmp_path / "a.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    cfg = FeatureConfig(kind="mfcc")
    np.testing.assert_array_equal(extract_features(path, cfg), compute_features(wave, cfg))
    segment = extract_features(path, cfg, start=0.25, end=0.75)
    np.testing.assert_array_equal(segment, compute_features(wave[4000:12000], cfg))


def test_config_json_round_trip_and_hash():
    cfg = FeatureConfig(kind="mfcc", n_mels=64, vad="utterance", cvn=True, vad_threshold_db=-35.0)
    again = from_dict(FeatureConfig, json.loads(to_json(cfg)))
    assert again == cfg
    assert from_dict(FeatureConfig, to_dict(cfg)) == cfg
    assert again.hash() == cfg.hash() == FeatureConfig(**to_dict(cfg)).hash()
    # Pinned: a change here means existing feature stores no longer match their config.
    assert FeatureConfig().hash() == "8551e400ddc0"
    changed = {
        dataclasses.replace(FeatureConfig(), **{k: v}).hash()
        for k, v in [
            ("n_mels", 64),
            ("hop_ms", 12.0),
            ("cmn", "none"),
            ("cmn", "running"),
            ("vad", "running"),
            ("preemphasis", 0.0),
            ("kind", "mfcc"),
        ]
    }
    assert len(changed) == 7 and FeatureConfig().hash() not in changed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "spectrogram"}, "kind must be one of"),
        ({"n_mels": 0}, "n_mels must be > 0"),
        ({"hop_ms": -1.0}, "hop_ms must be > 0"),
        ({"fmax": 8001.0}, "fmax <= sample_rate/2"),
        ({"fmin": 8000.0}, "fmin < fmax"),
        ({"win_ms": 40.0}, "must fit in n_fft"),
        ({"kind": "mfcc", "n_mfcc": 81}, "n_mfcc"),
        ({"preemphasis": 1.0}, "preemphasis"),
        ({"cmn": "none", "cvn": True}, "cvn requires cmn"),
        ({"cmn": "sliding"}, "cmn must be one of"),
        ({"vad": "energy"}, "vad must be one of"),
        ({"cmn_window": 0}, "cmn_window must be >= 1"),
        ({"vad_threshold_db": 3.0}, "vad_threshold_db"),
        ({"min_duration_s": -1.0}, "min_duration_s"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**changes)


def test_saved_bool_modes_load_as_their_meaning():
    saved = to_dict(FeatureConfig(kind="mfcc")) | {"cmn": True, "vad": True}
    assert feature_config_from_dict(saved) == FeatureConfig(
        kind="mfcc", cmn="utterance", vad="utterance"
    )
    off = feature_config_from_dict(saved | {"cmn": False, "vad": False, "cvn": False})
    assert (off.cmn, off.vad) == ("none", "none")
    del saved["cmn_window"]  # saved before it existed
    assert feature_config_from_dict(saved).cmn_window == FeatureConfig().cmn_window
    with pytest.raises(ConfigError, match="cmn must be one of"):
        feature_config_from_dict(saved | {"cmn": "sliding"})


def test_modes_are_set_by_name_on_the_command_line():
    cfg = replace(FeatureConfig(), {"cmn": "running", "cmn_window": "150", "vad": "running"})
    assert (cfg.cmn, cfg.cmn_window, cfg.vad) == ("running", 150, "running")
    with pytest.raises(ConfigError, match="vad must be one of"):
        replace(FeatureConfig(), {"vad": "true"})


def naive_running_cmvn(feats: np.ndarray, window: int, cvn: bool) -> np.ndarray:
    out = np.empty_like(feats, dtype=np.float64)
    for t in range(len(feats)):
        recent = feats[max(0, t - window + 1) : t + 1].astype(np.float64)
        out[t] = feats[t] - recent.mean(axis=0)
        if cvn:
            out[t] /= np.maximum(recent.std(axis=0), 1e-8)
    return out


@pytest.mark.parametrize(("kind", "cvn", "window"), [("fbank", False, 20), ("mfcc", True, 37)])
def test_running_cmn_is_the_mean_of_the_last_window_frames(kind, cvn, window):
    wave = np.concatenate([speechlike(0.5, seed=7), speechlike(0.5, seed=8, amp=0.05)])
    raw = compute_features(wave, FeatureConfig(kind=kind, **RAW))
    cfg = FeatureConfig(kind=kind, cmn="running", cvn=cvn, cmn_window=window, min_duration_s=0.0)
    expected = naive_running_cmvn(raw, window, cvn)
    np.testing.assert_allclose(compute_features(wave, cfg), expected, atol=2e-5, rtol=1e-5)


def test_running_cmn_of_a_constant_signal_is_zero():
    # 400 Hz repeats every 40 samples, so every 160-sample hop frames the same audio.
    wave = (0.3 * np.sin(2 * np.pi * 400 * np.arange(SR) / SR)).astype(np.float32)
    for cvn in (False, True):
        cfg = FeatureConfig(cmn="running", cvn=cvn, cmn_window=30, min_duration_s=0.0)
        np.testing.assert_allclose(compute_features(wave, cfg), 0.0, atol=1e-4)


@pytest.mark.parametrize("cvn", [False, True])
def test_running_cmn_with_window_one_is_zero(cvn):
    cfg = FeatureConfig(cmn="running", cvn=cvn, cmn_window=1, min_duration_s=0.0)
    np.testing.assert_allclose(compute_features(speechlike(0.5), cfg), 0.0, atol=1e-6)


@pytest.mark.parametrize("cvn", [False, True])
def test_running_cmn_longer_than_the_utterance_ends_on_the_utterance_statistics(cvn):
    wave = speechlike(0.8, seed=9)
    running = FeatureConfig(cmn="running", cvn=cvn, cmn_window=10_000, min_duration_s=0.0)
    utterance = FeatureConfig(cmn="utterance", cvn=cvn, min_duration_s=0.0)
    np.testing.assert_allclose(
        compute_features(wave, running)[-1], compute_features(wave, utterance)[-1], atol=1e-5
    )
    # The first frame is alone in its window: nothing is left of it.
    np.testing.assert_allclose(compute_features(wave, running)[0], 0.0, atol=1e-6)


def test_running_vad_keeps_quiet_frames_heard_before_anything_louder():
    quiet, loud = speechlike(0.5, seed=10, amp=0.003), speechlike(0.5, seed=11, amp=0.3)
    wave = np.concatenate([quiet, loud, quiet])  # 40 dB apart
    raw = compute_features(wave, FeatureConfig(**RAW))
    vad = dict(RAW, vad_threshold_db=-20.0)
    by_utterance = compute_features(wave, FeatureConfig(**{**vad, "vad": "utterance"}))
    running = compute_features(wave, FeatureConfig(**{**vad, "vad": "running"}))
    quiet_frames = len(quiet) // 160
    # The utterance's peak drops both quiet parts; the peak so far drops only the second.
    assert abs(len(raw) - len(by_utterance) - 2 * quiet_frames) <= 6
    assert abs(len(raw) - len(running) - quiet_frames) <= 3
    np.testing.assert_array_equal(running[: quiet_frames - 3], raw[: quiet_frames - 3])
    np.testing.assert_array_equal(running[-40:], by_utterance[-40:])


def test_running_vad_keeps_a_steady_signal_and_says_after_vad_when_too_short():
    cfg = FeatureConfig(vad="running", min_duration_s=0.0)
    assert len(compute_features(speechlike(1.0), cfg)) == 1 + (SR - 512) // 160
    wave = np.concatenate([speechlike(0.3, amp=0.3), np.full(SR, 1e-5, np.float32)])
    with pytest.raises(AudioError, match="after VAD"):
        compute_features(wave, FeatureConfig(vad="running", min_duration_s=0.5))
