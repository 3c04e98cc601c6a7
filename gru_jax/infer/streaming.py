"""Embeddings of audio as it arrives: many streams at once, constant memory per stream.

One jitted step takes every open stream's next chunk of samples (any length up to the step's
maximum; longer chunks are fed in pieces) and returns each stream's embedding of all its audio
so far. The step chains the JAX front end (`infer.frontend`: framing across chunk boundaries,
running VAD and mean normalisation) and the encoder over a stream (`nn.streaming`). A stream's
final embedding equals the offline embedding of the same audio when the model's features use the
running (causal) normalisation modes; a model trained with per-utterance normalisation is
streamed with the running modes instead, and a warning says so.

Chunks are checked on the host before anything runs (dtype, finite samples, rate, emptiness), so
a bad chunk is an error naming the stream and leaves every stream's state as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gru_jax.data.features import FeatureConfig
from gru_jax.infer.frontend import Frontend
from gru_jax.infer.model import EmbeddingModel
from gru_jax.nn import streaming
from gru_jax.nn.encoder import ModelConfig

log = logging.getLogger(__name__)

DEFAULT_MAX_CHUNK_S = 0.5


class StreamError(ValueError):
    """A chunk or request a stream cannot take (reported without a traceback)."""


def streamable_features(cfg: FeatureConfig) -> FeatureConfig:
    """`cfg` with per-utterance normalisation and VAD replaced by their running variants."""
    changes = {}
    if cfg.cmn == "utterance":
        changes["cmn"] = "running"
    if cfg.vad == "utterance":
        changes["vad"] = "running"
    return dataclasses.replace(cfg, **changes) if changes else cfg


def _make_step(frontend: Frontend, model: ModelConfig):
    def step(params, front_state, enc_state, audio, n_samples):
        front_state, frames, n_frames = frontend.step(front_state, audio, n_samples)
        enc_state, emb = streaming.step(params, model, enc_state, frames, n_frames)
        return front_state, enc_state, emb

    return jax.jit(step, donate_argnums=(1, 2))


def _reset(state: Any, fresh: Any, slots: jax.Array) -> Any:
    """`state` with the rows in `slots` (a [S] bool mask) replaced by `fresh`'s."""

    def pick(old, new):
        mask = slots.reshape(slots.shape + (1,) * (old.ndim - 1))
        return jnp.where(mask, new, old)

    return jax.tree.map(pick, state, fresh)


@dataclass(frozen=True)
class StreamUpdate:
    """One stream after a chunk: its embedding so far (None before its first kept frame)."""

    embedding: np.ndarray | None
    n_frames: int
    seconds: float  # audio received so far


class StreamingEmbedder:
    """`n_streams` slots; `open`, `push` chunks to any of them, `close`."""

    def __init__(
        self,
        model: EmbeddingModel,
        n_streams: int = 1,
        max_chunk_s: float = DEFAULT_MAX_CHUNK_S,
    ):
        streaming.check_streamable(model.encoder.model)
        self.model = model
        self.features = streamable_features(model.features)
        if self.features != model.features:
            log.warning(
                "the model was trained with per-utterance normalisation or VAD, which needs the "
                "whole utterance; streaming uses the running variants (cmn=%s, vad=%s), so its "
                "embeddings differ slightly from offline ones",
                self.features.cmn,
                self.features.vad,
            )
        self.sample_rate = self.features.sample_rate
        self.max_samples = round(max_chunk_s * self.sample_rate)
        self.frontend = Frontend(self.features, self.max_samples)
        self.n_streams = n_streams
        self._step = _make_step(self.frontend, model.encoder.model)
        # one device: a stream's step is a chain of small ops that gains nothing from splitting
        device = jax.local_devices()[0]
        self._params = jax.device_put(model.encoder.params, device)
        self._fresh = jax.device_put(
            (self.frontend.init(n_streams), streaming.init_state(model.encoder.model, n_streams)),
            device,
        )
        self._front, self._enc = jax.tree.map(jnp.copy, self._fresh)
        self._emb: jax.Array | None = None
        self._reset = jax.jit(_reset)
        self._slot: dict[Hashable, int] = {}
        self._seconds = np.zeros(n_streams)

    # --- slots -----------------------------------------------------------------------------

    def open(self, stream: Hashable) -> None:
        """Start (or restart) a stream in a free slot."""
        if stream not in self._slot:
            free = sorted(set(range(self.n_streams)) - set(self._slot.values()))
            if not free:
                raise StreamError(f"all {self.n_streams} stream slots are in use")
            self._slot[stream] = free[0]
        slot = self._slot[stream]
        mask = jnp.zeros(self.n_streams, bool).at[slot].set(True)
        self._front = self._reset(self._front, self._fresh[0], mask)
        self._enc = self._reset(self._enc, self._fresh[1], mask)
        self._seconds[slot] = 0.0

    def close(self, stream: Hashable) -> np.ndarray | None:
        """The stream's final embedding (None if it never had a kept frame); frees its slot."""
        slot = self._require(stream)
        emb = self._current(slot)
        del self._slot[stream]
        return emb

    def _require(self, stream: Hashable) -> int:
        if stream not in self._slot:
            raise StreamError(f"stream {stream!r} is not open")
        return self._slot[stream]

    # --- audio -----------------------------------------------------------------------------

    def _checked(self, stream: Hashable, chunk: Any, sample_rate: int) -> np.ndarray:
        if sample_rate != self.sample_rate:
            raise StreamError(
                f"stream {stream!r}: audio at {sample_rate} Hz, the model takes "
                f"{self.sample_rate} Hz (resample first)"
            )
        array = np.asarray(chunk)
        if array.dtype.kind != "f":
            raise StreamError(
                f"stream {stream!r}: samples must be floating point in [-1, 1], got "
                f"{array.dtype} (divide int16 PCM by 32768)"
            )
        if array.ndim != 1:
            raise StreamError(f"stream {stream!r}: expected mono samples [n], got {array.shape}")
        if array.size == 0:
            raise StreamError(f"stream {stream!r}: empty chunk")
        if not np.all(np.isfinite(array)):
            raise StreamError(f"stream {stream!r}: chunk has NaN or infinite samples")
        return array.astype(np.float32)

    def push(
        self, chunks: Mapping[Hashable, Any], sample_rate: int
    ) -> dict[Hashable, StreamUpdate]:
        """Feed the next chunk of each named (open) stream; every chunk is checked first."""
        checked = {s: self._checked(s, c, sample_rate) for s, c in chunks.items()}
        slots = {s: self._require(s) for s in checked}
        longest = max((len(c) for c in checked.values()), default=0)
        for start in range(0, longest, self.max_samples):
            audio = np.zeros((self.n_streams, self.max_samples), np.float32)
            counts = np.zeros(self.n_streams, np.int32)
            for stream, samples in checked.items():
                piece = samples[start : start + self.max_samples]
                audio[slots[stream], : len(piece)] = piece
                counts[slots[stream]] = len(piece)
            self._front, self._enc, self._emb = self._step(
                self._params, self._front, self._enc, audio, counts
            )
        for stream, samples in checked.items():
            self._seconds[slots[stream]] += len(samples) / self.sample_rate
        return {s: self._update(slots[s]) for s in checked}

    def _current(self, slot: int) -> np.ndarray | None:
        if self._emb is None or int(self._enc.n_frames[slot]) == 0:
            return None
        return np.asarray(self._emb[slot])

    def _update(self, slot: int) -> StreamUpdate:
        return StreamUpdate(
            self._current(slot), int(self._enc.n_frames[slot]), float(self._seconds[slot])
        )
