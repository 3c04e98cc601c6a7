"""VoxCeleb trees, training lists and trial lists; a missing listed file through to the store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    Trial,
    Utterance,
    read_corpus,
    read_voxceleb,
    read_voxceleb_trials,
    utt_id_from_relpath,
)
from gru_jax.data.features import FeatureConfig, compute_features
from gru_jax.data.store import build_store

from ._corpus_layouts import VOXCELEB_FILES, ids, make_voxceleb, write_audio, write_text
from .test_audio import speech_like, write_m4a


@pytest.fixture
def voxceleb(tmp_path: Path) -> Path:
    return make_voxceleb(tmp_path)


def test_voxceleb_scan_ids_speakers_sessions(voxceleb: Path) -> None:
    utts = read_voxceleb(voxceleb)
    assert ids(utts) == sorted(utt_id_from_relpath(r) for r in VOXCELEB_FILES)
    first = utts[0]
    assert first == Utterance(
        utt_id="id10001/1zcIwhmdeo4/00001",
        speaker="id10001",
        path=str(voxceleb / "wav" / "id10001" / "1zcIwhmdeo4" / "00001.wav"),
        session="1zcIwhmdeo4",
    )
    assert [u.speaker for u in utts] == ["id10001"] * 3 + ["id10002"]
    assert all(Path(u.path).is_file() and u.start is None and u.end is None for u in utts)
    assert read_voxceleb(voxceleb / "wav") == utts  # root may be the wav dir itself


def test_voxceleb_training_list_restricts_and_maps_m4a(voxceleb: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "train_list.txt",
        "id10002 id10002/xyz/00001.m4a\n\nid10001 id10001/1zcIwhmdeo4/00002.wav\n",
    )
    utts = read_voxceleb(voxceleb, listing)
    assert ids(utts) == ["id10001/1zcIwhmdeo4/00002", "id10002/xyz/00001"]
    assert utts[1].path.endswith("00001.wav") and Path(utts[1].path).is_file()
    assert [u.session for u in utts] == ["1zcIwhmdeo4", "xyz"]


def test_voxceleb_list_names_m4a_as_downloaded(voxceleb: Path, tmp_path: Path) -> None:
    m4a = voxceleb / "wav" / "id10002" / "xyz" / "00002.m4a"
    m4a.write_bytes(b"aac, decoded only later")
    listing = write_text(tmp_path / "list.txt", "id10002 id10002/xyz/00002.m4a\n")
    assert [u.path for u in read_voxceleb(voxceleb, listing)] == [str(m4a)]
    listing.write_text("id10002 id10002/xyz/00002.wav\n")  # a list for a converted corpus
    assert [u.path for u in read_voxceleb(voxceleb, listing)] == [str(m4a)]
    listing.write_text("id10002 id10002/xyz/00009.m4a\n")
    with pytest.raises(CorpusError, match=r"none of the 1 audio files .* exist .*00009\.m4a"):
        read_voxceleb(voxceleb, listing)
    listing.write_text("id10002 id10002/xyz/00002.mp3\n")
    with pytest.raises(CorpusError, match=r"list\.txt:1: '00002\.mp3' is not a supported audio"):
        read_voxceleb(voxceleb, listing)


def test_voxceleb_list_entry_must_match_layout(voxceleb: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "list.txt", "id10001 id10001/1zcIwhmdeo4/00001.wav\nid10002 id10001/a/1.wav\n"
    )
    with pytest.raises(CorpusError, match=r"list\.txt:2: expected 'id10002 id10002/<session>"):
        read_voxceleb(voxceleb, listing)


def test_voxceleb_scan_reads_m4a_and_prefers_a_converted_copy(voxceleb: Path) -> None:
    (voxceleb / "wav" / "id10002" / "xyz" / "00003.m4a").write_bytes(b"x")
    utts = read_voxceleb(voxceleb)
    assert len(utts) == len(VOXCELEB_FILES) + 1
    assert utts[-1].utt_id == "id10002/xyz/00003" and utts[-1].path.endswith("00003.m4a")
    (voxceleb / "wav" / "id10001" / "1zcIwhmdeo4" / "00001.m4a").write_bytes(b"x")
    utts = read_voxceleb(voxceleb)
    assert len(utts) == len(VOXCELEB_FILES) + 1
    first = next(u for u in utts if u.utt_id == "id10001/1zcIwhmdeo4/00001")
    assert first.path.endswith("00001.wav")


def test_voxceleb2_as_downloaded_m4a_becomes_features(tmp_path: Path) -> None:
    """VoxCeleb2 dev's AAC files are read where they lie: scan, decode, store, nothing skipped."""
    root = tmp_path / "dev" / "aac"
    for rel in (
        "id00012/21Uxsk56VDQ/00001",
        "id00012/21Uxsk56VDQ/00002",
        "id00015/0fijmz4vTVU/00001",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_m4a(root / f"{rel}.m4a", speech_like(0.8))
    utts = read_corpus(root)
    assert ids(utts)[0] == "id00012/21Uxsk56VDQ/00001" and utts[0].path.endswith(".m4a")
    store = build_store(utts, tmp_path / "store", FeatureConfig(), workers=1, progress=False)
    assert store.manifest["skipped"] == {} and len(store.ids) == 3
    source_frames = len(compute_features(speech_like(0.8), FeatureConfig()))
    assert store.manifest["n_frames"] == 3 * source_frames  # AAC's padding was cut


# --- a missing file in a training list --------------------------------------------------------


def test_training_list_missing_file_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file is kept by the reader (one warning) and skipped as 'missing' by extraction, so the
    store counts it like unreadable audio instead of the run failing before it starts."""
    root = tmp_path / "vox"
    present = ["id10001/s1/00001.wav", "id10001/s1/00002.wav", "id10002/s2/00001.wav"]
    for rel in present:
        write_audio(root / "wav" / rel, seconds=0.8, sample_rate=16000)
    listed = [*present, "id10002/s2/00009.wav"]
    listing = write_text(
        tmp_path / "train_list.txt", "".join(f"{rel.split('/')[0]} {rel}\n" for rel in listed)
    )
    missing_path = str(root / "wav" / "id10002" / "s2" / "00009.wav")

    with caplog.at_level(logging.WARNING):
        utts = read_corpus(root, listing)
    assert ids(utts) == sorted(utt_id_from_relpath(rel) for rel in listed)
    assert [u.path for u in utts if u.utt_id == "id10002/s2/00009"] == [missing_path]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 of 4 audio files in" in warning and "train_list.txt:4" in warning
    assert missing_path in warning

    store = build_store(utts, tmp_path / "store", FeatureConfig(), workers=1, progress=False)
    assert store.manifest["skipped"] == {"missing": 1}
    assert sorted(store.ids.tolist()) == sorted(utt_id_from_relpath(rel) for rel in present)
    [shard] = store.manifest["shards"]
    index = json.loads((tmp_path / "store" / f"{shard}.index.json").read_text())
    assert [(path, reason) for path, reason, _detail in index["skipped"]] == [
        (missing_path, "missing")
    ]


def test_training_list_with_no_existing_file(voxceleb: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "train_list.txt", "id10001 id10001/a/1.wav\nid10002 id10002/b/2.flac\n"
    )
    with pytest.raises(CorpusError) as info:
        read_corpus(voxceleb, listing)
    message = str(info.value)
    assert "none of the 2 audio files in" in message and "train_list.txt" in message
    assert f"resolved against {voxceleb / 'wav'}; is that the right root?" in message
    assert "a/1.wav (" in message and "b/2.flac (" in message


# --- trial lists ------------------------------------------------------------------------------


def test_voxceleb_trials(tmp_path: Path) -> None:
    trials_path = write_text(
        tmp_path / "veri_test.txt",
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n",
    )
    assert read_voxceleb_trials(trials_path) == [
        Trial(1, "id10270/x6uYqmx31kE/00001", "id10270/8jEAjG6SegY/00008"),
        Trial(0, "id10270/x6uYqmx31kE/00001", "id10300/ize_eiCFEg0/00003"),
    ]


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ("2 a/b/c.wav a/b/d.wav", r"veri\.txt:2: label must be 0 or 1, got '2'"),
        ("true a/b/c.wav a/b/d.wav", r"veri\.txt:2: label must be 0 or 1"),
        ("1 a/b/c.wav", r"veri\.txt:2: expected 'label enroll test', got 2 fields"),
        ("1 a/b/c.wav a/b/d.wav extra", r"veri\.txt:2: .*got 4 fields"),
    ],
)
def test_voxceleb_trials_malformed(tmp_path: Path, second_line: str, message: str) -> None:
    path = write_text(tmp_path / "veri.txt", f"1 a/b/c.wav a/b/e.wav\n{second_line}\n")
    with pytest.raises(CorpusError, match=message):
        read_voxceleb_trials(path)


def test_voxceleb_trials_empty(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"veri\.txt: no trials"):
        read_voxceleb_trials(write_text(tmp_path / "veri.txt", "\n\n"))
