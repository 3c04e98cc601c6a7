"""Kaldi data dirs: path resolution, segments, spk2utt/utt2spk agreement, and the refusals of
anything that would be executed or is not a plain file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gru_jax.data.corpora import CorpusError, read_kaldi_dir

from ._corpus_layouts import ids, make_kaldi, write_text


@pytest.fixture
def kaldi(tmp_path: Path) -> Path:
    return make_kaldi(tmp_path)


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


def test_kaldi_dir_missing_relative_path(kaldi: Path, caplog: pytest.LogCaptureFixture) -> None:
    # From another directory "audio/c.wav" exists neither under the cwd nor the data dir: the
    # recording is kept (extraction skips it as missing) and the warning says where it looked.
    with caplog.at_level(logging.WARNING):
        utts = read_kaldi_dir(kaldi)
    assert ids(utts) == ["rec_a", "rec_b", "rec_c"]
    assert utts[2].path == "audio/c.wav"
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 of 3 audio files in" in warning and "wav.scp do not exist" in warning
    assert f"tried against the current directory, then {kaldi}" in warning
    assert "audio/c.wav (" in warning and "wav.scp:1)" in warning


def test_kaldi_missing_recording_counts_its_segments(
    kaldi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audio" / "a.wav").unlink()
    write_text(kaldi / "segments", "seg1 rec_a 0 1\nseg2 rec_a 1 2\nseg3 rec_b 0 1\n")
    write_text(kaldi / "utt2spk", "seg1 spk1\nseg2 spk1\nseg3 spk2\n")
    (kaldi / "spk2utt").unlink()
    with caplog.at_level(logging.WARNING):
        assert ids(read_kaldi_dir(kaldi)) == ["seg1", "seg2", "seg3"]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 of 2 audio files" in warning and "skip their 2 utterance(s)" in warning


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


def test_kaldi_trials(tmp_path: Path) -> None:
    from gru_jax.data.corpora import Trial, read_kaldi_trials

    trials = write_text(tmp_path / "trials", "u1 u2 target\n\nu1 u3 nontarget\n")
    assert read_kaldi_trials(trials) == [Trial(1, "u1", "u2"), Trial(0, "u1", "u3")]
    trials.write_text("u1 u2 target\nu1 u3 1\n")
    with pytest.raises(CorpusError, match=r"trials:2: expected '<enroll-utt> <test-utt> target"):
        read_kaldi_trials(trials)
    trials.write_text("\n")
    with pytest.raises(CorpusError, match="no trials"):
        read_kaldi_trials(trials)
