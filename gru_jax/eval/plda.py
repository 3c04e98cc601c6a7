"""A two-covariance PLDA backend: Kaldi's `ivector-compute-plda` model and its closed-form scores.

Cosine scoring weighs every direction of the embedding space alike. PLDA learns from labelled
training embeddings which directions vary within a speaker (session, channel, noise) and which
between speakers, and scores a trial as the log-likelihood ratio of "same speaker" against
"different speakers" under that model. It pays off when its training speakers are many and from
the test domain; with few speakers or another domain it can score worse than cosine (measured in
the README's "Evaluate, enrol, verify, identify, export").

Embeddings are length-normalised, centred on the training mean and length-normalised again before
the model sees them (Garcia-Romero and Espy-Wilson, 2011). The model is kept in the basis that
simultaneously diagonalises both covariances (within-speaker = identity, between-speaker =
diag(psi)), where a trial's score is a sum over independent dimensions; keeping only the `dim`
largest psi is PLDA's own discriminant projection (what LDA does before Kaldi's PLDA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gru_jax.core.config import ConfigError

_RIDGE = 1e-6  # of the mean within-speaker variance: keeps a rank-deficient covariance invertible


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float64).tiny)


@dataclass(frozen=True)
class Plda:
    """A fitted model: `project` embeddings once, then score pairs or speakers against tests."""

    mean: np.ndarray  # [E] mean of the length-normalised training embeddings
    transform: np.ndarray  # [E, D] into the diagonal basis: within -> I, between -> diag(psi)
    psi: np.ndarray  # [D] between-speaker variances there, largest first

    @property
    def dim(self) -> int:
        return len(self.psi)

    @classmethod
    def fit(cls, vectors: np.ndarray, speakers: np.ndarray | list[str], dim: int = 0) -> Plda:
        """The model of training embeddings `vectors` [N, E] of `speakers` [N]; `dim` > 0 keeps
        that many most discriminative dimensions (0: all)."""
        vectors, speakers = np.asarray(vectors), np.asarray(speakers)
        if vectors.ndim != 2 or len(vectors) != len(speakers):
            raise ConfigError(
                f"PLDA needs one speaker label per embedding row; got {vectors.shape} "
                f"embeddings and {speakers.shape} labels"
            )
        width = vectors.shape[1]
        if not 0 <= dim <= width:
            raise ConfigError(f"the PLDA dimension must be in [0, {width}], got {dim}")
        names, speaker_of, counts = np.unique(speakers, return_inverse=True, return_counts=True)
        repeated = counts >= 2
        if repeated.sum() < 2:
            raise ConfigError(
                f"PLDA needs at least 2 training speakers with 2+ utterances each; got "
                f"{int(repeated.sum())} of {len(names)} speakers ({len(vectors)} utterances)"
            )
        x = _normalised(vectors)
        mean = x.mean(axis=0)
        x = _normalised(x - mean)
        centres = np.zeros((len(names), width))
        np.add.at(centres, speaker_of, x)
        centres /= counts[:, None]
        # within: deviations from their speaker's mean, over speakers heard more than once
        kept = repeated[speaker_of]
        deviations = x[kept] - centres[speaker_of[kept]]
        within = deviations.T @ deviations / (len(deviations) - repeated.sum())
        centred = centres - centres.mean(axis=0)
        between = centred.T @ centred / len(names)
        within += _RIDGE * np.trace(within) / width * np.eye(width)
        variances, basis = np.linalg.eigh(within)
        whiten = basis / np.sqrt(variances)
        psi, rotation = np.linalg.eigh(whiten.T @ between @ whiten)
        order = np.argsort(psi)[::-1][: dim or width]
        return cls(mean, whiten @ rotation[:, order], np.maximum(psi[order], 0.0))

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Embeddings [N, E] in the model's diagonal basis [N, D]."""
        return _normalised(_normalised(vectors) - self.mean) @ self.transform

    def _speaker_terms(self, n_enroll: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Per enrolment size n: the shrinkage of the enrolment mean towards the speaker
        variable's prior, and the test utterance's predictive variance given that mean."""
        n = np.asarray(n_enroll, np.float64)[..., None]
        shrink = n * self.psi / (n * self.psi + 1.0)
        return shrink, 1.0 + shrink / n

    def llr(
        self, enroll: np.ndarray, test: np.ndarray, n_enroll: np.ndarray | int = 1
    ) -> np.ndarray:
        """Log-likelihood ratios of row-aligned projected pairs [N, D]: `enroll` is the mean of
        `n_enroll` projected utterances of one speaker, `test` one utterance."""
        shrink, variance = self._speaker_terms(n_enroll)
        same = np.log(variance) + (test - shrink * enroll) ** 2 / variance
        different = np.log1p(self.psi) + test**2 / (1.0 + self.psi)
        return 0.5 * np.sum(different - same, axis=-1)

    def llr_matrix(self, test: np.ndarray, enroll: np.ndarray, n_enroll: np.ndarray) -> np.ndarray:
        """`llr` of every projected test utterance [T, D] with every enrolled speaker (mean
        [S, D] of `n_enroll` [S] utterances): [T, S], as matrix products (the squares of
        `llr` expanded), so that no [T, S, D] array is built."""
        shrink, variance = self._speaker_terms(n_enroll)
        centre = shrink * enroll
        speaker = np.sum(np.log(variance) + centre**2 / variance, axis=1)
        quadratic = (test**2) @ (1.0 / variance - 1.0 / (1.0 + self.psi)[None]).T
        return 0.5 * (
            np.sum(np.log1p(self.psi))
            - speaker[None]
            - quadratic
            + 2.0 * test @ (centre / variance).T
        )

    def trial_scores(
        self,
        enroll_emb: np.ndarray,
        test_emb: np.ndarray,
        enroll_idx: np.ndarray,
        test_idx: np.ndarray,
    ) -> np.ndarray:
        """The score of each trial (enroll_emb[enroll_idx[i]], test_emb[test_idx[i]]): [n]."""
        enroll, test = self.project(enroll_emb), self.project(test_emb)
        return self.llr(enroll[enroll_idx], test[test_idx])
