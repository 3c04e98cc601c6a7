"""From a corpus path to what training needs: a feature store and a train/validation split.

The store is cached under a directory keyed by the corpus location and the feature-config hash, so a
second run on the same data reuses it and a different feature config never reads stale features.
Validation speakers are a deterministic function of the seed, disjoint from the training classes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_jax.data.corpora import read_corpus
from gru_jax.data.features import FeatureConfig
from gru_jax.data.store import Store, build_store


def default_cache_dir() -> Path:
    """``$GRU_JAX_CACHE``, else ``$XDG_CACHE_HOME/gru_jax``, else ``~/.cache/gru_jax``."""
    if os.environ.get("GRU_JAX_CACHE"):
        return Path(os.environ["GRU_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gru_jax"


def store_dir_for(
    data: str | os.PathLike[str],
    list_file: str | None,
    cfg: FeatureConfig,
    cache_dir: str | os.PathLike[str] | None = None,
    split: str | None = None,
) -> Path:
    """A store directory in the feature cache, keyed by the corpus, its list or split, and the
    feature config's hash."""
    source = f"{Path(data).resolve()}|{Path(list_file).resolve() if list_file else ''}"
    if split is not None:
        source += f"|split={split}"
    key = hashlib.sha256(source.encode()).hexdigest()[:10]
    name = f"{Path(data).resolve().name or 'corpus'}-{key}-{cfg.hash()}"
    return Path(cache_dir or default_cache_dir()) / "features" / name


def prepare_store(
    data: str | os.PathLike[str],
    cfg: FeatureConfig,
    *,
    list_file: str | None = None,
    split: str | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> Store:
    """Read the corpus at `data` (any supported layout) and build or reuse its feature store."""
    utterances = read_corpus(str(data), list_file, split=split)
    path = Path(store_dir) if store_dir else store_dir_for(data, list_file, cfg, split=split)
    sources = [str(data)] + ([str(list_file)] if list_file else [])
    return build_store(
        utterances, path, cfg, workers=workers, rebuild=rebuild, progress=progress, sources=sources
    )


@dataclass(frozen=True)
class TrainingData:
    store: Store
    class_names: tuple[str, ...]  # training speakers; class k is class_names[k]
    train_indices: np.ndarray  # store rows used for training
    train_labels: np.ndarray  # class of each train_indices row
    val_indices: np.ndarray  # store rows of the held-out validation speakers

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def store_speaker_codes(self, indices: np.ndarray) -> np.ndarray:
        """Integer speaker codes (any speaker, not only training classes) for store rows."""
        _, codes = np.unique(self.store.speakers[indices], return_inverse=True)
        return codes.astype(np.int32)


def split_speakers(store: Store, n_val_speakers: int, seed: int) -> TrainingData:
    """Hold out `n_val_speakers` whole speakers (deterministic in `seed`); the rest are classes."""
    speakers = np.unique(store.speakers)
    if len(speakers) < n_val_speakers + 2:
        raise ValueError(
            f"{store.path}: {len(speakers)} speakers is too few to hold out {n_val_speakers} for "
            "validation and train on the rest (need at least 2 training speakers)"
        )
    rng = np.random.default_rng([seed, 0x5EED])
    val = set(rng.choice(speakers, n_val_speakers, replace=False).tolist())
    class_names = tuple(s for s in speakers.tolist() if s not in val)
    is_val = np.isin(store.speakers, list(val))
    train_indices = np.flatnonzero(~is_val)
    lookup = {s: k for k, s in enumerate(class_names)}
    train_labels = np.array([lookup[s] for s in store.speakers[train_indices]], dtype=np.int32)
    return TrainingData(store, class_names, train_indices, train_labels, np.flatnonzero(is_val))
