"""Speaker verification and identification scoring on embedding matrices.

Scoring takes embeddings and integer index arrays, never file paths: readers and CLIs own the files.
The heavy parts (cosine scores, cohort top-N, operating points, top-k) are jitted JAX so they run on
the accelerator; results come back as Python floats or NumPy arrays for reports.

Operating-point conventions, shared by `eer`, `min_dcf`, `det_curve` and `threshold_at_far`:
a trial is accepted when ``score >= threshold``. Operating points exist only between distinct
scores, so tied trials are always accepted or rejected together. An interior threshold is the
midpoint of two neighbouring distinct scores; the extremes are the lowest score (accept all) and
the next float above the highest score (reject all). Scores are compared in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from itertools import pairwise

import jax
import jax.numpy as jnp
import numpy as np

from gru_jax.nn.functional import l2_normalize

_STD_EPS = 1e-6  # a cohort whose top-N scores are all equal must not divide by zero
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes: scores feed thresholds


# ---------------------------------------------------------------------------------------------
# Embedding scores
# ---------------------------------------------------------------------------------------------


@jax.jit
def score_matrix(a: jax.typing.ArrayLike, b: jax.typing.ArrayLike) -> jax.Array:
    """Cosine similarity of every row of `a` with every row of `b`: [Na, Nb]."""
    return jnp.matmul(l2_normalize(a), l2_normalize(b).T, precision=_HIGHEST)


def cosine_scores(
    enroll_emb: jax.typing.ArrayLike,
    test_emb: jax.typing.ArrayLike,
    enroll_idx: np.ndarray,
    test_idx: np.ndarray,
) -> jax.Array:
    """Cosine score of each trial (enroll_emb[enroll_idx[i]], test_emb[test_idx[i]]): [n_trials].

    Each embedding is normalised once, then rows are gathered per trial.
    """
    enroll_idx, test_idx = _trial_indices(enroll_idx, test_idx, len(enroll_emb), len(test_emb))
    return _cosine_scores(enroll_emb, test_emb, enroll_idx, test_idx)


@jax.jit
def _cosine_scores(enroll_emb, test_emb, enroll_idx, test_idx) -> jax.Array:
    return jnp.sum(l2_normalize(enroll_emb)[enroll_idx] * l2_normalize(test_emb)[test_idx], axis=-1)


def as_norm(
    scores: jax.typing.ArrayLike,
    enroll_emb: jax.typing.ArrayLike,
    test_emb: jax.typing.ArrayLike,
    enroll_idx: np.ndarray,
    test_idx: np.ndarray,
    cohort_emb: jax.typing.ArrayLike,
    top_n: int = 300,
    *,
    batch_size: int = 1024,
) -> jax.Array:
    """Adaptive symmetric score normalisation (Matejka et al. 2017, AS-norm1).

    For each enroll and test embedding, the mean and (population) std of its `top_n` highest cosine
    scores against the cohort; then s' = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t).
    Statistics are computed once per embedding row (not per trial), `batch_size` rows at a time so
    memory stays at batch_size x cohort size. `top_n` is clipped to the cohort size and must be
    at least 2 (one score has no spread).
    """
    scores = jnp.asarray(scores, jnp.float32)
    enroll_idx, test_idx = _trial_indices(enroll_idx, test_idx, len(enroll_emb), len(test_emb))
    if scores.shape != enroll_idx.shape:
        raise ValueError(f"as_norm: {scores.shape[0]} scores for {enroll_idx.shape[0]} trials")
    top_n = min(int(top_n), len(cohort_emb))
    if top_n < 2:
        raise ValueError(
            f"as_norm: top_n={top_n} after clipping to the cohort size ({len(cohort_emb)}); "
            "need at least 2 cohort scores per embedding"
        )
    _check_positive("batch_size", batch_size)
    return _as_norm(
        scores, enroll_emb, test_emb, enroll_idx, test_idx, cohort_emb, top_n, batch_size
    )


@partial(jax.jit, static_argnames=("top_n", "batch_size"))
def _as_norm(
    scores, enroll_emb, test_emb, enroll_idx, test_idx, cohort_emb, top_n, batch_size
) -> jax.Array:
    cohort = l2_normalize(cohort_emb)
    mean_e, std_e = _top_cohort_stats(l2_normalize(enroll_emb), cohort, top_n, batch_size)
    mean_t, std_t = _top_cohort_stats(l2_normalize(test_emb), cohort, top_n, batch_size)
    z_enroll = (scores - mean_e[enroll_idx]) / std_e[enroll_idx]
    z_test = (scores - mean_t[test_idx]) / std_t[test_idx]
    return 0.5 * (z_enroll + z_test)


def _top_cohort_stats(
    unit_emb: jax.Array, unit_cohort: jax.Array, top_n: int, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    def row_stats(row: jax.Array) -> tuple[jax.Array, jax.Array]:
        top, _ = jax.lax.top_k(jnp.matmul(unit_cohort, row, precision=_HIGHEST), top_n)
        return top.mean(), top.std()

    mean, std = jax.lax.map(row_stats, unit_emb, batch_size=batch_size)
    return mean, jnp.maximum(std, _STD_EPS)


# ---------------------------------------------------------------------------------------------
# Identification
# ---------------------------------------------------------------------------------------------


def speaker_means(emb: jax.typing.ArrayLike, labels: Sequence) -> tuple[np.ndarray, jax.Array]:
    """Speaker models from 1..N utterances: (sorted unique labels, unit-norm mean embeddings).

    Utterances are L2-normalised first so long and short enrolments weigh the same.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(emb):
        raise ValueError(f"speaker_means: {len(emb)} embeddings but labels of shape {labels.shape}")
    if len(labels) == 0:
        raise ValueError("speaker_means: no embeddings")
    speakers, speaker_index = np.unique(labels, return_inverse=True)
    return speakers, _speaker_means(emb, speaker_index.astype(np.int32), len(speakers))


