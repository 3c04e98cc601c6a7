"""evaluate(): its reported numbers against independent computations on the files it wrote."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from gru_jax.core.config import ConfigError
from gru_jax.data.corpora import CorpusError, read_id_list
from gru_jax.data.store import open_store
from gru_jax.eval import metrics as scoring
from gru_jax.eval.evaluation import (
    Enrolment,
    enrolled_speaker_trials,
    evaluate,
    format_report,
    training_speaker_sample,
)
from gru_jax.eval.plda import Plda
from gru_jax.infer.export import load_npz
from gru_jax.infer.model import EmbeddedCorpus
from tests._trained import ASNORM_TOP_N, PLDA_DIM


def read_scores(path):
    rows = [line.split() for line in path.read_text().splitlines()]
    enroll, test = [r[0] for r in rows], [r[1] for r in rows]
    return enroll, test, np.array([int(r[2]) for r in rows]), np.array([float(r[3]) for r in rows])


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_results_json_is_what_the_scoring_functions_give(run):
    results = json.loads((run.eval_dir / "results.json").read_text())
    assert results == json.loads(json.dumps(run.results))
    assert results["checkpoint"]["step"] == run.model.step == 200
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {u: i for i, u in enumerate(ids.tolist())}
    enroll, test, labels, scores = read_scores(run.eval_dir / "scores.txt")
    n_trials = len(run.corpus.trials.read_text().splitlines())
    assert len(scores) == n_trials == results["counts"]["trials_scored"]
    assert results["counts"]["trials_dropped"] == 0 and results["counts"]["skipped"] == {}

    # the scores are cosines of the saved embeddings (NumPy reference)
    e, t = [row[u] for u in enroll], [row[u] for u in test]
    reference = np.sum(unit(vectors[e]) * unit(vectors[t]), axis=1)
    np.testing.assert_allclose(scores, reference, atol=1e-5)

    cosine = results["verification"]["cosine"]
    assert cosine["eer"] == pytest.approx(scoring.eer(scores, labels)[0], abs=1e-6)
    for p in (0.01, 0.05):
        value, threshold = scoring.min_dcf(scores, labels, p)
        assert cosine[f"min_dcf_{p:g}"] == pytest.approx(value, abs=1e-6)
        assert cosine[f"min_dcf_{p:g}_threshold"] == pytest.approx(threshold, abs=1e-5)
    assert (cosine["n_target"], cosine["n_nontarget"]) == (labels.sum(), (1 - labels).sum())
    assert 0.0 < cosine["eer"] < 0.35  # the tiny model is far better than chance

    store = open_store(run.store_dir)
    durations = store.durations_s()[[store.index_of(u) for u in test]]
    by_duration = scoring.metrics_by_duration(scores, labels, durations)
    for bucket, metrics in by_duration.items():
        for key, value in metrics.items():
            assert cosine["by_duration"][bucket][key] == pytest.approx(value, abs=1e-5), bucket


def test_asnorm_scores_match_a_numpy_reference(run):
    _, _, labels, cosine = read_scores(run.eval_dir / "scores.txt")
    enroll, test, _, normed = read_scores(run.eval_dir / "scores_asnorm.txt")
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {u: i for i, u in enumerate(ids.tolist())}
    cohort = unit(np.asarray(scoring.speaker_means(*training_speaker_sample(run.model))[1]))
    assert len(cohort) == run.results["verification"]["asnorm"]["cohort_speakers"] > ASNORM_TOP_N
    top = np.sort(unit(vectors) @ cohort.T, axis=1)[:, -ASNORM_TOP_N:]
    mean, std = top.mean(axis=1), top.std(axis=1)
    e, t = [row[u] for u in enroll], [row[u] for u in test]
    reference = 0.5 * ((cosine - mean[e]) / std[e] + (cosine - mean[t]) / std[t])
    np.testing.assert_allclose(normed, reference, rtol=1e-4, atol=1e-4)
    asnorm = run.results["verification"]["asnorm"]
    assert asnorm["eer"] == pytest.approx(scoring.eer(normed, labels)[0], abs=1e-6)
    assert asnorm["top_n"] == ASNORM_TOP_N


def test_plda_scores_are_those_of_a_backend_fitted_on_the_training_speakers(run):
    _, _, labels, _ = read_scores(run.eval_dir / "scores.txt")
    enroll, test, plda_labels, llr = read_scores(run.eval_dir / "scores_plda.txt")
    np.testing.assert_array_equal(plda_labels, labels)
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {u: i for i, u in enumerate(ids.tolist())}
    train_vectors, train_speakers = training_speaker_sample(run.model)
    plda = Plda.fit(train_vectors, train_speakers, PLDA_DIM)
    e, t = np.array([row[u] for u in enroll]), np.array([row[u] for u in test])
    np.testing.assert_allclose(llr, plda.trial_scores(vectors, vectors, e, t), rtol=1e-4, atol=1e-4)
    report = run.results["verification"]["plda"]
    assert report["eer"] == pytest.approx(scoring.eer(llr, labels)[0], abs=1e-6)
    assert report["dim"] == PLDA_DIM
    assert (
        report["train_speakers"] == len(run.model.encoder.class_names) == len(set(train_speakers))
    )
    assert "PLDA" in format_report(run.results)


def test_enrolled_plda_scores_use_all_of_a_speakers_enrolment(run):
    enrolled, enrolled_plda = (
        run.results["verification"]["enrolled"],
        run.results["verification"]["enrolled_plda"],
    )
    assert enrolled_plda["n_target"] == enrolled["n_target"] and enrolled_plda["dim"] == PLDA_DIM
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {u: i for i, u in enumerate(ids.tolist())}
    enroll, test = read_id_list(run.corpus.enroll_list), read_id_list(run.corpus.test_list)
    plda = Plda.fit(*training_speaker_sample(run.model), PLDA_DIM)
    speakers = sorted({u.speaker for u in enroll})
    enrolled = [  # each speaker's projected enrolment utterances
        plda.project(vectors[[row[u.utt_id] for u in enroll if u.speaker == s]]) for s in speakers
    ]
    tests = plda.project(vectors[[row[t.utt_id] for t in test]])
    reference = np.array(  # [test, speaker]: one pair at a time, n = the speaker's utterances
        [
            [plda.llr(own.mean(axis=0)[None], x[None], len(own))[0] for own in enrolled]
            for x in tests
        ]
    )
    labels = np.array([[t.speaker == s for s in speakers] for t in test], np.int32)
    corpus = EmbeddedCorpus(ids, ids, np.zeros(len(ids)), vectors, {}, run.store_dir)
    scored = enrolled_speaker_trials(corpus, Enrolment(enroll, test), plda)
    np.testing.assert_allclose(scored.scores, reference.ravel(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(scored.labels, labels.ravel())
    assert enrolled_plda["eer"] == pytest.approx(
        scoring.eer(reference.ravel(), labels.ravel())[0], abs=1e-6
    )


def test_identification_matches_a_numpy_reference(run):
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {u: i for i, u in enumerate(ids.tolist())}

    def listed(path):
        pairs = [line.split() for line in path.read_text().splitlines()]
        return [(speaker, rel.rsplit(".", 1)[0]) for speaker, rel in pairs]

    enroll, test = listed(run.corpus.enroll_list), listed(run.corpus.test_list)
    first = {}
    for speaker, utt in sorted(enroll, key=lambda pair: pair[1]):
        first.setdefault(speaker, utt)

    def top1(enrolment):
        speakers = sorted({s for s, _ in enrolment})
        models = np.stack(
            [
                unit(vectors[[row[u] for s, u in enrolment if s == speaker]]).mean(axis=0)
                for speaker in speakers
            ]
        )
        scores = unit(vectors[[row[u] for _, u in test]]) @ unit(models).T
        predicted = np.array(speakers)[np.argmax(scores, axis=1)]
        return np.mean(predicted == np.array([s for s, _ in test]))

    ident = run.results["identification"]
    assert ident["n_test"] == len(test) and ident["n_speakers"] == 6
    assert ident["all"]["top1"] == pytest.approx(top1(enroll))
    assert ident["one_utterance"]["top1"] == pytest.approx(top1(list(first.items())))
    assert ident["enroll_per_speaker"] == {"min": 3, "max": 3}
    assert ident["all"]["top5"] >= ident["all"]["top1"] > 1 / 6 + 0.2  # well above chance


def test_verify_threshold_is_calibrated_on_enrolled_speaker_scores(run):
    """Each test utterance against each enrolled speaker's mean, as verify scores it."""
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {u: i for i, u in enumerate(ids.tolist())}
    enroll = [line.split() for line in run.corpus.enroll_list.read_text().splitlines()]
    test = [line.split() for line in run.corpus.test_list.read_text().splitlines()]
    speakers = sorted({s for s, _ in enroll})
    means = np.stack(
        [
            unit(vectors[[row[p.rsplit(".", 1)[0]] for s, p in enroll if s == speaker]]).mean(
                axis=0
            )
            for speaker in speakers
        ]
    )
    scores = unit(vectors[[row[p.rsplit(".", 1)[0]] for _, p in test]]) @ unit(means).T
    labels = np.array([[s == speaker for speaker in speakers] for s, _ in test], np.int32)
    enrolled = run.results["verification"]["enrolled"]
    value, threshold = scoring.eer(scores.ravel(), labels.ravel())
    assert enrolled["eer"] == pytest.approx(value, abs=1e-6)
    assert enrolled["threshold"] == pytest.approx(threshold, abs=1e-5)
    assert (enrolled["n_target"], enrolled["n_nontarget"]) == (len(test), 5 * len(test))
    calibrated = run.results["calibration"]
    assert calibrated == {
        "scores": "enrolled",
        "operating_point": "eer",
        "threshold": enrolled["threshold"],
        "eer_threshold": enrolled["threshold"],
    }
    # averaging enrolment utterances raises scores, so the calibrated threshold is higher
    assert calibrated["threshold"] > run.results["verification"]["cosine"]["threshold"]


