"""A trained encoder ready for users: embed a feature store, a corpus or plain audio files.

`EmbeddingModel` holds a restored encoder (`checkpoint.load_encoder`) and its `Embedder`, so a
vector does not depend on its batch, and knows the feature config that audio must go through.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gru_jax.core.config import config_hash
from gru_jax.core.rundir import RunDir
from gru_jax.data.batching import FeatureSource
from gru_jax.data.corpora import Utterance
from gru_jax.data.features import FeatureConfig, extract_features
from gru_jax.data.prepare import corpus_part, store_dir_for
from gru_jax.data.store import build_store
from gru_jax.infer.checkpoint import TrainedEncoder, load_encoder
from gru_jax.infer.distributed import gather_rows, gather_strings
from gru_jax.infer.embedding import DEFAULT_MAX_FRAMES, Embedder
from gru_jax.nn.encoder import ModelConfig, init_params
from gru_jax.nn.mesh import data_mesh, replicated


class EmbeddingModel:
    """A restored encoder with its jitted embedder (compiled shapes are kept between calls).

    The mesh spans every device of this process; the parameters are replicated on it.
    """

    def __init__(self, encoder: TrainedEncoder, max_frames: int = DEFAULT_MAX_FRAMES):
        self.encoder = encoder
        self._mesh = data_mesh(jax.local_devices())
        self.params = jax.device_put(encoder.params, replicated(self._mesh))
        self._embedder = Embedder(encoder.model, self._mesh, max_frames=max_frames)

    @classmethod
    def load(
        cls,
        run_dir: str | os.PathLike[str],
        step: int | None = None,
        best: bool = False,
        average_last: int = 1,
    ) -> EmbeddingModel:
        """The latest checkpoint of a run, or `step`, or the best by validation EER; with
        `average_last` > 1, the mean of that many latest checkpoints up to it."""
        return cls(load_encoder(run_dir, step=step, best=best, average_last=average_last))

    @classmethod
    def untrained(
        cls, features: FeatureConfig, model: ModelConfig, seed: int = 0
    ) -> EmbeddingModel:
        """Freshly initialised weights of a shape: what training adds is measured against it,
        and speed does not depend on the weights."""
        params = init_params(model, features.n_features, jax.random.key(seed))
        encoder = TrainedEncoder(
            run=RunDir(tempfile.gettempdir()),
            step=0,
            features=features,
            model=model,
            params=params,
            class_names=(),
            meta={},
        )
        return cls(encoder)

    @property
    def run(self) -> RunDir:
        return self.encoder.run

    @property
    def features(self) -> FeatureConfig:
        return self.encoder.features

    @property
    def step(self) -> int:
        return self.encoder.step

    @property
    def embedding_dim(self) -> int:
        return self.encoder.model.embedding_dim

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the encoder weights: two vectors are comparable only if this matches."""
        h = hashlib.sha256()
        for path, leaf in jax.tree_util.tree_leaves_with_path(self.encoder.params):
            value = np.asarray(leaf)
            h.update(f"{jax.tree_util.keystr(path)}|{value.dtype}|{value.shape}|".encode())
            h.update(value.tobytes())
        return h.hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        """What produced a set of vectors: saved beside them and checked before mixing them."""
        identity = {
            "run_dir": str(self.run),
            "step": self.step,
            "model_hash": config_hash(self.encoder.model),
            "feature_hash": self.features.hash(),
            "weights": self.fingerprint,
        }
        if self.encoder.averaged_steps:
            identity["averaged_steps"] = list(self.encoder.averaged_steps)
        return identity

    def embed_source(
        self, source: FeatureSource, indices: np.ndarray | None = None, progress: bool = False
    ) -> np.ndarray:
        """[N, E] float32 embeddings of whole utterances of a store (or any feature source)."""
        return self._embedder.embed_source(self.params, source, indices, progress)

    def embed_features(self, feats: Sequence[np.ndarray]) -> np.ndarray:
        return self._embedder.embed_arrays(self.params, feats)

    def embed_files(self, paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
        """Embeddings of audio files; a file that fails the audio checks raises `AudioError`."""
        return self.embed_features([extract_features(p, self.features) for p in paths])


@dataclass(frozen=True)
class EmbeddedCorpus:
    """Utterance embeddings of a corpus, in store order (sorted ids)."""

    ids: np.ndarray  # [N] str
    speakers: np.ndarray  # [N] str
    durations_s: np.ndarray  # [N] seconds of features (after VAD, if the features use it)
    vectors: np.ndarray  # [N, E] float32
    skipped: dict[str, int]  # utterances whose audio failed the checks, counted by reason
    store: Path

    def row_of(self) -> dict[str, int]:
        return {utt_id: i for i, utt_id in enumerate(self.ids.tolist())}


def default_store_dir(
    data: str | os.PathLike[str], utterances: Sequence[Utterance], cfg: FeatureConfig
) -> Path:
    """A store in the feature cache keyed by the corpus, the exact utterance set and the config."""
    base = store_dir_for(data, None, cfg)
    digest = hashlib.sha256("\n".join(sorted(u.utt_id for u in utterances)).encode()).hexdigest()
    return base.with_name(f"{base.name}-{digest[:10]}")


def embed_utterances(
    model: EmbeddingModel,
    utterances: Sequence[Utterance],
    store_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool = True,
    sources: Sequence[str] = (),
) -> EmbeddedCorpus:
    """Build (or reuse) the float32 feature store of `utterances`, then embed every utterance.

    Utterances whose audio fails the checks are left out and counted in ``skipped``. On several
    processes each extracts and embeds its own part (`data.prepare.corpus_part`, in a store of its
    own) and every process gets the whole result, in utterance-id order as on one process.
    """
    n_parts, index = jax.process_count(), jax.process_index()
    if n_parts > 1:
        utterances = corpus_part(utterances, index, n_parts)
        store_dir = f"{store_dir}-part{index}of{n_parts}"
    store = build_store(
        utterances,
        store_dir,
        model.features,
        dtype="float32",
        workers=workers,
        progress=progress,
        sources=sources,
    )
    vectors = model.embed_source(store, progress=progress)
    skipped = dict(store.manifest.get("skipped", {}))
    if n_parts == 1:
        return EmbeddedCorpus(
            store.ids, store.speakers, store.durations_s(), vectors, skipped, store.path
        )
    ids = np.asarray(gather_strings(store.ids.tolist()))
    order = np.argsort(ids)
    totals: dict[str, int] = {}
    for part in gather_strings([json.dumps(skipped)]):
        for reason, count in json.loads(part).items():
            totals[reason] = totals.get(reason, 0) + count
    return EmbeddedCorpus(
        ids[order],
        np.asarray(gather_strings(store.speakers.tolist()))[order],
        gather_rows(store.durations_s())[order],
        gather_rows(vectors)[order],
        totals,
        store.path,
    )
