"""LibriSpeech splits, ids and the file-name check."""

from __future__ import annotations

from pathlib import Path

import pytest

from gru_jax.data.corpora import CorpusError, read_librispeech

from ._corpus_layouts import LIBRI_FILES, ids, make_librispeech, write_audio


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    return make_librispeech(tmp_path)


def test_librispeech_all_splits(librispeech: Path) -> None:
    utts = read_librispeech(librispeech)
    assert ids(utts) == ["19-198-0000", "19-198-0001", "19-227-0000", "84-121123-0000"]
    assert [(u.speaker, u.session) for u in utts] == [
        ("19", "198"),
        ("19", "198"),
        ("19", "227"),
        ("84", "121123"),
    ]
    assert utts[3].path == str(librispeech / LIBRI_FILES[3])


def test_librispeech_single_split(librispeech: Path) -> None:
    assert ids(read_librispeech(librispeech / "dev-clean")) == ["84-121123-0000"]


def test_librispeech_file_name_must_match_folders(librispeech: Path) -> None:
    bad = write_audio(librispeech / "dev-clean" / "84" / "121123" / "85-121123-0001.flac")
    with pytest.raises(CorpusError, match=rf"{bad.name}: .*must start with '84-121123-'"):
        read_librispeech(librispeech)
