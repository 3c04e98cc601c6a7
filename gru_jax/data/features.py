"""Log-mel / MFCC features with CMVN and energy VAD, per utterance or running.

Frames are rows: every function returns `[T, F]` float32. Framing uses `center=False` (frame `t`
covers samples `[t * hop, t * hop + n_fft)`), so no frame is made of padding and a stream framed
chunk by chunk (with `n_fft - hop` samples of overlap) gives the same frames as the whole
utterance; `T = 1 + (n_samples - n_fft) // hop`.

The "utterance" modes of CMN and VAD need the whole utterance; the "running" modes look only at
frames up to the current one, so a stream's features can be computed as its audio arrives and
still equal the offline ones (`gru_jax.infer.frontend` is that streaming front end).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import scipy.sparse

from gru_jax.core.config import Config, config_hash, from_dict
from gru_jax.data.audio import AudioError, load_audio

FEATURE_KINDS = ("fbank", "mfcc")
CMN_MODES = ("none", "utterance", "running")
VAD_MODES = ("none", "utterance", "running")
LOG_FLOOR = 1e-6  # added to mel power before the natural log, so digital silence stays finite
CVN_FLOOR = 1e-8  # a constant feature column is left unscaled instead of divided by zero


@dataclasses.dataclass(frozen=True)
class FeatureConfig(Config):
    """Everything that determines the features; a feature store carries it and its `hash()`."""

    kind: str = "fbank"  # "fbank" (log-mel) | "mfcc"
    sample_rate: int = 16000
    n_mels: int = 80
    n_mfcc: int = 30
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 7600.0
    preemphasis: float = 0.97  # 0 disables
    # Mean normalisation over the kept frames: "utterance" (all of them) | "running" (the last
    # `cmn_window`, the current one included) | "none".
    cmn: str = "utterance"
    cvn: bool = False  # also divide by the std over the same frames as the mean (requires cmn)
    cmn_window: int = 300  # frames, for cmn="running"
    # Energy VAD, dropping frames more than |vad_threshold_db| below the loudest frame of the
    # utterance ("utterance") or so far, the current one included ("running"); or "none".
    vad: str = "none"
    vad_threshold_db: float = -40.0  # dB relative to the loudest frame, < 0
    min_duration_s: float = 0.5  # of audio kept after VAD

    def validate(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid FeatureConfig: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        if self.kind not in FEATURE_KINDS:
            yield f"kind must be one of {FEATURE_KINDS}, got {self.kind!r}"
        for name in ("sample_rate", "n_mels", "n_mfcc", "n_fft", "win_ms", "hop_ms"):
            if not getattr(self, name) > 0:
                yield f"{name} must be > 0, got {getattr(self, name)}"
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            yield f"n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})"
        if self.sample_rate > 0 and self.win_ms > 0 and self.win_length > self.n_fft:
            yield f"window ({self.win_length} samples) must fit in n_fft ({self.n_fft})"
        if self.sample_rate > 0 and self.hop_ms > 0 and self.hop_length < 1:
            yield f"hop_ms {self.hop_ms} is under one sample at {self.sample_rate} Hz"
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            yield f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}"
        if not 0 <= self.preemphasis < 1:
            yield f"preemphasis must be in [0, 1), got {self.preemphasis}"
        if self.cmn not in CMN_MODES:
            yield f"cmn must be one of {CMN_MODES}, got {self.cmn!r}"
        if self.vad not in VAD_MODES:
            yield f"vad must be one of {VAD_MODES}, got {self.vad!r}"
        if self.cvn and self.cmn == "none":
            yield "cvn requires cmn (variance is normalised about the mean)"
        if not self.cmn_window >= 1:
            yield f"cmn_window must be >= 1, got {self.cmn_window}"
        if not self.vad_threshold_db < 0:
            yield f"vad_threshold_db must be < 0 (dB below the peak), got {self.vad_threshold_db}"
        if not self.min_duration_s >= 0:
            yield f"min_duration_s must be >= 0, got {self.min_duration_s}"

    @property
    def n_features(self) -> int:
        return self.n_mels if self.kind == "fbank" else self.n_mfcc

    @property
    def hop_length(self) -> int:
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def win_length(self) -> int:
        return round(self.win_ms * self.sample_rate / 1000)

    def hash(self) -> str:
        return config_hash(self)


def feature_config_from_dict(data: Mapping[str, Any], name: str | None = None) -> FeatureConfig:
    """`from_dict` that also reads configs saved when `cmn` and `vad` were bools."""
    return from_dict(FeatureConfig, upgrade_feature_dict(data), name)


def upgrade_feature_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved feature config with the bool `cmn`/`vad` of older versions named as modes.

    Feature store manifests and checkpoints outlive the code that wrote them; their `True`
    meant what "utterance" means now, so they still load (their hash differs from the one they
    were saved with, so a store of them is rebuilt rather than silently reused). Separate from
    `feature_config_from_dict` for saved config trees that are upgraded as plain dicts.
    """
    upgraded = dict(data)
    for key in ("cmn", "vad"):
        if isinstance(upgraded.get(key), bool):
            upgraded[key] = "utterance" if upgraded[key] else "none"
    return upgraded


