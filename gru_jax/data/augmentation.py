"""Kaldi-style data augmentation: noisy, reverberant and speed-perturbed copies of utterances.

Copies are extra utterances in the feature store (`store.build_store`), extracted like any other,
so training needs no online augmentation and an interrupted build resumes them by shards:

- ``<utt>#noise<k>``: additive noise. With a MUSAN directory (``noise/``, ``music/``, ``speech/``
  subdirectories of wavs, searched recursively) the noise is a random stretch of a noise or music
  file, or babble: the sum of 3-7 speech files; each kind at an SNR drawn from its own range, the
  ranges of Kaldi's and WeSpeaker's VoxCeleb recipes (babble drowns a voice at SNRs where
  stationary noise only masks it). Without one it is generated: white, pink or brown noise, or
  babble-like noise (3-7 "talkers" of pink noise, each amplitude-modulated at a syllable rate of
  2-6 Hz), at an SNR drawn from `AugmentConfig.snr_db`.
- ``<utt>#reverb<k>``: convolved with a room impulse response, from `AugmentConfig.rir_dir` (e.g.
  Kaldi's ``RIRS_NOISES/simulated_rirs``), else a simulated one: Gaussian noise under an
  exponential decay reaching -60 dB at an RT60 of 0.2-0.8 s, after a direct-path impulse at a
  direct-to-reverberant ratio of -5 to 10 dB (the statistical late-reverberation model). The
  simulation is NumPy-only and seeded: pyroomacoustics' fast ray tracer cannot be seeded, and its
  deterministic image-source method takes seconds per RIR for small, live rooms. The output is
  aligned to the RIR's direct path and rescaled to the source's power, as Kaldi's
  ``wav-reverberate --normalize-output`` does.
- ``<utt>#sp<f>``: speed perturbation by factor f (tempo and pitch, like ``sox speed``); the copy
  belongs to a NEW speaker ``sp<f>-<speaker>``, as in Kaldi and WeSpeaker recipes.

Each copy's randomness is a function of (seed, utterance id, kind, copy index) only, so a store's
contents do not depend on worker count or order.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile
from scipy import fft, signal

from gru_jax.core.config import Config, config_hash
from gru_jax.data.audio import load_audio

KINDS = ("noise", "reverb", "speed")
GENERATED_NOISES = ("white", "pink", "brown", "babble")
MUSAN_NOISES = {"noise": "noise", "music": "music", "babble": "speech"}  # kind -> subdirectory
BABBLE_TALKERS = (3, 7)  # inclusive range of summed talkers, as Kaldi's MUSAN babble
RT60_S = (0.2, 0.8)
DRR_DB = (-5.0, 10.0)


@dataclass(frozen=True)
class AugmentConfig(Config):
    """How many augmented copies of each utterance the feature store holds, and from what."""

    noise: int = 0  # additive-noise copies per utterance
    reverb: int = 0  # reverberated copies per utterance
    speed: tuple[float, ...] = ()  # speed factors, e.g. (0.9, 1.1); each copy is a new speaker
    snr_db: tuple[float, float] = (0.0, 20.0)  # SNR range of generated noise
    musan_dir: str = ""  # MUSAN root (noise/, music/, speech/); "": generated noise
    musan_noise_snr_db: tuple[float, float] = (0.0, 15.0)  # SNR ranges of MUSAN's kinds
    musan_music_snr_db: tuple[float, float] = (5.0, 15.0)
    musan_babble_snr_db: tuple[float, float] = (13.0, 20.0)
    rir_dir: str = ""  # directory of RIR wavs; "": simulated RIRs
    seed: int = 0

    def validate(self) -> None:
        for name in ("noise", "reverb"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if any(f <= 0 or f == 1.0 for f in self.speed) or len(set(self.speed)) < len(self.speed):
            raise ValueError(
                f"AugmentConfig.speed must hold distinct factors > 0 other than 1, got {self.speed}"
            )
        for name in ("snr_db", *(f"musan_{kind}_snr_db" for kind in MUSAN_NOISES)):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"AugmentConfig.{name} must be (low, high), got {(low, high)}")

    def musan_snr_db(self, kind: str) -> tuple[float, float]:
        """The SNR range of MUSAN noise of `kind` (a key of MUSAN_NOISES)."""
        return getattr(self, f"musan_{kind}_snr_db")

    @property
    def enabled(self) -> bool:
        return bool(self.noise or self.reverb or self.speed)

    def hash(self) -> str:
        return config_hash(self)


class Copy(NamedTuple):
    """One augmented copy of the utterance `utt_id`: the `index`-th of its `kind`."""

    utt_id: str
    kind: str  # one of KINDS
    index: int  # speed: index into AugmentConfig.speed

    def tag(self, cfg: AugmentConfig) -> str:
        """What the copy's id appends after ``#``: ``noise0``, ``reverb1``, ``sp0.9``."""
        if self.kind == "speed":
            return speed_tag(cfg.speed[self.index])
        return f"{self.kind}{self.index}"


