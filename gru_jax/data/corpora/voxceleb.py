"""VoxCeleb 1 and 2: the audio tree, training lists and trial lists.

Layout: ``root/wav/<speaker>/<session>/<utt>.wav`` (``root`` may be the ``wav`` dir itself); the
utt_id is ``<speaker>/<session>/<utt>``, the path without extension, so trial lists written for
the original .m4a files of VoxCeleb2 still match a converted corpus.

A training list has ``<speaker> <speaker>/<session>/<utt>.wav`` lines, relative to the wav dir,
and restricts the corpus to them; files it names that do not exist are kept and skipped later (see
`gru_jax.data.corpora.base`). Trial lists are ``<label> <enroll path> <test path>`` lines with
label 1 (same speaker) or 0.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from gru_jax.data.corpora.base import (
    CorpusError,
    StrPath,
    Trial,
    Utterance,
    _audio_files_at_depth,
    _audio_files_in,
    _finalize,
    _list_utterances,
    _numbered_lines,
    _parse_speaker_list,
    _require_dir,
    _resolved_against,
    _subdirs,
    _utterance_under,
    utt_id_from_relpath,
)

_VOXCELEB_SPEAKER = re.compile(r"^id\d+$")


def voxceleb_wav_dir(root: Path) -> Path:
    """``root/wav`` if it exists, else ``root``: both the dataset folder and its wav dir work."""
    return root / "wav" if (root / "wav").is_dir() else root


def looks_like_voxceleb(root: Path) -> bool:
    """A ``wav/`` subdirectory, or only ``id<digits>`` subdirectories whose first one holds
    audio one session folder down; cheap, so auto-detection never scans a whole corpus."""
    if (root / "wav").is_dir():
        return True
    speakers = _subdirs(root)
    if not speakers or not all(_VOXCELEB_SPEAKER.match(d.name) for d in speakers):
        return False
    return any(_audio_files_in(session) for session in _subdirs(speakers[0]))


def _check_entries(entries: list[tuple[int, str, str]], list_path: Path) -> None:
    """A path that does not start with its speaker is a list for another layout; reading it as
    VoxCeleb would give wrong sessions and ids that no trial list matches."""
    for number, speaker, rel in entries:
        parts = PurePosixPath(rel.replace("\\", "/")).parts
        if len(parts) != 3 or parts[0] != speaker:
            raise CorpusError(
                f"{list_path}:{number}: expected '{speaker} {speaker}/<session>/<utt>.wav', "
                f"got path {rel!r}"
            )


def read_voxceleb(root: StrPath, list_file: StrPath | None = None) -> list[Utterance]:
    """VoxCeleb 1/2 under `root/wav` (or `root` itself), optionally limited to a training list."""
    wav_dir = voxceleb_wav_dir(Path(root))
    _require_dir(wav_dir)
    if list_file is not None:
        list_path = Path(list_file)
        entries = _parse_speaker_list(list_path)
        _check_entries(entries, list_path)
        found = _list_utterances(entries, list_path, wav_dir)
        return _finalize(found, f"in {list_path}", _resolved_against(wav_dir))
    files = _audio_files_at_depth(wav_dir, 2)
    return _finalize([(_utterance_under(wav_dir, f), str(f)) for f in files], f"under {wav_dir}")


def read_voxceleb_trials(path: StrPath) -> list[Trial]:
    """VoxCeleb1 trial list, in file order (scores are reported against it line by line)."""
    path = Path(path)
    trials = []
    for number, line in _numbered_lines(path):
        fields = line.split()
        if len(fields) != 3:
            raise CorpusError(
                f"{path}:{number}: expected 'label enroll test', got {len(fields)} fields"
            )
        label, enroll, test = fields
        if label not in ("0", "1"):
            raise CorpusError(f"{path}:{number}: label must be 0 or 1, got {label!r}")
        trials.append(Trial(int(label), utt_id_from_relpath(enroll), utt_id_from_relpath(test)))
    if not trials:
        raise CorpusError(f"{path}: no trials")
    return trials
