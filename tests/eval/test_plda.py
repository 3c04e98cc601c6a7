"""The PLDA backend: its fit against the covariances it models, its scores against explicit
Gaussian likelihoods, and that it discounts within-speaker variation cosine cannot."""

import numpy as np
import pytest

from gru_jax.core.config import ConfigError
from gru_jax.eval import metrics as scoring
from gru_jax.eval.plda import Plda


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def speakers_with_nuisance(rng, n_speakers, per_speaker, width=16, nuisance=3):
    """Speaker offsets in every direction; within-speaker variation mostly in `nuisance` of them
    (a channel), larger than the speaker differences there."""
    centres = rng.normal(0.0, 1.0, (n_speakers, width))
    scale = np.full(width, 0.3)
    scale[:nuisance] = 3.0
    labels = np.repeat(np.arange(n_speakers), per_speaker)
    vectors = 4.0 * np.eye(width)[width - 1] + centres[labels]
    vectors = vectors + rng.normal(0.0, 1.0, (len(labels), width)) * scale
    return vectors, np.array([f"spk{i:04d}" for i in labels])


def log_gaussian(x, covariance):
    sign, logdet = np.linalg.slogdet(covariance)
    assert sign > 0
    return -0.5 * (logdet + x @ np.linalg.solve(covariance, x) + len(x) * np.log(2 * np.pi))


def test_fit_diagonalises_the_within_and_between_speaker_covariances():
    rng = np.random.default_rng(0)
    vectors, speakers = speakers_with_nuisance(rng, 200, 6)
    plda = Plda.fit(vectors, speakers)

    x = unit(unit(vectors) - unit(vectors).mean(axis=0))
    names, index = np.unique(speakers, return_inverse=True)
    centres = np.stack([x[index == i].mean(axis=0) for i in range(len(names))])
    within = np.cov((x - centres[index]).T, bias=True) * len(x) / (len(x) - len(names))
    between = np.cov(centres.T, bias=True)
    t = plda.transform
    np.testing.assert_allclose(t.T @ within @ t, np.eye(16), atol=1e-4)
    np.testing.assert_allclose(t.T @ between @ t, np.diag(plda.psi), atol=1e-4)
    assert np.all(np.diff(plda.psi) <= 0)

    smaller = Plda.fit(vectors, speakers, dim=5)
    assert smaller.dim == 5
    np.testing.assert_allclose(smaller.psi, plda.psi[:5])


@pytest.mark.parametrize("n_enroll", [1, 3])
def test_scores_are_the_likelihood_ratio_of_the_two_covariance_model(n_enroll):
    """In the diagonal basis, same speaker: x_i = s + e_i with s ~ N(0, diag(psi)), e_i ~ N(0, I),
    jointly Gaussian; different speakers: independent. The closed form must equal the ratio of
    those densities, which for several enrolment utterances depends only on their mean."""
    rng = np.random.default_rng(1)
    dim = 4
    psi = np.array([5.0, 2.0, 0.5, 0.1])
    plda = Plda(mean=np.zeros(dim), transform=np.eye(dim), psi=psi)
    n = n_enroll + 1
    joint = np.kron(np.ones((n, n)), np.diag(psi)) + np.eye(n * dim)
    single = np.kron(np.ones((n_enroll, n_enroll)), np.diag(psi)) + np.eye(n_enroll * dim)
    for _ in range(5):
        enroll = rng.normal(0.0, 2.0, (n_enroll, dim))
        test = rng.normal(0.0, 2.0, dim)
        expected = (
            log_gaussian(np.concatenate([*enroll, test]), joint)
            - log_gaussian(enroll.ravel(), single)
            - log_gaussian(test, np.diag(psi) + np.eye(dim))
        )
        got = plda.llr(enroll.mean(axis=0)[None], test[None], n_enroll)
        np.testing.assert_allclose(got, [expected], rtol=1e-10)


def test_plda_discounts_a_channel_direction_that_cosine_cannot():
    rng = np.random.default_rng(2)
    train, train_speakers = speakers_with_nuisance(rng, 300, 8)
    plda = Plda.fit(train, train_speakers)

    test, test_speakers = speakers_with_nuisance(rng, 40, 4)  # unseen speakers
    pairs = np.array([(i, j) for i in range(len(test)) for j in range(i + 1, len(test))])
    labels = (test_speakers[pairs[:, 0]] == test_speakers[pairs[:, 1]]).astype(np.int32)
    cosine = np.asarray(scoring.cosine_scores(test, test, pairs[:, 0], pairs[:, 1]))
    llr = plda.trial_scores(test, test, pairs[:, 0], pairs[:, 1])
    cosine_eer, plda_eer = scoring.eer(cosine, labels)[0], scoring.eer(llr, labels)[0]
    assert plda_eer < 0.5 * cosine_eer
    assert cosine_eer > 0.05  # the nuisance does hurt cosine


def test_fit_refuses_what_it_cannot_model():
    vectors = np.random.default_rng(3).normal(size=(6, 4))
    with pytest.raises(ConfigError, match="2 training speakers with 2\\+ utterances"):
        Plda.fit(vectors, ["a", "a", "b", "c", "d", "e"])
    with pytest.raises(ConfigError, match="one speaker label per embedding"):
        Plda.fit(vectors, ["a", "a", "b"])
    with pytest.raises(ConfigError, match="dimension must be in \\[0, 4\\]"):
        Plda.fit(vectors, ["a", "a", "b", "b", "c", "c"], dim=5)


def test_the_score_matrix_is_every_pair_of_llr():
    rng = np.random.default_rng(4)
    vectors, speakers = speakers_with_nuisance(rng, 50, 5)
    plda = Plda.fit(vectors, speakers, dim=10)
    test = plda.project(rng.normal(size=(7, 16)))
    models = rng.normal(size=(4, 10))
    counts = np.array([1, 2, 5, 30])
    pairs = [
        [plda.llr(models[s][None], test[t][None], counts[s])[0] for s in range(4)] for t in range(7)
    ]
    np.testing.assert_allclose(plda.llr_matrix(test, models, counts), pairs, rtol=1e-9)