def compute_features(
    wave: np.ndarray, cfg: FeatureConfig, *, source: str = "<waveform>"
) -> np.ndarray:
    """`[T, F]` float32 features of a mono waveform at `cfg.sample_rate`.

    Pipeline: pre-emphasis, power STFT, mel filterbank, `log(mel + 1e-6)` (fbank) or
    `mfcc(power_to_db(mel, top_db=None))` (no per-utterance dB clipping, so a chunk's features
    do not depend on the rest of the utterance), VAD, then CMVN over the kept frames only, so
    dropped silence does not bias the statistics. With the "running" (or "none") modes of VAD
    and CMN a frame depends only on the audio up to its end, so this is also the reference of
    the streaming front end. Raises `AudioError(source, "too_short")` when the wave is shorter
    than one frame or less than `min_duration_s` of it survives VAD.
    """
    import librosa  # deferred, like every librosa use here: FeatureConfig alone needs no audio stack

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"{source}: expected a mono 1-D waveform, got shape {wave.shape}")
    if wave.shape[0] < cfg.n_fft:
        raise AudioError(
            source, "too_short", f"{wave.shape[0]} samples, fewer than one frame ({cfg.n_fft})"
        )
    power = _power_spectrogram(_preemphasise(wave, cfg.preemphasis), cfg)
    mel = _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ power
    if cfg.kind == "fbank":
        feats = np.log(mel + LOG_FLOOR)
    else:
        log_mel_db = librosa.power_to_db(mel, ref=1.0, top_db=None)
        feats = librosa.feature.mfcc(S=log_mel_db, n_mfcc=cfg.n_mfcc)
    feats = feats.T
    if cfg.vad != "none":
        running = cfg.vad == "running"
        feats = feats[_voiced_frames(power.sum(axis=0), cfg.vad_threshold_db, running)]
    # The wave's duration times the fraction of frames kept: exactly the duration without VAD.
    kept_seconds = wave.shape[0] / cfg.sample_rate * feats.shape[0] / power.shape[1]
    if kept_seconds < cfg.min_duration_s:
        after = " after VAD" if cfg.vad != "none" else ""
        raise AudioError(
            source, "too_short", f"{kept_seconds:.2f} s{after}, minimum {cfg.min_duration_s} s"
        )
    return np.ascontiguousarray(_normalise(feats, cfg), dtype=np.float32)


def extract_features(
    path: str | os.PathLike,
    cfg: FeatureConfig,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """`compute_features(load_audio(...))`; every unusable-file case is an `AudioError`."""
    wave = load_audio(path, cfg.sample_rate, start, end)
    return compute_features(wave, cfg, source=os.fspath(path))


def _preemphasise(wave: np.ndarray, coef: float) -> np.ndarray:
    """y[n] = x[n] - coef * x[n-1], first sample kept (no guessed history, unlike librosa's)."""
    if coef == 0:
        return wave
    out = wave.copy()
    out[1:] -= coef * wave[:-1]
    return out


def _power_spectrogram(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    import librosa

    spec = librosa.stft(
        wave,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=False,
    )
    return spec.real**2 + spec.imag**2


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """The `[n_mels, n_fft // 2 + 1]` float32 filterbank `compute_features` applies, dense, for
    front ends that compute the same features elsewhere (on an accelerator, chunk by chunk)."""
    return _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).toarray()


@functools.lru_cache(maxsize=8)
def _mel_basis(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> scipy.sparse.csr_array:
    """librosa's (slaney) mel filterbank, cached, as a sparse matrix.

    Each filter spans a few bins, so the sparse product is far less work than the dense one,
    and it never starts BLAS threads: a multithreaded sgemm this small stalls on a busy
    machine and oversubscribes the CPUs when extraction workers run in parallel.
    """
    import librosa

    basis = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32
    )
    return scipy.sparse.csr_array(basis)


def _voiced_frames(frame_energy: np.ndarray, threshold_db: float, running: bool) -> np.ndarray:
    """Frames within `threshold_db` of the loudest (so far, if `running`), by windowed energy
    after pre-emphasis.

    Pre-emphasis tilts the energy towards the speech band, so low-frequency hum counts less.
    """
    energy_db = 10.0 * np.log10(frame_energy + 1e-20)
    peak = np.maximum.accumulate(energy_db) if running else energy_db.max()
    return energy_db >= peak + threshold_db


def _normalise(feats: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    if cfg.cmn == "none":
        return feats
    if cfg.cmn == "running":
        return _running_cmvn(feats, cfg.cmn_window, cfg.cvn)
    return utterance_cmvn(feats, cfg.cvn)


def utterance_cmvn(feats: np.ndarray, cvn: bool) -> np.ndarray:
    """`feats` less their mean over all frames, and divided by their std there if `cvn`."""
    centred = feats - feats.mean(axis=0, keepdims=True)
    if not cvn:
        return centred
    return centred / np.maximum(centred.std(axis=0, keepdims=True), CVN_FLOOR)


def _running_cmvn(feats: np.ndarray, window: int, cvn: bool) -> np.ndarray:
    """Each frame normalised by the statistics of the last `window` frames, itself included.

    Kaldi's `apply-cmvn-sliding --center=false`, but strictly causal (no look-ahead to a minimum
    window at the start), so a stream never waits for frames it has not heard. Windowed sums are
    differences of float64 prefix sums of the frames less their overall mean: the shift changes
    no statistic but keeps the prefix sums small, so their differences keep the digits that count.
    """
    x = feats.astype(np.float64)
    if len(x) == 0:
        return x
    x -= x.mean(axis=0)
    ends = np.arange(1, len(x) + 1)
    starts = np.maximum(ends - window, 0)
    counts = (ends - starts)[:, None]
    mean = _window_sums(x, starts, ends) / counts
    centred = x - mean
    if not cvn:
        return centred
    var = np.maximum(_window_sums(x * x, starts, ends) / counts - mean * mean, 0.0)
    return centred / np.maximum(np.sqrt(var), CVN_FLOOR)


def _window_sums(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    prefix = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    return prefix[ends] - prefix[starts]
