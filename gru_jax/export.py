"""Embeddings for users: from a checkpoint to vectors, and the files they are handed over in.

`EmbeddingModel` is a restored checkpoint ready to embed whole utterances of a feature store, a
corpus or plain audio files (jitted and sharded by `embed.Embedder`, so a vector does not depend on
its batch). Vectors leave as `.npz` (an ``ids`` string array and an ``embeddings`` float32 matrix,
readable with ``allow_pickle=False``) or as Kaldi ark/scp (kaldiio), at utterance level or at
speaker level: the mean of a speaker's L2-normalised utterance vectors, as Kaldi's
``ivector-normalize-length | ivector-mean`` gives the per-speaker vectors used for speaker
adaptation in ASR. Every file is written under a temporary name beside its target and renamed into
place, so no reader ever sees a half-written file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import jax
import kaldiio
import numpy as np

from gru_jax import configs
from gru_jax.batching import FeatureSource
from gru_jax.corpora import Utterance
from gru_jax.data import store_dir_for
from gru_jax.embed import Embedder
from gru_jax.features import FeatureConfig, extract_features
from gru_jax.store import build_store
from gru_jax.training import TrainedModel, data_mesh, load_trained

DEFAULT_MAX_FRAMES = 32_000  # frames per embedding batch over all devices


class EmbeddingModel:
    """A restored checkpoint with its jitted embedder (compiled shapes are kept between calls)."""

    def __init__(
        self,
        trained: TrainedModel,
        run_dir: str | os.PathLike[str],
        max_frames: int = DEFAULT_MAX_FRAMES,
    ):
        self.trained = trained
        self.run_dir = Path(run_dir).absolute()
        self._mesh = data_mesh()
        self._embedder = Embedder(trained.encoder, self._mesh, max_frames=max_frames)

    @classmethod
    def load(
        cls, run_dir: str | os.PathLike[str], step: int | None = None, best: bool = False
    ) -> EmbeddingModel:
        """The latest checkpoint of a run, or `step`, or the best by validation EER."""
        return cls(load_trained(run_dir, step=step, best=best), run_dir)

    @property
    def features(self) -> FeatureConfig:
        return self.trained.config.features

    @property
    def step(self) -> int:
        return int(self.trained.step)

    @property
    def embedding_dim(self) -> int:
        return self.trained.config.model.embedding_dim

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of the encoder weights: two vectors are comparable only if this matches."""
        h = hashlib.sha256()
        for path, leaf in jax.tree_util.tree_leaves_with_path(self.trained.encoder_params):
            value = np.asarray(leaf)
            h.update(f"{jax.tree_util.keystr(path)}|{value.dtype}|{value.shape}|".encode())
            h.update(value.tobytes())
        return h.hexdigest()[:16]

    def identity(self) -> dict[str, Any]:
        """What produced a set of vectors: saved beside them and checked before mixing them."""
        return {
            "run_dir": str(self.run_dir),
            "step": self.step,
            "model_hash": configs.config_hash(self.trained.config.model),
            "feature_hash": self.features.hash(),
            "weights": self.fingerprint,
        }

    def embed_source(
        self, source: FeatureSource, indices: np.ndarray | None = None, progress: bool = False
    ) -> np.ndarray:
        """[N, E] float32 embeddings of whole utterances of a store (or any feature source)."""
        indices = np.arange(len(source)) if indices is None else np.asarray(indices)
        return self._embedder.embed_source(self.trained.encoder_params, source, indices, progress)

    def embed_features(self, feats: Sequence[np.ndarray]) -> np.ndarray:
        return self._embedder.embed_arrays(self.trained.encoder_params, feats)

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

    Utterances whose audio fails the checks are left out and counted in ``skipped``.
    """
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
    return EmbeddedCorpus(
        store.ids,
        store.speakers,
        store.durations_s(),
        vectors,
        dict(store.manifest.get("skipped", {})),
        store.path,
    )


# --- speaker-level vectors -----------------------------------------------------------------------


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def speaker_vectors(
    vectors: np.ndarray, speakers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted speaker ids, [S, E] mean of each speaker's L2-normalised vectors, [S] counts).

    The means are not renormalised, as with Kaldi's ``ivector-mean``: their length tells how
    consistent a speaker's utterances are, and scoring normalises anyway.
    """
    speakers = np.asarray(speakers, dtype=str)
    if speakers.shape != (len(vectors),):
        raise ValueError(f"{len(vectors)} vectors but {speakers.shape} speaker labels")
    names, index, counts = np.unique(speakers, return_inverse=True, return_counts=True)
    sums = np.zeros((len(names), np.shape(vectors)[1]), np.float64)
    np.add.at(sums, index, unit_rows(vectors))
    return names, (sums / counts[:, None]).astype(np.float32), counts.astype(np.int64)


