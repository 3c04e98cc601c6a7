"""Enrolment and test lists of evaluation: ids, list lines, and finding the audio of an id."""

from __future__ import annotations

from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    ListedUtterance,
    audio_root,
    find_audio,
    read_id_list,
)

from ._corpus_layouts import make_voxceleb, write_audio, write_text


def test_read_id_list(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "enroll.txt", "id10001 id10001/1zcIwhmdeo4/00001.m4a\n\n  spk2  b\\c.wav  \n"
    )
    assert read_id_list(path) == [
        ListedUtterance("id10001/1zcIwhmdeo4/00001", "id10001", f"{path}:1"),
        ListedUtterance("b/c", "spk2", f"{path}:3"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a a/1.wav\nb\n", r"l\.txt:2: expected 'speaker relative/path', got 1 fields"),
        ("a a/1.wav b/2.wav\n", r"l\.txt:1: .*got 3 fields"),
        ("\n \n", r"l\.txt: no utterances listed"),
    ],
)
def test_read_id_list_malformed(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        read_id_list(write_text(tmp_path / "l.txt", text))


def test_read_id_list_unreadable(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"gone\.txt: cannot read"):
        read_id_list(tmp_path / "gone.txt")
    (tmp_path / "latin1.txt").write_bytes(b"spk caf\xe9.wav\n")
    with pytest.raises(CorpusError, match=r"latin1\.txt: not UTF-8 text"):
        read_id_list(tmp_path / "latin1.txt")


def test_audio_root(tmp_path: Path) -> None:
    voxceleb = make_voxceleb(tmp_path)
    assert audio_root(voxceleb) == voxceleb / "wav"
    assert audio_root(str(voxceleb / "wav")) == voxceleb / "wav"


def test_find_audio_ignores_the_listed_extension(tmp_path: Path) -> None:
    flac = write_audio(tmp_path / "spk" / "s" / "1.flac")
    assert find_audio(tmp_path, "spk/s/1") == flac
    assert find_audio(tmp_path, "spk/s/2") is None
    m4a = tmp_path / "spk" / "s" / "3.m4a"
    m4a.write_bytes(b"aac")
    assert find_audio(tmp_path, "spk/s/3") == m4a  # VoxCeleb2 as downloaded
    (tmp_path / "spk" / "s" / "4.mp3").write_bytes(b"mp3")
    assert find_audio(tmp_path, "spk/s/4") is None  # only corpus audio formats count
