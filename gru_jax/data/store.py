"""Memory-mapped, sharded feature store.

Features of a whole corpus are computed once and read back by random access, so training never
decodes audio and a corpus far bigger than RAM costs only page cache. Layout of a store directory:

    manifest.json             feature config + hash, counts, sources, skips; "complete" when built
    shard-00000.npy           contiguous [frames, n_features] array (float16 or float32), memory-mapped
    shard-00000.index.json    that shard's utterances: id, speaker, session, path, offset, n_frames,
                              augment (the tag of an augmented copy, "" for the audio as is)

Shard k always holds utterances [k * shard_size, (k + 1) * shard_size) of the sorted input list, so an
interrupted build resumes by skipping the shards whose index file exists. A shard's index is written
(atomically, by rename) only after its data file has been renamed into place: a half-written shard is
never visible as valid. Augmented copies (`augmentation`) are rows like any other, sorted in after
their source utterance, so they are built and resumed by the same shards.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gru_jax.core import config as configs
from gru_jax.core.files import atomic_write, atomic_write_json
from gru_jax.data.augmentation import (
    KINDS,
    AugmentConfig,
    Copy,
    copies_of,
    copy_speaker,
    source_speaker,
    tag_kind,
)
from gru_jax.data.corpora import Utterance
from gru_jax.data.extraction import ExtractionReport, extract_many
from gru_jax.data.features import FeatureConfig, feature_config_from_dict

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class StoreError(RuntimeError):
    """A store that cannot be used as asked (other feature config, incomplete, damaged)."""


def _digest(rows: Sequence[_Row]) -> str:
    """Of the rows' utterances; a copy differs by its id, and a store without copies keeps the
    digest it had before augmentation existed (so its partial builds still resume). Paths count
    as resolved, as the store's directory key resolves the corpus root: a corpus reached through
    a symlink shares its store instead of rebuilding it for each path in turn."""
    real_dir = functools.lru_cache(maxsize=None)(os.path.realpath)
    h = hashlib.sha256()
    for u, _, _ in rows:
        folder, name = os.path.split(u.path)
        path = os.path.join(real_dir(folder), name)
        h.update(f"{u.utt_id}\t{u.speaker}\t{path}\t{u.start}\t{u.end}\n".encode())
    return h.hexdigest()[:16]


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}"


@dataclass(frozen=True)
class _ShardIndex:
    ids: list[str]
    speakers: list[str]
    sessions: list[str]
    paths: list[str]
    offsets: list[int]
    n_frames: list[int]
    skipped: list[list[str]]  # [path, reason, detail]
    digest: str
    augment: list[str]  # per utterance: its copy's tag ("noise0", "sp0.9"), "" for the original


class _Row(NamedTuple):
    """A row of the store being built: an utterance, or an augmented copy of one."""

    utt: Utterance
    copy: Copy | None  # None: the audio as is
    tag: str  # the copy's tag, "" for the audio as is


class Store:
    """Read access to a built store: per-utterance metadata arrays plus rows from memory maps."""

    def __init__(self, path: str | os.PathLike[str], manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest
        self.feature_config = feature_config_from_dict(manifest["feature_config"])
        self.n_features = int(manifest["n_features"])
        ids: list[str] = []
        speakers: list[str] = []
        sessions: list[str] = []
        paths: list[str] = []
        tags: list[str] = []
        shard: list[int] = []
        offset: list[int] = []
        lengths: list[int] = []
        self._shards: list[np.ndarray] = []
        for k, name in enumerate(manifest["shards"]):
            index = json.loads((self.path / f"{name}.index.json").read_text())
            ids += index["ids"]
            speakers += index["speakers"]
            sessions += index["sessions"]
            paths += index["paths"]
            offset += index["offsets"]
            lengths += index["n_frames"]
            tags += index.get("augment", [""] * len(index["ids"]))  # stores of older versions
            shard += [k] * len(index["ids"])
            self._shards.append(np.load(self.path / f"{name}.npy", mmap_mode="r"))
        self.ids = np.array(ids, dtype=str)
        self.speakers = np.array(speakers, dtype=str)
        self.sessions = np.array(sessions, dtype=str)
        self.paths = np.array(paths, dtype=str)
        self.augment = np.array(tags, dtype=str)  # "" for the original audio
        self.source_speakers = np.array(
            [source_speaker(s, t) for s, t in zip(speakers, tags, strict=True)], dtype=str
        )  # the corpus speaker of each row (a speed copy's speaker is a new one)
        self.lengths = np.array(lengths, dtype=np.int64)
        self._shard_of = np.array(shard, dtype=np.int32)
        self._offset = np.array(offset, dtype=np.int64)
        self._position = {utt: i for i, utt in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"Store({str(self.path)!r}, utterances={len(self)}, "
            f"speakers={len(set(self.speakers.tolist()))}, frames={int(self.lengths.sum())})"
        )

    def index_of(self, utt_id: str) -> int:
        try:
            return self._position[utt_id]
        except KeyError:
            raise KeyError(
                f"utterance {utt_id!r} is not in the feature store {self.path}"
            ) from None

    def read(self, i: int, start: int = 0, n: int | None = None) -> np.ndarray:
        """Frames [start, start + n) of utterance i as float32 (n=None: to the end)."""
        length = int(self.lengths[i])
        if n is None:
            n = length - start
        if start < 0 or n < 0 or start + n > length:
            raise IndexError(
                f"frames [{start}, {start + n}) outside utterance {self.ids[i]} ({length})"
            )
        base = int(self._offset[i]) + start
        return np.asarray(self._shards[self._shard_of[i]][base : base + n], dtype=np.float32)

    def durations_s(self) -> np.ndarray:
        return self.lengths * (self.feature_config.hop_ms / 1000.0)


def open_store(path: str | os.PathLike[str], expected: FeatureConfig | None = None) -> Store:
    """Open a complete store; refuse one built with another feature config than `expected`."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise StoreError(f"{path}: not a feature store (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format {manifest.get('format')}, expected {FORMAT_VERSION}"
        )
    if not manifest.get("complete"):
        raise StoreError(
            f"{path}: the store build did not finish; run the build again to resume it"
        )
    if expected is not None and manifest["feature_hash"] != expected.hash():
        raise StoreError(
            f"{path}: built with feature config {manifest['feature_hash']} "
            f"({json.dumps(manifest['feature_config'], sort_keys=True)}), but {expected.hash()} "
            f"({configs.to_json(expected)}) was asked for; rebuild it (rebuild=True / --rebuild-features) "
            "or use another store directory"
        )
    return Store(path, manifest)


