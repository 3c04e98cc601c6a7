"""Corpus readers against small real layouts (tiny real audio files written with soundfile)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gru_jax.corpora import (
    CorpusError,
    Trial,
    Utterance,
    read_corpus,
    read_csv_manifest,
    read_folder_per_speaker,
    read_kaldi_dir,
    read_librispeech,
    read_speaker_list,
    read_voxceleb,
    read_voxceleb_trials,
    utt_id_from_relpath,
)

SAMPLE_RATE = 8000


def write_audio(path: Path) -> Path:
    """0.05 s of noise in the format the extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE // 20).astype(np.float32) * 0.1
    sf.write(path, noise, SAMPLE_RATE)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ids(utterances: list[Utterance]) -> list[str]:
    return [u.utt_id for u in utterances]


# --- layouts ----------------------------------------------------------------------------------

VOXCELEB_FILES = [
    "id10002/xyz/00001.wav",
    "id10001/1zcIwhmdeo4/00002.wav",
    "id10001/1zcIwhmdeo4/00001.wav",
    "id10001/7gWzIy6yIIk/00001.wav",
]


@pytest.fixture
def voxceleb(tmp_path: Path) -> Path:
    root = tmp_path / "vox1"
    for rel in VOXCELEB_FILES:
        write_audio(root / "wav" / rel)
    write_text(root / "wav" / "id10001" / "1zcIwhmdeo4" / "notes.txt", "not audio")
    write_audio(root / "wav" / "id10001" / "1zcIwhmdeo4" / "._00001.wav")  # macOS resource fork
    return root


LIBRI_FILES = [
    "train-clean-100/19/198/19-198-0001.flac",
    "train-clean-100/19/198/19-198-0000.flac",
    "train-clean-100/19/227/19-227-0000.flac",
    "dev-clean/84/121123/84-121123-0000.flac",
]


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    for rel in LIBRI_FILES:
        write_audio(root / rel)
    write_text(root / "train-clean-100/19/198/19-198.trans.txt", "19-198-0000 HELLO\n")
    return root


@pytest.fixture
def kaldi(tmp_path: Path) -> Path:
    """Data dir with absolute, cwd-relative and data-dir-relative wav.scp paths."""
    data = tmp_path / "data" / "train"
    a = write_audio(tmp_path / "audio" / "a.wav")
    write_audio(data / "local" / "b.flac")
    write_audio(tmp_path / "audio" / "c.wav")
    write_text(data / "wav.scp", f"rec_c audio/c.wav\nrec_a {a}\n\nrec_b local/b.flac\n")
    write_text(data / "utt2spk", "rec_a spk1\nrec_b spk2\nrec_c spk1\n")
    write_text(data / "spk2utt", "spk1 rec_a rec_c\nspk2 rec_b\n")
    return data


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    root = tmp_path / "speakers"
    write_audio(root / "alice" / "one.wav")
    write_audio(root / "alice" / "day2" / "morning" / "two.flac")
    write_audio(root / "bob" / "x.ogg")
    write_audio(root / ".cache" / "hidden.wav")
    return root


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    write_audio(tmp_path / "clips" / "a.wav")
    absolute = write_audio(tmp_path / "elsewhere" / "b.flac")
    return write_text(
        tmp_path / "clips.csv",
        "path,speaker,split,utt_id,start,end,gender\n"
        "clips/a.wav,s1,train,,,,f\n"
        f"{absolute},s2,test,b_seg,0.5,1.25,m\n"
        "clips/a.wav,s1,train,a_tail,0.01,,f\n",
    )


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


# --- VoxCeleb ---------------------------------------------------------------------------------


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


def test_voxceleb_list_m4a_without_conversion(voxceleb: Path, tmp_path: Path) -> None:
    (voxceleb / "wav" / "id10002" / "xyz" / "00002.m4a").write_bytes(b"aac, not really")
    listing = write_text(tmp_path / "list.txt", "id10002 id10002/xyz/00002.m4a\n")
    with pytest.raises(CorpusError, match=r"list\.txt:1: .*00002\.m4a.*convert"):
        read_voxceleb(voxceleb, listing)
    listing.write_text("id10002 id10002/xyz/00009.m4a\n")
    with pytest.raises(CorpusError, match=r"1 of 1 audio files .* do not exist: .*00009\.m4a"):
        read_voxceleb(voxceleb, listing)


def test_voxceleb_list_entry_must_match_layout(voxceleb: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "list.txt", "id10001 id10001/1zcIwhmdeo4/00001.wav\nid10002 id10001/a/1.wav\n"
    )
    with pytest.raises(CorpusError, match=r"list\.txt:2: expected 'id10002 id10002/<session>"):
        read_voxceleb(voxceleb, listing)


