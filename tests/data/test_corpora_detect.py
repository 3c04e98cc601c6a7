"""`read_corpus`: which reader each layout goes to, list files, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    read_corpus,
    read_csv_manifest,
    read_folder_per_speaker,
    read_kaldi_dir,
    read_librispeech,
    read_voxceleb,
    utt_id_from_relpath,
)

from ._corpus_layouts import (
    VOXCELEB_FILES,
    ids,
    make_folders,
    make_kaldi,
    make_librispeech,
    make_manifest,
    make_voxceleb,
    write_audio,
    write_text,
)


@pytest.fixture
def voxceleb(tmp_path: Path) -> Path:
    return make_voxceleb(tmp_path)


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    return make_librispeech(tmp_path)


@pytest.fixture
def kaldi(tmp_path: Path) -> Path:
    return make_kaldi(tmp_path)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    return make_folders(tmp_path)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return make_manifest(tmp_path)


def test_read_corpus_detects_each_layout(
    voxceleb: Path,
    librispeech: Path,
    kaldi: Path,
    folders: Path,
    manifest: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert read_corpus(manifest) == read_csv_manifest(manifest)
    assert read_corpus(kaldi) == read_kaldi_dir(kaldi)
    assert read_corpus(voxceleb) == read_voxceleb(voxceleb)
    assert read_corpus(voxceleb / "wav") == read_voxceleb(voxceleb)
    assert read_corpus(librispeech) == read_librispeech(librispeech)
    assert read_corpus(librispeech / "train-clean-100") == read_librispeech(
        librispeech / "train-clean-100"
    )
    assert read_corpus(folders) == read_folder_per_speaker(folders)


def test_read_corpus_layout_decides_ids(voxceleb: Path, librispeech: Path) -> None:
    """The detected reader shows in the ids: LibriSpeech stems vs VoxCeleb relative paths."""
    assert ids(read_corpus(librispeech / "dev-clean")) == ["84-121123-0000"]
    assert ids(read_corpus(voxceleb / "wav" / "id10002" / "..")) == sorted(
        utt_id_from_relpath(r) for r in VOXCELEB_FILES
    )


def test_read_corpus_voxceleb_without_wav_dir(tmp_path: Path) -> None:
    for rel in VOXCELEB_FILES:
        write_audio(tmp_path / "vox" / rel)
    utts = read_corpus(tmp_path / "vox")
    assert ids(utts) == sorted(utt_id_from_relpath(r) for r in VOXCELEB_FILES)
    assert {u.session for u in utts} == {"1zcIwhmdeo4", "7gWzIy6yIIk", "xyz"}


def test_read_corpus_numeric_folders_are_not_librispeech(tmp_path: Path) -> None:
    """Numeric speaker folders without LibriSpeech file names fall back to folder per speaker."""
    write_audio(tmp_path / "c" / "12" / "34" / "take.wav")
    utts = read_corpus(tmp_path / "c")
    assert [(u.utt_id, u.speaker, u.session) for u in utts] == [("12/34/take", "12", "34")]


def test_read_corpus_with_list_file(voxceleb: Path, folders: Path, tmp_path: Path) -> None:
    vox_list = write_text(tmp_path / "vox.txt", "id10002 id10002/xyz/00001.wav\n")
    assert ids(read_corpus(voxceleb, vox_list)) == ["id10002/xyz/00001"]
    spk_list = write_text(tmp_path / "spk.txt", "bob bob/x.ogg\n")
    assert ids(read_corpus(folders, spk_list)) == ["bob/x"]


def test_read_corpus_refusals(kaldi: Path, manifest: Path, tmp_path: Path) -> None:
    listing = write_text(tmp_path / "l.txt", "s a.wav\n")
    with pytest.raises(CorpusError, match="list file applies only to directory layouts"):
        read_corpus(kaldi, listing)
    with pytest.raises(CorpusError, match="list file applies only to directory layouts"):
        read_corpus(manifest, listing)
    with pytest.raises(CorpusError, match=r"nothing: no such file or directory"):
        read_corpus(tmp_path / "nothing")
    with pytest.raises(CorpusError, match=r"l\.txt: expected a corpus directory or a \.csv"):
        read_corpus(listing)
    with pytest.raises(CorpusError, match=r"a split \('train'\) can only be selected in a CSV"):
        read_corpus(kaldi, split="train")