def _check_or_start_manifest(
    path: Path,
    cfg: FeatureConfig,
    augment: dict[str, Any] | None,
    dtype: str,
    shard_size: int,
    digest: str,
    rebuild: bool,
) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        same_config = old.get("feature_hash") == cfg.hash() and old.get("augment") == augment
        same_layout = (old.get("dtype"), old.get("shard_size"), old.get("format")) == (
            dtype,
            shard_size,
            FORMAT_VERSION,
        )
        if not same_config and not rebuild:
            raise StoreError(
                f"{path}: holds features of config {old.get('feature_hash')} (augmentation: "
                f"{old.get('augment')}), not {cfg.hash()} (augmentation: {augment}); "
                "pass rebuild=True (--rebuild-features) to replace them, or use another directory"
            )
        if same_config and same_layout and old.get("utterances_digest") == digest:
            return old
        log.info("%s: corpus, config or layout changed; rebuilding the store", path)
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT_VERSION,
        "complete": False,
        "feature_config": configs.to_dict(cfg),
        "feature_hash": cfg.hash(),
        "n_features": cfg.n_features,
        "dtype": dtype,
        "shard_size": shard_size,
        "utterances_digest": digest,
    }
    if augment is not None:
        manifest["augment"] = augment
    atomic_write_json(manifest_path, manifest)
    return manifest


def _write_shard(path: Path, k: int, rows: Sequence[_Row], feats: list, dtype: str) -> None:
    arrays, ids, speakers, sessions, paths, offsets, n_frames, skipped, kept_tags = (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )
    offset = 0
    for (utt, _, tag), f in zip(rows, feats, strict=True):
        if isinstance(f, tuple):  # (reason, detail) of a skipped utterance (or copy)
            skipped.append([f"{utt.path}#{tag}" if tag else utt.path, *f])
            continue
        arrays.append(f.astype(dtype))
        kept_tags.append(tag)
        ids.append(utt.utt_id)
        speakers.append(utt.speaker)
        sessions.append(utt.session)
        paths.append(utt.path)
        offsets.append(offset)
        n_frames.append(len(f))
        offset += len(f)
    n_feats = arrays[0].shape[1] if arrays else 0
    data = np.concatenate(arrays) if arrays else np.zeros((0, n_feats), dtype)
    name = _shard_name(k)
    atomic_write(path / f"{name}.npy", lambda f: np.save(f, data, allow_pickle=False))
    index = _ShardIndex(
        ids, speakers, sessions, paths, offsets, n_frames, skipped, _digest(rows), kept_tags
    )
    atomic_write_json(path / f"{name}.index.json", index.__dict__, indent=None)