def test_voxceleb_scan_refuses_unconverted_m4a(voxceleb: Path) -> None:
    (voxceleb / "wav" / "id10001" / "1zcIwhmdeo4" / "00001.m4a").write_bytes(b"x")
    assert len(read_voxceleb(voxceleb)) == len(VOXCELEB_FILES)  # converted sibling wins
    (voxceleb / "wav" / "id10002" / "xyz" / "00003.m4a").write_bytes(b"x")
    with pytest.raises(CorpusError, match=r"1 \.m4a file.*00003\.m4a.*soundfile cannot decode"):
        read_voxceleb(voxceleb)


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


def test_missing_files_report_count_and_first_few(folders: Path, tmp_path: Path) -> None:
    lines = ["bob bob/x.ogg"] + [f"bob bob/gone{i}.wav" for i in range(7)]
    listing = write_text(tmp_path / "spk.list", "\n".join(lines) + "\n")
    with pytest.raises(CorpusError) as info:
        read_speaker_list(listing, folders)
    message = str(info.value)
    assert "7 of 8 audio files in" in message and "spk.list" in message
    assert all(f"gone{i}.wav" in message for i in range(5))
    assert "gone5.wav" not in message and message.endswith(", ...")


def test_duplicate_ids_name_both_places(folders: Path, tmp_path: Path) -> None:
    listing = write_text(
        tmp_path / "spk.list", "bob bob/x.ogg\nalice alice/one.wav\nbob bob/x.ogg\n"
    )
    with pytest.raises(
        CorpusError, match=r"duplicate utterance id 'bob/x': .*spk\.list:1 and .*:3"
    ):
        read_speaker_list(listing, folders)


# --- LibriSpeech ------------------------------------------------------------------------------


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


# --- Kaldi ------------------------------------------------------------------------------------


def test_kaldi_dir_resolves_paths_cwd_then_data_dir(
    kaldi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    utts = read_kaldi_dir(kaldi)
    assert ids(utts) == ["rec_a", "rec_b", "rec_c"]
    assert [u.speaker for u in utts] == ["spk1", "spk2", "spk1"]
    assert utts[0].path == str(tmp_path / "audio" / "a.wav")  # absolute
    assert utts[1].path == str(kaldi / "local" / "b.flac")  # relative to the data dir
    assert utts[2].path == "audio/c.wav"  # relative to the current directory, as written
    assert all(u.start is None and u.end is None and u.session == "" for u in utts)


def test_kaldi_dir_missing_relative_path(kaldi: Path, tmp_path: Path) -> None:
    # From another directory "audio/c.wav" exists neither under the cwd nor the data dir.
    with pytest.raises(CorpusError, match=r"1 of 3 audio files in .*wav\.scp do not exist: audio"):
        read_kaldi_dir(kaldi)


def test_kaldi_segments(kaldi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_text(kaldi / "segments", "seg2 rec_a 1.5 2.25\nseg1 rec_a 0 1.5\nseg3 rec_b 0.25 -1\n")
    write_text(kaldi / "utt2spk", "seg1 spk1\nseg2 spk1\nseg3 spk2\n")
    write_text(kaldi / "spk2utt", "spk1 seg1 seg2\nspk2 seg3\n")
    utts = read_kaldi_dir(kaldi)
    assert [(u.utt_id, u.speaker, u.session, u.start, u.end) for u in utts] == [
        ("seg1", "spk1", "rec_a", 0.0, 1.5),
        ("seg2", "spk1", "rec_a", 1.5, 2.25),
        ("seg3", "spk2", "rec_b", 0.25, None),
    ]
    assert utts[0].path == utts[1].path == str(tmp_path / "audio" / "a.wav")


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ("seg1 rec_a 0 1\nseg2 rec_z 0 1\n", r"segments:2: recording 'rec_z' is not in wav\.scp"),
        ("seg1 rec_a 0 1\nseg2 rec_a 2 1\n", r"segments:2: end 1\.0 must be after start 2\.0"),
        ("seg1 rec_a zero 1\n", r"segments:1: start 'zero' is not a number"),
        ("seg1 rec_a -1 1\n", r"segments:1: start '-1' must be a finite number >= 0"),
        ("seg1 rec_a 0\n", r"segments:1: expected 'utterance-id recording-id start end'"),
        ("seg1 rec_a 0 1\nseg1 rec_a 1 2\n", r"segments:2: duplicate id 'seg1' \(first on line 1"),
    ],
)
def test_kaldi_segments_malformed(kaldi: Path, segments: str, message: str) -> None:
    write_text(kaldi / "segments", segments)
    (kaldi / "spk2utt").unlink()
    write_text(kaldi / "utt2spk", "seg1 spk1\nseg2 spk1\n")
    with pytest.raises(CorpusError, match=message):
        read_kaldi_dir(kaldi)


