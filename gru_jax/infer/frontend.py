"""The feature front end as pure JAX, chunk by chunk, for streams embedded as their audio arrives.

A streaming step runs on the device inside `jit`, so the features must too: a round trip to the
host per chunk would stall every stream in the batch. `Frontend.step` takes one chunk of any length per stream
and returns the frames that chunk completes, and the concatenation of a stream's frames equals
`compute_features` of its whole audio (with `min_duration_s=0`: whether a stream is long enough
is the caller's decision). That holds for the modes that look only backwards: `cmn` and `vad`
"none" or "running"; the "utterance" modes need audio that has not arrived yet.

Everything a stream carries between chunks is in `FrontendState`, of a size fixed by the config:
the raw sample before the chunk (pre-emphasis crosses chunk boundaries), the pre-emphasised
samples not yet consumed by a frame, the loudest frame so far (running VAD) and the last
`cmn_window` kept frames (running CMN, whose statistics are recomputed from them every chunk, so
nothing accumulates rounding however long the stream).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
from jax import lax

from gru_jax.data.features import CVN_FLOOR, LOG_FLOOR, FeatureConfig, mel_filterbank

_HIGHEST = lax.Precision.HIGHEST  # float32 matmuls stay float32 (no TF32 / bf16 passes)
_ENERGY_FLOOR = 1e-20  # as compute_features' VAD: digital silence has a finite level
_DB_AMIN = 1e-10  # librosa.power_to_db's default amin, as compute_features' MFCCs
_WINDOW_BATCH = 8  # running-CMN windows computed at once per stream


class FrontendState(NamedTuple):
    """What a stream carries from one chunk to the next; every field has leading axis S."""

    last_sample: jax.Array  # [S] float32 raw sample before the next chunk (0 before the first)
    pending: jax.Array  # [S] int32 samples of `samples` the next frame starts with (< 0: to skip)
    samples: jax.Array  # [S, n_fft - 1] float32 pre-emphasised, the last `pending` still needed
    peak_db: jax.Array  # [S] float32 loudest frame so far, -inf before the first
    history: jax.Array  # [S, W, F] float32 last kept frames, oldest first (W = 0 without CMN)
    n_history: jax.Array  # [S] int32 rows of `history` that are real frames (the last ones)


class Frontend:
    """Front end of `cfg` as pure JAX functions over a batch of streams (leading axis S).

    `step` is jittable as it is (`jax.jit(frontend.step)`) and can be called inside a larger
    jitted function; a `Frontend` hashes by its config and chunk size, so it can also be a static
    argument.
    """

    def __init__(self, cfg: FeatureConfig, max_chunk_samples: int):
        for field in ("cmn", "vad"):
            if getattr(cfg, field) == "utterance":
                raise ValueError(
                    f"Frontend: {field}='utterance' needs the whole utterance, which a stream "
                    f"does not have; use {field}='running' (or 'none') for streaming"
                )
        if max_chunk_samples < 1:
            raise ValueError(f"Frontend: max_chunk_samples must be >= 1, got {max_chunk_samples}")
        self.cfg = cfg
        self.max_chunk_samples = int(max_chunk_samples)
        # At most n_fft - 1 samples wait from earlier chunks, so a chunk completes at most this many.
        self.max_frames = -(-self.max_chunk_samples // cfg.hop_length)
        self.n_features = cfg.n_features
        self._window = _hann_window(cfg)
        self._mel = mel_filterbank(cfg).T  # [n_freq, n_mels]
        self._dct = _dct_matrix(cfg.n_mels, cfg.n_mfcc).T if cfg.kind == "mfcc" else None
        self._history_len = cfg.cmn_window if cfg.cmn == "running" else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frontend) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Frontend(max_chunk_samples={self.max_chunk_samples}, cfg={self.cfg!r})"

    def _key(self) -> tuple[FeatureConfig, int]:
        return self.cfg, self.max_chunk_samples

    def init(self, n_streams: int) -> FrontendState:
        """The state of `n_streams` streams that have heard nothing yet."""
        s = n_streams
        return FrontendState(
            last_sample=jnp.zeros((s,), jnp.float32),
            pending=jnp.zeros((s,), jnp.int32),
            samples=jnp.zeros((s, self.cfg.n_fft - 1), jnp.float32),
            peak_db=jnp.full((s,), -jnp.inf, jnp.float32),
            history=jnp.zeros((s, self._history_len, self.n_features), jnp.float32),
            n_history=jnp.zeros((s,), jnp.int32),
        )

    def step(
        self, state: FrontendState, audio: jax.Array, n_samples: jax.Array
    ) -> tuple[FrontendState, jax.Array, jax.Array]:
        """One chunk per stream: `audio` `[S, max_chunk_samples]` (the first `n_samples[s]` are
        stream s's; 0 leaves it as it was) -> (state, frames `[S, max_frames, F]`, n_frames `[S]`).

        A stream's new kept frames, normalised and in order, are packed at the front of its
        frames row; entries past n_frames are 0. `n_samples` cannot be checked on traced values,
        so it is clipped to [0, max_chunk_samples].
        """
        audio = jnp.asarray(audio, jnp.float32)
        if audio.ndim != 2 or audio.shape[1] != self.max_chunk_samples:
            raise ValueError(
                f"Frontend.step: audio must be [S, {self.max_chunk_samples}], got {audio.shape}"
            )
        n_samples = jnp.clip(jnp.asarray(n_samples, jnp.int32), 0, self.max_chunk_samples)
        return jax.vmap(self._step_one)(state, audio, n_samples)

    def _step_one(
        self, state: FrontendState, audio: jax.Array, n: jax.Array
    ) -> tuple[FrontendState, jax.Array, jax.Array]:
        emphasised, last_sample = self._preemphasise(state.last_sample, audio, n)
        signal = jnp.concatenate([state.samples, emphasised])
        frames, n_frames, pending = self._frames(signal, state.pending, n)
        power = self._power(frames)
        keep, peak_db = self._vad(power, n_frames, state.peak_db)
        feats, n_kept = _pack(self._features(power), keep)
        feats, history, n_history = self._normalise(feats, n_kept, state.history, state.n_history)
        valid = (jnp.arange(self.max_frames) < n_kept)[:, None]
        new_state = FrontendState(
            last_sample=last_sample,
            pending=pending,
            samples=lax.dynamic_slice_in_dim(signal, n, self.cfg.n_fft - 1),
            peak_db=peak_db,
            history=history,
            n_history=n_history,
        )
        return new_state, jnp.where(valid, feats, 0.0), n_kept

    def _preemphasise(
        self, last_sample: jax.Array, audio: jax.Array, n: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """y[i] = x[i] - coef * x[i-1] with x[-1] the previous chunk's last sample: 0 before the
        first chunk, which keeps y[0] = x[0] as offline. Samples past `n` are zeroed, so whatever
        the caller left there never reaches a number."""
        x = jnp.where(jnp.arange(self.max_chunk_samples) < n, audio, 0.0)
        new_last = jnp.where(n > 0, x[jnp.maximum(n - 1, 0)], last_sample)
        coef = self.cfg.preemphasis
        if coef == 0:
            return x, new_last
        previous = jnp.concatenate([last_sample[None], x[:-1]])
        return x - coef * previous, new_last

    def _frames(
        self, signal: jax.Array, pending: jax.Array, n: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The frames `signal` (carried samples, then the chunk's) completes, from the first
        sample the next frame needs; the count and the samples left pending after them.

        `pending` goes negative only when the hop is longer than a frame: the samples between
        two frames are then skipped as they arrive.
        """
        n_fft, hop = self.cfg.n_fft, self.cfg.hop_length
        available = pending + n
        n_frames = jnp.where(available >= n_fft, (available - n_fft) // hop + 1, 0)
        first = (n_fft - 1) - pending
        index = first + jnp.arange(self.max_frames)[:, None] * hop + jnp.arange(n_fft)[None, :]
        frames = jnp.take(signal, index, mode="clip")
        return frames, n_frames, available - n_frames * hop

    def _power(self, frames: jax.Array) -> jax.Array:
        spectrum = jnp.fft.rfft(frames * self._window, axis=-1)
        return spectrum.real**2 + spectrum.imag**2

    def _features(self, power: jax.Array) -> jax.Array:
        mel = jnp.matmul(power, self._mel, precision=_HIGHEST)
        if self._dct is None:
            return jnp.log(mel + LOG_FLOOR)
        mel_db = 10.0 * jnp.log10(jnp.maximum(mel, _DB_AMIN))
        return jnp.matmul(mel_db, self._dct, precision=_HIGHEST)

    def _vad(
        self, power: jax.Array, n_frames: jax.Array, peak_db: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Which frames to keep, and the loudest level heard after them."""
        valid = jnp.arange(self.max_frames) < n_frames
        if self.cfg.vad == "none":
            return valid, peak_db
        energy_db = 10.0 * jnp.log10(power.sum(axis=-1) + _ENERGY_FLOOR)
        energy_db = jnp.where(valid, energy_db, -jnp.inf)
        peak_so_far = jnp.maximum(peak_db, lax.cummax(energy_db, axis=0))
        keep = valid & (energy_db >= peak_so_far + self.cfg.vad_threshold_db)
        return keep, peak_so_far[-1]

    def _normalise(
        self, feats: jax.Array, n_kept: jax.Array, history: jax.Array, n_history: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Running CMN/CVN of the kept frames (packed at the front of `feats`) over the window
        that ends at each: the last rows of the history, then the chunk's frames up to it."""
        if self._history_len == 0:
            return feats, history, n_history
        w = self._history_len
        rows = jnp.concatenate([history, feats])  # [W + M, F]: history rows first, oldest first

        def statistics(k: jax.Array) -> tuple[jax.Array, jax.Array]:
            """Mean and divisor (floored std, or 1 without CVN) of frame k's window: rows
            k+1 .. W+k, real from W - n_history on.

            Two passes over the window: a band near the log floor has so small a spread that
            the one-pass E[x^2] - E[x]^2 would lose it to float32 cancellation.
            """
            inside = (k + 1 + jnp.arange(w) >= w - n_history)[:, None]
            window = jnp.where(inside, lax.dynamic_slice_in_dim(rows, k + 1, w), 0.0)
            count = inside.sum()
            mean = window.sum(axis=0) / count
            if not self.cfg.cvn:
                return mean, jnp.ones_like(mean)
            deviation = jnp.where(inside, window - mean, 0.0)
            std = jnp.sqrt((deviation * deviation).sum(axis=0) / count)
            return mean, jnp.maximum(std, CVN_FLOOR)

        # In batches of frames, so the windows in flight stay a few times the history's size.
        mean, std = lax.map(statistics, jnp.arange(self.max_frames), batch_size=_WINDOW_BATCH)
        new_history = lax.dynamic_slice_in_dim(rows, n_kept, w)
        return (feats - mean) / std, new_history, jnp.minimum(n_history + n_kept, w)


def _pack(feats: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The kept rows first, in order (the rest after them, in no use)."""
    order = jnp.argsort(~keep, stable=True)
    return feats[order], keep.sum().astype(jnp.int32)


def _hann_window(cfg: FeatureConfig) -> np.ndarray:
    """librosa.stft's window="hann": periodic Hann of win_length, centred in n_fft zeros."""
    import librosa

    window = librosa.filters.get_window("hann", cfg.win_length, fftbins=True)
    return librosa.util.pad_center(window, size=cfg.n_fft).astype(np.float32)


def _dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """`[n_mfcc, n_mels]`: librosa.feature.mfcc's orthonormal DCT-II, first n_mfcc rows."""
    eye = np.eye(n_mels, dtype=np.float64)
    return scipy.fft.dct(eye, type=2, norm="ortho", axis=0)[:n_mfcc].astype(np.float32)
