"""Vectors leave the toolkit as files: `.npz` or Kaldi ark/scp, per utterance or per speaker.

`.npz` holds an ``ids`` string array and an ``embeddings`` float32 matrix, readable with
``allow_pickle=False``. Speaker-level vectors are the mean of a speaker's L2-normalised utterance
vectors, as Kaldi's ``ivector-normalize-length | ivector-mean`` gives the per-speaker vectors used
for speaker adaptation in ASR. Every file is written atomically (`core.files.atomic_write`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import kaldiio
import numpy as np

from gru_jax.core.files import atomic_write
from gru_jax.nn.functional import l2_normalize


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
    np.add.at(sums, index, np.asarray(l2_normalize(np.asarray(vectors, np.float32))))
    return names, (sums / counts[:, None]).astype(np.float32), counts.astype(np.int64)


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
