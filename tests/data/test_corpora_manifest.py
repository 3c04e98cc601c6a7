"""CSV manifests: columns, defaults, malformed rows, missing files and the split column."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    Utterance,
    manifest_splits,
    read_corpus,
    read_csv_manifest,
)

from ._corpus_layouts import ids, make_folders, make_manifest, write_audio, write_text


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return make_manifest(tmp_path)


def test_csv_manifest(manifest: Path, tmp_path: Path) -> None:
    utts = read_csv_manifest(manifest)
    assert utts == [
        Utterance("a_tail", "s1", str(tmp_path / "clips" / "a.wav"), start=0.01),
        Utterance("b_seg", "s2", str(tmp_path / "elsewhere" / "b.flac"), start=0.5, end=1.25),
        Utterance("clips/a", "s1", str(tmp_path / "clips" / "a.wav")),
    ]
    assert ids(read_csv_manifest(manifest, split="train")) == ["a_tail", "clips/a"]
    with pytest.raises(
        CorpusError, match=r"no rows with split 'dev' \(splits present: test, train"
    ):
        read_csv_manifest(manifest, split="dev")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,speaker\na.wav,s1\n", r"x\.csv:1: missing column\(s\) path"),
        ("path,speaker\nclips/a.wav,\n", r"x\.csv:2: empty 'speaker' field"),
        ("path,speaker\nclips/a.wav,s1\n,s2\n", r"x\.csv:3: empty 'path' field"),
        ("path,speaker\nclips/a.wav,s1,extra\n", r"x\.csv:2: expected 2 fields"),
        ("path,speaker,start\nclips/a.wav\n", r"x\.csv:2: expected 3 fields"),
        ("path,speaker,start\nclips/a.wav,s1,soon\n", r"x\.csv:2: start 'soon' is not a number"),
        ("path,speaker,start,end\nclips/a.wav,s1,2,1\n", r"x\.csv:2: end 1\.0 must be after"),
        ("path,speaker,path\nclips/a.wav,s1,b\n", r"x\.csv:1: repeated column name"),
        ("", r"x\.csv: empty file"),
        (
            'path,speaker\nclips/a.wav,s1\n"clips/a.wav",s2\n',
            r"duplicate utterance id 'clips/a': .*x\.csv:2 and .*x\.csv:3",
        ),
    ],
)
def test_csv_malformed(manifest: Path, tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        read_csv_manifest(write_text(tmp_path / "x.csv", text))


def test_csv_split_needs_split_column(manifest: Path, tmp_path: Path) -> None:
    path = write_text(tmp_path / "x.csv", "path,speaker\nclips/a.wav,s1\n")
    with pytest.raises(CorpusError, match=r"x\.csv:1: no 'split' column"):
        read_csv_manifest(path, split="train")


# --- missing files ----------------------------------------------------------------------------


def test_csv_missing_audio(tmp_path: Path) -> None:
    """Every listed file missing is still an error, now naming the folder paths resolve against."""
    path = write_text(tmp_path / "x.csv", "path,speaker\ngone.wav,s1\n")
    with pytest.raises(CorpusError, match=r"none of the 1 audio files in .*x\.csv exist .*gone"):
        read_csv_manifest(path)
    with pytest.raises(CorpusError, match=rf"resolved against {tmp_path}; is that the right root"):
        read_csv_manifest(path)


def test_csv_some_audio_missing(
    manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = manifest.read_text() + "clips/gone.wav,s3,train,,,,f\n"
    path = write_text(tmp_path / "x.csv", text)
    with caplog.at_level(logging.WARNING):
        utts = read_csv_manifest(path)
    assert ids(utts) == ["a_tail", "b_seg", "clips/a", "clips/gone"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 of 3 audio files in" in warning and "gone.wav (" in warning and "x.csv:5)" in warning


# --- splits -----------------------------------------------------------------------------------


def test_read_corpus_selects_a_split(manifest: Path) -> None:
    assert read_corpus(manifest, split="train") == read_csv_manifest(manifest, split="train")
    assert ids(read_corpus(manifest, split="test")) == ["b_seg"]
    assert read_corpus(manifest) == read_csv_manifest(manifest)  # no split: every row
    with pytest.raises(
        CorpusError, match=r"no rows with split 'dev' \(splits present: test, train\)"
    ):
        read_corpus(manifest, split="dev")


def test_read_corpus_split_needs_a_csv(tmp_path: Path) -> None:
    folders = make_folders(tmp_path)
    with pytest.raises(CorpusError, match=r"a split \('train'\) can only be selected in a CSV"):
        read_corpus(folders, split="train")
    path = write_text(tmp_path / "x.csv", "path,speaker\nspeakers/bob/x.ogg,s1\n")
    with pytest.raises(CorpusError, match=r"x\.csv:1: no 'split' column"):
        read_corpus(path, split="train")


def test_split_error_mentions_rows_without_one(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.wav")
    path = write_text(tmp_path / "x.csv", "path,speaker,split\na.wav,s1,\na.wav,s2,dev\n")
    with pytest.raises(CorpusError, match=r"splits present: dev and rows without one\)$") as info:
        read_corpus(path, split="train")
    assert "x.csv" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("path,speaker,split\na.wav,s1,train\nb.wav,s1,test\nc.wav,s2,train\n", ("test", "train")),
        ("path,speaker,split\na.wav,s1,\nb.wav,s1, dev \n", ("dev",)),
        ("path,speaker,split\na.wav,s1,\n", ()),
        ("path,speaker\na.wav,s1\n", ()),
        ("path,split,speaker\n", ()),
    ],
)
def test_manifest_splits(tmp_path: Path, text: str, expected: tuple[str, ...]) -> None:
    """Only the split column is read: the files need not exist to ask which splits there are."""
    assert manifest_splits(write_text(tmp_path / "x.csv", text)) == expected


def test_manifest_splits_of_other_layouts_and_bad_files(manifest: Path, tmp_path: Path) -> None:
    assert manifest_splits(manifest) == ("test", "train")
    assert manifest_splits(make_folders(tmp_path)) == ()  # a directory layout: one split
    with pytest.raises(CorpusError, match=r"x\.csv:1: missing column\(s\) speaker"):
        manifest_splits(write_text(tmp_path / "x.csv", "path,split\na.wav,train\n"))
    with pytest.raises(CorpusError, match=r"y\.csv:3: expected 3 fields"):
        manifest_splits(write_text(tmp_path / "y.csv", "path,speaker,split\na,b,c\nd,e\n"))
    with pytest.raises(CorpusError, match=r"nothing\.csv: cannot read"):
        manifest_splits(tmp_path / "nothing.csv")


def test_written_manifest_reads_back_equal(manifest: Path, tmp_path: Path) -> None:
    from gru_jax.data.corpora import write_csv_manifest

    original = read_csv_manifest(manifest)
    copy = write_csv_manifest(original, tmp_path / "elsewhere" / "copy" / "train.csv")
    assert read_csv_manifest(copy) == original  # absolute paths: the copy may live anywhere
    assert read_corpus(copy) == original
