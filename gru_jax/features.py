"""Log-mel / MFCC features with per-utterance CMVN and energy VAD, and parallel extraction.

Frames are rows: every function returns `[T, F]` float32. Framing uses `center=False` (frame `t`
covers samples `[t * hop, t * hop + n_fft)`), so no frame is made of padding and a stream framed
chunk by chunk (with `n_fft - hop` samples of overlap) gives the same frames as the whole
utterance; `T = 1 + (n_samples - n_fft) // hop`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import scipy.sparse
from tqdm import tqdm

from gru_jax.audio import AudioError, load_audio
from gru_jax.configs import config_hash

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("fbank", "mfcc")
LOG_FLOOR = 1e-6  # added to mel power before the natural log, so digital silence stays finite
CVN_FLOOR = 1e-8  # a constant feature column is left unscaled instead of divided by zero
CHUNK_SIZE = 16  # items per worker task: large enough that IPC is small next to the work

Item = tuple[str, float | None, float | None]


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
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

    def __post_init__(self) -> None:
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

    Each filter spans a few bins, so the sparse product is ~40x less work than the dense one,
    and it never starts BLAS threads: a multithreaded sgemm this small was 100x slower on a
    busy machine and oversubscribes the CPUs when extraction workers run in parallel.
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


@dataclasses.dataclass
class ExtractionReport:
    """What a feature-extraction run did; pass one to `extract_many` to collect it.

    `realtime_factor` is audio seconds per wall second, i.e. how many times faster than real time
    (100 means an hour of audio took 36 s). Wall time spans the whole iteration, including the
    time the consumer spends between items.
    """

    n_ok: int = 0
    skipped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    skipped_items: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def hours(self) -> float:
        return self.audio_seconds / 3600.0

    @property
    def realtime_factor(self) -> float:
        """Audio seconds / wall seconds; 0.0 before anything was timed."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"extracted {self.n_ok} utterance(s), {self.hours:.3f} h of audio "
            f"in {self.wall_seconds:.1f} s ({self.realtime_factor:.1f}x real time)",
            f"skipped {self.n_skipped} utterance(s)",
        ]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        return "\n".join(lines)


class _Outcome(NamedTuple):
    """One item's result from a worker: features and audio seconds, or why it was skipped."""

    feats: np.ndarray | None
    audio_seconds: float = 0.0
    skip: tuple[str, str, str] | None = None  # (path, reason, detail)


def _extract_chunk(chunk: list[Item], cfg: FeatureConfig) -> list[_Outcome]:
    """Worker task. Only `AudioError` becomes a skip; anything else is a bug and propagates."""
    outcomes = []
    for path, start, end in chunk:
        try:
            wave = load_audio(path, cfg.sample_rate, start, end)
            feats = compute_features(wave, cfg, source=os.fspath(path))
            outcomes.append(_Outcome(feats, wave.shape[0] / cfg.sample_rate))
        except AudioError as e:
            outcomes.append(_Outcome(None, skip=(e.path, e.reason, e.detail)))
    return outcomes


def extract_many(
    items: Sequence[Item],
    cfg: FeatureConfig,
    workers: int | None = None,
    progress: bool = True,
    report: ExtractionReport | None = None,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield `(index, features)` for `items` of `(path, start, end)`, in input order.

    Unusable files yield `(index, None)` and are counted in `report` by reason. `workers=None`
    uses every CPU; `workers <= 1` runs in this process. Worker processes are spawned, never
    forked, because the parent may hold JAX (and its threads) which a fork would corrupt.
    """
    report = report if report is not None else ExtractionReport()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    chunk_size = max(1, min(CHUNK_SIZE, math.ceil(len(items) / max(n_workers, 1))))
    chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
    n_workers = min(n_workers, len(chunks))
    started = time.perf_counter()
    bar = tqdm(total=len(items), unit="utt", desc="features", disable=not progress)
    try:
        if n_workers <= 1:
            results = (_extract_chunk(chunk, cfg) for chunk in chunks)
        else:
            results = _pooled_results(chunks, cfg, n_workers)
        index = 0
        for outcomes in results:
            for outcome in outcomes:
                _record(report, outcome)
                yield index, outcome.feats
                index += 1
            bar.update(len(outcomes))
            bar.set_postfix(skipped=report.n_skipped, refresh=False)
    finally:
        bar.close()
        report.wall_seconds += time.perf_counter() - started
    logger.info("%s", report.summary())


def _record(report: ExtractionReport, outcome: _Outcome) -> None:
    if outcome.skip is None:
        report.n_ok += 1
        report.audio_seconds += outcome.audio_seconds
        return
    path, reason, detail = outcome.skip
    report.skipped[reason] += 1
    report.skipped_items.append(outcome.skip)
    logger.warning("skipped %s: %s: %s", path, reason, detail)


def _pooled_results(
    chunks: list[list[Item]], cfg: FeatureConfig, n_workers: int
) -> Iterator[list[_Outcome]]:
    """Chunk results in order, with a bounded number of chunks in flight to cap memory."""
    max_in_flight = 4 * n_workers
    pool = concurrent.futures.ProcessPoolExecutor(
        n_workers, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        upcoming = iter(chunks)
        pending = collections.deque(
            pool.submit(_extract_chunk, chunk, cfg)
            for chunk in itertools.islice(upcoming, max_in_flight)
        )
        while pending:
            outcomes = pending.popleft().result()
            next_chunk = next(upcoming, None)
            if next_chunk is not None:
                pending.append(pool.submit(_extract_chunk, next_chunk, cfg))
            yield outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
