"""Speech-like audio from a voice and a channel: a source-filter model in NumPy/SciPy.

The data must be hard enough that a trained model beats a trivial spectral statistic, so each
utterance is built the way speech is: syllables of consonants and vowels, a glottal source along an
intonation contour, formant filters that crossfade between segments (coarticulation), fricative
and burst noise, then the session's background noise and channel colouring.

Randomness comes only from the generator passed in, so equal inputs give equal samples.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import signal

from gru_jax.synth.voices import (
    N_FRICATIVES,
    N_ORAL_VOWELS,
    NASAL,
    NOISE_BURST,
    NOISE_F,
    SCHWA,
    Channel,
    Voice,
)

BASE_BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0, 300.0])
NASAL_BANDWIDTH_FACTOR = 2.5
PEAK_LIMIT = 0.98


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
def channel_sos(channel: Channel, sample_rate: int) -> np.ndarray:
    """The session's colouring as second-order sections: band limits, then its EQ bands."""
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
    """Syllables until the utterance is full, between a short lead-in and tail of silence."""
    rate = voice.speaking_rate * rng.uniform(0.9, 1.1)
    lead, tail = rng.uniform(0.02, 0.1, size=2)
    speech_end = n_samples - int(tail * sr)
    rows = [_segment(lead, 0.01)]
    elapsed = lead
    while elapsed * sr < speech_end:
        syllable = _syllable(voice, rng, rate)
        rows += syllable
        elapsed += sum(row[0] for row in syllable)
    return _segments_table(rows, speech_end, n_samples, sr)


def _syllable(voice: Voice, rng: np.random.Generator, rate: float) -> list[tuple[float, ...]]:
    """(onset consonant) vowel (coda), sometimes followed by a pause."""
    syllable = _onset(rng, rate)
    syllable.append(_vowel(voice, rng, rate))
    syllable += _coda(rng, rate)
    if rng.random() < 0.05:
        syllable.append(_segment(rng.uniform(0.08, 0.25), 0.02))
    return syllable


def _onset(rng: np.random.Generator, rate: float) -> list[tuple[float, ...]]:
    onset = rng.random()
    if onset < 0.35:
        return [_fricative(rng, rate)]
    if onset < 0.6:  # stop: closure silence, then the release burst
        closure = _segment(rng.uniform(0.03, 0.08) / rate, 0.005)
        return [closure, _segment(rng.uniform(0.01, 0.025), 0.003, 0.0, 1.0, -1, NOISE_BURST)]
    if onset < 0.75:
        return [_segment(rng.uniform(0.05, 0.1) / rate, 0.015, 0.35, 0.0, NASAL)]
    return []


def _vowel(voice: Voice, rng: np.random.Generator, rate: float) -> tuple[float, ...]:
    """A stressed vowel is longer and louder; an unstressed one drifts towards the speaker's schwa
    by a speaker-typical amount (vowel reduction), as in running speech."""
    log_stress = rng.normal(0.0, 0.35)
    reduction = np.clip(voice.vowel_reduction + rng.normal(0.0, 0.15) - log_stress, 0.0, 0.9)
    duration = rng.uniform(0.07, 0.22) / rate * np.exp(0.5 * log_stress)
    vowel = int(rng.integers(N_ORAL_VOWELS))
    return _segment(duration, 0.025, np.exp(log_stress), 0.0, vowel, -1, reduction)


def _coda(rng: np.random.Generator, rate: float) -> list[tuple[float, ...]]:
    coda = rng.random()
    if coda < 0.15:
        return [_fricative(rng, rate)]
    if coda < 0.3:
        return [_segment(rng.uniform(0.04, 0.09) / rate, 0.015, 0.35, 0.0, NASAL)]
    return []


def _segments_table(
    rows: list[tuple[float, ...]], speech_end: int, n_samples: int, sr: int
) -> _Segments:
    """Segment durations as sample bounds; speech is cut at `speech_end`, trailing silence added."""
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
    phase = np.cumsum(_f0_track(voice, rng, n, sr) / sr)
    flow = _rosenberg_flow(phase - np.floor(phase), voice.open_quotient)
    cycle = phase.astype(np.int64)
    shimmer = np.exp(voice.shimmer * rng.normal(0.0, 1.0, cycle[-1] + 1))[cycle]
    derivative = np.diff(flow, prepend=0.0) * (sr / voice.f0_median_hz)
    aspiration = rng.normal(0.0, 1.0, n) * (0.3 + flow) * voice.breathiness * 2.0
    source = derivative * shimmer + aspiration
    tilted = signal.lfilter([1.0 - voice.tilt_pole], [1.0, -voice.tilt_pole], source)
    return signal.sosfilt(_timbre_sos(voice, sr), tilted)


