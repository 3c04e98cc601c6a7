"""Tests for gru_jax.synth.devcorpus.

The planning tests (variant split, speakers, trials, lists, arguments) need no espeak-ng; the
end-to-end ones build one tiny corpus with the real binary and are skipped without it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import shutil
import wave
from collections import Counter
from pathlib import Path

import pytest

from gru_jax.synth import corpus as synth_corpus
from gru_jax.synth import devcorpus, espeak
from gru_jax.synth.corpus import CorpusInfo, Utterance

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="needs the espeak-ng binary (apt-get install espeak-ng)",
)

TINY = {"n_train_speakers": 4, "n_test_speakers": 4, "n_utterances": 4, "n_sessions": 2, "seed": 1}


def _args(**overrides: int) -> devcorpus._Arguments:
    values = {**TINY, **overrides}
    return devcorpus._arguments(
        values["n_train_speakers"],
        values["n_test_speakers"],
        values["n_utterances"],
        values["n_sessions"],
        values["seed"],
    )


def _test_plan(**overrides: int) -> tuple[list[Utterance], dict[str, str]]:
    speakers, utterances = devcorpus.plan(_args(**overrides))
    test_utts = [u for u in utterances if speakers[u.speaker].split == "test"]
    return test_utts, {s: sp.gender for s, sp in speakers.items()}


# --- variant split ------------------------------------------------------------------------------


def test_variant_split_is_disjoint_complete_and_family_closed() -> None:
    split = devcorpus.variant_split()
    tables = {"female": espeak.FEMALE_VARIANTS, "male": espeak.MALE_VARIANTS}
    side = {}
    for gender, variants in tables.items():
        train, test = set(split["train"][gender]), set(split["test"][gender])
        assert train.isdisjoint(test)
        assert train | test == set(variants)
        assert len(test) >= 2 and len(train) >= 2
        assert 0.15 <= len(test) / len(variants) <= 0.4
        side |= {v: "train" for v in train} | {v: "test" for v in test}
    # No variant is in both genders, so one side per variant is well defined.
    assert len(side) == len(espeak.FEMALE_VARIANTS) + len(espeak.MALE_VARIANTS)
    families: dict[str, set[str]] = {}
    for variant, where in side.items():
        families.setdefault(devcorpus.variant_family(variant), set()).add(where)
    assert all(len(where) == 1 for where in families.values()), families
    # Numbered versions and the listed near copies share a side.
    for a, b in [("steph", "steph3"), ("f1", "f5"), ("m1", "m7"), *devcorpus.NEAR_COPIES.items()]:
        assert side[a] == side[b], (a, b)


def test_near_copies_name_known_variants_of_one_gender() -> None:
    for copy, original in devcorpus.NEAR_COPIES.items():
        assert espeak.VARIANT_GENDER[copy] == espeak.VARIANT_GENDER[original]


def test_no_mbrola_voices_anywhere() -> None:
    names = [*espeak.LANGUAGES, *espeak.FEMALE_VARIANTS, *espeak.MALE_VARIANTS]
    assert not [n for n in names if n.lower().startswith("mb")]
    with pytest.raises(espeak.EspeakError, match="MBROLA"):
        espeak.synthesize("hello", "mb-en1", "m1", 50, 175)


@pytest.mark.parametrize("seed", [0, 1, 13, 12345])
def test_speakers_use_only_their_splits_variants(seed: int) -> None:
    split = devcorpus.variant_split()
    for which in devcorpus.SPLITS:
        for speaker in devcorpus.draw_speakers(seed, which, 60):
            assert speaker.split == which
            assert speaker.variant in split[which][speaker.gender]
    for n_train, n_test in [(1, 2), (7, 3), (40, 25)]:
        speakers, _ = devcorpus.plan(_args(n_train_speakers=n_train, n_test_speakers=n_test))
        train = {s.variant for s in speakers.values() if s.split == "train"}
        test = {s.variant for s in speakers.values() if s.split == "test"}
        assert train and test and train.isdisjoint(test)


# --- speakers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", devcorpus.SPLITS)
def test_draw_speakers_deterministic_prefix_stable_alternating_unique(split: str) -> None:
    twenty = devcorpus.draw_speakers(5, split, 20)
    assert twenty == devcorpus.draw_speakers(5, split, 20)
    assert devcorpus.draw_speakers(5, split, 10) == twenty[:10]
    assert devcorpus.draw_speakers(6, split, 20) != twenty
    assert [s.gender for s in twenty] == ["female", "male"] * 10
    assert all(espeak.VARIANT_GENDER[s.variant] == s.gender for s in twenty)
    many = devcorpus.draw_speakers(5, split, 300)
    assert len({s.settings() for s in many}) == 300
    assert {s.language for s in many} <= set(espeak.LANGUAGES)
    # Each gender cycles through its variants before repeating one.
    female = [s.variant for s in many if s.gender == "female"]
    n_female = len(devcorpus.variant_split()[split]["female"])
    assert len(set(female[:n_female])) == n_female


def test_draw_speakers_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        devcorpus.draw_speakers(0, "dev", 3)


def test_espeak_settings_stay_in_range_over_the_whole_grid() -> None:
    for pitch in (min(devcorpus.PITCH_STEPS), max(devcorpus.PITCH_STEPS)):
        for speed in (min(devcorpus.SPEED_STEPS), max(devcorpus.SPEED_STEPS)):
            for tract in devcorpus.TRACT_STEPS:
                s = devcorpus.Speaker("train", "male", "en-us", "m1", pitch, speed, tract)
                assert espeak.PITCH_RANGE[0] <= s.espeak_pitch <= espeak.PITCH_RANGE[1]
                assert espeak.SPEED_RANGE[0] <= s.espeak_speed <= espeak.SPEED_RANGE[1]


def test_plan_keys_test_speakers_apart_from_the_training_set() -> None:
    small, small_utts = devcorpus.plan(_args(n_train_speakers=3))
    large, large_utts = devcorpus.plan(_args(n_train_speakers=9))
    assert list(small)[:3] == ["id10001", "id10002", "id10003"]
    test_ids = ["id20001", "id20002", "id20003", "id20004"]
    assert [s for s, sp in small.items() if sp.split == "test"] == test_ids
    assert {s: small[s] for s in test_ids} == {s: large[s] for s in test_ids}
    assert [u for u in small_utts if u.speaker in test_ids] == [
        u for u in large_utts if u.speaker in test_ids
    ]


# --- trials and lists ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_test", "n_utterances", "n_sessions"), [(4, 4, 2), (8, 6, 3), (9, 16, 3), (2, 4, 2)]
)
def test_make_trials_balanced_hard_half_no_repeats(
    n_test: int, n_utterances: int, n_sessions: int
) -> None:
    test_utts, gender = _test_plan(
        n_test_speakers=n_test, n_utterances=n_utterances, n_sessions=n_sessions
    )
    trials = devcorpus.make_trials(3, test_utts, gender)
    assert trials == devcorpus.make_trials(3, test_utts, gender)
    speaker_of = {u.relpath: u.speaker for u in test_utts}
    pairs = [frozenset((a, b)) for _, a, b in trials]
    assert all(len(p) == 2 for p in pairs)  # no self-trials
    assert len(set(pairs)) == len(pairs)  # no unordered pair twice
    kinds = Counter()
    for label, a, b in trials:
        if label == 1:
            assert speaker_of[a] == speaker_of[b]
            kinds["target"] += 1
        else:
            assert speaker_of[a] != speaker_of[b]
            kinds["hard" if gender[speaker_of[a]] == gender[speaker_of[b]] else "easy"] += 1
    assert kinds["target"] == kinds["hard"] + kinds["easy"] > 0
    if n_test == 2:  # one female, one male: no same-gender impostor exists
        assert kinds["hard"] == 0
    else:
        assert abs(kinds["hard"] - kinds["easy"]) <= 0.1 * kinds["target"] + 1, kinds
    # Every test utterance takes part, and targets cross sessions where they can.
    assert {u.relpath for u in test_utts} <= {x for _, a, b in trials for x in (a, b)}
    session_of = {u.relpath: u.session for u in test_utts}
    crossing = sum(session_of[a] != session_of[b] for label, a, b in trials if label == 1)
    assert crossing >= kinds["target"] / 2


def test_enroll_test_split_is_disjoint_and_session_based() -> None:
    test_utts, _ = _test_plan(n_test_speakers=5, n_utterances=8, n_sessions=2)
    enroll, test = devcorpus.enroll_test_split(test_utts)
    assert {u.relpath for u in enroll}.isdisjoint(u.relpath for u in test)
    assert all(u.session_index == 0 for u in enroll)
    assert Counter(u.speaker for u in enroll) == {s: 3 for s in {u.speaker for u in test_utts}}
    assert test == [u for u in test_utts if u.session_index > 0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_train_speakers": 0}, "n_train_speakers"),
        ({"n_train_speakers": devcorpus.MAX_TRAIN_SPEAKERS + 1}, "n_train_speakers"),
        ({"n_test_speakers": 1}, "n_test_speakers"),
        ({"n_sessions": 1}, "n_sessions"),
        ({"n_utterances": 2, "n_sessions": 3}, "n_utterances"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path: Path, overrides: dict[str, int], message: str
) -> None:
    out = tmp_path / "corpus"
    with pytest.raises(ValueError, match=message):
        devcorpus.make_devcorpus(out, **{**TINY, **overrides}, progress=False)
    assert not out.exists()


def test_cli_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert devcorpus.main([str(tmp_path / "c"), "--test-speakers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gru-jax-devcorpus: error:") and "n_test_speakers" in err
    assert "Traceback" not in err


def test_missing_espeak_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called espeak-ng there
    out = tmp_path / "corpus"
    with pytest.raises(espeak.EspeakError, match=r"espeak-ng not found.*apt-get install espeak-ng"):
        devcorpus.make_devcorpus(out, **TINY, progress=False)
    assert not out.exists()
    assert devcorpus.main([str(out), "--quiet"]) == 2
    assert "espeak-ng not found" in capsys.readouterr().err


def test_missing_voice_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    speakers, _ = devcorpus.plan(_args())
    lost = next(iter(speakers.values())).variant
    variants = {v: g for v, g in espeak.VARIANT_GENDER.items() if v != lost}
    monkeypatch.setattr(espeak, "installed_languages", lambda: set(espeak.LANGUAGES))
    monkeypatch.setattr(espeak, "installed_variants", lambda: variants)
    monkeypatch.setattr(espeak, "version", lambda: "1.51")
    with pytest.raises(espeak.EspeakError, match=f"variant '{lost}'"):
        devcorpus.make_devcorpus(tmp_path / "corpus", **TINY, progress=False)
    assert not (tmp_path / "corpus").exists()


# --- end to end with espeak-ng ------------------------------------------------------------------


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_list(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs the espeak-ng binary (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("devcorpus") / "corpus"
    return devcorpus.make_devcorpus(root, **TINY, workers=1, progress=False)


@needs_espeak
def test_files_are_16k_mono_int16_of_2_to_6_s(tiny: CorpusInfo) -> None:
    wavs = sorted(tiny.wav_dir.rglob("*.wav"))
    assert len(wavs) == tiny.n_files == 32 and not tiny.reused
    assert (tiny.n_speakers, tiny.n_train_speakers, tiny.n_test_speakers) == (8, 4, 4)
    for path in wavs:
        with wave.open(str(path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert 2.0 <= w.getnframes() / 16000 <= 6.0, path
    assert not [p for p in tiny.root.rglob(".*") if p.name != synth_corpus.MARKER_NAME]


@needs_espeak
def test_lists_refer_to_existing_files_of_the_right_split(tiny: CorpusInfo) -> None:
    meta = json.loads(tiny.meta.read_text())
    train_ids, test_ids = set(meta["train_speakers"]), set(meta["test_speakers"])
    assert len(train_ids) == 4 and len(test_ids) == 4
    train = _read_list(tiny.train_list)
    assert {s for s, _ in train} == train_ids and len(train) == 16
    assert all(p.startswith(f"{s}/") and (tiny.wav_dir / p).is_file() for s, p in train)
    trials = _read_list(tiny.trials)
    assert len(trials) == tiny.n_trials > 0
    assert Counter(label for label, _, _ in trials) == {
        "1": len(trials) // 2,
        "0": len(trials) // 2,
    }
    for _, a, b in trials:
        assert {a.split("/")[0], b.split("/")[0]} <= test_ids
        assert (tiny.wav_dir / a).is_file() and (tiny.wav_dir / b).is_file()
    enroll, test = _read_list(tiny.enroll_list), _read_list(tiny.test_list)
    assert {s for s, _ in enroll} == {s for s, _ in test} == test_ids
    assert {p for _, p in enroll}.isdisjoint(p for _, p in test)
    assert all((tiny.wav_dir / p).is_file() for _, p in enroll + test)


@needs_espeak
def test_meta_genders_and_variants_match_the_plan(tiny: CorpusInfo) -> None:
    meta = json.loads(tiny.meta.read_text())
    speakers, _ = devcorpus.plan(_args())
    assert meta["arguments"] == TINY
    assert meta["espeak_ng_version"] == espeak.version()
    assert set(meta["speakers"]) == set(speakers)
    split = devcorpus.variant_split()
    for speaker_id, entry in meta["speakers"].items():
        assert entry["gender"] == speakers[speaker_id].gender
        assert entry["gender"] == espeak.VARIANT_GENDER[entry["variant"]]
        assert entry["variant"] in split[entry["split"]][entry["gender"]]
    assert Counter(e["gender"] for e in meta["speakers"].values()) == {"female": 4, "male": 4}


@needs_espeak
def test_same_arguments_reuse_the_corpus_untouched(tiny: CorpusInfo) -> None:
    before = {p: p.stat().st_mtime_ns for p in tiny.root.rglob("*")}
    again = devcorpus.make_devcorpus(tiny.root, **TINY, workers=1, progress=False)
    assert again.reused and again == tiny.__class__(**{**vars(tiny), "reused": True})
    assert {p: p.stat().st_mtime_ns for p in tiny.root.rglob("*")} == before


@needs_espeak
def test_worker_processes_give_the_same_bytes(
    tiny: CorpusInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools: list[int] = []
    real_pool = synth_corpus.worker_pool

    def counting_pool(n_workers: int) -> concurrent.futures.ProcessPoolExecutor:
        pools.append(n_workers)
        return real_pool(n_workers)

    monkeypatch.setattr(synth_corpus, "PARALLEL_MIN_UTTERANCES", 0)
    monkeypatch.setattr(synth_corpus, "worker_pool", counting_pool)
    other = devcorpus.make_devcorpus(tmp_path / "c", **TINY, workers=2, progress=False)
    assert pools == [2] and not other.reused
    assert _hashes(other.root) == _hashes(tiny.root)


@needs_espeak
def test_missing_meta_means_an_interrupted_build_and_a_rebuild(
    tiny: CorpusInfo, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny.root, root)
    (root / synth_corpus.META_NAME).unlink()
    stray = root / synth_corpus.WAV_DIR / "id10001" / "stray.wav"
    stray.write_bytes(b"left by an interrupted build")
    rebuilt = devcorpus.make_devcorpus(root, **TINY, workers=1, progress=False)
    assert not rebuilt.reused
    assert not stray.exists()
    assert _hashes(root) == _hashes(tiny.root)


@needs_espeak
def test_cli_prints_a_summary(tiny: CorpusInfo, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tiny.root), "--train-speakers", "4", "--test-speakers", "4", "--utterances", "4"]
    argv += ["--sessions", "2", "--seed", "1", "--quiet"]
    assert devcorpus.main(argv) == 0
    out = capsys.readouterr().out
    assert "re-used 32 utterances of 8 speakers (4 train, 4 test" in out
    assert str(tiny.root) in out
