"""Speaker classification heads and losses: softmax, AM-softmax, AAM-softmax (ArcFace), GE2E.

The margin is an argument at run time, not part of the config, so a warm-up schedule
(`margin_at`) changes it inside the jitted step without recompiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gru_jax.core.config import Config
from gru_jax.nn.functional import l2_normalize

LOSS_KINDS = ("softmax", "am", "aam", "ge2e", "ge2e+aam")
SPEAKER_BALANCED = ("ge2e", "ge2e+aam")  # the loss kinds that group a batch by speaker
SINE_FLOOR = 1e-12  # keeps d sqrt(1 - cos^2) finite at cos = +-1
GE2E_MIN_W = 1e-6  # the similarity scale w is kept positive (Wan et al. 2018)


@dataclass(frozen=True)
class LossConfig(Config):
    """How embeddings are scored against speakers.

    `easy_margin` (AAM only, as in the ArcFace code): apply the angular margin only where
    cos θ > 0 and leave other logits as they are; otherwise (the default) targets with
    θ + m > π use the monotonic fallback cos θ - m sin(m) (the `th`/`mm` trick).
    """

    kind: str = "aam"  # "softmax" | "am" | "aam" | "ge2e" | "ge2e+aam" (the two losses summed)
    scale: float = 30.0
    margin: float = 0.2
    margin_warmup_steps: int = 0  # margin ramps linearly from 0 to `margin` over these steps
    margin_warmup_start: int = 0  # step at which the ramp starts
    easy_margin: bool = False

    def validate(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"LossConfig.kind must be one of {LOSS_KINDS}, got {self.kind!r}")
        if not self.scale > 0:
            raise ValueError(f"LossConfig.scale must be > 0, got {self.scale!r}")
        if not 0 <= self.margin < math.pi / 2:
            raise ValueError(f"LossConfig.margin must be in [0, pi/2), got {self.margin!r}")
        for name in ("margin_warmup_steps", "margin_warmup_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"LossConfig.{name} must be >= 0, got {getattr(self, name)!r}")


def margin_at(step: jax.Array | int, config: LossConfig) -> jax.Array:
    """The margin at a training step: 0 before the warm-up, `margin` after it, linear between."""
    margin = jnp.asarray(config.margin, jnp.float32)
    if config.margin_warmup_steps == 0:
        return margin
    progress = (jnp.asarray(step, jnp.float32) - config.margin_warmup_start) / (
        config.margin_warmup_steps
    )
    return margin * jnp.clip(progress, 0.0, 1.0)


def cosine_logits(emb: jax.Array, weight: jax.Array) -> jax.Array:
    """cos θ [B, C] between embeddings [B, E] and class weights [E, C]."""
    return l2_normalize(emb) @ l2_normalize(weight, axis=0)


def additive_margin(cos: jax.Array, labels: jax.Array, margin: jax.Array) -> jax.Array:
    """AM-softmax (CosFace): the target's cosine becomes cos θ_y - m; logits before scaling."""
    target = jax.nn.one_hot(labels, cos.shape[-1], dtype=bool)
    return jnp.where(target, cos - margin, cos)


def additive_angular_margin(
    cos: jax.Array, labels: jax.Array, margin: jax.Array, *, easy_margin: bool = False
) -> jax.Array:
    """AAM-softmax (ArcFace): the target's cosine becomes cos(θ_y + m); logits before scaling.

    cos(θ + m) = cos θ cos m - sin θ sin m avoids arccos (whose gradient blows up at ±1). Past
    θ + m > π that would rise again with θ, so (unless `easy_margin`) the target falls back to
    cos θ - m sin m there, as in the ArcFace and WeSpeaker implementations.
    """
    sine = jnp.sqrt(jnp.clip(1.0 - jnp.square(cos), SINE_FLOOR, 1.0))
    phi = cos * jnp.cos(margin) - sine * jnp.sin(margin)
    if easy_margin:
        phi = jnp.where(cos > 0, phi, cos)
    else:
        past_pi = cos <= -jnp.cos(margin)  # cos θ <= cos(π - m), i.e. θ + m >= π
        phi = jnp.where(past_pi, cos - jnp.sin(margin) * margin, phi)
    target = jax.nn.one_hot(labels, cos.shape[-1], dtype=bool)
    return jnp.where(target, phi, cos)


