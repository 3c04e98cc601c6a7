"""Whole-utterance embedding extraction: jitted, sharded over all devices, length-bucketed.

Utterances are grouped by length into a few padded shapes (so the function compiles a handful of
times, not once per length) and masked by their lengths, so an utterance's embedding does not depend
on the batch it lands in or on its padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from gru_jax.batching import FeatureSource, bucket_batches, pad_batch, padded_length
from gru_jax.model import SpeakerEncoder


class _ArraySource:
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
    def __init__(self, encoder: SpeakerEncoder, mesh: jax.sharding.Mesh, max_frames: int = 32_000):
        self.encoder = encoder
        self.mesh = mesh
        self.max_frames = max_frames
        replicated = NamedSharding(mesh, P())
        rows = NamedSharding(mesh, P("data"))

        def apply(params: Any, feats: jax.Array, lengths: jax.Array) -> jax.Array:
            return encoder.apply({"params": params}, feats, lengths, train=False)

        self._apply = jax.jit(
            apply, in_shardings=(replicated, rows, rows), out_shardings=replicated
        )
        self._rows = rows

    def embed_source(
        self,
        params: Any,
        source: FeatureSource,
        indices: np.ndarray | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Embeddings [len(indices), E] (float32) of whole utterances `indices` of `source`."""
        indices = np.arange(len(source)) if indices is None else np.asarray(indices)
        out = np.zeros((len(indices), self.encoder.config.embedding_dim), np.float32)
        if len(indices) == 0:
            return out
        lengths = source.lengths[indices]
        # a batch holds at least one row per device: very long audio raises the frame budget
        # (one more compiled shape) instead of failing
        max_frames = max(self.max_frames, padded_length(int(lengths.max())) * self.mesh.size)
        batches = bucket_batches(lengths, max_frames, multiple_of=self.mesh.size)
        for positions in tqdm(batches, disable=not progress, desc="embed", unit="batch"):
            real = positions >= 0
            store_rows = np.where(real, indices[np.maximum(positions, 0)], -1)
            pad_to = int(source.lengths[store_rows[real]].max())
            batch = pad_batch(source, store_rows, padded_length(pad_to))
            lengths = np.maximum(batch.lengths, 1).astype(np.int32)
            emb = self._apply(params, jnp.asarray(batch.feats), jnp.asarray(lengths))
            out[positions[real]] = np.asarray(emb)[real]
        return out

    def embed_arrays(self, params: Any, feats: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_source(params, _ArraySource(feats))