@partial(jax.jit, static_argnames="n_speakers")
def _speaker_means(emb, speaker_index, n_speakers: int) -> jax.Array:
    # The sum points the same way as the mean; normalising it gives the renormalised mean.
    sums = jax.ops.segment_sum(l2_normalize(emb), speaker_index, num_segments=n_speakers)
    return l2_normalize(sums)


def identification_accuracy(
    enroll_emb: jax.typing.ArrayLike,
    enroll_labels: Sequence,
    test_emb: jax.typing.ArrayLike,
    test_labels: Sequence,
    ks: Sequence[int] = (1, 5),
    *,
    batch_size: int = 1024,
) -> dict[int, float]:
    """Closed-set top-k accuracy of test utterances against per-speaker mean models.

    A k larger than the number of speakers is clipped (its accuracy is then 1.0); keys of the
    result are the requested ks. Every test label must be an enrolled speaker.
    """
    speakers, models = speaker_means(enroll_emb, enroll_labels)
    test_labels = np.asarray(test_labels)
    if test_labels.ndim != 1 or len(test_labels) != len(test_emb) or len(test_labels) == 0:
        raise ValueError(
            f"identification_accuracy: {len(test_emb)} test embeddings but test labels of "
            f"shape {test_labels.shape} (need one label per embedding, at least one)"
        )
    if not ks:
        raise ValueError("identification_accuracy: ks is empty")
    for k in ks:
        _check_positive("k", k)
    _check_positive("batch_size", batch_size)
    position = {label: i for i, label in enumerate(speakers.tolist())}
    unknown = sorted({str(label) for label in test_labels.tolist() if label not in position})
    if unknown:
        raise ValueError(
            f"identification_accuracy: {len(unknown)} test speaker(s) never enrolled "
            f"(closed-set identification), e.g. {unknown[:5]}"
        )
    true_index = np.array([position[label] for label in test_labels.tolist()], np.int32)
    k_max = min(max(ks), len(speakers))
    ranks = np.asarray(_true_speaker_rank(test_emb, models, true_index, k_max, batch_size))
    return {k: float(np.mean(ranks < min(k, len(speakers)))) for k in ks}


