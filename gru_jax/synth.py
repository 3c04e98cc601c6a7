"""Synthetic speaker corpus: source-filter speech-like audio written in VoxCeleb layout.

The demo and the tests need speakers without downloading anything, and the data must be hard enough
that a trained model beats a trivial spectral statistic. Each speaker gets a voice drawn from the
seed (pitch, vocal-tract length, formant table, timbre, tilt, breathiness, rate); each session gets
its own channel (level, EQ, band limits, background noise colour and SNR), so within-speaker
variation across sessions competes with between-speaker variation as in real recordings.

Every random stream is keyed by `(seed, stream, speaker, ...)` rather than drawn sequentially, so
the output does not depend on generation order and the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import operator
import os
import shutil
import sys
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal
from tqdm import tqdm

from gru_jax.configs import to_dict

# Bump when anything that changes the generated audio or lists changes, so stale corpora are rebuilt.
FORMAT_VERSION = 1
FORMAT_NAME = "gru-jax-synth"
MARKER_NAME = ".gru-jax-synth"
META_NAME = "meta.json"
WAV_DIR = "wav"
TRAIN_LIST = "train_list.txt"
TRIALS = "trials.txt"
ENROLL_LIST = "enroll_list.txt"
TEST_LIST = "test_list.txt"

# Trials per test utterance and label (each utterance enrols against this many same- and
# other-speaker utterances), which gives a few hundred trials for the default corpus size.
TRIALS_PER_UTTERANCE = 3

# Independent random streams; the number is the second key of every generator.
STREAM_VOICE, STREAM_SESSION_IDS, STREAM_CHANNEL, STREAM_UTTERANCE, STREAM_TRIALS = range(5)

SESSION_ID_ALPHABET = np.array(
    list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
)

# Average adult-male formants F1-F5 (Hz): ten Peterson & Barney vowels, schwa and a nasal murmur.
BASE_FORMANTS = np.array(
    [
        [270, 2290, 3010, 3500, 4500],  # i
        [390, 1990, 2550, 3500, 4500],  # I
        [530, 1840, 2480, 3500, 4500],  # E
        [660, 1720, 2410, 3500, 4500],  # ae
        [730, 1090, 2440, 3500, 4500],  # a
        [570, 840, 2410, 3500, 4500],  # o
        [440, 1020, 2240, 3500, 4500],  # U
        [300, 870, 2240, 3500, 4500],  # u
        [640, 1190, 2390, 3500, 4500],  # V
        [490, 1350, 1690, 3500, 4500],  # er
        [500, 1500, 2500, 3500, 4500],  # schwa: where unstressed vowels drift
        [250, 1100, 2300, 3400, 4400],  # nasal murmur
    ],
    dtype=np.float64,
)
N_ORAL_VOWELS = 10
SCHWA, NASAL = 10, 11
BASE_BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0, 300.0])
NASAL_BANDWIDTH_FACTOR = 2.5

# Rows of Voice.fricative_bands_hz: three fricative places (s-like, sh-like, f-like), then the
# stop release burst.
N_FRICATIVES, NOISE_F, NOISE_BURST = 3, 2, 3

# Speaker timbre (fixed resonances of the voice beyond the formants) and session EQ: both colour
# the long-term spectrum, so a model has to tell the speaker's colouring from the microphone's.
# These strengths, the accent spread and the noise settings are calibrated so that a trivial
# statistic (mean MFCC + cosine) scores an EER of about 0.2-0.28 on trials.txt: informative, far
# from solved (see tests/test_synth.py). Changing them changes that number; bump FORMAT_VERSION.
N_TIMBRE_BANDS, TIMBRE_DB = 4, 14.0
N_EQ_BANDS, EQ_DB = 2, 5.0
HIGHPASS_HZ, LOWPASS_HZ = (50.0, 150.0), (5000.0, 7800.0)
PEAK_LIMIT = 0.98
DEFAULT_SNR_DB = (10.0, 40.0)
ACCENT_SPREAD = 0.1

SEX_PROBABILITIES = {"male": 0.45, "female": 0.45, "child": 0.10}
# (median of F0 median in Hz, log spread, clip range) and (formant scale mean, spread) per class.
F0_BY_SEX = {
    "male": (115.0, 0.15, 80.0, 170.0),
    "female": (205.0, 0.12, 150.0, 280.0),
    "child": (265.0, 0.08, 220.0, 300.0),
}
FORMANT_SCALE_BY_SEX = {"male": (0.94, 0.05), "female": (1.10, 0.05), "child": (1.20, 0.04)}


@dataclasses.dataclass(frozen=True)
class Voice:
    """One speaker's vocal parameters; everything that makes them identifiable."""

    sex: str
    f0_median_hz: float
    intonation_semitones: float
    jitter: float
    shimmer: float
    open_quotient: float
    formant_scale: float
    bandwidth_scale: float
    tilt_pole: float
    timbre_centres_hz: tuple[float, ...]
    timbre_gains_db: tuple[float, ...]
    timbre_q: tuple[float, ...]
    breathiness: float
    speaking_rate: float
    vowel_reduction: float
    formants_hz: tuple[tuple[float, ...], ...]
    fricative_bands_hz: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class Channel:
    """One recording session: microphone/room colouring and background that all its utterances share."""

    level_dbfs: float
    highpass_hz: float
    lowpass_hz: float
    eq_centres_hz: tuple[float, ...]
    eq_gains_db: tuple[float, ...]
    eq_q: tuple[float, ...]
    noise_pole: float
    snr_position: float


