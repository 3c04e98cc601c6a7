"""Speaker database: enrol -> verify -> identify on unseen speakers, errors, atomic updates."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from gru_jax.data.audio import AudioError
from gru_jax.eval.database import (
    EnrollmentError,
    enroll,
    identify,
    open_database,
    verify,
)
from gru_jax.infer.export import load_npz
from gru_jax.infer.model import EmbeddingModel


def listed(run, path):
    """{speaker: [audio paths]} of an enrolment or test list."""
    out = {}
    for line in path.read_text().splitlines():
        speaker, rel = line.split()
        out.setdefault(speaker, []).append(str(run.corpus.wav_dir / rel))
    return out


@pytest.fixture(scope="module")
def enrolled(run, tmp_path_factory):
    """A database with every test speaker enrolled from its enrolment list (first session)."""
    path = tmp_path_factory.mktemp("db") / "speakers.npz"
    db = open_database(path, run.model, create=True)
    for speaker, files in listed(run, run.corpus.enroll_list).items():
        assert enroll(db, speaker, files) == len(files)
    return path


def test_enrol_verify_identify_round_trip(run, enrolled):
    db = open_database(enrolled, run.model)
    threshold = run.results["calibration"]["threshold"]
    assert db.threshold == threshold and db.threshold_source.endswith("results.json")
    tests = listed(run, run.corpus.test_list)
    speakers = sorted(tests)
    assert sorted(db.speakers) == speakers and len(speakers) == 6
    genuine, impostor, top1 = [], [], []
    for k, speaker in enumerate(speakers):
        for audio in tests[speaker]:  # held-out sessions, never enrolled
            score, accepted = verify(db, audio, speaker)
            assert accepted == (score >= threshold)
            genuine.append(accepted)
            ranked = identify(db, audio, k=6)
            assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
            top1.append(ranked[0][0] == speaker)
            scores = dict(ranked)
            assert scores[speaker] == pytest.approx(score, abs=1e-5)
            impostor += [scores[other] >= threshold for other in speakers if other != speaker]
            other = speakers[(k + 1) % len(speakers)]
            assert verify(db, audio, other) == (
                pytest.approx(scores[other], abs=1e-5),
                scores[other] >= threshold,
            )
    # the tiny model errs on some trials (EER ~15% here), so judge rates over 30 genuine and
    # 150 impostor trials at the calibrated (EER) threshold
    assert np.mean(genuine) >= 0.7, np.mean(genuine)
    assert np.mean(impostor) <= 0.3, np.mean(impostor)
    assert np.mean(genuine) - np.mean(impostor) >= 0.5
    assert np.mean(top1) >= 0.5, np.mean(top1)  # chance is 1/6
    assert len(identify(db, tests[speakers[0]][0], k=50)) == 6  # k beyond the speakers


def test_database_file_holds_sums_counts_means_and_meta(run, enrolled):
    with np.load(enrolled, allow_pickle=False) as data:
        ids, sums, counts = data["ids"].tolist(), data["sums"], data["counts"]
        meta = json.loads(str(data["meta"]))
        means = data["embeddings"]
    enrol_lists = listed(run, run.corpus.enroll_list)
    assert ids == list(enrol_lists)
    first = ids[0]
    vectors = run.model.embed_files(enrol_lists[first])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(sums[0], unit.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(means, sums / counts[:, None], rtol=1e-6)
    assert counts.tolist() == [len(enrol_lists[s]) for s in ids]
    assert meta["checkpoint"] == run.model.identity()
    assert meta["threshold"] == run.results["calibration"]["threshold"]
    assert load_npz(enrolled)[0].tolist() == ids  # also an embeddings file


def test_re_enrolling_adds_utterances(run, tmp_path):
    files = listed(run, run.corpus.enroll_list)
    speaker, own = next(iter(files.items()))
    db = open_database(tmp_path / "db.npz", run.model, create=True)
    assert enroll(db, speaker, own[:1]) == 1
    again = open_database(tmp_path / "db.npz", run.model)
    assert enroll(again, speaker, own[1:]) == len(own)
    once = open_database(tmp_path / "once.npz", run.model, create=True)
    enroll(once, speaker, own)
    np.testing.assert_allclose(again.sums, once.sums, rtol=1e-5, atol=1e-6)
    assert open_database(tmp_path / "db.npz", run.model).count(speaker) == len(own)


def test_unknown_speaker_names_known_ones(run, enrolled):
    db = open_database(enrolled, run.model)
    audio = next(iter(listed(run, run.corpus.test_list).values()))[0]
    with pytest.raises(EnrollmentError) as error:
        verify(db, audio, "id1004")
    message = str(error.value)
    assert "unknown speaker 'id1004'" in message and "6 enrolled" in message
    assert sorted(db.speakers)[0] in message and "did you mean" in message


def test_database_of_another_checkpoint_is_refused(run, enrolled):
    earlier = EmbeddingModel.load(run.run_dir, step=100)
    assert earlier.fingerprint != run.model.fingerprint
    with pytest.raises(EnrollmentError, match=r"step 200.*step 100.*other weights"):
        open_database(enrolled, earlier)


def test_no_threshold_is_said_clearly_and_explicit_one_wins(run, tmp_path):
    earlier = EmbeddingModel.load(run.run_dir, step=100)  # results.json is for step 200
    files = listed(run, run.corpus.enroll_list)
    speaker, own = next(iter(files.items()))
    db = open_database(tmp_path / "db.npz", earlier, create=True)
    enroll(db, speaker, own[:1])
    assert db.threshold is None
    with pytest.raises(EnrollmentError, match="no calibrated decision threshold"):
        verify(db, own[1], speaker)
    given = open_database(tmp_path / "db.npz", earlier, threshold=-1.0)
    assert verify(given, own[1], speaker)[1] is True
    assert open_database(tmp_path / "db.npz", earlier).threshold is None  # not stored


def test_failed_update_leaves_the_database_intact(run, tmp_path, monkeypatch):
    files = listed(run, run.corpus.enroll_list)
    (first, first_files), (second, second_files) = list(files.items())[:2]
    path = tmp_path / "db.npz"
    enroll(open_database(path, run.model, create=True), first, first_files)
    before = path.read_bytes()

    def crash_mid_write(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    db = open_database(path, run.model)
    monkeypatch.setattr(np, "savez", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        enroll(db, second, second_files)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert db.speakers == [first] and db.counts.tolist() == [len(first_files)]  # nor in memory
    assert os.listdir(tmp_path) == ["db.npz"]
    assert open_database(path, run.model).speakers == [first]

    bad = tmp_path / "silent.wav"
    sf.write(bad, np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        enroll(open_database(path, run.model), second, [second_files[0], bad])
    assert path.read_bytes() == before