def test_report_prints_the_numbers_of_results_json(run):
    text = format_report(run.results)
    cosine = run.results["verification"]["cosine"]
    assert f"{100 * cosine['eer']:.4f}" in text
    assert f"{cosine['min_dcf_0.01']:.4f}" in text
    assert f"{100 * run.results['identification']['all']['top1']:.4f}" in text
    assert "AS-norm" in text and "closed-set identification" in text
    threshold = run.results["calibration"]["threshold"]
    assert f"decision threshold for verify (enrolled scores, at eer): {threshold:.4f}" in text


def test_missing_files_are_listed_in_one_error(run, tmp_path):
    lines = run.corpus.trials.read_text().splitlines()[:4]
    missing = ["id19999/nosession/00001.wav", "id19998/nosession/00002.wav"]
    lines += [f"1 {missing[0]} {missing[1]}", f"0 {lines[0].split()[1]} {missing[1]}"]
    trials = tmp_path / "trials.txt"
    trials.write_text("\n".join(lines) + "\n")
    enroll = tmp_path / "enroll.txt"
    enroll.write_text("id19997 id19997/x/00003.wav\n")
    with pytest.raises(CorpusError) as error:
        evaluate(
            run.model,
            run.corpus.root,
            trials=trials,
            enroll_list=enroll,
            test_list=run.corpus.test_list,
            out_dir=tmp_path / "out",
        )
    message = str(error.value)
    assert message.startswith("3 of ")
    for utt_id in ("id19999/nosession/00001", "id19998/nosession/00002", "id19997/x/00003"):
        assert utt_id in message
    assert f"{enroll}:1" in message and str(trials) in message
    assert not (tmp_path / "out").exists()  # nothing was started


