"""Vectors leave the toolkit as files: `.npz` or Kaldi ark/scp, per utterance or per speaker.

`.npz` holds an ``ids`` string array and an ``embeddings`` float32 matrix, readable with
``allow_pickle=False``. Speaker-level vectors are the mean of a speaker's L2-normalised utterance
vectors, as Kaldi's ``ivector-normalize-length --scaleup=false | ivector-mean`` gives the
per-speaker vectors used for speaker adaptation in ASR.

Kaldi and ESPnet recipes expect more than the vectors beside them: ``utt2spk`` and ``spk2utt``
(`save_speaker_tables`) and, for speaker vectors, ``num_utts.ark``. `save_xvector_dir` writes the
whole set under the names of Kaldi's ``sid/nnet3/xvector/extract_xvectors.sh``. Kaldi's tools
compare keys byte by byte (its scripts run under ``LC_ALL=C``), hence `kaldi_order`. Every file is
written atomically (`core.files.atomic_write`).
"""

from __future__ import annotations

import itertools
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
    consistent a speaker's utterances are, and scoring normalises anyway. NumPy sorts strings by
    code point, which is the byte order of their UTF-8 (`kaldi_order`).
    """
    speakers = np.asarray(speakers, dtype=str)
    if speakers.shape != (len(vectors),):
        raise ValueError(f"{len(vectors)} vectors but {speakers.shape} speaker labels")
    names, index, counts = np.unique(speakers, return_inverse=True, return_counts=True)
    sums = np.zeros((len(names), np.shape(vectors)[1]), np.float64)
    np.add.at(sums, index, np.asarray(l2_normalize(np.asarray(vectors, np.float32))))
    return names, (sums / counts[:, None]).astype(np.float32), counts.astype(np.int64)


def kaldi_order(keys: Sequence[str]) -> np.ndarray:
    """Indices that sort `keys` as ``LC_ALL=C sort`` does: by the bytes of their UTF-8.

    Kaldi's scripts check that tables are sorted that way (``utils/validate_data_dir.sh``), and a
    locale-aware sort disagrees with it on case and punctuation.
    """
    encoded = [str(key).encode() for key in keys]
    return np.array(sorted(range(len(encoded)), key=encoded.__getitem__), dtype=np.int64)


def check_kaldi_keys(keys: Sequence[str], what: str = "ids") -> None:
    """Kaldi splits table lines on whitespace: a key with a space would shift every field."""
    bad = [key for key in np.asarray(keys, dtype=str).tolist() if not key or _has_space(key)]
    if bad:
        raise ValueError(f"Kaldi keys cannot be empty or contain whitespace ({what}): {bad[:5]}")


def _has_space(key: str) -> bool:
    return any(c.isspace() for c in key)


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
    check_kaldi_keys(ids)
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


def _utterance_speakers(ids: Sequence[str], speakers: Sequence[str]) -> list[tuple[str, str]]:
    """(utterance, speaker) pairs in Kaldi order, after the checks every speaker table needs."""
    ids, speakers = np.asarray(ids, dtype=str), np.asarray(speakers, dtype=str)
    if ids.ndim != 1 or speakers.shape != ids.shape:
        raise ValueError(f"need one speaker per utterance: {ids.shape} ids, {speakers.shape}")
    if len(ids) == 0:
        raise ValueError("no utterances")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("utterance ids must be unique")
    check_kaldi_keys(ids, "utterance ids")
    check_kaldi_keys(speakers, "speaker ids")
    order = kaldi_order(ids)
    return list(zip(ids[order].tolist(), speakers[order].tolist(), strict=True))


def speaker_tables(ids: Sequence[str], speakers: Sequence[str]) -> dict[str, str]:
    """Texts of ``utt2spk``, ``spk2utt`` and ``num_utts.ark``, as Kaldi writes them.

    Lines are sorted by key in byte order, and a speaker's utterances too, so the files pass
    ``utils/validate_data_dir.sh`` whenever speaker ids sort like their utterances (see
    `speaker_order_problem`). ``num_utts.ark`` is the text table ``ivector-mean`` writes beside
    speaker means: ``spk count `` lines, with the space Kaldi's integer writer leaves before the
    newline, so the file is byte for byte what ``extract_xvectors.sh`` gives.
    """
    pairs = _utterance_speakers(ids, speakers)
    by_speaker: dict[str, list[str]] = {}
    for utt, spk in pairs:
        by_speaker.setdefault(spk, []).append(utt)
    unsorted = list(by_speaker)
    names = [unsorted[i] for i in kaldi_order(unsorted)]
    return {
        "utt2spk": "".join(f"{utt} {spk}\n" for utt, spk in pairs),
        "spk2utt": "".join(f"{spk} {' '.join(by_speaker[spk])}\n" for spk in names),
        "num_utts.ark": "".join(f"{spk} {len(by_speaker[spk])} \n" for spk in names),
    }


def speaker_order_problem(ids: Sequence[str], speakers: Sequence[str]) -> str | None:
    """Why Kaldi's ``utils/validate_data_dir.sh`` would refuse these speakers, or None.

    It wants ``utt2spk`` sorted by speaker as well as by utterance, which holds when every speaker
    id is a prefix of its utterance ids (LibriSpeech's ``spk-chapter-n``, VoxCeleb's
    ``id10001/session/n``). The vectors are usable either way; only the data-dir check fails, so
    this is reported, and ids are never renamed behind the user's back.
    """
    pairs = _utterance_speakers(ids, speakers)
    for (utt_a, spk_a), (utt_b, spk_b) in itertools.pairwise(pairs):
        if spk_a.encode() > spk_b.encode():
            return (
                f"utterance {utt_b!r} (speaker {spk_b!r}) sorts after {utt_a!r} (speaker "
                f"{spk_a!r}): speaker ids do not sort like their utterance ids, so Kaldi's "
                "utils/validate_data_dir.sh will reject utt2spk/spk2utt (make each speaker id a "
                "prefix of its utterance ids to satisfy it)"
            )
    return None


def save_speaker_tables(
    directory: str | os.PathLike[str],
    ids: Sequence[str],
    speakers: Sequence[str],
    num_utts: bool = False,
) -> list[Path]:
    """``utt2spk`` and ``spk2utt`` (and with `num_utts`, ``num_utts.ark``) in `directory`.

    They list the utterances given, i.e. those that got a vector: Kaldi tools look vectors up by
    these keys, and an utterance without one would be an error there.
    """
    names = ["utt2spk", "spk2utt", *(["num_utts.ark"] if num_utts else [])]
    return _write_tables(directory, speaker_tables(ids, speakers), names)


def _write_tables(
    directory: str | os.PathLike[str], texts: dict[str, str], names: Sequence[str]
) -> list[Path]:
    paths = [Path(directory) / name for name in names]
    for name, path in zip(names, paths, strict=True):
        atomic_write(path, texts[name])
    return paths


XVECTOR_DIR_FILES = (
    "xvector.ark",
    "xvector.scp",
    "spk_xvector.ark",
    "spk_xvector.scp",
    "utt2spk",
    "spk2utt",
    "num_utts.ark",
)


def save_xvector_dir(
    directory: str | os.PathLike[str],
    ids: Sequence[str],
    vectors: np.ndarray,
    speakers: Sequence[str],
) -> list[Path]:
    """Utterance and speaker vectors with their tables, laid out like a Kaldi x-vector dir.

    ``xvector.{ark,scp}`` (per utterance), ``spk_xvector.{ark,scp}`` (per speaker, as
    `speaker_vectors`), ``utt2spk``, ``spk2utt`` and ``num_utts.ark`` are the names
    ``sid/nnet3/xvector/extract_xvectors.sh`` uses, so scripts written for its output find
    everything. All is checked before the first file is written; each file is replaced
    atomically, the speaker tables last. Returns the paths, in `XVECTOR_DIR_FILES` order.
    """
    directory = Path(directory)
    ids, vectors = _checked(ids, vectors)
    speakers = np.asarray(speakers, dtype=str)
    texts = speaker_tables(ids, speakers)  # raises on bad keys before anything is written
    order = kaldi_order(ids)
    names, means, _ = speaker_vectors(vectors[order], speakers[order])
    save_kaldi(directory / "xvector.ark", ids[order], vectors[order])
    save_kaldi(directory / "spk_xvector.ark", names, means)
    _write_tables(directory, texts, ["utt2spk", "spk2utt", "num_utts.ark"])
    return [directory / name for name in XVECTOR_DIR_FILES]