@dataclasses.dataclass(frozen=True)
class CorpusInfo:
    """Where a corpus lives and what it holds; `reused` says it was found, not written."""

    root: Path
    wav_dir: Path
    train_list: Path
    trials: Path
    enroll_list: Path
    test_list: Path
    meta: Path
    n_speakers: int
    n_train_speakers: int
    n_test_speakers: int
    n_files: int
    n_trials: int
    sample_rate: int
    reused: bool


@dataclasses.dataclass(frozen=True)
class _Utterance:
    speaker_index: int
    speaker: str
    session: str
    session_index: int
    utt_index: int
    relpath: str


@dataclasses.dataclass(frozen=True)
class _Segments:
    """A planned utterance: per-segment sample bounds, levels and the filters that voice them."""

    starts: np.ndarray
    ends: np.ndarray
    ramps: np.ndarray
    voicing: np.ndarray
    noise_level: np.ndarray
    vowel: np.ndarray  # formant-table row, -1 for unvoiced segments
    noise_type: np.ndarray  # NOISE_* id, -1 for none
    reduction: np.ndarray  # how far a vowel moves towards schwa (log-frequency interpolation)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *keys])


# ----------------------------------------------------------------------------------------------
# Speakers and sessions


def draw_voice(seed: int, speaker_index: int) -> Voice:
    """Voice of speaker `speaker_index`; depends on nothing else, so speakers can be made in any order."""
    rng = _rng(seed, STREAM_VOICE, speaker_index)
    sexes = list(SEX_PROBABILITIES)
    sex = sexes[rng.choice(len(sexes), p=list(SEX_PROBABILITIES.values()))]
    f0_centre, f0_spread, f0_lo, f0_hi = F0_BY_SEX[sex]
    f0 = float(np.clip(f0_centre * np.exp(rng.normal(0.0, f0_spread)), f0_lo, f0_hi))
    scale_mean, scale_spread = FORMANT_SCALE_BY_SEX[sex]
    formant_scale = float(np.clip(rng.normal(scale_mean, scale_spread), 0.8, 1.25))
    # Per-speaker vowel "accent": every formant of every vowel moves a little, F4/F5 (which carry
    # most speaker identity in real voices) move as a whole.
    perturb = np.exp(rng.normal(0.0, ACCENT_SPREAD, size=BASE_FORMANTS.shape))
    perturb[:, 3:] = np.exp(rng.normal(0.0, ACCENT_SPREAD, size=(1, 2)))
    formants = BASE_FORMANTS * formant_scale * perturb
    formants = np.sort(formants, axis=1)
    s_centre = rng.uniform(4800.0, 7000.0) * np.sqrt(formant_scale)
    sh_centre = rng.uniform(2300.0, 3600.0) * formant_scale
    f_low = rng.uniform(1000.0, 2200.0)
    bands = (
        (s_centre / 1.35, s_centre * 1.35),
        (sh_centre / 1.3, sh_centre * 1.3),
        (f_low, f_low * rng.uniform(3.0, 6.0)),
        (rng.uniform(500.0, 1500.0), rng.uniform(4000.0, 7000.0)),
    )
    return Voice(
        sex=sex,
        f0_median_hz=f0,
        intonation_semitones=float(rng.uniform(1.0, 3.5)),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        open_quotient=float(rng.uniform(0.45, 0.75)),
        formant_scale=formant_scale,
        bandwidth_scale=float(rng.uniform(0.8, 1.4)),
        tilt_pole=float(rng.uniform(0.1, 0.85)),
        timbre_centres_hz=_floats(np.exp(rng.uniform(np.log(300), np.log(5000), N_TIMBRE_BANDS))),
        timbre_gains_db=_floats(rng.uniform(-TIMBRE_DB, TIMBRE_DB, N_TIMBRE_BANDS)),
        timbre_q=_floats(rng.uniform(0.8, 2.0, N_TIMBRE_BANDS)),
        breathiness=float(rng.uniform(0.02, 0.35)),
        speaking_rate=float(rng.uniform(0.75, 1.35)),
        vowel_reduction=float(rng.uniform(0.3, 0.7)),
        formants_hz=tuple(tuple(float(f) for f in row) for row in formants),
        fricative_bands_hz=tuple((float(lo), float(hi)) for lo, hi in bands),
    )


