"""Log-mel / MFCC features with per-utterance CMVN and energy VAD.

Frames are rows: every function returns `[T, F]` float32. Framing uses `center=False` (frame `t`
covers samples `[t * hop, t * hop + n_fft)`), so no frame is made of padding and a stream framed
chunk by chunk (with `n_fft - hop` samples of overlap) gives the same frames as the whole
utterance; `T = 1 + (n_samples - n_fft) // hop`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator

import numpy as np
import scipy.sparse

from gru_jax.core.config import Config, config_hash
from gru_jax.data.audio import AudioError, load_audio

FEATURE_KINDS = ("fbank", "mfcc")
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
    cmn: bool = True  # per-utterance mean normalisation
    cvn: bool = False  # per-utterance variance normalisation (requires cmn)
    vad: bool = False  # energy VAD: drop frames more than |vad_threshold_db| below the loudest
    vad_threshold_db: float = -40.0  # dB relative to the utterance's loudest frame, < 0
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
        if self.cvn and not self.cmn:
            yield "cvn requires cmn (variance is normalised about the mean)"
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


def compute_features(
    wave: np.ndarray, cfg: FeatureConfig, *, source: str = "<waveform>"
) -> np.ndarray:
    """`[T, F]` float32 features of a mono waveform at `cfg.sample_rate`.

    Pipeline: pre-emphasis, power STFT, mel filterbank, `log(mel + 1e-6)` (fbank) or
    `mfcc(power_to_db(mel, top_db=None))` (no per-utterance dB clipping, so a chunk's features
    do not depend on the rest of the utterance), VAD, then CMVN over the kept frames only, so
    dropped silence does not bias the statistics. Raises `AudioError(source, "too_short")` when
    the wave is shorter than one frame or less than `min_duration_s` of it survives VAD.
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
    if cfg.vad:
        feats = feats[_voiced_frames(power.sum(axis=0), cfg.vad_threshold_db)]
    # The wave's duration times the fraction of frames kept: exactly the duration without VAD.
    kept_seconds = wave.shape[0] / cfg.sample_rate * feats.shape[0] / power.shape[1]
    if kept_seconds < cfg.min_duration_s:
        after = " after VAD" if cfg.vad else ""
        raise AudioError(
            source, "too_short", f"{kept_seconds:.2f} s{after}, minimum {cfg.min_duration_s} s"
        )
    return np.ascontiguousarray(_normalise(feats, cfg.cmn, cfg.cvn), dtype=np.float32)


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


def _voiced_frames(frame_energy: np.ndarray, threshold_db: float) -> np.ndarray:
    """Frames within `threshold_db` of the loudest, by windowed energy after pre-emphasis.

    Pre-emphasis tilts the energy towards the speech band, so low-frequency hum counts less.
    """
    energy_db = 10.0 * np.log10(frame_energy + 1e-20)
    return energy_db >= energy_db.max() + threshold_db


def _normalise(feats: np.ndarray, cmn: bool, cvn: bool) -> np.ndarray:
    if not cmn:
        return feats
    centred = feats - feats.mean(axis=0, keepdims=True)
    if not cvn:
        return centred
    return centred / np.maximum(centred.std(axis=0, keepdims=True), CVN_FLOOR)
