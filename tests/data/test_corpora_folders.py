"""Folder per speaker and `speaker relative/path` lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from gru_jax.data.corpora import CorpusError, read_folder_per_speaker, read_speaker_list

from ._corpus_layouts import make_folders, write_audio, write_text


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    return make_folders(tmp_path)


# --- speaker lists ----------------------------------------------------------------------------


def test_speaker_list(folders: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "spk.list",
        "bob bob/x.ogg\nalice alice/day2/morning/two.flac\nnarrator alice/one.wav\n",
    )
    utts = read_speaker_list(listing, folders)
    assert [(u.utt_id, u.speaker, u.session) for u in utts] == [
        ("alice/day2/morning/two", "alice", "day2/morning"),
        ("alice/one", "narrator", "alice"),
        ("bob/x", "bob", ""),
    ]
    assert utts[2].path == str(folders / "bob" / "x.ogg")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("alice", r"spk\.list:2: expected 'speaker relative/path', got 1 fields"),
        ("alice /abs/one.wav", r"spk\.list:2: path '/abs/one.wav' must be relative"),
        ("alice alice/notes.txt", r"spk\.list:2: 'notes\.txt' is not a supported audio file"),
    ],
)
def test_speaker_list_malformed(folders: Path, tmp_path: Path, line: str, message: str) -> None:
    listing = write_text(tmp_path / "spk.list", f"bob bob/x.ogg\n{line}\n")
    with pytest.raises(CorpusError, match=message):
        read_speaker_list(listing, folders)


# --- folder per speaker -----------------------------------------------------------------------


def test_folder_per_speaker(folders: Path) -> None:
    utts = read_folder_per_speaker(folders)
    assert [(u.utt_id, u.speaker, u.session) for u in utts] == [
        ("alice/day2/morning/two", "alice", "day2/morning"),
        ("alice/one", "alice", ""),
        ("bob/x", "bob", ""),
    ]
    assert utts[0].path == str(folders / "alice" / "day2" / "morning" / "two.flac")


def test_folder_per_speaker_same_stem_twice(folders: Path) -> None:
    write_audio(folders / "bob" / "x.wav")
    with pytest.raises(CorpusError, match=r"duplicate utterance id 'bob/x': .*x\.ogg and .*x\.wav"):
        read_folder_per_speaker(folders)


def test_folder_per_speaker_loose_file(folders: Path) -> None:
    write_audio(folders / "loose.wav")
    with pytest.raises(CorpusError, match=r"loose\.wav: audio directly under .* no speaker folder"):
        read_folder_per_speaker(folders)