def draw_session_ids(seed: int, speaker_index: int, n_sessions: int) -> list[str]:
    """YouTube-like 11-character ids, unique within the speaker."""
    rng = _rng(seed, STREAM_SESSION_IDS, speaker_index)
    ids: list[str] = []
    while len(ids) < n_sessions:
        candidate = "".join(rng.choice(SESSION_ID_ALPHABET, size=11))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def draw_channel(seed: int, speaker_index: int, session_index: int) -> Channel:
    rng = _rng(seed, STREAM_CHANNEL, speaker_index, session_index)
    return Channel(
        level_dbfs=float(rng.uniform(-28.0, -22.0)),
        highpass_hz=float(np.exp(rng.uniform(np.log(HIGHPASS_HZ[0]), np.log(HIGHPASS_HZ[1])))),
        lowpass_hz=float(rng.uniform(*LOWPASS_HZ)),
        eq_centres_hz=_floats(np.exp(rng.uniform(np.log(200), np.log(5000), N_EQ_BANDS))),
        eq_gains_db=_floats(rng.uniform(-EQ_DB, EQ_DB, N_EQ_BANDS)),
        eq_q=_floats(rng.uniform(0.7, 2.0, N_EQ_BANDS)),
        noise_pole=float(rng.uniform(0.9, 0.99)),
        snr_position=float(np.sqrt(rng.uniform(0.0, 1.0))),
    )


# ----------------------------------------------------------------------------------------------
# Filters


def _resonator_sos(freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade of two-pole resonators with unit DC gain (Klatt style), one sos row per formant."""
    keep = freqs < 0.45 * sample_rate
    freqs, bandwidths = freqs[keep], bandwidths[keep]
    r = np.exp(-np.pi * bandwidths / sample_rate)
    theta = 2.0 * np.pi * freqs / sample_rate
    a1, a2 = -2.0 * r * np.cos(theta), r * r
    sos = np.zeros((len(freqs), 6))
    sos[:, 0] = 1.0 + a1 + a2
    sos[:, 3], sos[:, 4], sos[:, 5] = 1.0, a1, a2
    return sos


def _peaking_sos(centre: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ-cookbook peaking EQ biquad."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * min(centre, 0.45 * sample_rate) / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1.0 + alpha * amp, -2.0 * np.cos(w0), 1.0 - alpha * amp])
    a = np.array([1.0 + alpha / amp, -2.0 * np.cos(w0), 1.0 - alpha / amp])
    return np.concatenate([b / a[0], a / a[0]])[None, :]


@functools.lru_cache(maxsize=1024)
def _band_sos(lo: float, hi: float, sample_rate: int) -> np.ndarray:
    nyquist_margin = 0.45 * sample_rate
    hi = min(hi, nyquist_margin)
    lo = min(lo, 0.7 * hi)
    return signal.butter(2, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")


@functools.lru_cache(maxsize=1024)
def _timbre_sos(voice: Voice, sample_rate: int) -> np.ndarray:
    bands = zip(voice.timbre_centres_hz, voice.timbre_gains_db, voice.timbre_q, strict=True)
    return np.concatenate([_peaking_sos(c, g, q, sample_rate) for c, g, q in bands])


@functools.lru_cache(maxsize=1024)
def _channel_sos(channel: Channel, sample_rate: int) -> np.ndarray:
    stages = [
        signal.butter(2, channel.highpass_hz, btype="highpass", fs=sample_rate, output="sos"),
        signal.butter(
            4,
            min(channel.lowpass_hz, 0.45 * sample_rate),
            btype="lowpass",
            fs=sample_rate,
            output="sos",
        ),
    ]
    for centre, gain, q in zip(
        channel.eq_centres_hz, channel.eq_gains_db, channel.eq_q, strict=True
    ):
        stages.append(_peaking_sos(centre, gain, q, sample_rate))
    return np.concatenate(stages)


# ----------------------------------------------------------------------------------------------
# One utterance


def _segment(
    duration_s: float,
    ramp_s: float,
    voicing: float = 0.0,
    noise_level: float = 0.0,
    vowel: int = -1,
    noise_type: int = -1,
    reduction: float = 0.0,
) -> tuple[float, ...]:
    return (duration_s, ramp_s, voicing, noise_level, vowel, noise_type, reduction)


def _plan_segments(voice: Voice, rng: np.random.Generator, n_samples: int, sr: int) -> _Segments:
    """Syllable-like sequence of (onset consonant) vowel (coda) with occasional pauses.

    Unstressed vowels drift towards the speaker's schwa by a speaker-typical amount (vowel
    reduction), as in running speech.
    """
    rate = voice.speaking_rate * rng.uniform(0.9, 1.1)
    lead, tail = rng.uniform(0.02, 0.1, size=2)
    speech_end = n_samples - int(tail * sr)
    rows = [_segment(lead, 0.01)]
    elapsed = lead
    while elapsed * sr < speech_end:
        syllable = []
        onset = rng.random()
        if onset < 0.35:
            syllable.append(_fricative(rng, rate))
        elif onset < 0.6:
            syllable.append(_segment(rng.uniform(0.03, 0.08) / rate, 0.005))
            syllable.append(_segment(rng.uniform(0.01, 0.025), 0.003, 0.0, 1.0, -1, NOISE_BURST))
        elif onset < 0.75:
            syllable.append(_segment(rng.uniform(0.05, 0.1) / rate, 0.015, 0.35, 0.0, NASAL))
        log_stress = rng.normal(0.0, 0.35)
        reduction = np.clip(voice.vowel_reduction + rng.normal(0.0, 0.15) - log_stress, 0.0, 0.9)
        duration = rng.uniform(0.07, 0.22) / rate * np.exp(0.5 * log_stress)
        vowel = int(rng.integers(N_ORAL_VOWELS))
        syllable.append(_segment(duration, 0.025, np.exp(log_stress), 0.0, vowel, -1, reduction))
        coda = rng.random()
        if coda < 0.15:
            syllable.append(_fricative(rng, rate))
        elif coda < 0.3:
            syllable.append(_segment(rng.uniform(0.04, 0.09) / rate, 0.015, 0.35, 0.0, NASAL))
        if rng.random() < 0.05:
            syllable.append(_segment(rng.uniform(0.08, 0.25), 0.02))
        rows += syllable
        elapsed += sum(row[0] for row in syllable)
    table = np.array(rows)
    ends = np.minimum(np.round(np.cumsum(table[:, 0]) * sr).astype(np.int64), speech_end)
    starts = np.concatenate([[0], ends[:-1]])
    keep = ends > starts
    starts = np.append(starts[keep], speech_end)
    ends = np.append(ends[keep], n_samples)
    table = np.vstack([table[keep], _segment(0.0, 0.01)])
    return _Segments(
        starts=starts,
        ends=ends,
        ramps=np.round(table[:, 1] * sr).astype(np.int64),
        voicing=table[:, 2],
        noise_level=table[:, 3],
        vowel=table[:, 4].astype(np.int64),
        noise_type=table[:, 5].astype(np.int64),
        reduction=table[:, 6],
    )


def _fricative(rng: np.random.Generator, rate: float) -> tuple[float, ...]:
    place = int(rng.integers(N_FRICATIVES))
    voiced = rng.random() < 0.3
    level = rng.uniform(0.08, 0.3) if place == NOISE_F else rng.uniform(0.2, 0.6)
    voicing, vowel = (0.25, NASAL) if voiced else (0.0, -1)
    return _segment(rng.uniform(0.05, 0.14) / rate, 0.015, voicing, level, vowel, place)


def _track(segments: _Segments, values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Amplitude envelope: `values` held over each selected segment, linear ramps between."""
    xp = _plateau_breakpoints(segments, rows)
    return np.interp(np.arange(n, dtype=np.float64), xp, np.repeat(values[rows], 2))