def _f0_track(voice: Voice, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Per-sample F0: the utterance's pitch, an intonation contour and cycle-to-cycle jitter."""
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
    return f0_utt * 2.0 ** (contour / 12.0) * (1.0 + voice.jitter * jitter)


def _rosenberg_flow(frac: np.ndarray, open_quotient: float) -> np.ndarray:
    """Glottal flow at each fractional position in its cycle: opens, closes, then stays shut."""
    rise, fall = 0.7 * open_quotient, 0.3 * open_quotient
    flow = np.zeros(len(frac))
    opening = frac < rise
    closing = ~opening & (frac < rise + fall)
    flow[opening] = 0.5 * (1.0 - np.cos(np.pi / rise * frac[opening]))
    flow[closing] = np.cos(0.5 * np.pi / fall * (frac[closing] - rise))
    return flow


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
    speech = _voiced_speech(voice, segments, rng, n, sample_rate)
    talking = slice(segments.starts[1], segments.ends[-2])  # without leading/trailing silence
    _add_frication(speech, voice, segments, rng.normal(0.0, 1.0, n), sample_rate)
    if snr_db is not None:
        speech += background_noise(channel, rng, np.mean(speech[talking] ** 2), n, snr_db)
    out = signal.sosfilt(channel_sos(channel, sample_rate), speech)
    return to_int16(out, channel, rng, talking)


def _voiced_speech(
    voice: Voice, segments: _Segments, rng: np.random.Generator, n: int, sr: int
) -> np.ndarray:
    everything = np.arange(len(segments.starts))
    voicing = _track(segments, segments.voicing, everything, n)
    source = _glottal_source(voice, rng, n, sr) * voicing
    # Per-utterance articulation varies a little around the speaker's table.
    formants = np.asarray(voice.formants_hz)
    formants = formants * np.exp(rng.normal(0.0, 0.03, formants.shape))
    return _vocal_tract(voice, segments, source, formants, sr)


def _add_frication(
    speech: np.ndarray, voice: Voice, segments: _Segments, white: np.ndarray, sr: int
) -> None:
    """Fricatives and bursts share one white-noise draw, each band-limited to where the speaker
    articulates it, so the noise bands carry speaker identity as well."""
    everything = np.arange(len(segments.starts))
    for noise_type in np.unique(segments.noise_type[segments.noise_type >= 0]):
        level = np.where(segments.noise_type == noise_type, segments.noise_level, 0.0)
        envelope = _track(segments, level, everything, len(speech))
        lo, hi = voice.fricative_bands_hz[noise_type]
        speech += _filter_active(_band_sos(lo, hi, sr), white, envelope)


def background_noise(
    channel: Channel,
    rng: np.random.Generator,
    speech_power: float,
    n: int,
    snr_db: tuple[float, float],
) -> np.ndarray:
    """The session's coloured background noise, scaled to an SNR against `speech_power`."""
    background = signal.lfilter([1.0], [1.0, -channel.noise_pole], rng.normal(0.0, 1.0, n))
    # Background noise belongs to the session: its SNR sits at one place in the range.
    lo, hi = snr_db
    snr = np.clip(lo + channel.snr_position * (hi - lo) + rng.normal(0.0, 1.5), lo, hi)
    scale = np.sqrt(speech_power / (np.mean(background**2) * 10.0 ** (snr / 10.0)))
    return background * scale


def to_int16(
    out: np.ndarray, channel: Channel, rng: np.random.Generator, talking: slice
) -> np.ndarray:
    """`out` (modified in place) at the session's level, measured over `talking`, as int16."""
    rms = np.sqrt(np.mean(out[talking] ** 2))
    if not np.isfinite(rms) or rms == 0.0:
        raise RuntimeError("synthesised utterance is silent or not finite")
    # Loudness set on RMS (not peak, which depends on content), limited to avoid clipping.
    out *= 10.0 ** ((channel.level_dbfs + rng.uniform(-2.0, 2.0)) / 20.0) / rms
    out *= min(1.0, PEAK_LIMIT / np.max(np.abs(out)))
    return np.round(out * 32767.0).astype("<i2")
