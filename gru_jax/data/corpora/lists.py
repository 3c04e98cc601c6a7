"""Evaluation-side lists: enrolment and test lists name utterances by id, not by file.

Enrolment and test lists are ``<speaker> <relative/path>`` lines like speaker lists, but only the
id (the path without extension) is kept: evaluation looks the audio up under the corpus root with
`find_audio`, so lists written for VoxCeleb2's original .m4a files match a converted corpus, and
every missing file can be reported at once before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gru_jax.data.corpora.base import (
    AUDIO_EXTENSIONS,
    CorpusError,
    StrPath,
    _parse_speaker_list,
    utt_id_from_relpath,
)
from gru_jax.data.corpora.voxceleb import voxceleb_wav_dir


@dataclass(frozen=True)
class ListedUtterance:
    """An utterance id from a list, with where it was listed for error messages."""

    utt_id: str
    speaker: str
    where: str  # "file:line"


def audio_root(data_dir: StrPath) -> Path:
    """Where list paths are relative to: ``DIR/wav`` if it exists (VoxCeleb layout), else DIR."""
    return voxceleb_wav_dir(Path(data_dir))


def read_id_list(path: StrPath) -> list[ListedUtterance]:
    """`speaker relative/path` lines (enrolment or test list) as utterance ids."""
    path = Path(path)
    entries = [
        ListedUtterance(utt_id_from_relpath(rel), speaker, f"{path}:{number}")
        for number, speaker, rel in _parse_speaker_list(path)
    ]
    if not entries:
        raise CorpusError(f"{path}: no utterances listed")
    return entries


def find_audio(root: Path, utt_id: str) -> Path | None:
    """The audio file of an id (ids drop the extension, so a converted corpus still matches)."""
    for extension in AUDIO_EXTENSIONS:
        candidate = root / f"{utt_id}{extension}"
        if candidate.is_file():
            return candidate
    return None