def _plateau_breakpoints(segments: _Segments, rows: np.ndarray) -> np.ndarray:
    """Start and end of each selected segment's plateau, interleaved (ramps are centred on the
    segment boundaries and never longer than the segment)."""
    starts, ends = segments.starts[rows], segments.ends[rows]
    half = np.minimum(segments.ramps[rows] / 2.0, (ends - starts) / 2.0 - 0.5)
    return np.stack([starts + half, ends - half], axis=1).ravel()


def _glottal_source(voice: Voice, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Glottal flow derivative (Rosenberg pulses) along an intonation contour, with jitter,
    shimmer, aspiration noise and spectral tilt."""
    f0_utt = voice.f0_median_hz * np.exp(rng.normal(0.0, 0.05))
    # Intonation: smooth random accents every ~0.3 s, declination, sometimes a final rise.
    n_knots = max(int(n / sr / 0.3), 1) + 2
    knots = rng.normal(0.0, voice.intonation_semitones, n_knots)
    knots += np.linspace(1.0, -1.0, n_knots) * rng.uniform(0.5, 2.0)
    if rng.random() < 0.2:
        knots[-2:] += rng.uniform(2.0, 5.0)
    contour = np.interp(np.arange(n), np.linspace(0, n - 1, n_knots), knots)
    period = max(int(sr / f0_utt), 1)
    n_jitter = n // period + 2
    jitter = np.interp(np.arange(n), np.arange(n_jitter) * period, rng.normal(0, 1, n_jitter))
    f0 = f0_utt * 2.0 ** (contour / 12.0) * (1.0 + voice.jitter * jitter)
    phase = np.cumsum(f0 / sr)
    frac = phase - np.floor(phase)
    rise, fall = 0.7 * voice.open_quotient, 0.3 * voice.open_quotient
    flow = np.zeros(n)
    opening = frac < rise
    closing = ~opening & (frac < rise + fall)
    flow[opening] = 0.5 * (1.0 - np.cos(np.pi / rise * frac[opening]))
    flow[closing] = np.cos(0.5 * np.pi / fall * (frac[closing] - rise))
    cycle = phase.astype(np.int64)
    shimmer = np.exp(voice.shimmer * rng.normal(0.0, 1.0, cycle[-1] + 1))[cycle]
    derivative = np.diff(flow, prepend=0.0) * (sr / voice.f0_median_hz)
    aspiration = rng.normal(0.0, 1.0, n) * (0.3 + flow) * voice.breathiness * 2.0
    source = derivative * shimmer + aspiration
    tilted = signal.lfilter([1.0 - voice.tilt_pole], [1.0, -voice.tilt_pole], source)
    return signal.sosfilt(_timbre_sos(voice, sr), tilted)


def _filter_active(sos: np.ndarray, x: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """sosfilt over the span where `envelope` is non-zero only: noise filters skip silence."""
    (active,) = np.nonzero(envelope)
    out = np.zeros_like(x)
    if len(active):
        span = slice(active[0], active[-1] + 1)
        out[span] = signal.sosfilt(sos, x[span]) * envelope[span]
    return out


def _vocal_tract(
    voice: Voice, segments: _Segments, source: np.ndarray, formants: np.ndarray, sr: int
) -> np.ndarray:
    """Filter the source through each voiced segment's formant cascade and crossfade neighbours.

    A fractional segment index, interpolated between segment plateaus, gives each segment a
    triangular weight spanning into its neighbours (through any consonants between them), which
    stands in for coarticulated formant transitions while every filter stays time-invariant.
    """
    n = len(source)
    out = np.zeros(n)
    rows = np.flatnonzero(segments.vowel >= 0)
    if len(rows) == 0:
        return out
    xp = _plateau_breakpoints(segments, rows)
    position = np.interp(np.arange(n, dtype=np.float64), xp, np.repeat(np.arange(len(rows)), 2))
    bandwidths = BASE_BANDWIDTHS * voice.bandwidth_scale
    for k, row in enumerate(rows):
        first = 0 if k == 0 else int(np.ceil(xp[2 * k - 1]))
        last = n if k == len(rows) - 1 else int(np.floor(xp[2 * k + 2])) + 1
        vowel = segments.vowel[row]
        scale = NASAL_BANDWIDTH_FACTOR if vowel == NASAL else 1.0
        reduced = formants[vowel] ** (1.0 - segments.reduction[row])
        reduced *= formants[SCHWA] ** segments.reduction[row]
        sos = _resonator_sos(reduced, bandwidths * scale, sr)
        weight = np.maximum(0.0, 1.0 - np.abs(position[first:last] - k))
        out[first:last] += signal.sosfilt(sos, source[first:last]) * weight
    return out


def synthesize_utterance(
    voice: Voice,
    channel: Channel,
    rng: np.random.Generator,
    sample_rate: int,
    duration_s: tuple[float, float],
    snr_db: tuple[float, float] | None,
) -> np.ndarray:
    """One utterance as int16 samples: segments -> source -> formant filters -> noise -> channel."""
    n = round(rng.uniform(*duration_s) * sample_rate)
    segments = _plan_segments(voice, rng, n, sample_rate)
    everything = np.arange(len(segments.starts))
    voicing = _track(segments, segments.voicing, everything, n)
    source = _glottal_source(voice, rng, n, sample_rate) * voicing
    # Per-utterance articulation varies a little around the speaker's table.
    formants = np.asarray(voice.formants_hz)
    formants = formants * np.exp(rng.normal(0.0, 0.03, formants.shape))
    speech = _vocal_tract(voice, segments, source, formants, sample_rate)
    talking = slice(segments.starts[1], segments.ends[-2])  # without leading/trailing silence

    white = rng.normal(0.0, 1.0, n)
    for noise_type in np.unique(segments.noise_type[segments.noise_type >= 0]):
        level = np.where(segments.noise_type == noise_type, segments.noise_level, 0.0)
        envelope = _track(segments, level, everything, n)
        lo, hi = voice.fricative_bands_hz[noise_type]
        speech += _filter_active(_band_sos(lo, hi, sample_rate), white, envelope)

    if snr_db is not None:
        background = signal.lfilter([1.0], [1.0, -channel.noise_pole], rng.normal(0.0, 1.0, n))
        speech_power = np.mean(speech[talking] ** 2)
        # Background noise belongs to the session: its SNR sits at one place in the range.
        lo, hi = snr_db
        snr = np.clip(lo + channel.snr_position * (hi - lo) + rng.normal(0.0, 1.5), lo, hi)
        scale = np.sqrt(speech_power / (np.mean(background**2) * 10.0 ** (snr / 10.0)))
        speech += background * scale

    out = signal.sosfilt(_channel_sos(channel, sample_rate), speech)
    rms = np.sqrt(np.mean(out[talking] ** 2))
    if not np.isfinite(rms) or rms == 0.0:
        raise RuntimeError("synthesised utterance is silent or not finite")
    # Loudness set on RMS (not peak, which depends on content), limited to avoid clipping.
    out *= 10.0 ** ((channel.level_dbfs + rng.uniform(-2.0, 2.0)) / 20.0) / rms
    out *= min(1.0, PEAK_LIMIT / np.max(np.abs(out)))
    return np.round(out * 32767.0).astype("<i2")


# ----------------------------------------------------------------------------------------------
# Corpus layout, lists and files


def _resolve_test_speakers(n_speakers: int, n_test_speakers: int | None) -> int:
    if n_test_speakers is None:
        n_test_speakers = max(2, round(0.25 * n_speakers))
    n_test_speakers = operator.index(n_test_speakers)
    if not 2 <= n_test_speakers <= n_speakers - 1:
        raise ValueError(
            f"n_test_speakers must be in [2, n_speakers - 1 = {n_speakers - 1}] so that both "
            f"verification trials and training are possible, got {n_test_speakers}"
        )
    return n_test_speakers


def _validate(
    n_speakers: int,
    n_utterances: int,
    seed: int,
    sample_rate: int,
    n_sessions: int,
    duration_s: tuple[float, float],
    snr_db: tuple[float, float] | None,
) -> None:
    problems = []
    if n_speakers < 3:
        problems.append(f"n_speakers must be >= 3, got {n_speakers}")
    if n_utterances < 2:
        problems.append(f"n_utterances must be >= 2 (same-speaker trials), got {n_utterances}")
    if seed < 0:
        problems.append(f"seed must be >= 0, got {seed}")
    if sample_rate < 8000:
        problems.append(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    if n_sessions < 1:
        problems.append(f"n_sessions must be >= 1, got {n_sessions}")
    if not 0.5 <= duration_s[0] <= duration_s[1]:
        problems.append(f"duration_s must be (lo, hi) with 0.5 <= lo <= hi, got {duration_s}")
    if snr_db is not None and snr_db[0] > snr_db[1]:
        problems.append(f"snr_db must be (lo, hi) with lo <= hi, got {snr_db}")
    if problems:
        raise ValueError("; ".join(problems))


def _speaker_id(speaker_index: int) -> str:
    return f"id{10001 + speaker_index}"


def _layout(seed: int, n_speakers: int, n_utterances: int, n_sessions: int) -> list[_Utterance]:
    """All utterances, VoxCeleb style: contiguous blocks of utterances per session, numbered from
    00001 within each session."""
    utterances = []
    sessions_per_speaker = min(n_sessions, n_utterances)
    blocks = np.array_split(np.arange(n_utterances), sessions_per_speaker)
    for speaker_index in range(n_speakers):
        speaker = _speaker_id(speaker_index)
        session_ids = draw_session_ids(seed, speaker_index, sessions_per_speaker)
        for session_index, (session, block) in enumerate(zip(session_ids, blocks, strict=True)):
            for number, utt_index in enumerate(block, start=1):
                relpath = f"{speaker}/{session}/{number:05d}.wav"
                utterances.append(
                    _Utterance(
                        speaker_index, speaker, session, session_index, int(utt_index), relpath
                    )
                )
    return utterances


def _make_trials(seed: int, test_utts: list[_Utterance]) -> list[tuple[int, str, str]]:
    """Balanced verification trials over the test speakers.

    Each utterance enrols against up to TRIALS_PER_UTTERANCE same-speaker utterances (other sessions
    first, since those are the hard and realistic pairs) and exactly as many other-speaker ones.
    Unordered pairs never repeat; an utterance that gets no pairs of its own was already paired
    with all candidates of one label, so every utterance appears in some trial.
    """
    rng = _rng(seed, STREAM_TRIALS)
    speakers = np.array([u.speaker_index for u in test_utts])
    sessions = np.array([u.session_index for u in test_utts])
    seen: set[tuple[int, int]] = set()
    trials: list[tuple[int, str, str]] = []

    def pick(candidates: np.ndarray, k: int) -> list[int]:
        return [int(c) for c in rng.permutation(candidates)[:k]]

    for i, utt in enumerate(test_utts):
        fresh = np.array([j for j in range(len(test_utts)) if j != i and (j, i) not in seen])
        if len(fresh) == 0:
            continue
        same = fresh[speakers[fresh] == speakers[i]]
        others = fresh[speakers[fresh] != speakers[i]]
        n_pairs = min(TRIALS_PER_UTTERANCE, len(same), len(others))
        genuine = pick(same[sessions[same] != sessions[i]], n_pairs)
        genuine += pick(same[sessions[same] == sessions[i]], n_pairs - len(genuine))
        impostor = pick(others, n_pairs)
        for label, partners in ((1, genuine), (0, impostor)):
            for j in partners:
                seen.add((i, j))
                trials.append((label, utt.relpath, test_utts[j].relpath))
    return trials


def _enroll_test_split(test_utts: list[_Utterance]) -> tuple[list[_Utterance], list[_Utterance]]:
    """Closed-set identification split: each speaker's first session enrols, later sessions test;
    a single-session speaker splits its utterances in half instead."""
    enroll, test = [], []
    for speaker in sorted({u.speaker for u in test_utts}):
        own = [u for u in test_utts if u.speaker == speaker]
        if len({u.session_index for u in own}) > 1:
            enroll += [u for u in own if u.session_index == 0]
            test += [u for u in own if u.session_index > 0]
        else:
            half = max(1, len(own) // 2)
            enroll += own[:half]
            test += own[half:]
    return enroll, test


def _write_text_atomic(path: Path, lines: Sequence[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


def _write_wav_atomic(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit mono PCM via the stdlib writer: a fixed header and no metadata chunks, so equal
    samples give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2").tobytes())
    os.replace(tmp, path)


def _expected_meta(
    arguments: dict[str, Any], utterances: list[_Utterance], n_test: int
) -> dict[str, Any]:
    n_speakers = arguments["n_speakers"]
    test_indices = set(range(n_speakers - n_test, n_speakers))
    speakers = {}
    for speaker_index in range(n_speakers):
        own = [u for u in utterances if u.speaker_index == speaker_index]
        speakers[_speaker_id(speaker_index)] = {
            "split": "test" if speaker_index in test_indices else "train",
            "sessions": list(dict.fromkeys(u.session for u in own)),
            "n_utterances": len(own),
            "voice": to_dict(draw_voice(arguments["seed"], speaker_index)),
        }
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arguments": arguments,
        "train_speakers": [_speaker_id(i) for i in range(n_speakers) if i not in test_indices],
        "test_speakers": [_speaker_id(i) for i in sorted(test_indices)],
        "speakers": speakers,
    }
    return json.loads(json.dumps(meta))  # the form it takes after a round trip through the file


def _existing_corpus_matches(
    root: Path, meta: dict[str, Any], utterances: list[_Utterance]
) -> bool:
    meta_path = root / META_NAME
    if not meta_path.is_file():
        return False
    try:
        stored = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if stored != meta:
        return False
    names = (TRAIN_LIST, TRIALS, ENROLL_LIST, TEST_LIST)
    wav_dir = root / WAV_DIR
    return all((root / n).is_file() for n in names) and all(
        (wav_dir / u.relpath).is_file() for u in utterances
    )


def _prepare_output(root: Path) -> None:
    """Clear a previous synthetic corpus at `root`; refuse to touch any other non-empty directory."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER_NAME).is_file():
            raise FileExistsError(
                f"{root}: directory is not empty and was not written by {FORMAT_NAME} "
                f"(no {MARKER_NAME} marker); choose an empty or new directory"
            )
        for name in (META_NAME, TRAIN_LIST, TRIALS, ENROLL_LIST, TEST_LIST):
            (root / name).unlink(missing_ok=True)
        shutil.rmtree(root / WAV_DIR, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER_NAME).write_text(f"{FORMAT_NAME} corpus; safe to delete with its directory\n")


def _info(
    root: Path, meta: dict[str, Any], n_files: int, n_trials: int, reused: bool
) -> CorpusInfo:
    args = meta["arguments"]
    return CorpusInfo(
        root=root,
        wav_dir=root / WAV_DIR,
        train_list=root / TRAIN_LIST,
        trials=root / TRIALS,
        enroll_list=root / ENROLL_LIST,
        test_list=root / TEST_LIST,
        meta=root / META_NAME,
        n_speakers=args["n_speakers"],
        n_train_speakers=len(meta["train_speakers"]),
        n_test_speakers=len(meta["test_speakers"]),
        n_files=n_files,
        n_trials=n_trials,
        sample_rate=args["sample_rate"],
        reused=reused,
    )


PARALLEL_MIN_UTTERANCES = 400  # below this, starting worker processes costs more than it saves


@dataclasses.dataclass(frozen=True)
class _SpeakerJob:
    wav_dir: Path
    seed: int
    speaker_index: int
    utterances: tuple[_Utterance, ...]
    sample_rate: int
    duration_s: tuple[float, float]
    snr_db: tuple[float, float] | None


def _synthesize_speaker(job: _SpeakerJob) -> int:
    """Write one speaker's files; returns how many."""
    voice = draw_voice(job.seed, job.speaker_index)
    n_channels = job.utterances[-1].session_index + 1
    channels = [draw_channel(job.seed, job.speaker_index, s) for s in range(n_channels)]
    for utt in job.utterances:
        rng = _rng(job.seed, STREAM_UTTERANCE, job.speaker_index, utt.utt_index)
        samples = synthesize_utterance(
            voice, channels[utt.session_index], rng, job.sample_rate, job.duration_s, job.snr_db
        )
        _write_wav_atomic(job.wav_dir / utt.relpath, samples, job.sample_rate)
    return len(job.utterances)


def make_corpus(
    out_dir: str | os.PathLike[str],
    n_speakers: int = 40,
    n_utterances: int = 12,
    seed: int = 0,
    *,
    n_test_speakers: int | None = None,
    sample_rate: int = 16000,
    duration_s: tuple[float, float] = (1.5, 4.0),
    snr_db: tuple[float, float] | None = DEFAULT_SNR_DB,
    n_sessions: int = 3,
    progress: bool = True,
    workers: int | None = None,
) -> CorpusInfo:
    """Write (or re-use) a synthetic corpus under `out_dir`.

    Speakers are synthesised in `workers` processes (default: every core, for corpora of at least
    `PARALLEL_MIN_UTTERANCES` files); every file depends only on its own seeds, so the bytes are the
    same whatever the number of workers.

    The last `n_test_speakers` speakers (default 25%, at least 2) are held out for trials and
    identification lists, like VoxCeleb1's test ids. An existing corpus made with the same
    arguments is returned as is; meta.json is written last, so an interrupted run is rebuilt.
    """
    root = Path(out_dir)
    # Plain Python numbers, so meta.json round-trips and compares equal on re-use.
    n_speakers, n_utterances, seed = map(operator.index, (n_speakers, n_utterances, seed))
    sample_rate, n_sessions = operator.index(sample_rate), operator.index(n_sessions)
    duration_s = (float(duration_s[0]), float(duration_s[1]))
    snr_db = None if snr_db is None else (float(snr_db[0]), float(snr_db[1]))
    _validate(n_speakers, n_utterances, seed, sample_rate, n_sessions, duration_s, snr_db)
    n_test = _resolve_test_speakers(n_speakers, n_test_speakers)
    arguments = {
        "n_speakers": n_speakers,
        "n_utterances": n_utterances,
        "seed": seed,
        "n_test_speakers": n_test,
        "sample_rate": sample_rate,
        "duration_s": list(duration_s),
        "snr_db": None if snr_db is None else list(snr_db),
        "n_sessions": n_sessions,
    }
    utterances = _layout(seed, n_speakers, n_utterances, n_sessions)
    meta = _expected_meta(arguments, utterances, n_test)
    test_ids = set(meta["test_speakers"])
    test_utts = [u for u in utterances if u.speaker in test_ids]
    trials = _make_trials(seed, test_utts)
    if _existing_corpus_matches(root, meta, utterances):
        return _info(root, meta, len(utterances), len(trials), reused=True)

    _prepare_output(root)
    wav_dir = root / WAV_DIR
    by_speaker: dict[int, list[_Utterance]] = {}
    for utt in utterances:
        by_speaker.setdefault(utt.speaker_index, []).append(utt)
    jobs = [
        _SpeakerJob(wav_dir, seed, k, tuple(own), sample_rate, duration_s, snr_db)
        for k, own in by_speaker.items()
    ]
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    if len(utterances) < PARALLEL_MIN_UTTERANCES:
        n_workers = 1
    bar = tqdm(total=len(utterances), desc="synth", unit="utt", disable=not progress)
    if n_workers <= 1:
        for job in jobs:
            bar.update(_synthesize_speaker(job))
    else:
        # spawn, never fork: the caller may hold JAX's threads
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
            for n in pool.map(_synthesize_speaker, jobs, chunksize=4):
                bar.update(n)
    bar.close()

    enroll, test = _enroll_test_split(test_utts)
    train = [u for u in utterances if u.speaker not in test_ids]
    _write_text_atomic(root / TRAIN_LIST, [f"{u.speaker} {u.relpath}" for u in train])
    _write_text_atomic(root / TRIALS, [f"{label} {a} {b}" for label, a, b in trials])
    _write_text_atomic(root / ENROLL_LIST, [f"{u.speaker} {u.relpath}" for u in enroll])
    _write_text_atomic(root / TEST_LIST, [f"{u.speaker} {u.relpath}" for u in test])
    _write_text_atomic(root / META_NAME, [json.dumps(meta, indent=2, sort_keys=True)])
    return _info(root, meta, len(utterances), len(trials), reused=False)


# ----------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gru-jax-synth",
        description="Write a synthetic speaker corpus (VoxCeleb layout, 16-bit WAV).",
    )
    parser.add_argument(
        "out", type=Path, help="output directory (new, empty, or a previous corpus)"
    )
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=12, help="utterances per speaker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-speakers", type=int, default=None, help="default: 25%%, >= 2")
    parser.add_argument("--sessions", type=int, default=3, help="recording sessions per speaker")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--no-noise", action="store_true", help="no additive background noise")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        info = make_corpus(
            args.out,
            args.speakers,
            args.utterances,
            args.seed,
            n_test_speakers=args.test_speakers,
            sample_rate=args.sample_rate,
            snr_db=None if args.no_noise else DEFAULT_SNR_DB,
            n_sessions=args.sessions,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as error:
        print(f"gru-jax-synth: error: {error}", file=sys.stderr)
        return 2
    action = "re-used" if info.reused else "wrote"
    print(
        f"{action} {info.n_files} utterances of {info.n_speakers} speakers "
        f"({info.n_train_speakers} train, {info.n_test_speakers} test, {info.n_trials} trials) "
        f"at {info.sample_rate} Hz in {info.root}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
