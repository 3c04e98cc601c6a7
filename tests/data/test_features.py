import dataclasses
import json

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from gru_jax.core.config import from_dict, to_dict, to_json
from gru_jax.data.audio import AudioError
from gru_jax.data.features import (
    FeatureConfig,
    compute_features,
    extract_features,
)
from tests.data._audio import SR, speechlike

RAW = dict(cmn=False, cvn=False, vad=False, min_duration_s=0.0)


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
    cmn = compute_features(wave, FeatureConfig(cmn=True, cvn=False, min_duration_s=0.0))
    np.testing.assert_allclose(cmn.mean(axis=0), 0.0, atol=1e-5)
    assert cmn.std(axis=0).min() > 0.05  # variance is left alone
    cmvn = compute_features(wave, FeatureConfig(kind="mfcc", cmn=True, cvn=True))
    np.testing.assert_allclose(cmvn.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(cmvn.std(axis=0), 1.0, atol=1e-4)


def test_vad_drops_a_quiet_gap():
    gap = np.random.default_rng(3).standard_normal(SR).astype(np.float32) * 1e-4  # -70 dB
    wave = np.concatenate([speechlike(1.0, seed=4), gap, speechlike(1.0, seed=5)])
    full = compute_features(wave, FeatureConfig(**RAW))
    voiced = compute_features(wave, FeatureConfig(**{**RAW, "vad": True}))
    gap_frames = SR // 160
    assert abs((len(full) - len(voiced)) - gap_frames) <= 4
    # The kept frames are the loud ones, unchanged (no CMN here).
    np.testing.assert_array_equal(voiced[:90], full[:90])
    np.testing.assert_array_equal(voiced[-90:], full[-90:])


def test_vad_keeps_steady_signal():
    wave = speechlike(1.0)
    cfg = FeatureConfig(vad=True, min_duration_s=0.0)
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
        compute_features(wave, FeatureConfig(vad=True, min_duration_s=0.5))


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
    cfg = FeatureConfig(kind="mfcc", n_mels=64, vad=True, cvn=True, vad_threshold_db=-35.0)
    again = from_dict(FeatureConfig, json.loads(to_json(cfg)))
    assert again == cfg
    assert from_dict(FeatureConfig, to_dict(cfg)) == cfg
    assert again.hash() == cfg.hash() == FeatureConfig(**to_dict(cfg)).hash()
    # Pinned: a change here means existing feature stores no longer match their config.
    assert FeatureConfig().hash() == "33cbfdfc3155"
    changed = {
        dataclasses.replace(FeatureConfig(), **{k: v}).hash()
        for k, v in [
            ("n_mels", 64),
            ("hop_ms", 12.0),
            ("cmn", False),
            ("preemphasis", 0.0),
            ("kind", "mfcc"),
        ]
    }
    assert len(changed) == 5 and FeatureConfig().hash() not in changed


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
        ({"cmn": False, "cvn": True}, "cvn requires cmn"),
        ({"vad_threshold_db": 3.0}, "vad_threshold_db"),
        ({"min_duration_s": -1.0}, "min_duration_s"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**changes)