@partial(jax.jit, static_argnames=("k", "batch_size"))
def _true_speaker_rank(test_emb, unit_models, true_index, k: int, batch_size: int) -> jax.Array:
    """Position of the true speaker in each test row's top-k list, or k when it is not there."""

    def rank(row_and_truth: tuple[jax.Array, jax.Array]) -> jax.Array:
        row, truth = row_and_truth
        _, top = jax.lax.top_k(jnp.matmul(unit_models, row, precision=_HIGHEST), k)
        hit = top == truth
        return jnp.where(hit.any(), jnp.argmax(hit), k)

    return jax.lax.map(rank, (l2_normalize(test_emb), true_index), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Verification metrics
# ---------------------------------------------------------------------------------------------


def eer(scores: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> tuple[float, float]:
    """Equal error rate in [0, 1] and the threshold there.

    The EER is where the straight segment between the last operating point with P_miss < P_fa and
    the first with P_miss >= P_fa crosses P_miss = P_fa (the linear interpolation of the usual
    `brentq(interp1d(fpr, tpr))` recipe); the threshold is interpolated with the same weight.
    Perfectly separated scores give 0.0; perfectly reversed ones give 1.0.
    """
    value, threshold = _eer_from_points(*_points(scores, labels))
    return float(value), float(threshold)


def min_dcf(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE) and the threshold that reaches it.

    DCF = c_miss * P_miss * p_target + c_fa * P_fa * (1 - p_target), minimised over operating
    points and divided by min(c_miss * p_target, c_fa * (1 - p_target)), the cost of the better
    trivial system; the lowest threshold wins ties.
    """
    _check_cost_model(p_target, c_miss, c_fa)
    value, threshold = _min_dcf_from_points(*_points(scores, labels), p_target, c_miss, c_fa)
    return float(value), float(threshold)


def det_curve(
    scores: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_fa, p_miss, thresholds) at every distinct operating point, by increasing threshold."""
    misses, false_accepts, thresholds = (np.asarray(a) for a in _points(scores, labels))
    distinct = np.concatenate([[True], thresholds[1:] != thresholds[:-1]])
    p_miss = misses[distinct] / misses[-1]
    p_fa = false_accepts[distinct] / false_accepts[0]
    return p_fa, p_miss, thresholds[distinct]


def threshold_at_far(
    scores: jax.typing.ArrayLike, labels: jax.typing.ArrayLike, far: float
) -> float:
    """Lowest threshold whose false-accept rate is at most `far` (so the fewest misses)."""
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"threshold_at_far: far={far} is not in [0, 1]")
    _, false_accepts, thresholds = _points(scores, labels)
    n_nontarget = int(false_accepts[0])
    # Compare counts, not float32 rates: a rate exactly equal to `far` must pass.
    allowed = math.floor(far * n_nontarget + 1e-9)
    return float(_first_threshold_within(false_accepts, thresholds, allowed))


@jax.jit
def _first_threshold_within(false_accepts, thresholds, allowed) -> jax.Array:
    # false_accepts never increases with the threshold, and the reject-all point has none.
    return thresholds[jnp.argmax(false_accepts <= allowed)]


def verification_metrics(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    p_targets: Sequence[float] = (0.01, 0.05),
) -> dict:
    """EER, its threshold, minDCF (c_miss = c_fa = 1) per p_target, and the trial counts.

    Flat keys for JSON reports and tables: "eer", "threshold", "min_dcf_<p>" and
    "min_dcf_<p>_threshold" (p formatted with `:g`), "n_target", "n_nontarget".
    """
    for p_target in p_targets:
        _check_cost_model(p_target, 1.0, 1.0)
    misses, false_accepts, thresholds = _points(scores, labels)
    eer_value, eer_threshold = _eer_from_points(misses, false_accepts, thresholds)
    result = {"eer": float(eer_value), "threshold": float(eer_threshold)}
    for p_target in p_targets:
        dcf, dcf_threshold = _min_dcf_from_points(
            misses, false_accepts, thresholds, p_target, 1.0, 1.0
        )
        value_key, threshold_key = _dcf_keys(p_target)
        result[value_key] = float(dcf)
        result[threshold_key] = float(dcf_threshold)
    result["n_target"] = int(misses[-1])
    result["n_nontarget"] = int(false_accepts[0])
    return result


def _dcf_keys(p_target: float) -> tuple[str, str]:
    return f"min_dcf_{p_target:g}", f"min_dcf_{p_target:g}_threshold"


def metrics_by_duration(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    durations_s: jax.typing.ArrayLike,
    edges: Sequence[float] = (2.0, 4.0, 8.0),
    p_targets: Sequence[float] = (0.01, 0.05),
) -> dict[str, dict]:
    """`verification_metrics` per bucket of the test utterance's duration.

    Buckets are named "<2s", "2-4s", "4-8s", ">8s" for the default edges; a lower edge belongs to
    its bucket (exactly 2.0 s is "2-4s"). A bucket without target or without non-target trials
    keeps its counts and has None for every metric.
    """
    scores, is_target = _checked_trials(scores, labels)
    durations_s = np.asarray(durations_s, np.float64)
    if durations_s.shape != scores.shape:
        raise ValueError(
            f"metrics_by_duration: durations of shape {durations_s.shape} for "
            f"{scores.shape[0]} trials"
        )
    if not np.all(np.isfinite(durations_s)) or np.any(durations_s < 0):
        raise ValueError("metrics_by_duration: durations must be finite and non-negative")
    edges = [float(edge) for edge in edges]
    if not edges or any(b <= a for a, b in pairwise(edges)) or edges[0] <= 0:
        raise ValueError(f"metrics_by_duration: edges {edges} must be positive and increasing")
    bucket = np.digitize(durations_s, edges)
    report = {}
    for index, name in enumerate(_bucket_names(edges)):
        in_bucket = bucket == index
        bucket_scores, bucket_targets = scores[in_bucket], is_target[in_bucket]
        n_target = int(bucket_targets.sum())
        n_nontarget = int(in_bucket.sum()) - n_target
        if n_target and n_nontarget:
            report[name] = verification_metrics(bucket_scores, bucket_targets, p_targets)
        else:
            metric_keys = ["eer", "threshold", *(key for p in p_targets for key in _dcf_keys(p))]
            report[name] = dict.fromkeys(metric_keys)
            report[name].update(n_target=n_target, n_nontarget=n_nontarget)
    return report


def _bucket_names(edges: Sequence[float]) -> list[str]:
    inner = [f"{a:g}-{b:g}s" for a, b in pairwise(edges)]
    return [f"<{edges[0]:g}s", *inner, f">{edges[-1]:g}s"]


def _points(scores, labels) -> tuple[jax.Array, jax.Array, jax.Array]:
    scores, is_target = _checked_trials(scores, labels)
    n_target = int(is_target.sum())
    if n_target == 0 or n_target == len(is_target):
        missing = "target" if n_target == 0 else "non-target"
        raise ValueError(f"verification metrics need both classes; there are no {missing} trials")
    return _operating_points(scores, is_target)


@jax.jit
def _operating_points(scores, is_target) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Miss and false-accept counts and thresholds at n + 1 points, by increasing threshold.

    Point j rejects the trials with score below threshold j. Points that would split a group of
    tied scores are moved to the end of the group, so they repeat the group's point: every
    returned point is achievable and repeats are harmless to the searches below.
    """
    order = jnp.argsort(scores)
    sorted_scores = scores[order]
    zero = jnp.zeros(1, jnp.int32)
    ends_of_ties = jnp.searchsorted(sorted_scores, sorted_scores, side="right").astype(jnp.int32)
    n_rejected = jnp.concatenate([zero, ends_of_ties])
    targets_rejected = jnp.concatenate([zero, jnp.cumsum(is_target[order], dtype=jnp.int32)])
    misses = targets_rejected[n_rejected]
    n_nontarget = scores.shape[0] - targets_rejected[-1]
    false_accepts = n_nontarget - (n_rejected - misses)
    return misses, false_accepts, _thresholds(sorted_scores, n_rejected)


def _thresholds(sorted_scores: jax.Array, n_rejected: jax.Array) -> jax.Array:
    n = sorted_scores.shape[0]
    highest_rejected = sorted_scores[jnp.maximum(n_rejected - 1, 0)]
    lowest_accepted = sorted_scores[jnp.minimum(n_rejected, n - 1)]
    just_above = jnp.nextafter(highest_rejected, jnp.float32(jnp.inf))
    # Clipped so that rounding of the midpoint can never land on the rejected score.
    midpoint = jnp.clip(0.5 * highest_rejected + 0.5 * lowest_accepted, just_above, lowest_accepted)
    return jnp.where(
        n_rejected == 0, lowest_accepted, jnp.where(n_rejected == n, just_above, midpoint)
    )


@jax.jit
def _eer_from_points(misses, false_accepts, thresholds) -> tuple[jax.Array, jax.Array]:
    p_miss = misses / misses[-1]
    p_fa = false_accepts / false_accepts[0]
    gap = p_miss - p_fa  # non-decreasing from -1 (accept all) to +1 (reject all)
    after = jnp.argmax(gap >= 0)  # >= 1 because gap[0] = -1
    before = after - 1
    weight = -gap[before] / (gap[after] - gap[before])
    value = p_miss[before] + weight * (p_miss[after] - p_miss[before])
    threshold = thresholds[before] + weight * (thresholds[after] - thresholds[before])
    return value, threshold


@jax.jit
def _min_dcf_from_points(
    misses, false_accepts, thresholds, p_target, c_miss, c_fa
) -> tuple[jax.Array, jax.Array]:
    p_miss = misses / misses[-1]
    p_fa = false_accepts / false_accepts[0]
    costs = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    best = jnp.argmin(costs)
    return costs[best] / jnp.minimum(c_miss * p_target, c_fa * (1.0 - p_target)), thresholds[best]


# ---------------------------------------------------------------------------------------------
# Input checks (host side: JAX gathers clamp out-of-range indices silently)
# ---------------------------------------------------------------------------------------------


def _checked_trials(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float32)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"scores {scores.shape} and labels {labels.shape} must be 1-D of the same length"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} score(s) are NaN or infinite")
    if labels.dtype != np.bool_:
        if not np.issubdtype(labels.dtype, np.number):
            raise ValueError(f"labels must be binary 0/1 or bool, got dtype {labels.dtype}")
        values = np.unique(labels)
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"labels must be binary 0/1 or bool; found values {values[:10]}")
    return scores, labels.astype(np.bool_)


def _trial_indices(
    enroll_idx, test_idx, n_enroll: int, n_test: int
) -> tuple[np.ndarray, np.ndarray]:
    enroll_idx, test_idx = np.asarray(enroll_idx), np.asarray(test_idx)
    if enroll_idx.ndim != 1 or enroll_idx.shape != test_idx.shape:
        raise ValueError(
            f"enroll_idx {enroll_idx.shape} and test_idx {test_idx.shape} must be 1-D "
            "of the same length"
        )
    for name, idx, size in (("enroll_idx", enroll_idx, n_enroll), ("test_idx", test_idx, n_test)):
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{name} must hold integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(
                f"{name} has values outside [0, {size}) (min {idx.min()}, max {idx.max()})"
            )
    return enroll_idx.astype(np.int32), test_idx.astype(np.int32)


def _check_cost_model(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target={p_target} must be in (0, 1)")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")


def _check_positive(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
