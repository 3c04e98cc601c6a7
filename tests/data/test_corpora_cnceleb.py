"""CN-Celeb 1 and 2 as unpacked: training speakers, detection, and CN-Celeb1's evaluation lists."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    Trial,
    read_cnceleb,
    read_cnceleb_eval,
    read_corpus,
    read_id_list,
    read_voxceleb_trials,
)
from gru_jax.data.corpora.cnceleb import looks_like_cnceleb, write_eval_lists
from gru_jax.data.corpora.lists import find_audio

from ._corpus_layouts import ids, write_audio, write_text

DEV_FILES = ["id00000/singing-01-001", "id00000/speech-02-001", "id00001/vlog-01-003"]
EVAL_DATA = ["id00800/interview-01-001", "id00800/interview-01-002", "id00801/drama-03-001"]
TEST_FILES = ["id00800-singing-01-001", "id00801-vlog-02-001", "id00801-vlog-02-002"]


def make_cnceleb1(tmp_path: Path, enroll_map: bool = True) -> Path:
    """CN-Celeb_flac as unpacked, with its lists naming .wav files as the release does."""
    root = tmp_path / "CN-Celeb_flac"
    for rel in DEV_FILES + EVAL_DATA:
        write_audio(root / "data" / f"{rel}.flac")
    write_text(root / "dev" / "dev.lst", "id00000\nid00001\n")
    for speaker in ("id00800", "id00801"):
        write_audio(root / "eval" / "enroll" / f"{speaker}-enroll.flac")
    for stem in TEST_FILES:
        write_audio(root / "eval" / "test" / f"{stem}.flac")
    lists = root / "eval" / "lists"
    write_text(
        lists / "enroll.lst",
        "id00800-enroll enroll/id00800-enroll.wav\nid00801-enroll enroll/id00801-enroll.wav\n",
    )
    write_text(lists / "test.lst", "".join(f"test/{stem}.wav\n" for stem in TEST_FILES))
    write_text(
        lists / "trials.lst",
        "".join(
            f"{spk}-enroll test/{stem}.wav {int(stem.startswith(spk))}\n"
            for spk in ("id00800", "id00801")
            for stem in TEST_FILES
        ),
    )
    if enroll_map:
        write_text(
            lists / "enroll.map",
            "id00800-enroll id00800/interview-01-001.wav id00800/interview-01-002.wav\n"
            "id00801-enroll id00801/drama-03-001.wav\n",
        )
    return root


def make_cnceleb2(tmp_path: Path, speaker_list: bool = True) -> Path:
    root = tmp_path / "CN-Celeb2_flac"
    for rel in ("id10000/live_broadcast-01-001", "id10001/recitation-02-004"):
        write_audio(root / "data" / f"{rel}.flac")
    if speaker_list:
        write_text(root / "spk.lst", "id10000\nid10001\n")
    return root


def test_cnceleb1_trains_on_dev_speakers_only(tmp_path: Path) -> None:
    root = make_cnceleb1(tmp_path)
    utts = read_cnceleb(root)
    assert ids(utts) == DEV_FILES  # the evaluation speakers' data/ folders are left alone
    assert [(u.speaker, u.session) for u in utts] == [
        ("id00000", "singing-01"),
        ("id00000", "speech-02"),
        ("id00001", "vlog-01"),
    ]
    assert utts[0].path == str(root / "data" / "id00000" / "singing-01-001.flac")
    assert read_corpus(root) == utts  # detected, instead of a folder per speaker named "data"


def test_cnceleb2_speaker_list_and_folders_without_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_cnceleb2(tmp_path)
    assert ids(read_cnceleb(root)) == ["id10000/live_broadcast-01-001", "id10001/recitation-02-004"]
    assert read_corpus(root) == read_cnceleb(root)
    (root / "spk.lst").unlink()
    assert not looks_like_cnceleb(root)  # nothing but data/ left: a folder per speaker "data"
    with caplog.at_level(logging.WARNING):
        assert len(read_cnceleb(root)) == 2
    assert "every speaker folder under data/" in caplog.text


def test_listed_speaker_without_folder_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_cnceleb1(tmp_path)
    (root / "dev" / "dev.lst").write_text("id00000\nid00042\n")
    with caplog.at_level(logging.WARNING):
        assert {u.speaker for u in read_cnceleb(root)} == {"id00000"}
    assert "1 of 2 listed speaker(s) have no folder" in caplog.text and "id00042" in caplog.text
    (root / "dev" / "dev.lst").write_text("id00042\n")
    with pytest.raises(CorpusError, match="none of the 1 listed speakers has a folder"):
        read_cnceleb(root)
    (root / "dev" / "dev.lst").write_text("speaker one\n")
    with pytest.raises(CorpusError, match=r"dev\.lst:1: expected a speaker id"):
        read_cnceleb(root)


def test_eval_trials_map_enrolment_files_and_test_files(tmp_path: Path) -> None:
    root = make_cnceleb1(tmp_path)
    evaluation = read_cnceleb_eval(root)
    assert evaluation.trials[:2] == [
        Trial(1, "eval/enroll/id00800-enroll", "eval/test/id00800-singing-01-001"),
        Trial(0, "eval/enroll/id00800-enroll", "eval/test/id00801-vlog-02-001"),
    ]
    assert len(evaluation.trials) == 6 and sum(t.label for t in evaluation.trials) == 3
    assert evaluation.enroll_source == "enroll.map"
    assert [(u.utt_id, u.speaker) for u in evaluation.enroll] == [
        ("data/id00800/interview-01-001", "id00800"),
        ("data/id00800/interview-01-002", "id00800"),
        ("data/id00801/drama-03-001", "id00801"),
    ]
    assert [u.speaker for u in evaluation.test] == ["id00800", "id00801", "id00801"]
    concat = read_cnceleb_eval(root, enrolment="concat")
    assert [(u.utt_id, u.speaker) for u in concat.enroll] == [
        ("eval/enroll/id00800-enroll", "id00800"),
        ("eval/enroll/id00801-enroll", "id00801"),
    ]
    no_map = read_cnceleb_eval(make_cnceleb1(tmp_path / "v1", enroll_map=False))
    assert no_map.enroll_source == "enroll.lst"
    assert [u.utt_id for u in no_map.enroll] == [u.utt_id for u in concat.enroll]


def test_written_lists_are_what_evaluation_reads(tmp_path: Path) -> None:
    root = make_cnceleb1(tmp_path)
    written = write_eval_lists(root, tmp_path / "lists")
    assert written.data == root
    assert (written.n_trials, written.n_enrolled_speakers, written.n_test) == (6, 2, 3)
    lines = written.trials.read_text().splitlines()
    assert lines[0] == "1 eval/enroll/id00800-enroll.flac eval/test/id00800-singing-01-001.flac"
    assert [t.label for t in read_voxceleb_trials(written.trials)] == [1, 0, 0, 0, 1, 1]
    enroll = read_id_list(written.enroll_list)
    assert written.enroll_list.read_text().splitlines()[0] == (
        "id00800 data/id00800/interview-01-001.flac"
    )
    test = read_id_list(written.test_list)
    for listed in [*enroll, *test]:
        assert find_audio(root, listed.utt_id) is not None  # eval.py --data <root> finds them
    for trial in read_voxceleb_trials(written.trials):
        assert find_audio(root, trial.enroll) and find_audio(root, trial.test)


def test_missing_eval_files_are_reported_together(tmp_path: Path) -> None:
    root = make_cnceleb1(tmp_path)
    (root / "eval" / "test" / "id00801-vlog-02-002.flac").unlink()
    (root / "data" / "id00801" / "drama-03-001.flac").unlink()
    with pytest.raises(CorpusError, match=r"2 of 8 files .*drama-03-001.*id00801-vlog-02-002"):
        write_eval_lists(root, tmp_path / "lists")
    assert not (tmp_path / "lists" / "trials.txt").exists()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("trials.lst", "id00800-enroll test/a.wav 2\n", r"trials\.lst:1: label must be 0 or 1"),
        ("trials.lst", "id00900-enroll test/a.wav 1\n", r"trials\.lst:1: 'id00900-enroll' is not"),
        ("trials.lst", "id00800-enroll test/a.wav\n", r"trials\.lst:1: expected"),
        ("enroll.lst", "id00800 enroll/id00800.wav\n", r"enroll\.lst:1: .* does not end in"),
        ("enroll.map", "id00900-enroll id00900/a.wav\n", r"enroll\.map:1: 'id00900-enroll'"),
        ("test.lst", "test/a.wav 1\n", r"test\.lst:1: expected one path"),
        ("test.lst", "../data/a.wav\n", r"test\.lst:1: path .* relative to the eval folder"),
    ],
)
def test_malformed_lists_name_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    root = make_cnceleb1(tmp_path)
    (root / "eval" / "lists" / name).write_text(text)
    with pytest.raises(CorpusError, match=message):
        read_cnceleb_eval(root)