# --- files -----------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """`write(file)` into a temporary file beside `path`, then rename it over `path`.

    A failure at any point (including inside `write`) leaves an existing `path` untouched and no
    temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs should read like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _checked(ids: Sequence[str], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=str)
    vectors = np.asarray(vectors, np.float32)
    if ids.ndim != 1 or vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"need one id per row: {ids.shape} ids for vectors {vectors.shape}")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("ids must be unique")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values")
    return ids, vectors


def save_npz(
    path: str | os.PathLike[str], ids: Sequence[str], vectors: np.ndarray, **extra: np.ndarray
) -> None:
    """``ids`` [N] str + ``embeddings`` [N, E] float32 (+ `extra` arrays), no pickled objects."""
    ids, vectors = _checked(ids, vectors)
    arrays = {"ids": ids, "embeddings": vectors, **{k: np.asarray(v) for k, v in extra.items()}}
    for name, value in arrays.items():
        if value.dtype == object:
            raise ValueError(f"{name}: object arrays cannot be loaded without pickle")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, embeddings) of a file written by `save_npz` (or any npz with those two arrays)."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"ids", "embeddings"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not an embeddings file (no {', '.join(sorted(missing))})")
        return data["ids"], data["embeddings"].astype(np.float32)


def save_kaldi(
    ark: str | os.PathLike[str],
    ids: Sequence[str],
    vectors: np.ndarray,
    scp: str | os.PathLike[str] | None = None,
) -> Path:
    """Kaldi binary float vectors in `ark` and their index in `scp` (default: `ark` as .scp).

    Same result as kaldiio's ``WriteHelper('ark,scp:x.ark,x.scp')``, written atomically; the scp
    names the ark as given here (relative paths resolve from the reader's directory, as in Kaldi).
    Returns the scp path.
    """
    ids, vectors = _checked(ids, vectors)
    bad = [i for i in ids.tolist() if not i or any(c.isspace() for c in i)]
    if bad:
        raise ValueError(f"Kaldi keys cannot be empty or contain whitespace: {bad[:5]}")
    ark = Path(ark)
    scp = ark.with_suffix(".scp") if scp is None else Path(scp)
    if scp == ark:
        raise ValueError(f"{ark}: the ark and the scp must be different files")
    offsets: list[int] = []

    def write_ark(handle: IO[bytes]) -> None:
        for key, vector in zip(ids.tolist(), vectors, strict=True):
            offsets.append(handle.tell() + len(f"{key} ".encode()))  # where the vector starts
            kaldiio.save_ark(handle, {key: vector})

    atomic_write(ark, write_ark)
    lines = "".join(
        f"{key} {ark}:{offset}\n" for key, offset in zip(ids.tolist(), offsets, strict=True)
    )
    atomic_write(scp, lambda f: f.write(lines.encode()))
    return scp


def load_kaldi(scp: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, [N, E] float32) from an scp written by `save_kaldi` (or Kaldi), in file order."""
    pairs = list(kaldiio.load_scp_sequential(str(scp)))
    if not pairs:
        raise ValueError(f"{scp}: no entries")
    ids = np.array([key for key, _ in pairs], dtype=str)
    return ids, np.stack([np.asarray(v, np.float32) for _, v in pairs])
