"""The embedding function: whole utterances, jitted, sharded over all devices, length-bucketed.

Every embedding in the project goes through `Embedder`: validation during training, evaluation,
enrolment, verification, identification, export and the benchmarks. Utterances are grouped by
length into a few padded shapes (the function compiles a handful of times, not once per length)
and masked by their lengths, so an utterance's embedding depends neither on the batch it lands in
nor on its padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from gru_jax.data.batching import FeatureSource, bucket_batches, pad_batch, padded_length
from gru_jax.nn.encoder import ModelConfig, SpeakerEncoder
from gru_jax.nn.mesh import DATA_AXIS, replicated, row_sharded

DEFAULT_MAX_FRAMES = 32_000  # frames per embedding batch over all devices


class ArraySource:
    """A `FeatureSource` over in-memory feature matrices (plain audio files, streaming chunks)."""

    def __init__(self, feats: Sequence[np.ndarray]):
        self._feats = list(feats)
        self.lengths = np.array([len(f) for f in self._feats], dtype=np.int64)
        self.n_features = int(self._feats[0].shape[1]) if self._feats else 0
        self.speakers = np.array([""] * len(self._feats))

    def __len__(self) -> int:
        return len(self._feats)

    def read(self, i: int, start: int = 0, n: int | None = None) -> np.ndarray:
        stop = len(self._feats[i]) if n is None else start + n
        return np.asarray(self._feats[i][start:stop], dtype=np.float32)


class Embedder:
    """Evaluation-mode embeddings of an encoder (`ModelConfig` or any Flax module with the
    `SpeakerEncoder` call signature) on `mesh`; compiled shapes are kept between calls."""

    def __init__(
        self,
        model: ModelConfig | nn.Module,
        mesh: jax.sharding.Mesh,
        max_frames: int = DEFAULT_MAX_FRAMES,
    ):
        self.encoder = SpeakerEncoder(model) if isinstance(model, ModelConfig) else model
        self.mesh = mesh
        self.max_frames = max_frames
        self._rows = row_sharded(mesh)

        def embed_rows(params: Any, feats: jax.Array, lengths: jax.Array) -> jax.Array:
            return self.encoder.apply({"params": params}, feats, lengths)

        # each device embeds its own rows (as training encodes them): left to the partitioner,
        # a replicated result pulls work across devices
        rows = P(DATA_AXIS)
        embed_batch = jax.shard_map(
            embed_rows,
            mesh=mesh,
            in_specs=(P(), rows, rows),
            out_specs=rows,
            check_vma=False,  # any module: Flax's nn.RNN does not type its carry per device
        )
        self.embed_batch = jax.jit(
            embed_batch,
            in_shardings=(replicated(mesh), self._rows, self._rows),
            out_shardings=self._rows,
        )

    def embed_source(
        self,
        params: Any,
        source: FeatureSource,
        indices: np.ndarray | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings [len(indices), E] (float32) of whole utterances `indices` of `source`."""
        indices = np.arange(len(source)) if indices is None else np.asarray(indices)
        if len(indices) == 0:
            return np.zeros((0, self.encoder.config.embedding_dim), np.float32)
        lengths = source.lengths[indices]
        # a batch holds at least one row per device: very long audio raises the frame budget
        # (one more compiled shape) instead of failing
        max_frames = max(self.max_frames, padded_length(int(lengths.max())) * self.mesh.size)
        batches = bucket_batches(lengths, max_frames, multiple_of=self.mesh.size)
        out: np.ndarray | None = None
        for positions in tqdm(batches, disable=not progress, desc="embed", unit="batch"):
            real = positions >= 0
            store_rows = np.where(real, indices[np.maximum(positions, 0)], -1)
            pad_to = int(source.lengths[store_rows[real]].max())
            batch = pad_batch(source, store_rows, padded_length(pad_to))
            feats = jax.device_put(batch.feats, self._rows)
            lengths = jax.device_put(np.maximum(batch.lengths, 1).astype(np.int32), self._rows)
            emb = np.asarray(self.embed_batch(params, feats, lengths))
            if out is None:
                out = np.zeros((len(indices), emb.shape[1]), np.float32)
            out[positions[real]] = emb[real]
        assert out is not None
        return out

    def embed_arrays(self, params: Any, feats: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_source(params, ArraySource(feats))