@pytest.mark.parametrize(
    "command",
    [
        "touch {marker} |",
        "cat {marker} | sox -t wav - -t wav -",
        "sh -c 'touch {marker}'|",
    ],
)
def test_kaldi_pipe_is_refused_and_never_run(kaldi: Path, tmp_path: Path, command: str) -> None:
    marker = tmp_path / "executed"
    write_text(kaldi / "wav.scp", f"rec_a /x/a.wav\nrec_b {command.format(marker=marker)}\n")
    with pytest.raises(
        CorpusError, match=r"wav\.scp:2: 'rec_b' is a piped command.*never executed"
    ):
        read_kaldi_dir(kaldi)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("raw.ark:1234", r"wav\.scp:1: 'rec_c' is an ark reference .*unsupported"),
        ("raw.ark:1234[0:800]", r"wav\.scp:1: 'rec_c' is an ark reference"),
        ("-", r"wav\.scp:1: reading audio from stdin"),
        ("c.sph", r"wav\.scp:1: 'c\.sph' is not a supported audio file"),
    ],
)
def test_kaldi_unsupported_entries(kaldi: Path, entry: str, message: str) -> None:
    scp = (kaldi / "wav.scp").read_text().replace("audio/c.wav", entry)
    write_text(kaldi / "wav.scp", scp)
    with pytest.raises(CorpusError, match=message):
        read_kaldi_dir(kaldi)


def test_kaldi_spk2utt_speaker_disagrees(kaldi: Path) -> None:
    write_text(kaldi / "spk2utt", "spk1 rec_a\nspk2 rec_b rec_c\n")
    with pytest.raises(
        CorpusError,
        match=r"spk2utt:2: utterance 'rec_c' is listed under speaker 'spk2' but "
        r".*utt2spk:3 gives speaker 'spk1'",
    ):
        read_kaldi_dir(kaldi)


def test_kaldi_spk2utt_missing_utterance(kaldi: Path) -> None:
    write_text(kaldi / "spk2utt", "spk1 rec_a\nspk2 rec_b\n")
    with pytest.raises(
        CorpusError, match=r"utt2spk:3: utterance 'rec_c' .* missing from .*spk2utt"
    ):
        read_kaldi_dir(kaldi)
    write_text(kaldi / "spk2utt", "spk1 rec_a rec_c rec_q\nspk2 rec_b\n")
    with pytest.raises(CorpusError, match=r"spk2utt:1: utterance 'rec_q' is not in .*utt2spk"):
        read_kaldi_dir(kaldi)


@pytest.mark.parametrize(
    ("utt2spk", "message"),
    [
        ("rec_a spk1\nrec_b spk2\n", r"wav\.scp:1: utterance 'rec_c' is not in .*utt2spk"),
        ("rec_a spk1\nrec_b spk2\nrec_c spk1\nrec_x spk3\n", r"utt2spk:4: .*'rec_x' is not in"),
        ("rec_a spk1\nrec_b\n", r"utt2spk:2: expected 'utterance-id speaker-id', got 1 fields"),
        ("rec_a spk1\nrec_a spk2\n", r"utt2spk:2: duplicate id 'rec_a' \(first on line 1\)"),
    ],
)
def test_kaldi_utt2spk_must_match(kaldi: Path, utt2spk: str, message: str) -> None:
    (kaldi / "spk2utt").unlink()
    write_text(kaldi / "utt2spk", utt2spk)
    with pytest.raises(CorpusError, match=message):
        read_kaldi_dir(kaldi)


def test_kaldi_requires_utt2spk(kaldi: Path) -> None:
    (kaldi / "utt2spk").unlink()
    with pytest.raises(CorpusError, match=r"utt2spk: missing \(a Kaldi data dir needs"):
        read_kaldi_dir(kaldi)


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


def test_broken_link_is_reported_missing(folders: Path, tmp_path: Path) -> None:
    (folders / "bob" / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(CorpusError, match=r"1 of 4 audio files under .* do not exist: .*dangling"):
        read_folder_per_speaker(folders)


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty" / "spk").mkdir(parents=True)
    with pytest.raises(CorpusError, match=r"no audio files found under .*empty"):
        read_folder_per_speaker(tmp_path / "empty")
    with pytest.raises(CorpusError, match=r"no audio files found under"):
        read_corpus(tmp_path / "empty")


# --- CSV --------------------------------------------------------------------------------------


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


def test_csv_missing_audio(tmp_path: Path) -> None:
    path = write_text(tmp_path / "x.csv", "path,speaker\ngone.wav,s1\n")
    with pytest.raises(CorpusError, match=r"1 of 1 audio files in .*x\.csv do not exist: .*gone"):
        read_csv_manifest(path)


# --- auto-detection ---------------------------------------------------------------------------


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
