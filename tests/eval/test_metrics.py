"""scoring: metrics against sklearn/NumPy references, embedding scores against NumPy."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from gru_jax.eval import metrics as scoring
from gru_jax.nn.functional import l2_normalize

N_TRIALS = 600  # one size for the random trial sets, so the jitted metrics compile once


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def reference_points(scores, labels):
    """(p_fa, p_miss, thresholds) by increasing threshold, from sklearn's tie-merged ROC.

    Thresholds follow scoring's documented convention: the midpoint between the highest rejected
    and the lowest accepted distinct score, the lowest score for accept-all and the next float
    above the highest score for reject-all.
    """
    scores = np.asarray(scores, np.float32)
    fpr, tpr, accept_from = roc_curve(labels, scores, drop_intermediate=False)
    p_fa, p_miss, accept_from = fpr[::-1], 1 - tpr[::-1], accept_from[::-1]
    distinct = np.unique(scores).astype(np.float64)
    thresholds = [float(distinct[0])]
    for lower, upper in pairwise(distinct):
        thresholds.append((lower + upper) / 2)
    thresholds.append(float(np.nextafter(np.float32(distinct[-1]), np.float32(np.inf))))
    assert np.all(accept_from[:-1] == distinct)  # the same operating points as ours
    return p_fa, p_miss, np.array(thresholds)


def reference_eer(scores, labels):
    p_fa, p_miss, thresholds = reference_points(scores, labels)
    after = np.flatnonzero(p_miss >= p_fa)[0]
    before = after - 1
    gap_before = p_miss[before] - p_fa[before]
    gap_after = p_miss[after] - p_fa[after]
    weight = -gap_before / (gap_after - gap_before)
    eer = p_miss[before] + weight * (p_miss[after] - p_miss[before])
    return eer, thresholds[before] + weight * (thresholds[after] - thresholds[before])


def reference_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    p_fa, p_miss, _ = reference_points(scores, labels)
    costs = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    return costs.min() / min(c_miss * p_target, c_fa * (1 - p_target))


def error_rates_at(scores, labels, threshold):
    """(p_miss, p_fa) of the decision score >= threshold, evaluated directly."""
    scores, labels = np.asarray(scores, np.float32), np.asarray(labels, bool)
    accepted = scores >= np.float32(threshold)
    return np.mean(~accepted[labels]), np.mean(accepted[~labels])


def random_trials(seed, ties=False, n=N_TRIALS, target_share=0.2):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < target_share).astype(np.int64)
    scores = rng.normal(size=n) + 1.5 * labels
    if ties:
        scores = np.round(scores, 1)  # many tie groups that mix targets and non-targets
    return scores.astype(np.float32), labels


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# EER, minDCF, DET, threshold at FAR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_sklearn_reference(seed, ties):
    scores, labels = random_trials(seed, ties)
    if ties:
        assert len(np.unique(scores)) < len(scores) // 4
    expected_eer, expected_threshold = reference_eer(scores, labels)
    value, threshold = scoring.eer(scores, labels)
    assert value == pytest.approx(expected_eer, abs=1e-6)
    assert threshold == pytest.approx(expected_threshold, rel=1e-6, abs=1e-6)
    assert 0.05 < value < 0.45  # a usable but imperfect system: the crossing is interior


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
def test_min_dcf_matches_direct_reference(p_target, ties):
    scores, labels = random_trials(3, ties)
    value, threshold = scoring.min_dcf(scores, labels, p_target)
    assert value == pytest.approx(reference_min_dcf(scores, labels, p_target), abs=1e-6)
    p_miss, p_fa = error_rates_at(scores, labels, threshold)
    reached = (p_miss * p_target + p_fa * (1 - p_target)) / min(p_target, 1 - p_target)
    assert reached == pytest.approx(value, abs=1e-6)


def test_min_dcf_with_unequal_costs():
    scores, labels = random_trials(4)
    value, threshold = scoring.min_dcf(scores, labels, p_target=0.05, c_miss=10.0, c_fa=1.0)
    assert value == pytest.approx(reference_min_dcf(scores, labels, 0.05, 10.0, 1.0), abs=1e-6)
    p_miss, p_fa = error_rates_at(scores, labels, threshold)
    assert (10 * p_miss * 0.05 + p_fa * 0.95) / 0.5 == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_det_curve_matches_sklearn_points(ties):
    scores, labels = random_trials(5, ties)
    p_fa, p_miss, thresholds = scoring.det_curve(scores, labels)
    ref_fa, ref_miss, ref_thresholds = reference_points(scores, labels)
    np.testing.assert_allclose(p_fa, ref_fa, atol=1e-7)
    np.testing.assert_allclose(p_miss, ref_miss, atol=1e-7)
    np.testing.assert_allclose(thresholds, ref_thresholds, rtol=1e-6, atol=1e-7)
    for k in range(0, len(thresholds), 37):  # each threshold really gives its point
        assert error_rates_at(scores, labels, thresholds[k]) == pytest.approx((p_miss[k], p_fa[k]))


def test_hand_computed_cases():
    # Points (p_miss, p_fa): (0,1) (0,1/2) (1/3,1/2) (1/3,0): the EER segment is the third to the
    # fourth point, crossed a third of the way along, between thresholds 2.5 and 3.5.
    value, threshold = scoring.eer([1, 2, 3, 4, 5], [0, 1, 0, 1, 1])
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(2.5 + 1 / 3)
    # The tie at 2 holds a target and a non-target: they are rejected together, so the points are
    # (0,1) (0,1/2) (1/2,0) (1,0) and the EER is halfway along the diagonal step. Splitting the
    # tie would give 0 or 1/2 depending on the sort order.
    assert scoring.eer([1, 2, 2, 3], [0, 1, 0, 1]) == pytest.approx((0.25, 2.0))
    # Costs at p_target 0.5: 0.5, 0.25, 0.25, 0.5 -> 0.25 / 0.5; the lowest threshold wins ties.
    assert scoring.min_dcf([1, 2, 2, 3], [0, 1, 0, 1], p_target=0.5) == pytest.approx((0.5, 1.5))
    # At p_target 0.01 rejecting everything below 3 costs 0.01 * 0.5 -> 0.005 / 0.01.
    assert scoring.min_dcf([1, 2, 2, 3], [0, 1, 0, 1]) == pytest.approx((0.5, 2.5))
    p_fa, p_miss, thresholds = scoring.det_curve([1, 2, 2, 3], [0, 1, 0, 1])
    np.testing.assert_allclose(p_fa, [1, 0.5, 0, 0])
    np.testing.assert_allclose(p_miss, [0, 0, 0.5, 1])
    np.testing.assert_allclose(thresholds, [1, 1.5, 2.5, np.nextafter(np.float32(3), 4)])


def test_separable_and_reversed_scores():
    labels = np.array([0] * 5 + [1] * 3)
    separable = np.arange(8, dtype=np.float32)
    assert scoring.eer(separable, labels) == pytest.approx((0.0, 4.5))
    assert scoring.min_dcf(separable, labels) == pytest.approx((0.0, 4.5))
    # Reversed: every target below every non-target. P_miss reaches 1 while P_fa is still 1, so
    # the curves meet at (1, 1): EER = 1. The best DCF is a trivial system's, normalised to 1.
    reversed_scores = separable[::-1].copy()
    assert scoring.eer(reversed_scores, labels)[0] == pytest.approx(1.0)
    assert scoring.eer(reversed_scores, labels)[1] == pytest.approx(2.5)
    assert scoring.min_dcf(reversed_scores, labels)[0] == pytest.approx(1.0)


def test_all_scores_tied_give_chance_level():
    value, threshold = scoring.eer(np.full(6, 0.3), [0, 1, 0, 1, 0, 0])
    assert value == pytest.approx(0.5)
    assert threshold == pytest.approx(0.3)
    assert scoring.min_dcf(np.full(6, 0.3), [0, 1, 0, 1, 0, 0])[0] == pytest.approx(1.0)


@pytest.mark.parametrize("far", [0.0, 0.01, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_threshold_at_far_is_the_lowest_admissible(far, ties):
    scores, labels = random_trials(6, ties)
    threshold = scoring.threshold_at_far(scores, labels, far)
    nontarget = scores[labels == 0]
    assert np.mean(nontarget >= np.float32(threshold)) <= far
    below = scores[scores < np.float32(threshold)]
    if below.size:  # moving down to the next distinct score would exceed the FAR
        assert np.mean(nontarget >= below.max()) > far


def test_threshold_at_far_counts_exactly():
    scores = np.arange(100, dtype=np.float32)  # 90 non-targets, 10 targets on top
    labels = (scores >= 90).astype(int)
    # 9 of 90 non-targets is exactly 10%: the threshold must accept them (float32 0.1 rounding).
    assert scoring.threshold_at_far(scores, labels, 0.1) == pytest.approx(80.5)


def test_verification_metrics_bundle():
    scores, labels = random_trials(7)
    metrics = scoring.verification_metrics(scores, labels, p_targets=(0.01, 0.05))
    assert (metrics["eer"], metrics["threshold"]) == pytest.approx(scoring.eer(scores, labels))
    for p_target in (0.01, 0.05):
        expected = scoring.min_dcf(scores, labels, p_target)
        key = f"min_dcf_{p_target:g}"
        assert (metrics[key], metrics[f"{key}_threshold"]) == pytest.approx(expected)
    assert metrics["n_target"] == labels.sum()
    assert metrics["n_nontarget"] == (labels == 0).sum()
    assert set(metrics) == {
        "eer",
        "threshold",
        "min_dcf_0.01",
        "min_dcf_0.01_threshold",
        "min_dcf_0.05",
        "min_dcf_0.05_threshold",
        "n_target",
        "n_nontarget",
    }


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 2, 1], "binary"),
        ([-1, 1, -1, 1], "binary"),
        (["a", "b", "a", "b"], "binary"),
        ([1, 1, 1, 1], "no non-target"),
        ([0, 0, 0, 0], "no target"),
        ([0, 1, 1], "same length"),
    ],
)
def test_bad_labels_raise(labels, message):
    scores = [0.1, 0.2, 0.3, 0.4]
    for metric in (scoring.eer, scoring.min_dcf, scoring.det_curve, scoring.verification_metrics):
        with pytest.raises(ValueError, match=message):
            metric(scores, labels)
    with pytest.raises(ValueError, match=message):
        scoring.threshold_at_far(scores, labels, 0.1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="NaN"):
        scoring.eer([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ValueError, match="p_target"):
        scoring.min_dcf([0.1, 0.2], [0, 1], p_target=1.0)
    with pytest.raises(ValueError, match="far"):
        scoring.threshold_at_far([0.1, 0.2], [0, 1], far=1.5)


# ---------------------------------------------------------------------------------------------
# Duration buckets
# ---------------------------------------------------------------------------------------------


def test_metrics_by_duration_buckets():
    scores, labels = random_trials(8, n=200)
    rng = np.random.default_rng(80)  # not 8: the same stream would tie durations to labels
    durations = rng.uniform(0.5, 7.9, size=200)  # nothing reaches the ">8s" bucket
    durations[:4] = [2.0, 4.0, 8.0, 1.99]  # edges belong to the bucket above them
    labels[2] = 1  # the lone ">8s" trial is a target: counts only, no metrics
    report = scoring.metrics_by_duration(scores, labels, durations)
    assert list(report) == ["<2s", "2-4s", "4-8s", ">8s"]
    bounds = {"<2s": (0, 2), "2-4s": (2, 4), "4-8s": (4, 8), ">8s": (8, np.inf)}
    for name, (low, high) in bounds.items():
        inside = (durations >= low) & (durations < high)
        assert report[name]["n_target"] == int(labels[inside].sum())
        assert report[name]["n_nontarget"] == int((labels[inside] == 0).sum())
        if name != ">8s":
            expected = scoring.verification_metrics(scores[inside], labels[inside])
            assert report[name] == pytest.approx(expected)
    assert report[">8s"]["n_target"] == 1
    assert report[">8s"]["n_nontarget"] == 0
    assert report[">8s"]["eer"] is None
    assert report[">8s"]["min_dcf_0.01"] is None
    assert set(report[">8s"]) == set(report["<2s"])


def test_metrics_by_duration_custom_edges_and_errors():
    report = scoring.metrics_by_duration([0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1], [1, 1, 5, 5], (3,))
    assert list(report) == ["<3s", ">3s"]
    assert report["<3s"]["eer"] == 0.0
    with pytest.raises(ValueError, match="edges"):
        scoring.metrics_by_duration([0.1, 0.9], [0, 1], [1, 2], edges=(4.0, 2.0))
    with pytest.raises(ValueError, match="durations"):
        scoring.metrics_by_duration([0.1, 0.9], [0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="binary"):
        scoring.metrics_by_duration([0.1, 0.9], [0, 3], [1, 2])


# ---------------------------------------------------------------------------------------------
# Embedding scores, AS-norm, identification
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embeddings():
    rng = np.random.default_rng(11)
    enroll = rng.normal(size=(23, 16)).astype(np.float32) * rng.uniform(0.5, 3, size=(23, 1))
    test = rng.normal(size=(31, 16)).astype(np.float32)
    cohort = rng.normal(size=(40, 16)).astype(np.float32)
    enroll_idx = rng.integers(0, 23, size=150)
    test_idx = rng.integers(0, 31, size=150)
    return enroll, test, cohort, enroll_idx, test_idx


def test_normalize_and_score_matrix(embeddings):
    enroll, test, *_ = embeddings
    unit = np.asarray(l2_normalize(enroll))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, unit_rows(enroll), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(l2_normalize(np.zeros((2, 4)))) == 0)  # no NaN
    matrix = np.asarray(scoring.score_matrix(enroll, test))
    np.testing.assert_allclose(matrix, unit_rows(enroll) @ unit_rows(test).T, atol=1e-6)


def test_cosine_scores_match_numpy(embeddings):
    enroll, test, _, enroll_idx, test_idx = embeddings
    scores = np.asarray(scoring.cosine_scores(enroll, test, enroll_idx, test_idx))
    e, t = enroll[enroll_idx].astype(np.float64), test[test_idx].astype(np.float64)
    expected = np.sum(e * t, axis=1) / np.linalg.norm(e, axis=1) / np.linalg.norm(t, axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_cosine_scores_reject_out_of_range_indices(embeddings):
    enroll, test, *_ = embeddings
    with pytest.raises(ValueError, match="test_idx"):
        scoring.cosine_scores(enroll, test, np.array([0, 1]), np.array([0, 31]))
    with pytest.raises(ValueError, match="same length"):
        scoring.cosine_scores(enroll, test, np.array([0, 1]), np.array([0]))


def reference_as_norm(scores, enroll, test, enroll_idx, test_idx, cohort, top_n):
    """Per-trial AS-norm1 straight from the definition, in float64."""
    enroll, test, cohort = (unit_rows(x.astype(np.float64)) for x in (enroll, test, cohort))
    out = []
    for score, e, t in zip(scores, enroll_idx, test_idx, strict=True):
        top_e = np.sort(cohort @ enroll[e])[::-1][:top_n]
        top_t = np.sort(cohort @ test[t])[::-1][:top_n]
        out.append(
            0.5 * ((score - top_e.mean()) / top_e.std() + (score - top_t.mean()) / top_t.std())
        )
    return np.array(out)


@pytest.mark.parametrize(("top_n", "batch_size"), [(10, 1024), (10, 7), (1000, 1024)])
def test_as_norm_matches_numpy(embeddings, top_n, batch_size):
    enroll, test, cohort, enroll_idx, test_idx = embeddings
    raw = scoring.cosine_scores(enroll, test, enroll_idx, test_idx)
    normed = scoring.as_norm(
        raw, enroll, test, enroll_idx, test_idx, cohort, top_n, batch_size=batch_size
    )
    # top_n beyond the cohort size (40) is clipped to the whole cohort.
    expected = reference_as_norm(
        np.asarray(raw), enroll, test, enroll_idx, test_idx, cohort, min(top_n, 40)
    )
    np.testing.assert_allclose(np.asarray(normed), expected, rtol=1e-4, atol=1e-4)


def test_as_norm_rejects_degenerate_cohort(embeddings):
    enroll, test, cohort, enroll_idx, test_idx = embeddings
    raw = np.zeros(len(enroll_idx), np.float32)
    with pytest.raises(ValueError, match="at least 2"):
        scoring.as_norm(raw, enroll, test, enroll_idx, test_idx, cohort[:1])
    with pytest.raises(ValueError, match="scores"):
        scoring.as_norm(raw[:-1], enroll, test, enroll_idx, test_idx, cohort)


def test_speaker_means(embeddings):
    enroll, *_ = embeddings
    labels = np.array(["s1", "s0", "s1", "s2"] * 5 + ["s0", "s0", "s3"])
    speakers, means = scoring.speaker_means(enroll, labels)
    assert speakers.tolist() == ["s0", "s1", "s2", "s3"]
    unit = unit_rows(enroll)
    for speaker, mean in zip(speakers, np.asarray(means), strict=True):
        expected = unit[labels == speaker].mean(axis=0)
        np.testing.assert_allclose(mean, expected / np.linalg.norm(expected), atol=1e-6)


def brute_force_top_k(enroll, enroll_labels, test, test_labels, k):
    speakers = sorted(set(enroll_labels))
    unit = unit_rows(enroll.astype(np.float64))
    models = unit_rows(np.stack([unit[enroll_labels == s].mean(axis=0) for s in speakers]))
    scores = unit_rows(test.astype(np.float64)) @ models.T
    hits = 0
    for row, label in zip(scores, test_labels, strict=True):
        true_score = row[speakers.index(label)]
        hits += np.sum(row > true_score) < k
    return hits / len(test_labels)


def test_identification_accuracy_matches_brute_force():
    rng = np.random.default_rng(12)
    centres = rng.normal(size=(12, 8))
    enroll_labels = np.repeat(np.arange(12), 3)
    test_labels = rng.integers(0, 12, size=90)
    enroll = centres[enroll_labels] + 0.9 * rng.normal(size=(36, 8))
    test = centres[test_labels] + 0.9 * rng.normal(size=(90, 8))
    accuracy = scoring.identification_accuracy(
        enroll, enroll_labels, test, test_labels, ks=(1, 5, 50), batch_size=32
    )
    assert list(accuracy) == [1, 5, 50]
    for k in (1, 5):
        expected = brute_force_top_k(enroll, enroll_labels, test, test_labels, k)
        assert accuracy[k] == pytest.approx(expected)
    assert 0.2 < accuracy[1] < accuracy[5] < 1.0  # the data is neither trivial nor hopeless
    assert accuracy[50] == 1.0  # clipped to the 12 speakers


def test_identification_rejects_unknown_speakers():
    emb = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="never enrolled"):
        scoring.identification_accuracy(emb, ["a", "b", "c"], emb, ["a", "b", "z"])
    with pytest.raises(ValueError, match="positive"):
        scoring.identification_accuracy(emb, ["a", "b", "c"], emb, ["a", "b", "c"], ks=(0,))
