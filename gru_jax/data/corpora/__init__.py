"""Corpus readers: a dataset on disk becomes a sorted, validated list of utterances.

Readers check everything they can before any audio is decoded (duplicate ids, malformed lists,
unsupported formats, files a scan found but cannot open), because a bad list found hours into
feature extraction is expensive. Every error is a `CorpusError` naming the file (and line, for
text lists) and the reason. Results are sorted by ``utt_id`` so the same corpus always yields the
same order. Files that a list names but that do not exist are the exception: they are logged once
and kept, so feature extraction skips them as "missing" and the feature store counts them
(`gru_jax.data.corpora.base` says why).

One module per layout, each documenting its own: `voxceleb` (and trial lists), `librispeech`,
`cnceleb` (CN-Celeb 1 and 2, and CN-Celeb1's evaluation lists), `kaldi` (data dirs), `manifest`
(CSV), `folders` (folder per speaker, speaker lists), and `lists` (the enrolment and test lists of
evaluation).

Auto-detection (`read_corpus`), first match wins
------------------------------------------------
1. a file ending in ``.csv``: CSV manifest;
2. a directory containing ``wav.scp``: Kaldi data dir;
3. a directory with a ``wav/`` subdirectory, or whose subdirectories are all named ``id<digits>``
   with audio files in a subdirectory of the first one (speaker/session/utt): VoxCeleb;
4. a directory with a ``data/`` subdirectory and ``dev/dev.lst``, ``spk.lst`` or ``eval/lists/``:
   CN-Celeb (its training speakers only);
5. a directory holding LibriSpeech split dirs (``train-clean-100``, ``dev-other``, ...), or whose
   first numeric speaker dir's first numeric chapter dir holds ``<speaker>-<chapter>-<n>.*`` audio:
   LibriSpeech;
6. any other directory: folder per speaker.
A ``list_file`` goes to the VoxCeleb reader for VoxCeleb layouts and is read as a speaker list
relative to the directory for the other directory layouts; with CSV or Kaldi it is an error. A
``split`` selects rows of a CSV manifest and is an error with any other layout.
"""

from __future__ import annotations

from pathlib import Path

from gru_jax.data.corpora.base import (
    AUDIO_EXTENSIONS,
    CorpusError,
    StrPath,
    Trial,
    Utterance,
    _suffix,
    utt_id_from_relpath,
)
from gru_jax.data.corpora.cnceleb import looks_like_cnceleb, read_cnceleb, read_cnceleb_eval
from gru_jax.data.corpora.folders import read_folder_per_speaker, read_speaker_list
from gru_jax.data.corpora.kaldi import read_kaldi_dir, read_kaldi_trials
from gru_jax.data.corpora.librispeech import looks_like_librispeech, read_librispeech
from gru_jax.data.corpora.lists import ListedUtterance, audio_root, find_audio, read_id_list
from gru_jax.data.corpora.manifest import manifest_splits, read_csv_manifest, write_csv_manifest
from gru_jax.data.corpora.voxceleb import looks_like_voxceleb, read_voxceleb, read_voxceleb_trials

__all__ = [
    "AUDIO_EXTENSIONS",
    "CorpusError",
    "ListedUtterance",
    "Trial",
    "Utterance",
    "audio_root",
    "find_audio",
    "manifest_splits",
    "read_cnceleb",
    "read_cnceleb_eval",
    "read_corpus",
    "read_csv_manifest",
    "read_folder_per_speaker",
    "read_id_list",
    "read_kaldi_dir",
    "read_kaldi_trials",
    "read_librispeech",
    "read_speaker_list",
    "read_voxceleb",
    "read_voxceleb_trials",
    "utt_id_from_relpath",
    "write_csv_manifest",
]


def read_corpus(
    path: StrPath, list_file: StrPath | None = None, split: str | None = None
) -> list[Utterance]:
    """Read any supported layout; the detection order is in the module docstring."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if not path.is_dir() and _suffix(path.name) != ".csv":
        raise CorpusError(f"{path}: expected a corpus directory or a .csv manifest")
    is_kaldi = path.is_dir() and (path / "wav.scp").is_file()
    if list_file is not None and (is_kaldi or not path.is_dir()):
        raise CorpusError(
            f"{path}: a list file applies only to directory layouts (VoxCeleb, LibriSpeech, "
            "folder per speaker), not to a CSV manifest or Kaldi data dir"
        )
    if split is not None and path.is_dir():
        raise CorpusError(
            f"{path}: a split ({split!r}) can only be selected in a CSV manifest with a 'split' "
            "column; directory layouts are one split each"
        )
    if not path.is_dir():
        return read_csv_manifest(path, split)
    if is_kaldi:
        return read_kaldi_dir(path)
    if looks_like_voxceleb(path):
        return read_voxceleb(path, list_file)
    if list_file is not None:
        return read_speaker_list(list_file, path)
    if looks_like_cnceleb(path):
        return read_cnceleb(path)
    if looks_like_librispeech(path):
        return read_librispeech(path)
    return read_folder_per_speaker(path)
