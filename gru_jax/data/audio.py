"""Load one audio file (or a segment of it) as checked float32 mono at a fixed sample rate.

Every way a file can be unusable raises `AudioError` with one of `AUDIO_REASONS`, so a corpus run
can skip the file and count skips by reason instead of crashing hours in, or silently training on
NaNs and silence.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

AUDIO_REASONS = ("missing", "unreadable", "empty", "non_finite", "silent", "too_short")

# A file whose peak is below -80 dBFS carries no usable speech: 16-bit PCM with only a few LSBs of
# dither or DC noise (1 LSB = 3e-5) lands here, as does digital silence.
SILENCE_PEAK = 1e-4

# Read with soundfile only: libsndfile is the reference decoder for these, so a file it rejects is
# damaged, and its message says how.
SOUNDFILE_ONLY = (".wav", ".flac", ".ogg")
# Read with PyAV only: containers libsndfile cannot open (asking it first only adds a misleading
# message, and its MP3 probe prints warnings about random bytes).
PYAV_ONLY = (".m4a", ".mp4", ".aac", ".webm", ".mka", ".mkv", ".opus", ".wma")


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
    """Read `path` as float32 mono in [-1, 1] at `sample_rate`.

    .wav/.flac/.ogg (and whatever else libsndfile opens) are read with soundfile; what it cannot
    open, such as VoxCeleb2's .m4a (AAC), is decoded in-process with PyAV (FFmpeg's libraries),
    so no converted copy of a corpus and no ffmpeg subprocess is needed. `start`/`end` are
    seconds; only that segment is read, at the file's native rate, so long recordings with a
    segments list are not decoded whole. Multi-channel audio is averaged;
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
    """Samples [frames, channels] float32 and the native rate; decoder failures are `unreadable`.

    Each file goes to the decoder made for it (`SOUNDFILE_ONLY`, `PYAV_ONLY`); a file of any
    other extension is tried with soundfile first (exact and fast for what it reads, and read as
    it always was), then with PyAV.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension in SOUNDFILE_ONLY:
        return _read_with_soundfile(path, start, end)
    if extension in PYAV_ONLY:
        return _read_with_pyav(path, start, end)
    try:
        return _read_with_soundfile(path, start, end)
    except AudioError as soundfile_error:
        try:
            return _read_with_pyav(path, start, end)
        except AudioError as pyav_error:
            raise AudioError(
                path,
                "unreadable",
                f"soundfile: {soundfile_error.detail}; PyAV: {pyav_error.detail}",
            ) from pyav_error


def _read_with_soundfile(
    path: str, start: float | None, end: float | None
) -> tuple[np.ndarray, int]:
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


# Seconds decoded before a segment's start after a seek, and thrown away: a lapped-transform
# codec (AAC, Vorbis, Opus) needs the frame before a sample to reconstruct it, and the first frame
# after a seek has no predecessor. 0.25 s covers two 2048-sample AAC frames at 16 kHz.
SEEK_PREROLL_S = 0.25


def _read_with_pyav(path: str, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    import av  # deferred like soundfile; only containers libsndfile cannot open need it

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "unreadable", "no audio stream in the container")
            stream = container.streams.audio[0]
            seeked = _decode_span(container, stream, start, end, seek=True)
            if seeked is not None:
                return seeked
            container.seek(0)  # a demuxer that loses timestamps after a seek: decode from 0
            decoded = _decode_span(container, stream, start, end, seek=False)
            assert decoded is not None  # positions are counted, never unknown, without a seek
            return decoded
    except av.error.FFmpegError as e:
        raise AudioError(path, "unreadable", str(e)) from e


def _decode_span(
    container: Any, stream: Any, start: float | None, end: float | None, seek: bool
) -> tuple[np.ndarray, int] | None:
    """The samples of [start, end) at the stream's rate, placed by each frame's timestamp (a
    count of samples when frames carry none); None when a seek left the positions unknown."""
    rate = stream.codec_context.sample_rate or stream.rate
    first = round(start * rate) if start is not None else 0
    last = round(end * rate) if end is not None else None
    declared = _declared_samples(container, stream, rate)
    if declared is not None:  # AAC pads the last frame; the container knows the true length
        last = declared if last is None else min(last, declared)
    seek_to = first - round(SEEK_PREROLL_S * rate)
    sought = seek and seek_to > 0 and stream.time_base is not None
    if sought:
        container.seek(int(seek_to / rate / stream.time_base), stream=stream, backward=True)
    pieces: list[np.ndarray] = []
    channels = 1
    position = 0
    for frame in container.decode(stream):
        time_base = frame.time_base or stream.time_base
        if frame.pts is not None and time_base is not None:
            position = round(frame.pts * time_base * rate)
        elif sought:
            return None
        samples = _frame_samples(frame)
        channels = samples.shape[1]
        lo, hi = max(first - position, 0), samples.shape[0]
        if last is not None:
            hi = min(hi, last - position)
        if hi > lo:
            pieces.append(samples[lo:hi])
        position += samples.shape[0]
        if last is not None and position >= last:
            break
    if not pieces:
        return np.zeros((0, channels), np.float32), rate
    return np.concatenate(pieces), rate


def _declared_samples(container: Any, stream: Any, rate: int) -> int | None:
    """The exact length MP4/M4A records (its edit list drops the encoder's padding); other
    containers' durations may be estimates from the bit rate, which could cut real audio."""
    if "mp4" not in container.format.name.split(","):
        return None
    if stream.duration is None or stream.time_base is None:
        return None
    return round(stream.duration * stream.time_base * rate)


# Integer sample formats and the value of full scale.
_FULL_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def _frame_samples(frame: Any) -> np.ndarray:
    """A decoded frame as [samples, channels] float32 in [-1, 1], whatever its sample format."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    data = data if frame.format.is_planar else data.reshape(-1, channels).T
    if data.dtype == np.uint8:
        return ((data.T.astype(np.float32) - 128.0) / 128.0).copy()
    scale = _FULL_SCALE.get(data.dtype)
    data = data.T.astype(np.float32)
    return data / np.float32(scale) if scale is not None else np.ascontiguousarray(data)