def ge2e_logits(emb: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """GE2E similarities [N, M, N] of utterance (j, i) to each speaker's centroid.

    Embeddings are L2-normalised first; the utterance's own speaker uses the exclusive centroid
    (mean of the other M - 1 utterances), as Wan et al. 2018 prescribe for stable training.
    """
    n_speakers, n_utts, _ = emb.shape
    if n_utts < 2:
        raise ValueError(f"GE2E needs at least 2 utterances per speaker, got {n_utts}")
    e = l2_normalize(emb)
    sums = jnp.sum(e, axis=1)
    centroids = l2_normalize(sums / n_utts)
    exclusive = l2_normalize((sums[:, None, :] - e) / (n_utts - 1))
    cos = jnp.einsum("jie,ke->jik", e, centroids)
    own = jnp.sum(e * exclusive, axis=-1)
    is_own = jnp.eye(n_speakers, dtype=bool)[:, None, :]
    cos = jnp.where(is_own, own[..., None], cos)
    return jnp.maximum(w, GE2E_MIN_W) * cos + b


def _ge2e_rows(emb: jax.Array, w: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """GE2E as N*M classification rows over N speakers: (logits [N*M, N], targets [N*M])."""
    n_speakers, n_utts, _ = emb.shape
    logits = ge2e_logits(emb, w, b).reshape(n_speakers * n_utts, n_speakers)
    return logits, jnp.repeat(jnp.arange(n_speakers), n_utts)


def ge2e_loss(emb: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """GE2E softmax loss (Wan et al. 2018), mean over utterances, for emb [N, M, E].

    b shifts every logit of a row equally, so this loss does not depend on it (zero gradient);
    it is kept for parity with the paper's similarity S = w cos + b.
    """
    return _cross_entropy(*_ge2e_rows(emb, w, b))


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


class SpeakerHead(nn.Module):
    """Classifier weights [E, n_classes] (softmax adds a bias) or GE2E's scalars w, b (or both).

    Returns (mean loss, {"accuracy"}). Accuracy is the argmax of the margin-free logits: what the
    classifier predicts at test time. For GE2E the batch must be speaker-major, `speakers_per_batch`
    speakers of equal count; labels and `n_classes` are then unused. GE2E+AAM adds the two losses:
    the classifier sees every training speaker, GE2E compares the batch's utterances directly.
    """

    n_classes: int
    config: LossConfig
    speakers_per_batch: int | None = None

    @nn.compact
    def __call__(
        self, emb: jax.Array, labels: jax.Array, margin: jax.Array | float
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        cfg = self.config
        if cfg.kind == "ge2e":
            return self._ge2e(emb)
        weight = self.param(
            "weight", nn.initializers.xavier_uniform(), (emb.shape[-1], self.n_classes)
        )
        if cfg.kind == "softmax":
            bias = self.param("bias", nn.initializers.zeros_init(), (self.n_classes,))
            logits = emb @ weight + bias
            return _cross_entropy(logits, labels), {"accuracy": _accuracy(logits, labels)}
        cos = cosine_logits(emb, weight)
        if cfg.kind == "am":
            with_margin = additive_margin(cos, labels, margin)
        else:
            with_margin = additive_angular_margin(cos, labels, margin, easy_margin=cfg.easy_margin)
        loss = _cross_entropy(cfg.scale * with_margin, labels)
        if cfg.kind == "ge2e+aam":  # a metric-learning term beside the classifier's
            loss = loss + self._ge2e(emb)[0]
        return loss, {"accuracy": _accuracy(cos, labels)}

    def _ge2e(self, emb: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        n_speakers = self.speakers_per_batch
        batch = emb.shape[0]
        if not n_speakers or batch % n_speakers:
            raise ValueError(
                f"GE2E needs speakers_per_batch dividing the batch, got {n_speakers} for {batch}"
            )
        w = self.param("w", nn.initializers.constant(10.0), ())
        b = self.param("b", nn.initializers.constant(-5.0), ())
        grouped = emb.reshape(n_speakers, batch // n_speakers, emb.shape[-1])
        logits, targets = _ge2e_rows(grouped, w, b)
        return _cross_entropy(logits, targets), {"accuracy": _accuracy(logits, targets)}
