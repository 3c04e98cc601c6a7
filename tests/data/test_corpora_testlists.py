"""Test lists drawn from held-out speakers, and audio linked by id for evaluation's lookups."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from gru_jax.data.corpora import (
    CorpusError,
    Trial,
    Utterance,
    find_audio,
    read_id_list,
    read_voxceleb_trials,
)
from gru_jax.data.corpora.testlists import (
    draw_trials,
    link_audio_tree,
    split_enrolment,
    write_test_lists,
)

from ._corpus_layouts import write_audio


def libri_like(root: Path, speakers: dict[str, list[tuple[str, int]]]) -> list[Utterance]:
    """speaker -> [(chapter, utterances)], as files `<spk>/<chapter>/<spk>-<chapter>-<n>.flac`."""
    utts = []
    for speaker, chapters in speakers.items():
        for chapter, count in chapters:
            for n in range(count):
                rel = f"{speaker}/{chapter}/{speaker}-{chapter}-{n:04d}"
                path = write_audio(root / f"{rel}.flac")
                utts.append(Utterance(rel, speaker, str(path), session=chapter))
    return utts


SPEAKERS = {
    "84": [("121123", 4), ("121550", 3)],
    "174": [("50561", 5)],
    "251": [("118436", 2), ("136532", 3)],
    "7": [("1", 3)],  # only enough to enrol: left out
}


def test_enrolment_is_first_session_first(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    utts = libri_like(tmp_path, SPEAKERS)
    with caplog.at_level(logging.WARNING):
        enroll, test = split_enrolment(utts, enroll_per_speaker=3)
    assert (
        "1 speaker(s) have at most 3 utterances, too few to enrol and test, and are left out: 7"
        in caplog.text
    )
    by_speaker = Counter(u.speaker for u in enroll)
    assert by_speaker == {"84": 3, "174": 3, "251": 3}
    assert {u.session for u in enroll if u.speaker == "84"} == {"121123"}
    # 251's first chapter has 2 utterances: the third comes from its next chapter
    assert [u.session for u in enroll if u.speaker == "251"] == ["118436", "118436", "136532"]
    assert len(test) == len(utts) - 3 - 9 and not {u.utt_id for u in enroll} & {
        u.utt_id for u in test
    }


def test_trials_prefer_other_sessions_and_are_deterministic(tmp_path: Path) -> None:
    utts = libri_like(tmp_path, SPEAKERS)
    _, test = split_enrolment(utts, 3)
    trials = draw_trials(utts, test, targets_per_utterance=2, nontargets_per_utterance=3)
    assert trials == draw_trials(utts, test, 2, 3)  # same listing, same seed: same trials
    assert trials != draw_trials(utts, test, 2, 3, seed=1)
    session = {u.utt_id: (u.speaker, u.session) for u in utts}
    for t in trials:
        same_speaker = session[t.enroll][0] == session[t.test][0]
        assert t.label == int(same_speaker) and t.enroll != t.test
    test_84 = [t for t in trials if t.test.startswith("84/121123") and t.label == 1]
    assert test_84 and all(t.enroll.startswith("84/121550") for t in test_84)
    pairs = [frozenset((t.enroll, t.test)) for t in trials]
    assert len(pairs) == len(set(pairs))
    assert 0.3 < sum(t.label for t in trials) / len(trials) < 0.7


def test_written_lists_are_what_evaluation_reads(tmp_path: Path) -> None:
    root = tmp_path / "test-clean"
    utts = libri_like(root, SPEAKERS)
    written = write_test_lists(utts, root, tmp_path / "lists")
    assert (written.n_speakers, written.n_enroll, written.n_test) == (3, 9, 8)
    assert written.trials is not None and written.n_trials == len(
        read_voxceleb_trials(written.trials)
    )
    for trial in read_voxceleb_trials(written.trials):
        assert find_audio(root, trial.enroll) and find_audio(root, trial.test)
    enroll = read_id_list(written.enroll_list)
    assert written.enroll_list.read_text().splitlines()[0] == "174 174/50561/174-50561-0000.flac"
    assert {u.speaker for u in enroll} == {"84", "174", "251"}
    assert all(find_audio(root, u.utt_id) for u in read_id_list(written.test_list))


def test_given_trials_are_checked_and_written_as_paths(tmp_path: Path) -> None:
    root = tmp_path / "data"
    utts = libri_like(root, SPEAKERS)
    given = [Trial(1, "84/121123/84-121123-0000", "84/121550/84-121550-0001")]
    written = write_test_lists(utts, root, tmp_path / "lists", trials=given)
    assert written.trials is not None
    assert written.trials.read_text() == (
        "1 84/121123/84-121123-0000.flac 84/121550/84-121550-0001.flac\n"
    )
    with pytest.raises(CorpusError, match=r"1 utterance.* not in the test data: nope"):
        write_test_lists(utts, root, tmp_path / "lists", trials=[Trial(0, "nope", given[0].test)])


def test_files_outside_the_root_are_refused(tmp_path: Path) -> None:
    utts = libri_like(tmp_path / "a", {"1": [("1", 5)], "2": [("1", 5)]})
    with pytest.raises(CorpusError, match=r"is not under .* link the audio"):
        write_test_lists(utts, tmp_path / "b", tmp_path / "lists")


def test_linked_tree_names_files_by_id(tmp_path: Path) -> None:
    files = [write_audio(tmp_path / "raw" / f"{k}.wav") for k in range(8)]
    utts = [Utterance(f"spk{k % 2}-utt{k}", f"spk{k % 2}", str(f)) for k, f in enumerate(files)]
    linked = link_audio_tree(utts, tmp_path / "tree")
    assert linked[0].path == str(tmp_path / "tree" / "spk0-utt0.wav")
    assert Path(linked[0].path).resolve() == files[0].resolve()
    assert link_audio_tree(utts, tmp_path / "tree") == linked  # again: links replaced
    written = write_test_lists(linked, tmp_path / "tree", tmp_path / "lists", enroll_per_speaker=2)
    assert written.n_test == 4
    for bad in ("../escape", "/abs", "dotted.name"):
        with pytest.raises(CorpusError, match="cannot name a file"):
            link_audio_tree([Utterance(bad, "spk", str(files[0]).replace(".wav", ""))], tmp_path)
    spans = [Utterance("s", "spk", str(files[0]), start=0.0, end=1.0)]
    with pytest.raises(CorpusError, match=r"a span of .* segments"):
        link_audio_tree(spans, tmp_path / "tree")