def test_bad_audio_is_counted_and_its_trials_dropped(run, tmp_path, caplog):
    wav = tmp_path / "data" / "wav"
    pairs = [line.split() for line in run.corpus.trials.read_text().splitlines()[:12]]
    for _, a, b in pairs:
        for rel in (a, b):
            (wav / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(run.corpus.wav_dir / rel, wav / rel)
    silent = pairs[0][1]
    sf.write(wav / silent, np.zeros(16000, np.float32), 16000)
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(f"{label} {a} {b}\n" for label, a, b in pairs))
    n_dropped = sum(silent in (a, b) for _, a, b in pairs)
    results = evaluate(
        run.model,
        tmp_path / "data",
        trials=trials,
        out_dir=tmp_path / "out",
        store_dir=tmp_path / "store",
        workers=1,
        progress=False,
    )
    counts = results["counts"]
    assert counts["skipped"] == {"silent": 1}
    assert counts["skipped_ids"] == [silent.rsplit(".", 1)[0]]
    assert (counts["trials"], counts["trials_dropped"]) == (12, n_dropped)
    assert counts["trials_scored"] == 12 - n_dropped
    assert len((tmp_path / "out" / "scores.txt").read_text().splitlines()) == 12 - n_dropped
    assert f"{n_dropped} of 12 trial(s) dropped" in caplog.text
    for name in ("results.json", "det.png", "scores.png", "embeddings.npz"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_far_calibration_and_argument_checks(run, tmp_path):
    _, _, labels, scores = read_scores(run.eval_dir / "scores.txt")
    from gru_jax.eval.evaluation import calibration, verification_report

    durations = np.full(len(scores), 3.0)
    report = verification_report(scores, labels, durations, far=0.1)
    assert report["far_threshold"] == scoring.threshold_at_far(scores, labels, 0.1)
    assert np.mean(scores[labels == 0] >= report["far_threshold"]) <= 0.1
    chosen = calibration({"cosine": report}, 0.1)
    assert chosen["threshold"] == report["far_threshold"] != chosen["eer_threshold"]
    assert chosen["scores"] == "cosine" and chosen["operating_point"] == "far=0.1"
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate(run.model, run.corpus.root)
    with pytest.raises(ConfigError, match="both an enrolment list and a test list"):
        evaluate(
            run.model, run.corpus.root, trials=run.corpus.trials, enroll_list=run.corpus.enroll_list
        )
