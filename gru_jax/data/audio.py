"""Load one audio file (or a segment of it) as checked float32 mono at a fixed sample rate.

Every way a file can be unusable raises `AudioError` with one of `AUDIO_REASONS`, so a corpus run
can skip the file and count skips by reason instead of crashing hours in, or silently training on
NaNs and silence.
"""

from __future__ import annotations

import os

import numpy as np

AUDIO_REASONS = ("missing", "unreadable", "empty", "non_finite", "silent", "too_short")

# A file whose peak is below -80 dBFS carries no usable speech: 16-bit PCM with only a few LSBs of
# dither or DC noise (1 LSB = 3e-5) lands here, as does digital silence.
SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """A file that cannot be used, with a machine-readable `reason` from `AUDIO_REASONS`."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        if reason not in AUDIO_REASONS:
            raise ValueError(
                f"unknown AudioError reason {reason!r}; expected one of {AUDIO_REASONS}"
            )
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}: {detail}")

    def __reduce__(self):
        # Keep the three fields when the error crosses a process boundary.
        return type(self), (self.path, self.reason, self.detail)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Read `path` (wav/flac/ogg/... via soundfile) as float32 mono in [-1, 1] at `sample_rate`.

    `start`/`end` are seconds; only that segment is read, at the file's native rate, so long
    recordings with a segments list are not decoded whole. Multi-channel audio is averaged;
    another native rate is resampled with soxr_hq. Float files that exceed full scale (and
    resampling overshoot) are clipped to [-1, 1].
    """
    path = os.fspath(path)
    _check_segment_bounds(start, end)
    if not os.path.isfile(path):
        raise AudioError(path, "missing", "no such file")
    native, native_rate = _read_segment(path, start, end)
    if native.shape[0] == 0:
        span = "" if start is None and end is None else f" in segment [{start}, {end}) s"
        raise AudioError(path, "empty", f"0 samples{span}")
    if not np.isfinite(native).all():
        n_bad = int(np.size(native) - np.isfinite(native).sum())
        raise AudioError(path, "non_finite", f"{n_bad} NaN/inf sample value(s)")
    wave = native.mean(axis=1, dtype=np.float32) if native.shape[1] > 1 else native[:, 0]
    peak = float(np.abs(wave).max())
    if peak < SILENCE_PEAK:
        raise AudioError(path, "silent", f"peak {peak:.2e} below {SILENCE_PEAK:.0e}")
    if native_rate != sample_rate:
        import librosa  # deferred: model-only users (serving, GPU hosts) need no audio stack

        wave = librosa.resample(
            wave, orig_sr=native_rate, target_sr=sample_rate, res_type="soxr_hq"
        )
    return np.clip(wave, -1.0, 1.0).astype(np.float32, copy=False)


def _check_segment_bounds(start: float | None, end: float | None) -> None:
    """Nonsense bounds are a caller bug (the segment list should be validated where it is read)."""
    if start is not None and start < 0:
        raise ValueError(f"segment start must be >= 0 seconds, got {start}")
    if end is not None and end <= (start or 0.0):
        raise ValueError(f"segment end must be > start, got start={start}, end={end}")


def _read_segment(path: str, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    """Samples [frames, channels] float32 and the native rate; decoder failures are `unreadable`."""
    import soundfile as sf  # deferred: model-only users (serving, GPU hosts) need no audio stack

    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            first = round(start * rate) if start is not None else 0
            last = round(end * rate) if end is not None else f.frames
            n_frames = max(0, min(last, f.frames) - first)
            if n_frames == 0:
                return np.zeros((0, f.channels), np.float32), rate
            f.seek(first)
            data = f.read(n_frames, dtype="float32", always_2d=True)
    except (sf.SoundFileError, OSError) as e:
        raise AudioError(path, "unreadable", str(e)) from e
    return data, rate
