"""Margin heads and GE2E against NumPy formulas; warm-up schedule; accuracy; gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from gru_jax.nn.heads import (
    LossConfig,
    SpeakerHead,
    additive_angular_margin,
    additive_margin,
    ge2e_loss,
    margin_at,
)

E, C = 6, 5


def np_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    rows = np.arange(len(labels))
    return float(np.mean(logsumexp(logits, axis=-1) - logits[rows, labels]))


def np_aam(cos: np.ndarray, labels: np.ndarray, m: float, easy: bool) -> np.ndarray:
    """cos(θ + m) on the target through arccos; the ArcFace fallbacks where it is not used."""
    out = cos.astype(np.float64).copy()
    for i, y in enumerate(labels):
        c = out[i, y]
        theta = np.arccos(c)
        if easy:
            out[i, y] = np.cos(theta + m) if c > 0 else c
        else:
            out[i, y] = np.cos(theta + m) if theta + m < np.pi else c - m * np.sin(m)
    return out


def crafted_cosines() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    cos = rng.uniform(-0.9, 0.9, size=(4, C))
    labels = np.array([0, 3, 1, 4])
    cos[2, 1] = -0.995  # θ + 0.2 > π: the fallback branch
    cos[3, 4] = -0.3  # negative: easy_margin leaves it alone
    return cos, labels


@pytest.mark.parametrize("easy", [False, True])
def test_aam_logits_match_formula(easy):
    cos, labels = crafted_cosines()
    got = additive_angular_margin(jnp.asarray(cos, jnp.float32), jnp.asarray(labels), 0.2,
                                  easy_margin=easy)  # fmt: skip
    np.testing.assert_allclose(got, np_aam(cos, labels, 0.2, easy), atol=1e-6)


def test_am_logits_subtract_margin_from_target_only():
    cos, labels = crafted_cosines()
    want = cos.copy()
    want[np.arange(4), labels] -= 0.35
    np.testing.assert_allclose(additive_margin(cos, labels, 0.35), want, atol=1e-7)


def head_inputs(batch: int = 8, seed: int = 1):
    rng = np.random.default_rng(seed)
    emb = jnp.asarray(rng.normal(size=(batch, E)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, C, size=batch))
    return emb, labels


def init_head(kind: str, emb, labels, **loss_kwargs):
    head = SpeakerHead(C, LossConfig(kind=kind, **loss_kwargs))
    return head, head.init(jax.random.key(0), emb, labels, 0.0)


@pytest.mark.parametrize("kind", ["am", "aam"])
def test_margin_head_loss_matches_numpy(kind):
    emb, labels = head_inputs()
    head, variables = init_head(kind, emb, labels, scale=20.0)
    weight = np.asarray(variables["params"]["weight"], np.float64)
    cos = np_normalize(np.asarray(emb, np.float64)) @ np_normalize(weight, axis=0)
    y = np.asarray(labels)
    with_margin = np_aam(cos, y, 0.25, easy=False) if kind == "aam" else cos - 0.25 * np.eye(C)[y]
    loss, metrics = head.apply(variables, emb, labels, jnp.float32(0.25))
    np.testing.assert_allclose(loss, np_cross_entropy(20.0 * with_margin, y), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(cos.argmax(-1) == y))


def test_zero_margin_aam_and_am_are_normalised_softmax():
    emb, labels = head_inputs(seed=2)
    head, variables = init_head("aam", emb, labels)
    weight = np.asarray(variables["params"]["weight"], np.float64)
    cos = np_normalize(np.asarray(emb, np.float64)) @ np_normalize(weight, axis=0)
    want = np_cross_entropy(30.0 * cos, np.asarray(labels))
    aam_loss, _ = head.apply(variables, emb, labels, 0.0)
    am_loss, _ = SpeakerHead(C, LossConfig(kind="am")).apply(variables, emb, labels, 0.0)
    np.testing.assert_allclose(aam_loss, want, rtol=1e-5)
    np.testing.assert_allclose(am_loss, want, rtol=1e-5)
    margin_loss, _ = head.apply(variables, emb, labels, 0.2)
    assert margin_loss > aam_loss  # the margin makes the target harder


def test_softmax_head_is_plain_linear_logits():
    emb, labels = head_inputs(seed=3)
    head, variables = init_head("softmax", emb, labels)
    p = variables["params"]
    bias = jnp.arange(C, dtype=jnp.float32) / 10  # non-zero, so the bias's use is checked
    variables = {"params": {"weight": p["weight"], "bias": bias}}
    logits = np.asarray(emb, np.float64) @ np.asarray(p["weight"]) + np.asarray(bias)
    loss, metrics = head.apply(variables, emb, labels, 0.2)
    np.testing.assert_allclose(loss, np_cross_entropy(logits, np.asarray(labels)), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(logits.argmax(-1) == labels))


def np_ge2e(emb: np.ndarray, w: float, b: float) -> float:
    """Wan et al. 2018, softmax variant, written out utterance by utterance."""
    e = np_normalize(emb.astype(np.float64))
    n_speakers, n_utts, _ = e.shape
    total = 0.0
    for j in range(n_speakers):
        for i in range(n_utts):
            sims = []
            for k in range(n_speakers):
                others = (e[k].sum(0) - e[j, i]) / (n_utts - 1)  # exclusive centroid
                centroid = others if k == j else e[k].mean(0)
                sims.append(w * e[j, i] @ np_normalize(centroid) + b)
            total += logsumexp(sims) - sims[j]
    return total / (n_speakers * n_utts)


def test_ge2e_loss_matches_numpy_and_head():
    emb = np.random.default_rng(4).normal(size=(3, 4, E)).astype(np.float32)
    got = ge2e_loss(jnp.asarray(emb), jnp.float32(7.0), jnp.float32(-2.0))
    np.testing.assert_allclose(got, np_ge2e(emb, 7.0, -2.0), rtol=1e-5)
    head = SpeakerHead(0, LossConfig(kind="ge2e"), speakers_per_batch=3)
    flat = jnp.asarray(emb.reshape(12, E))
    variables = {"params": {"w": jnp.float32(7.0), "b": jnp.float32(-5.0)}}
    loss, _ = head.apply(variables, flat, jnp.zeros(12, jnp.int32), 0.0)
    np.testing.assert_allclose(loss, got, rtol=1e-6)  # b does not change the softmax loss


def test_ge2e_plus_aam_is_the_sum_of_the_two_losses():
    emb, labels = head_inputs(batch=6, seed=8)
    both = SpeakerHead(C, LossConfig(kind="ge2e+aam"), speakers_per_batch=3)
    params = both.init(jax.random.key(0), emb, labels, 0.2)["params"]
    assert set(params) == {"weight", "w", "b"}
    loss, metrics = both.apply({"params": params}, emb, labels, 0.2)
    aam, aam_metrics = SpeakerHead(C, LossConfig(kind="aam")).apply(
        {"params": {"weight": params["weight"]}}, emb, labels, 0.2
    )
    grouped = jnp.reshape(emb, (3, 2, -1))
    np.testing.assert_allclose(loss, aam + ge2e_loss(grouped, params["w"], params["b"]), rtol=1e-6)
    assert float(metrics["accuracy"]) == float(aam_metrics["accuracy"])  # the classifier's


def test_ge2e_head_rejects_uneven_batches():
    head = SpeakerHead(0, LossConfig(kind="ge2e"), speakers_per_batch=4)
    with pytest.raises(ValueError, match="speakers_per_batch"):
        head.init(jax.random.key(0), jnp.ones((6, E)), jnp.zeros(6, jnp.int32), 0.0)


def test_margin_warmup_ramp():
    cfg = LossConfig(margin=0.3, margin_warmup_steps=100, margin_warmup_start=50)
    at = jax.jit(margin_at, static_argnums=1)
    got = [float(at(jnp.int32(step), cfg)) for step in (0, 50, 100, 150, 10_000)]
    np.testing.assert_allclose(got, [0.0, 0.0, 0.15, 0.3, 0.3], atol=1e-7)
    assert float(margin_at(0, LossConfig(margin=0.3))) == pytest.approx(0.3)


def test_accuracy_on_crafted_batch():
    eye = jnp.eye(3, dtype=jnp.float32)
    emb = eye[jnp.array([0, 1, 0, 2])]
    labels = jnp.array([0, 1, 2, 0])  # the first two are right
    for kind in ("softmax", "am", "aam"):
        params = {"weight": 5.0 * eye}
        if kind == "softmax":
            params["bias"] = jnp.zeros(3)
        head = SpeakerHead(3, LossConfig(kind=kind))
        _, metrics = head.apply({"params": params}, emb, labels, 0.2)
        assert float(metrics["accuracy"]) == 0.5, kind

    # GE2E, 2 speakers x 3: utterance (0, 2) points at speaker 1 and is the only miss.
    e0, e1 = np.eye(E, dtype=np.float32)[:2]
    emb = jnp.asarray(np.stack([e0, e0, e1, e1, e1, e1]))
    head = SpeakerHead(0, LossConfig(kind="ge2e"), speakers_per_batch=2)
    _, metrics = head.apply({"params": {"w": 10.0, "b": -5.0}}, emb, None, 0.0)
    assert float(metrics["accuracy"]) == pytest.approx(5 / 6)


@pytest.mark.parametrize("kind", ["softmax", "am", "aam", "ge2e", "ge2e+aam"])
def test_head_gradients_are_finite_and_nonzero(kind):
    emb, labels = head_inputs(batch=6, seed=5)
    head = SpeakerHead(C, LossConfig(kind=kind), speakers_per_batch=3)
    params = head.init(jax.random.key(0), emb, labels, 0.2)["params"]
    loss_fn = lambda p, e: head.apply({"params": p}, e, labels, 0.2)[0]
    grads, emb_grad = jax.grad(loss_fn, argnums=(0, 1))(params, emb)
    for name, g in [*grads.items(), ("emb", emb_grad)]:
        assert np.all(np.isfinite(g)), name
        if kind.startswith("ge2e") and name == "b":
            assert abs(float(g)) < 1e-6  # a shared offset leaves the softmax unchanged
        else:
            assert np.any(np.asarray(g) != 0), name


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(kind="arcface"), "kind"),
        (dict(scale=0.0), "scale"),
        (dict(margin=-0.1), "margin"),
        (dict(margin_warmup_steps=-1), "margin_warmup_steps"),
    ],
)
def test_loss_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=f"LossConfig.{field}"):
        LossConfig(**kwargs)