def _shard_done(path: Path, k: int, rows: Sequence[_Row]) -> bool:
    index_path = path / f"{_shard_name(k)}.index.json"
    if not index_path.exists() or not (path / f"{_shard_name(k)}.npy").exists():
        return False
    return json.loads(index_path.read_text()).get("digest") == _digest(rows)


def _rows(utterances: Sequence[Utterance], augment: AugmentConfig | None) -> list[_Row]:
    """The utterances and every augmented copy of them, in id order: a copy's id is its source's
    plus ``#<tag>``, and a speed copy's speaker is a new one."""
    rows = [_Row(u, None, "") for u in utterances]
    for u in utterances if augment is not None else ():
        for copy in copies_of(u.utt_id, augment):
            tag = copy.tag(augment)
            speaker = copy_speaker(u.speaker, tag)
            session = copy_speaker(u.session, tag) if u.session else ""
            utt = replace(u, utt_id=f"{u.utt_id}#{tag}", speaker=speaker, session=session)
            rows.append(_Row(utt, copy, tag))
    return sorted(rows, key=lambda row: row.utt.utt_id)


def build_store(
    utterances: Sequence[Utterance],
    path: str | os.PathLike[str],
    cfg: FeatureConfig,
    *,
    shard_size: int = 2000,
    dtype: str = "float16",
    workers: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
    sources: Sequence[str] = (),
    augment: AugmentConfig | None = None,
) -> Store:
    """Build (or resume, or reuse) the store of `utterances` at `path` and open it.

    Utterances that fail the audio checks are skipped and counted by reason in the manifest; a store in
    which every utterance failed is an error. With `augment` (enabled), the store also holds the
    augmented copies it asks for, counted by kind in the manifest's "augmented".
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    if not utterances:
        raise StoreError(f"{path}: no utterances to build a feature store from")
    path = Path(path)
    augment = augment if augment is not None and augment.enabled else None
    rows = _rows(utterances, augment)
    # In the manifest's JSON form (tuples become lists), so that a reopened store compares equal.
    augment_dict = json.loads(json.dumps(configs.to_dict(augment))) if augment is not None else None
    manifest = _check_or_start_manifest(
        path, cfg, augment_dict, dtype, shard_size, _digest(rows), rebuild
    )
    if manifest.get("complete"):
        return open_store(path, cfg)

    shards = [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]
    todo = [k for k in range(len(shards)) if not _shard_done(path, k, shards[k])]
    if len(todo) < len(shards):
        log.info(
            "%s: resuming, %d of %d shards already built",
            path,
            len(shards) - len(todo),
            len(shards),
        )
    items, owner = [], []
    for k in todo:
        for j, (u, copy, _) in enumerate(shards[k]):
            items.append((u.path, u.start, u.end, copy))
            owner.append((k, j))
    pending = {k: [None] * len(shards[k]) for k in todo}
    missing = {k: len(shards[k]) for k in todo}
    report = ExtractionReport()
    extracted = extract_many(
        items, cfg, workers=workers, progress=progress, report=report, augment_cfg=augment
    )
    for i, feats in extracted:
        k, j = owner[i]
        # Results arrive in input order, so a skip's reason is the report's newest entry.
        pending[k][j] = feats if feats is not None else tuple(report.skipped_items[-1][1:])
        missing[k] -= 1
        if missing[k] == 0:
            _write_shard(path, k, shards[k], pending.pop(k), dtype)

    skipped: dict[str, int] = {}
    augmented = dict.fromkeys(KINDS, 0)
    n_utts = n_frames = 0
    for k in range(len(shards)):
        index = json.loads((path / f"{_shard_name(k)}.index.json").read_text())
        n_utts += len(index["ids"])
        for tag in filter(None, index.get("augment", ())):  # shards of older versions have none
            augmented[tag_kind(tag)] += 1
        n_frames += sum(index["n_frames"])
        for _, reason, _detail in index["skipped"]:
            skipped[reason] = skipped.get(reason, 0) + 1
    if n_utts == 0:
        raise StoreError(f"{path}: every utterance failed the audio checks: {skipped}")
    if skipped:
        log.warning("%s: skipped %d utterance(s): %s", path, sum(skipped.values()), skipped)
    manifest.update(
        complete=True,
        shards=[_shard_name(k) for k in range(len(shards))],
        n_utterances=n_utts,
        n_frames=n_frames,
        n_speakers=len({row.utt.speaker for row in rows}),
        skipped=skipped,
        sources=list(sources),
    )
    if augment is not None:
        manifest["augmented"] = augmented
    atomic_write_json(path / MANIFEST, manifest)
    return open_store(path, cfg)
