"""Generic layouts for corpora that follow no published convention.

Folder per speaker
    ``root/<speaker>/**/<file>``: the first folder level names the speaker; the utt_id is the path
    relative to ``root`` without extension and the session is the folders between the speaker
    folder and the file. Directory links are followed (each real directory once).
Speaker list
    ``<speaker> <relative/path>`` lines, paths relative to a given root; the session is the
    folders between the speaker folder (if the path starts with it) and the file. The speaker
    comes from the list, so a list can relabel files or use a tree not organised by speaker.
    Files it names that do not exist are kept and skipped later (see
    `gru_jax.data.corpora.base`).
"""

from __future__ import annotations

from pathlib import Path

from gru_jax.data.corpora.base import (
    CorpusError,
    StrPath,
    Utterance,
    _finalize,
    _list_utterances,
    _parse_speaker_list,
    _require_dir,
    _resolved_against,
    _utterance_under,
    _walk_audio_files,
)


def read_folder_per_speaker(root: StrPath) -> list[Utterance]:
    """`root/<speaker>/**/<file>`: the first folder level names the speaker."""
    root = Path(root)
    _require_dir(root)
    files = _walk_audio_files(root)
    loose = [f for f in files if f.parent == root]
    if loose:
        raise CorpusError(
            f"{loose[0]}: audio directly under {root} has no speaker folder; "
            f"expected {root}/<speaker>/.../<file>"
        )
    return _finalize([(_utterance_under(root, f), str(f)) for f in files], f"under {root}")


def read_speaker_list(path: StrPath, root: StrPath) -> list[Utterance]:
    """Utterances from `speaker relative/path` lines, paths relative to `root`."""
    list_path, root = Path(path), Path(root)
    entries = _parse_speaker_list(list_path)
    found = _list_utterances(entries, list_path, root)
    return _finalize(found, f"in {list_path}", _resolved_against(root))
