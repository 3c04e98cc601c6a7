"""Who is speaking and into what: per-speaker voices and per-session recording channels.

A corpus is only useful for speaker recognition if speakers differ the way real ones do (pitch,
vocal-tract length, formant table, timbre, tilt, breathiness, rate) and sessions differ the way
real recordings do (level, EQ, band limits, background noise), so that within-speaker variation
across sessions competes with between-speaker variation.

Every random stream is keyed by `(seed, stream, speaker, ...)` rather than drawn sequentially, so
a speaker, session or utterance does not depend on generation order or corpus size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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

# Rows of Voice.fricative_bands_hz: three fricative places (s-like, sh-like, f-like), then the
# stop release burst.
N_FRICATIVES, NOISE_F, NOISE_BURST = 3, 2, 3

# Speaker timbre (fixed resonances of the voice beyond the formants) and session EQ: both colour
# the long-term spectrum, so a model has to tell the speaker's colouring from the microphone's.
# These strengths, the accent spread and the noise settings (with corpus.DEFAULT_SNR_DB) are
# calibrated so that a trivial statistic (mean MFCC + cosine) scores an EER of about 0.2-0.28 on
# trials.txt: informative, far from solved (see tests/synth/test_difficulty.py). Changing them
# changes that number; bump corpus.FORMAT_VERSION.
N_TIMBRE_BANDS, TIMBRE_DB = 4, 14.0
N_EQ_BANDS, EQ_DB = 2, 5.0
HIGHPASS_HZ, LOWPASS_HZ = (50.0, 150.0), (5000.0, 7800.0)
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
    """One recording session: microphone/room colouring and background shared by its utterances."""

    level_dbfs: float
    highpass_hz: float
    lowpass_hz: float
    eq_centres_hz: tuple[float, ...]
    eq_gains_db: tuple[float, ...]
    eq_q: tuple[float, ...]
    noise_pole: float
    snr_position: float


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def stream_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The random stream keyed by (seed, stream, *keys): independent of every other key."""
    return np.random.default_rng([seed, stream, *keys])


def _draw_sex(rng: np.random.Generator) -> str:
    sexes = list(SEX_PROBABILITIES)
    return sexes[rng.choice(len(sexes), p=list(SEX_PROBABILITIES.values()))]


def _draw_formants(rng: np.random.Generator, formant_scale: float) -> np.ndarray:
    """The speaker's formant table: the base table scaled by vocal-tract length, with an accent.

    Every formant of every vowel moves a little; F4/F5 (which carry most speaker identity in real
    voices) move as a whole.
    """
    perturb = np.exp(rng.normal(0.0, ACCENT_SPREAD, size=BASE_FORMANTS.shape))
    perturb[:, 3:] = np.exp(rng.normal(0.0, ACCENT_SPREAD, size=(1, 2)))
    return np.sort(BASE_FORMANTS * formant_scale * perturb, axis=1)


def _draw_fricative_bands(
    rng: np.random.Generator, formant_scale: float
) -> tuple[tuple[float, float], ...]:
    s_centre = rng.uniform(4800.0, 7000.0) * np.sqrt(formant_scale)
    sh_centre = rng.uniform(2300.0, 3600.0) * formant_scale
    f_low = rng.uniform(1000.0, 2200.0)
    bands = (
        (s_centre / 1.35, s_centre * 1.35),
        (sh_centre / 1.3, sh_centre * 1.3),
        (f_low, f_low * rng.uniform(3.0, 6.0)),
        (rng.uniform(500.0, 1500.0), rng.uniform(4000.0, 7000.0)),
    )
    return tuple((float(lo), float(hi)) for lo, hi in bands)


def draw_voice(seed: int, speaker_index: int) -> Voice:
    """Voice of speaker `speaker_index`; depends on nothing else, so speakers come in any order."""
    rng = stream_rng(seed, STREAM_VOICE, speaker_index)
    sex = _draw_sex(rng)
    f0_centre, f0_spread, f0_lo, f0_hi = F0_BY_SEX[sex]
    f0 = float(np.clip(f0_centre * np.exp(rng.normal(0.0, f0_spread)), f0_lo, f0_hi))
    scale_mean, scale_spread = FORMANT_SCALE_BY_SEX[sex]
    formant_scale = float(np.clip(rng.normal(scale_mean, scale_spread), 0.8, 1.25))
    formants = _draw_formants(rng, formant_scale)
    fricative_bands = _draw_fricative_bands(rng, formant_scale)
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
        fricative_bands_hz=fricative_bands,
    )


def draw_session_ids(seed: int, speaker_index: int, n_sessions: int) -> list[str]:
    """YouTube-like 11-character ids, unique within the speaker."""
    rng = stream_rng(seed, STREAM_SESSION_IDS, speaker_index)
    ids: list[str] = []
    while len(ids) < n_sessions:
        candidate = "".join(rng.choice(SESSION_ID_ALPHABET, size=11))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def draw_channel(seed: int, speaker_index: int, session_index: int) -> Channel:
    """Channel of one session; keyed by speaker and session, so sessions never share one."""
    rng = stream_rng(seed, STREAM_CHANNEL, speaker_index, session_index)
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