def speed_tag(factor: float) -> str:
    return f"sp{factor:g}"


def copies_of(utt_id: str, cfg: AugmentConfig) -> list[Copy]:
    """Every copy `cfg` asks for of one utterance."""
    counts = {"noise": cfg.noise, "reverb": cfg.reverb, "speed": len(cfg.speed)}
    return [Copy(utt_id, kind, k) for kind in KINDS for k in range(counts[kind])]


def tag_kind(tag: str) -> str:
    """The kind of copy a tag names (one of KINDS; "" for the original audio)."""
    return "speed" if tag.startswith("sp") else tag.rstrip("0123456789")


def copy_speaker(speaker: str, tag: str) -> str:
    """The speaker of a copy: speed copies are a new speaker ``sp<f>-<speaker>``."""
    return f"{tag}-{speaker}" if tag_kind(tag) == "speed" else speaker


def source_speaker(speaker: str, tag: str) -> str:
    """The corpus speaker a row's (copy) speaker derives from; inverse of `copy_speaker`."""
    return speaker.removeprefix(f"{tag}-") if tag_kind(tag) == "speed" else speaker


def speed_speakers(speakers: list[str], cfg: AugmentConfig) -> list[str]:
    """The new speakers the speed copies of `speakers` make."""
    return [copy_speaker(s, speed_tag(f)) for f in cfg.speed for s in speakers]


def copy_rng(cfg: AugmentConfig, copy: Copy) -> np.random.Generator:
    """A generator seeded by (seed, utterance, kind, index) alone."""
    key = f"{cfg.seed}\0{copy.utt_id}\0{copy.kind}\0{copy.index}".encode()
    words = np.frombuffer(hashlib.sha256(key).digest()[:16], dtype=np.uint32)
    return np.random.default_rng(words.tolist())


def augment(wave: np.ndarray, copy: Copy, cfg: AugmentConfig, sample_rate: int) -> np.ndarray:
    """The waveform of `copy`, made from its source utterance's `wave`."""
    rng = copy_rng(cfg, copy)
    if copy.kind == "noise":
        return add_noise(wave, rng, cfg, sample_rate)[0]
    if copy.kind == "reverb":
        return reverberate(wave, rng, cfg, sample_rate)
    return change_speed(wave, cfg.speed[copy.index], sample_rate)


def add_noise(
    wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy wave, the noise added): noise scaled to an SNR drawn from its kind's range (see the
    module) against the whole utterance's power."""
    if cfg.musan_dir:
        noise, snr = _musan_noise(cfg, rng, len(wave), sample_rate)
    else:
        snr = rng.uniform(*cfg.snr_db)
        noise = _generated_noise(rng, len(wave), sample_rate)
    noise_power = max(float(np.mean(noise**2)), 1e-20)
    scale = np.sqrt(np.mean(wave.astype(np.float64) ** 2) / (noise_power * 10.0 ** (snr / 10.0)))
    noise = (noise * scale).astype(np.float32)
    return wave + noise, noise


