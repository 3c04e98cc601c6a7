"""What every reader shares: ids, records, and the final checks (`_finalize`), seen through the
speaker-list and folder readers."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    Trial,
    Utterance,
    read_corpus,
    read_folder_per_speaker,
    read_speaker_list,
    utt_id_from_relpath,
)

from ._corpus_layouts import ids, make_folders, write_audio, write_text


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    return make_folders(tmp_path)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- utt ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("id10001/1zcIwhmdeo4/00001.wav", "id10001/1zcIwhmdeo4/00001"),
        ("id10001/1zcIwhmdeo4/00001.m4a", "id10001/1zcIwhmdeo4/00001"),
        ("./a/b.flac", "a/b"),
        ("a\\b\\c.wav", "a/b/c"),
        ("spk/take.v2.wav", "spk/take.v2"),
        ("noext", "noext"),
    ],
)
def test_utt_id_from_relpath(rel: str, expected: str) -> None:
    assert utt_id_from_relpath(rel) == expected


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Utterance("u", "s", "p").speaker = "t"  # type: ignore[misc]
    assert Trial(1, "a", "b") == Trial(label=1, enroll="a", test="b")


# --- missing files ----------------------------------------------------------------------------


def test_missing_listed_files_warn_with_count_and_first_few(
    folders: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ["bob bob/x.ogg"] + [f"bob bob/gone{i}.wav" for i in range(7)]
    listing = write_text(tmp_path / "spk.list", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        utts = read_speaker_list(listing, folders)
    assert ids(utts) == sorted(["bob/x"] + [f"bob/gone{i}" for i in range(7)])
    [message] = warnings_of(caplog)
    assert "7 of 8 audio files in" in message and "spk.list" in message
    assert f"relative paths are resolved against {folders}" in message
    assert all(f"gone{i}.wav (" in message and f"spk.list:{i + 2})" in message for i in range(5))
    assert "gone5.wav" not in message and message.endswith(", ...")


def test_no_listed_file_exists_is_an_error(folders: Path, tmp_path: Path) -> None:
    listing = write_text(tmp_path / "spk.list", "bob x.ogg\nalice one.wav\n")
    with pytest.raises(CorpusError) as info:
        read_speaker_list(listing, folders)
    message = str(info.value)
    assert "none of the 2 audio files in" in message and "spk.list" in message
    assert f"resolved against {folders}; is that the right root?" in message
    assert "x.ogg (" in message and "one.wav (" in message


def test_broken_link_is_reported_missing(folders: Path, tmp_path: Path) -> None:
    """A scan found the file, so a missing one is a broken link, which stays an error."""
    (folders / "bob" / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(CorpusError, match=r"1 of 4 audio files under .* do not exist: .*dangling"):
        read_folder_per_speaker(folders)


# --- ids and emptiness ------------------------------------------------------------------------


def test_duplicate_ids_name_both_places(folders: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "spk.list", "bob bob/x.ogg\nalice alice/one.wav\nbob bob/x.ogg\n"
    )
    with pytest.raises(
        CorpusError, match=r"duplicate utterance id 'bob/x': .*spk\.list:1 and .*:3"
    ):
        read_speaker_list(listing, folders)


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty" / "spk").mkdir(parents=True)
    with pytest.raises(CorpusError, match=r"no audio files found under .*empty"):
        read_folder_per_speaker(tmp_path / "empty")
    with pytest.raises(CorpusError, match=r"no audio files found under"):
        read_corpus(tmp_path / "empty")


def test_scan_does_not_warn(folders: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_audio(folders / "carol" / "y.wav")
    with caplog.at_level(logging.WARNING):
        assert len(read_folder_per_speaker(folders)) == 4
    assert warnings_of(caplog) == []
