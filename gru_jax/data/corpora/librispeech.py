"""LibriSpeech: ``<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac``.

``root`` is one split (``train-clean-100``) or a folder holding several splits, all of which are
read. The utt_id is the file stem (unique across LibriSpeech), the session is the chapter, and the
``*.trans.txt`` transcripts are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from gru_jax.data.corpora.base import (
    CorpusError,
    StrPath,
    Utterance,
    _audio_files_at_depth,
    _audio_files_in,
    _finalize,
    _Found,
    _require_dir,
    _subdirs,
)

_LIBRISPEECH_SPLIT = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")


def looks_like_librispeech(root: Path) -> bool:
    """A split dir, or a first numeric speaker dir whose first numeric chapter dir holds
    ``<speaker>-<chapter>-<n>.*`` audio: numeric folders alone are common in other corpora."""
    children = _subdirs(root)
    if any(_LIBRISPEECH_SPLIT.match(d.name) for d in children):
        return True
    speaker = next((d for d in children if d.name.isdigit()), None)
    if speaker is None:
        return False
    chapter = next((d for d in _subdirs(speaker) if d.name.isdigit()), None)
    if chapter is None:
        return False
    prefix = f"{speaker.name}-{chapter.name}-"
    return any(f.name.startswith(prefix) for f in _audio_files_in(chapter))


def _librispeech_utterance(file: Path) -> Utterance:
    """The stem is the id, so a file in the wrong folder would carry a wrong speaker; refuse it."""
    speaker, chapter = file.parent.parent.name, file.parent.name
    prefix = f"{speaker}-{chapter}-"
    if not file.stem.startswith(prefix):
        raise CorpusError(
            f"{file}: LibriSpeech file names must start with '{prefix}' "
            "(<speaker>-<chapter>- of the folders holding them)"
        )
    return Utterance(utt_id=file.stem, speaker=speaker, path=str(file), session=chapter)


def read_librispeech(root: StrPath) -> list[Utterance]:
    """One LibriSpeech split, or every split dir (`train-clean-100`, ...) found in `root`."""
    root = Path(root)
    _require_dir(root)
    splits = [d for d in _subdirs(root) if _LIBRISPEECH_SPLIT.match(d.name)]
    found: list[_Found] = []
    for split in splits or [root]:
        files = _audio_files_at_depth(split, 2)
        found.extend((_librispeech_utterance(f), str(f)) for f in files)
    return _finalize(found, f"under {root}")