def reverberate(
    wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sample_rate: int
) -> np.ndarray:
    """`wave` in a room: convolved with a RIR, aligned to its direct path, at the source's power."""
    if cfg.rir_dir:
        files = _wavs(cfg.rir_dir)
        if not files:
            raise FileNotFoundError(f"{cfg.rir_dir}: no RIR wavs (AugmentConfig.rir_dir)")
        rir = load_audio(files[rng.integers(len(files))], sample_rate)
    else:
        rir = simulated_rir(rng, sample_rate)
    delay = int(np.argmax(np.abs(rir)))
    wet = signal.fftconvolve(wave, rir)[delay : delay + len(wave)]
    gain = np.sqrt(np.mean(wave.astype(np.float64) ** 2) / max(float(np.mean(wet**2)), 1e-20))
    return (wet * gain).astype(np.float32)


def simulated_rir(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A statistical RIR: direct impulse, then exponentially decaying Gaussian noise (see module)."""
    rt60 = rng.uniform(*RT60_S)
    t = np.arange(1, round(rt60 * sample_rate)) / sample_rate
    tail = rng.standard_normal(t.size) * np.exp(-3.0 * np.log(10.0) * t / rt60)  # -60 dB at rt60
    drr = rng.uniform(*DRR_DB)
    tail *= np.sqrt(10.0 ** (-drr / 10.0) / np.sum(tail**2))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """`wave` played `factor` times faster (tempo and pitch): resampled to rate/factor."""
    import librosa  # deferred like in audio.load_audio

    resampled = librosa.resample(
        wave, orig_sr=sample_rate, target_sr=sample_rate / factor, res_type="soxr_hq"
    )
    return resampled.astype(np.float32, copy=False)


def _generated_noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    kind = GENERATED_NOISES[rng.integers(len(GENERATED_NOISES))]
    if kind != "babble":
        return coloured_noise(rng, n, GENERATED_NOISES.index(kind))
    t = np.arange(n) / sample_rate
    talkers = [
        coloured_noise(rng, n, 1) * (1.0 + np.sin(2 * np.pi * rng.uniform(2, 6) * t + phase)) / 2
        for phase in rng.uniform(
            0, 2 * np.pi, rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)
        )
    ]
    return np.sum(talkers, axis=0)


def coloured_noise(rng: np.random.Generator, n: int, exponent: int) -> np.ndarray:
    """Noise of power spectrum 1/f^exponent: 0 white, 1 pink, 2 brown.

    Shaped at the next length with small prime factors and cut to `n`: an utterance's own length
    can be a large prime, where an FFT is many times slower."""
    size = fft.next_fast_len(n, real=True)
    spectrum = fft.rfft(rng.standard_normal(size))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0  # keep DC finite
    return fft.irfft(spectrum / freqs ** (exponent / 2.0), size)[:n]


def _musan_noise(
    cfg: AugmentConfig, rng: np.random.Generator, n: int, sample_rate: int
) -> tuple[np.ndarray, float]:
    """`n` samples of MUSAN noise of a random kind, and an SNR drawn from that kind's range."""
    found = {kind: _wavs(Path(cfg.musan_dir) / sub) for kind, sub in MUSAN_NOISES.items()}
    kinds = [kind for kind, files in found.items() if files]
    if not kinds:
        raise FileNotFoundError(
            f"{cfg.musan_dir}: no wavs under noise/, music/ or speech/ (the MUSAN layout)"
        )
    kind = kinds[rng.integers(len(kinds))]
    snr = rng.uniform(*cfg.musan_snr_db(kind))
    files = found[kind]
    n_files = rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1) if kind == "babble" else 1
    picks = rng.integers(len(files), size=n_files)
    noise = np.sum([_noise_segment(files[i], rng, n, sample_rate) for i in picks], axis=0)
    return noise, snr


def _noise_segment(path: str, rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """`n` samples of a noise file from a random start, repeated when it is shorter. Only that
    segment is read: MUSAN's music and speech files last minutes, an utterance seconds."""
    seconds = n / sample_rate
    duration = soundfile.info(path).duration
    if duration <= seconds:
        noise = load_audio(path, sample_rate)
        return np.resize(np.roll(noise, -rng.integers(len(noise))), n)
    start = rng.uniform(0.0, duration - seconds)
    return np.resize(load_audio(path, sample_rate, start, start + seconds), n)


@functools.cache
def _wavs(directory: str | Path) -> tuple[str, ...]:
    """Sorted wavs under `directory` (cached per process: a corpus run lists it once)."""
    return tuple(sorted(str(p) for p in Path(directory).rglob("*.wav")))
