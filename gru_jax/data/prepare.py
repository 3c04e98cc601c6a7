"""From a corpus path to what training needs: feature stores and a train/validation split.

The store is cached under a directory keyed by the corpus location and the feature-config hash, so a
second run on the same data reuses it and a different feature config never reads stale features.
Validation speakers are a deterministic function of the seed, disjoint from the training classes.
With augmentation they are drawn from the corpus speakers alone (the same as without it), validate
on their original audio only, and their speed-perturbed copies (new speakers) are not trained on.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_jax.data.augmentation import AugmentConfig, speed_speakers
from gru_jax.data.corpora import Utterance, read_corpus
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
    augment: AugmentConfig | None = None,
) -> Path:
    """A store directory in the feature cache, keyed by the corpus, its list or split, the
    feature config's hash and, when it asks for copies, the augmentation config's."""
    source = f"{Path(data).resolve()}|{Path(list_file).resolve() if list_file else ''}"
    if split is not None:
        source += f"|split={split}"
    key = hashlib.sha256(source.encode()).hexdigest()[:10]
    name = f"{Path(data).resolve().name or 'corpus'}-{key}-{cfg.hash()}"
    if augment is not None and augment.enabled:
        name += f"-aug{augment.hash()}"
    return Path(cache_dir or default_cache_dir()) / "features" / name


def _store_builder(
    data: str | os.PathLike[str],
    list_file: str | None,
    cfg: FeatureConfig,
    workers: int | None,
    rebuild: bool,
    progress: bool,
    augment: AugmentConfig | None,
) -> Callable[[Sequence[Utterance], Path], Store]:
    """`build_store` of (utterances, path) with everything else of one corpus fixed."""
    sources = [str(data)] + ([str(list_file)] if list_file else [])
    return functools.partial(
        build_store,
        cfg=cfg,
        workers=workers,
        rebuild=rebuild,
        progress=progress,
        sources=sources,
        augment=augment,
    )


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
    augment: AugmentConfig | None = None,
) -> Store:
    """Read the corpus at `data` (any supported layout) and build or reuse its feature store."""
    utterances = read_corpus(str(data), list_file, split=split)
    path = Path(store_dir or store_dir_for(data, list_file, cfg, split=split, augment=augment))
    build = _store_builder(data, list_file, cfg, workers, rebuild, progress, augment)
    return build(utterances, path)


@dataclass(frozen=True)
class DataPart:
    """The rows of one feature store that training reads: one part of a corpus split over the
    processes of a multi-host run (or the whole corpus)."""

    index: int  # which part
    store: Store
    train_indices: np.ndarray  # store rows used for training
    train_labels: np.ndarray  # class of each train_indices row
    val_indices: np.ndarray  # store rows of the held-out validation speakers (no augmented copies)


@dataclass(frozen=True)
class TrainingData:
    """The training classes, and the parts of the corpus this process holds (of `n_parts`)."""

    class_names: tuple[str, ...]  # training speakers; class k is class_names[k]
    parts: tuple[DataPart, ...]
    n_parts: int = 1
    by_speaker: bool = False  # parts split by speaker (`corpus_part`): no speaker in two parts

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def only_part(self) -> DataPart:
        if len(self.parts) != 1:
            raise ValueError(f"this process holds {len(self.parts)} data parts, not one")
        return self.parts[0]

    @property
    def store(self) -> Store:
        return self.only_part.store

    @property
    def train_indices(self) -> np.ndarray:
        return self.only_part.train_indices

    @property
    def train_labels(self) -> np.ndarray:
        return self.only_part.train_labels

    @property
    def val_indices(self) -> np.ndarray:
        return self.only_part.val_indices

    @property
    def n_val(self) -> int:
        """Validation utterances held here (all parts)."""
        return sum(len(p.val_indices) for p in self.parts)


def hold_out_speakers(
    speakers: Sequence[str], n_val_speakers: int, seed: int, where: str
) -> tuple[tuple[str, ...], set[str]]:
    """(training classes, held-out speakers): `n_val_speakers` whole speakers, deterministic in
    `seed`; the rest are classes in sorted order."""
    speakers = np.unique(np.asarray(speakers, dtype=str))
    if len(speakers) < n_val_speakers + 2:
        raise ValueError(
            f"{where}: {len(speakers)} speakers is too few to hold out {n_val_speakers} for "
            "validation and train on the rest (need at least 2 training speakers)"
        )
    rng = np.random.default_rng([seed, 0x5EED])
    val = set(rng.choice(speakers, n_val_speakers, replace=False).tolist())
    return tuple(s for s in speakers.tolist() if s not in val), val


def data_part(index: int, store: Store, class_names: Sequence[str], val: set[str]) -> DataPart:
    """Every row of a validation speaker, and of their speed copies, is kept out of training;
    validation reads their original audio only."""
    is_val = np.isin(store.source_speakers, list(val))
    train_indices = np.flatnonzero(~is_val)
    lookup = {s: k for k, s in enumerate(class_names)}
    train_labels = np.array([lookup[s] for s in store.speakers[train_indices]], dtype=np.int32)
    val_indices = np.flatnonzero(is_val & (store.augment == ""))
    return DataPart(index, store, train_indices, train_labels, val_indices)


def split_speakers(store: Store, n_val_speakers: int, seed: int) -> TrainingData:
    """One store's training data: `n_val_speakers` of its corpus speakers held out, the rest (and
    their speed copies) classes."""
    original = store.augment == ""
    _, val = hold_out_speakers(store.speakers[original], n_val_speakers, seed, str(store.path))
    trained = ~np.isin(store.source_speakers, list(val))
    class_names = tuple(np.unique(store.speakers[trained]).tolist())
    return TrainingData(class_names, (data_part(0, store, class_names, val),))


def corpus_part(
    utterances: Sequence[Utterance], index: int, n_parts: int, by_speaker: bool = False
) -> list[Utterance]:
    """Part `index` of `n_parts` of a corpus: every n-th utterance in id order, so each part has
    some of every speaker's utterances; or, `by_speaker`, every n-th speaker (sorted) with all of
    their utterances, so that parts filling speaker-balanced blocks never share a speaker."""
    ordered = sorted(utterances, key=lambda u: u.utt_id)
    if not by_speaker:
        return ordered[index::n_parts]
    speakers = sorted({u.speaker for u in ordered})
    own = set(speakers[index::n_parts])
    return [u for u in ordered if u.speaker in own]


def prepare_parts(
    data: str | os.PathLike[str],
    cfg: FeatureConfig,
    parts: Sequence[int],
    n_parts: int,
    n_val_speakers: int,
    seed: int,
    *,
    list_file: str | None = None,
    split: str | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
    augment: AugmentConfig | None = None,
    by_speaker: bool = False,
) -> TrainingData:
    """The training data of `parts` of a corpus split into `n_parts` (by utterance, or
    `by_speaker`: see `corpus_part`): each part's features are extracted into its own store (a
    process builds only its own: no shared filesystem needed, and no two processes write one
    store); the classes come from the whole corpus listing."""
    utterances = read_corpus(str(data), list_file, split=split)
    class_names, val = hold_out_speakers(
        [u.speaker for u in utterances], n_val_speakers, seed, str(data)
    )
    if augment is not None:
        class_names = tuple(sorted((*class_names, *speed_speakers(list(class_names), augment))))
    base = Path(store_dir or store_dir_for(data, list_file, cfg, split=split, augment=augment))
    build = _store_builder(data, list_file, cfg, workers, rebuild, progress, augment)
    held = []
    for index in parts:
        part = f"{'speakers' if by_speaker else 'part'}{index}of{n_parts}"
        path = base / part if store_dir else Path(f"{base}-{part}")
        store = build(corpus_part(utterances, index, n_parts, by_speaker), path)
        held.append(data_part(index, store, class_names, val))
    return TrainingData(class_names, tuple(held), n_parts, by_speaker)
