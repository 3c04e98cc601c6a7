"""Tests for gru_jax.synth.corpus: layout, meta, determinism, worker processes, lists and re-use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gru_jax.synth import CorpusInfo, main, make_corpus
from gru_jax.synth import corpus as synth_corpus

from ._corpus_files import (
    SESSION_ID,
    SMALL,
    file_hashes,
    make_small_corpus,
    read_list,
    speaker_of,
    wav_files,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    return make_small_corpus(tmp_path_factory.mktemp("synth") / "corpus")


def test_layout_and_counts(corpus: CorpusInfo) -> None:
    speakers = sorted(p.name for p in corpus.wav_dir.iterdir())
    assert speakers == [f"id{10001 + i}" for i in range(8)]
    for speaker in speakers:
        sessions = sorted((corpus.wav_dir / speaker).iterdir())
        assert len(sessions) == 3
        assert all(SESSION_ID.match(s.name) for s in sessions)
        counts = []
        for session in sessions:
            names = sorted(p.name for p in session.iterdir())
            assert names == [f"{k:05d}.wav" for k in range(1, len(names) + 1)]
            counts.append(len(names))
        assert sorted(counts) == [1, 1, 2]  # 4 utterances over 3 sessions
    assert len(wav_files(corpus)) == corpus.n_files == 32
    assert (corpus.n_speakers, corpus.n_train_speakers, corpus.n_test_speakers) == (8, 6, 2)
    assert corpus.n_trials == len(read_list(corpus.trials)) > 0
    assert not corpus.reused
    leftovers = [p for p in corpus.root.rglob(".*") if p.name != ".gru-jax-synth"]
    assert leftovers == []  # no temporary files survive


def test_meta_records_arguments_split_and_distinct_voices(corpus: CorpusInfo) -> None:
    meta = json.loads(corpus.meta.read_text())
    assert meta["arguments"] == {
        "n_speakers": 8,
        "n_utterances": 4,
        "seed": 3,
        "n_test_speakers": 2,
        "sample_rate": 16000,
        "duration_s": [1.5, 4.0],
        "snr_db": [10.0, 40.0],
        "n_sessions": 3,
        "n_train_sessions": 3,
    }
    train, test = set(meta["train_speakers"]), set(meta["test_speakers"])
    assert train.isdisjoint(test) and train | test == set(meta["speakers"])
    assert len(test) == 2
    voices = [s["voice"] for s in meta["speakers"].values()]
    f0s = [v["f0_median_hz"] for v in voices]
    assert all(80.0 <= f <= 300.0 for f in f0s) and len(set(f0s)) == len(f0s)
    assert all(0.8 <= v["formant_scale"] <= 1.25 for v in voices)
    for speaker, entry in meta["speakers"].items():
        on_disk = {p.name for p in (corpus.wav_dir / speaker).iterdir()}
        assert set(entry["sessions"]) == on_disk
        assert entry["split"] == ("test" if speaker in test else "train")


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
    corpus: CorpusInfo, tmp_path: Path
) -> None:
    again = make_corpus(tmp_path / "again", **SMALL, progress=False)
    assert file_hashes(again.root) == file_hashes(corpus.root)
    other = make_corpus(tmp_path / "other", **{**SMALL, "seed": 4}, progress=False)
    wav_hashes = {h for name, h in file_hashes(corpus.root).items() if name.endswith(".wav")}
    other_hashes = {h for name, h in file_hashes(other.root).items() if name.endswith(".wav")}
    assert len(other_hashes) == 32 and wav_hashes.isdisjoint(other_hashes)


def test_worker_processes_write_the_same_bytes(
    corpus: CorpusInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The threshold is read where it is defined, in the corpus module (not the package).
    monkeypatch.setattr(synth_corpus, "PARALLEL_MIN_UTTERANCES", 0)
    parallel = make_corpus(tmp_path / "parallel", **SMALL, progress=False, workers=2)
    assert file_hashes(parallel.root) == file_hashes(corpus.root)


def test_a_speaker_does_not_depend_on_the_rest_of_the_corpus(
    corpus: CorpusInfo, tmp_path: Path
) -> None:
    # Streams are keyed per speaker and utterance, so a bigger corpus repeats the smaller one's
    # speakers byte for byte (generation order and corpus size do not matter).
    bigger = make_corpus(tmp_path, **{**SMALL, "n_speakers": 10}, progress=False)
    small_hashes = file_hashes(corpus.wav_dir)
    big_hashes = file_hashes(bigger.wav_dir)
    assert {k: big_hashes[k] for k in small_hashes} == small_hashes


def test_more_training_sessions_leave_the_test_speakers_and_lists_as_they_are(
    corpus: CorpusInfo, tmp_path: Path
) -> None:
    # SMALL: 4 utterances over 3 sessions; here each training utterance gets its own session.
    more = make_corpus(tmp_path, **SMALL, n_train_sessions=4, progress=False)
    meta = json.loads(more.meta.read_text())
    for speaker in meta["train_speakers"]:
        sessions = meta["speakers"][speaker]["sessions"]
        assert len(sessions) == len(set(sessions)) == 4
        assert sorted(p.parent.name for p in (more.wav_dir / speaker).rglob("*.wav")) == sorted(
            sessions
        )
    test_dirs = [f"{speaker}/" for speaker in meta["test_speakers"]]
    original, changed = file_hashes(corpus.wav_dir), file_hashes(more.wav_dir)
    test_files = {k: v for k, v in original.items() if k.startswith(tuple(test_dirs))}
    assert len(test_files) == 2 * 4
    assert {k: v for k, v in changed.items() if k.startswith(tuple(test_dirs))} == test_files
    for name in ("trials", "enroll_list", "test_list"):
        assert getattr(more, name).read_bytes() == getattr(corpus, name).read_bytes()
    assert more.train_list.read_bytes() != corpus.train_list.read_bytes()
    with pytest.raises(ValueError, match="n_train_sessions must be >= 1"):
        make_corpus(tmp_path / "bad", **SMALL, n_train_sessions=0, progress=False)


def test_train_list_covers_exactly_the_train_speakers(corpus: CorpusInfo) -> None:
    meta = json.loads(corpus.meta.read_text())
    rows = read_list(corpus.train_list)
    assert all(speaker == speaker_of(path) for speaker, path in rows)
    assert {speaker for speaker, _ in rows} == set(meta["train_speakers"])
    listed = sorted(path for _, path in rows)
    on_disk = sorted(
        str(p.relative_to(corpus.wav_dir))
        for p in wav_files(corpus)
        if p.parent.parent.name in meta["train_speakers"]
    )
    assert listed == on_disk


def test_trials_are_balanced_over_test_speakers_only(corpus: CorpusInfo) -> None:
    meta = json.loads(corpus.meta.read_text())
    test = set(meta["test_speakers"])
    trials = read_list(corpus.trials)
    labels = [int(label) for label, _, _ in trials]
    assert labels.count(1) == labels.count(0) > 0
    pairs = set()
    for label, enroll, probe in trials:
        assert {speaker_of(enroll), speaker_of(probe)} <= test
        assert int(label) == int(speaker_of(enroll) == speaker_of(probe))
        assert enroll != probe
        pairs.add(frozenset((enroll, probe)))
    assert len(pairs) == len(trials)  # no pair is scored twice
    used = {path for _, a, b in trials for path in (a, b)}
    test_files = {str(p.relative_to(corpus.wav_dir)) for p in wav_files(corpus)}
    assert used == {p for p in test_files if speaker_of(p) in test}


def test_identification_lists_split_sessions(corpus: CorpusInfo) -> None:
    meta = json.loads(corpus.meta.read_text())
    enroll, test = read_list(corpus.enroll_list), read_list(corpus.test_list)
    for speaker in meta["test_speakers"]:
        enroll_paths = [p for s, p in enroll if s == speaker]
        test_paths = [p for s, p in test if s == speaker]
        assert enroll_paths and test_paths
        enroll_sessions = {p.split("/")[1] for p in enroll_paths}
        test_sessions = {p.split("/")[1] for p in test_paths}
        assert enroll_sessions.isdisjoint(test_sessions)
        assert len(enroll_paths) + len(test_paths) == 4
    assert {s for s, _ in enroll + test} == set(meta["test_speakers"])
    assert all(s == speaker_of(p) for s, p in enroll + test)


def test_every_listed_path_exists(corpus: CorpusInfo) -> None:
    paths = [p for _, p in read_list(corpus.train_list)]
    paths += [p for rows in (corpus.enroll_list, corpus.test_list) for _, p in read_list(rows)]
    paths += [p for _, a, b in read_list(corpus.trials) for p in (a, b)]
    missing = [p for p in paths if not (corpus.wav_dir / p).is_file()]
    assert paths and missing == []


def test_reuse_skips_generation_and_changed_arguments_rebuild(tmp_path: Path) -> None:
    first = make_corpus(tmp_path, 3, 2, seed=5, progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = make_corpus(tmp_path, 3, 2, seed=5, progress=False)
    assert again.reused and again == CorpusInfo(**{**vars(first), "reused": True})
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes

    rebuilt = make_corpus(tmp_path, 3, 3, seed=6, progress=False)
    assert not rebuilt.reused and rebuilt.n_files == 9
    assert len(list(tmp_path.glob("wav/*/*/*.wav"))) == 9  # nothing stale left behind

    rebuilt.meta.unlink()  # as if interrupted before the last write
    assert not make_corpus(tmp_path, 3, 3, seed=6, progress=False).reused


def test_refuses_foreign_directories_and_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not a corpus")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path))):
        make_corpus(tmp_path, 3, 2, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "not a corpus"
    with pytest.raises(ValueError, match="n_test_speakers"):
        make_corpus(tmp_path / "a", 4, 2, n_test_speakers=4, progress=False)
    with pytest.raises(ValueError, match="n_speakers must be >= 3"):
        make_corpus(tmp_path / "b", 2, 2, progress=False)
    with pytest.raises(ValueError, match="n_utterances"):
        make_corpus(tmp_path / "c", 4, 1, progress=False)
    assert main([str(tmp_path / "d"), "--speakers", "2", "--quiet"]) == 2
    assert "n_speakers must be >= 3" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
