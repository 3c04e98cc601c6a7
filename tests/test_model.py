"""GRU scan vs a float64 NumPy reference and torch.nn.GRU; encoder invariances; SpecAugment."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru_jax import configs
from gru_jax.losses import LossConfig, SpeakerHead
from gru_jax.model import (
    PROJECTIONS,
    STD_EPSILON,
    GRUWeights,
    ModelConfig,
    SpeakerEncoder,
    embed,
    from_torch_gru,
    gru_cell,
    gru_layer,
    init_params,
    spec_augment,
    weighted_mean_std,
)

F, H = 5, 4
LENGTHS = np.array([7, 4, 0, 1])  # ragged, with an empty and a one-frame sequence


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_step(p: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n_hidden = h.shape[-1]
    gi = x @ p["w_ih"] + p["b_ih"]
    gh = h @ p["w_hh"] + p["b_hh"]
    r = _sigmoid(gi[:n_hidden] + gh[:n_hidden])
    z = _sigmoid(gi[n_hidden : 2 * n_hidden] + gh[n_hidden : 2 * n_hidden])
    n = np.tanh(gi[2 * n_hidden :] + r * gh[2 * n_hidden :])
    return (1 - z) * n + z * h


def reference_gru(params, x, lengths, reverse):
    """The PyTorch equations, one sequence and one step at a time, in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    n_steps, batch, _ = x.shape
    n_hidden = p["w_hh"].shape[0]
    ys = np.zeros((n_steps, batch, n_hidden))
    h_last = np.zeros((batch, n_hidden))
    for b in range(batch):
        h = np.zeros(n_hidden)
        steps = range(lengths[b])
        for t in reversed(steps) if reverse else steps:
            h = reference_step(p, x[t, b], h)
            ys[t, b] = h
        h_last[b] = h
    return ys, h_last


def gru_params(seed: int, n_in: int = F) -> dict[str, jax.Array]:
    return GRUWeights(n_in, H).init(jax.random.key(seed))["params"]


def test_gru_weights_use_torch_init_bounds():
    params = gru_params(0)
    assert {k: v.shape for k, v in params.items()} == {
        "w_ih": (F, 3 * H),
        "w_hh": (H, 3 * H),
        "b_ih": (3 * H,),
        "b_hh": (3 * H,),
    }
    values = np.concatenate([np.ravel(v) for v in params.values()])
    bound = 1 / np.sqrt(H)
    assert np.all(np.abs(values) <= bound) and np.abs(values).max() > 0.8 * bound


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_gru_layer_matches_numpy_reference(projection, reverse):
    params = gru_params(1)
    x = jax.random.normal(jax.random.key(2), (7, len(LENGTHS), F))  # padding holds noise too
    run = jax.jit(partial(gru_layer, reverse=reverse, projection=projection, chunk=3, unroll=2))
    ys, h_last = run(params, x, jnp.asarray(LENGTHS))
    ref_ys, ref_h = reference_gru(params, x, LENGTHS, reverse)
    np.testing.assert_allclose(ys, ref_ys, atol=1e-5)
    np.testing.assert_allclose(h_last, ref_h, atol=1e-5)
    assert ys.dtype == jnp.float32
    assert np.all(np.asarray(ys)[4:, 1] == 0) and np.all(np.asarray(ys)[:, 2] == 0)


def test_gru_layer_initial_state_continues_a_sequence():
    params = gru_params(3)
    x = jax.random.normal(jax.random.key(4), (7, 2, F))
    full = jnp.full((2,), 7)
    ys, h_last = gru_layer(params, x, full)
    ys_a, h_a = gru_layer(params, x[:3], full)
    ys_b, h_b = gru_layer(params, x[3:], full, initial_state=h_a)
    np.testing.assert_allclose(jnp.concatenate([ys_a, ys_b]), ys, atol=1e-6)
    np.testing.assert_allclose(h_b, h_last, atol=1e-6)


def test_gru_cell_is_one_reference_step():
    params = gru_params(5)
    x = jax.random.normal(jax.random.key(6), (3, F))
    h = jax.random.normal(jax.random.key(7), (3, H))
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    got = gru_cell(params, x, h)
    want = [reference_step(p64, np.asarray(x[b]), np.asarray(h[b])) for b in range(3)]
    np.testing.assert_allclose(got, np.stack(want), atol=1e-6)


def test_bf16_compute_is_close_to_f32():
    params = gru_params(7)
    x = jax.random.normal(jax.random.key(8), (6, 3, F))
    lengths = jnp.array([6, 2, 5])
    ys32, h32 = gru_layer(params, x, lengths)
    ys16, h16 = gru_layer(params, x, lengths, compute_dtype=jnp.bfloat16)
    assert ys16.dtype == h16.dtype == jnp.float32
    np.testing.assert_allclose(ys16, ys32, atol=2e-2)
    np.testing.assert_allclose(h16, h32, atol=2e-2)
    assert not np.array_equal(ys16, ys32)  # the bf16 path really rounds its matmul inputs


def test_from_torch_gru_transposes_and_names_every_direction():
    rng = np.random.default_rng(0)
    state = {}
    for layer in range(2):
        for suffix in ("", "_reverse"):
            n_in = F if layer == 0 else 2 * H
            state[f"weight_ih_l{layer}{suffix}"] = rng.normal(size=(3 * H, n_in))
            state[f"weight_hh_l{layer}{suffix}"] = rng.normal(size=(3 * H, H))
            state[f"bias_ih_l{layer}{suffix}"] = rng.normal(size=3 * H)
            state[f"bias_hh_l{layer}{suffix}"] = rng.normal(size=3 * H)
    ours = from_torch_gru(state, num_layers=2, bidirectional=True)
    assert set(ours) == {"layer_0", "layer_1"} and set(ours["layer_1"]) == {"fwd", "bwd"}
    as_f32 = lambda key: state[key].astype(np.float32)  # float64 in, float32 out
    np.testing.assert_array_equal(ours["layer_1"]["bwd"]["w_ih"], as_f32("weight_ih_l1_reverse").T)
    np.testing.assert_array_equal(ours["layer_0"]["fwd"]["w_hh"], as_f32("weight_hh_l0").T)
    np.testing.assert_array_equal(ours["layer_0"]["fwd"]["b_hh"], as_f32("bias_hh_l0"))
    del state["bias_hh_l1_reverse"]
    with pytest.raises(KeyError, match="bias_hh_l1_reverse"):
        from_torch_gru(state, num_layers=2, bidirectional=True)


# --------------------------------------------------------------------------------------------
# Encoder


def small_config(**overrides) -> ModelConfig:
    """Tiny encoder; unroll 1 keeps compile times (most of these tests' time) down."""
    base = dict(n_features=F, hidden=H, layers=2, attention_dim=3, embedding_dim=6, unroll=1)
    return ModelConfig(**{**base, **overrides})


def with_gru_weights(params: dict, gru: dict) -> dict:
    """Encoder params with the GRU directions replaced by converted torch weights."""
    merged = dict(params)
    for layer, directions in gru.items():
        converted = {d: {k: jnp.asarray(v) for k, v in w.items()} for d, w in directions.items()}
        merged[layer] = {**params[layer], **converted}
    return merged


@partial(jax.jit, static_argnums=0)
def encoder_frames(cfg: ModelConfig, params: dict, feats, lengths) -> jax.Array:
    """The last GRU layer's output, batch-major [B, T, D]."""
    _, state = SpeakerEncoder(cfg).apply(
        {"params": params}, feats, lengths, mutable=["intermediates"]
    )
    return jnp.swapaxes(state["intermediates"]["frames"][0], 0, 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_gru_stack_matches_torch(bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    gru = torch.nn.GRU(F, H, num_layers=2, batch_first=True, bidirectional=bidirectional)
    state = {k: v.detach().numpy() for k, v in gru.state_dict().items()}
    cfg = small_config(bidirectional=bidirectional, pooling="mean", projection="chunk", chunk=4)
    params = with_gru_weights(
        init_params(cfg, jax.random.key(0)), from_torch_gru(state, 2, bidirectional)
    )
    feats = np.random.default_rng(1).normal(size=(3, 6, F)).astype(np.float32)
    lengths = np.array([6, 2, 4])
    with torch.no_grad():
        want_full, _ = gru(torch.from_numpy(feats))
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.from_numpy(feats), torch.from_numpy(lengths), batch_first=True,
            enforce_sorted=False,
        )  # fmt: skip
        out, _ = gru(packed)
        want_ragged, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    got_full = encoder_frames(cfg, params, feats, np.full(3, 6))
    got_ragged = encoder_frames(cfg, params, feats, lengths)
    np.testing.assert_allclose(got_full, want_full.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_ragged, want_ragged.numpy(), atol=1e-5)


INVARIANCE_CONFIGS = [
    dict(pooling="mean", dropout=0.5),  # dropout is off in evaluation
    dict(pooling="stats", bidirectional=True, projection="hoisted"),
    dict(pooling="attentive", bidirectional=True, residual=True, layer_norm=True, chunk=3),
]


@pytest.mark.parametrize("time_axis", [0, 1])
def test_weighted_mean_std_matches_two_pass_numpy(time_axis):
    """One-pass statistics agree with the two-pass formula, also for frames far from zero."""
    rng = np.random.default_rng(3)
    frames = 3.0 + 0.1 * rng.standard_normal((50, 6, 8))  # [T, B, D]: mean 3, std 0.1
    frames[:, 0] = rng.uniform(-1, 1, (50, 8))  # and one GRU-like (|x| < 1) sequence
    weights = rng.uniform(0, 1, (50, 6)) * (rng.uniform(size=(50, 6)) < 0.7)
    weights /= weights.sum(0, keepdims=True)
    mean = (weights[..., None] * frames).sum(0)
    var = (weights[..., None] * (frames - mean) ** 2).sum(0)
    if time_axis == 1:
        frames, weights = frames.transpose(1, 0, 2), weights.T
    got_mean, got_std = weighted_mean_std(
        jnp.asarray(frames, jnp.float32), jnp.asarray(weights, jnp.float32), time_axis=time_axis
    )
    np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_std, np.sqrt(var + STD_EPSILON), rtol=1e-5)  # one-pass: 2e-4


def test_weighted_mean_std_gradient_matches_the_plain_formula():
    """Cutting the mean's path in the variance loses nothing when the weights sum to 1."""
    rng = np.random.default_rng(4)
    frames = jnp.asarray(rng.standard_normal((20, 3, 5)), jnp.float32)
    scores = jnp.asarray(rng.standard_normal((20, 3)), jnp.float32)
    probe = jnp.asarray(rng.standard_normal((3, 10)), jnp.float32)

    def plain(frames, weights):
        mean = jnp.sum(weights[..., None] * frames, axis=0)
        var = jnp.sum(weights[..., None] * jnp.square(frames - mean), axis=0)
        return mean, jnp.sqrt(var + STD_EPSILON)

    def loss(stats, frames, scores):  # attention-like weights that depend on the inputs
        weights = jax.nn.softmax(scores + frames.sum(-1), axis=0)
        return jnp.sum(jnp.concatenate(stats(frames, weights), axis=-1) * probe)

    ours = jax.grad(partial(loss, weighted_mean_std), argnums=(0, 1))(frames, scores)
    reference = jax.grad(partial(loss, plain), argnums=(0, 1))(frames, scores)
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides", INVARIANCE_CONFIGS, ids=lambda o: o["pooling"])
def test_embedding_does_not_depend_on_padding_or_batch(overrides):
    cfg = small_config(**overrides)
    params = init_params(cfg, jax.random.key(0))
    rng = np.random.default_rng(2)
    batch = rng.normal(size=(4, 7, F)).astype(np.float32)  # noise in the padding, not zeros
    lengths = np.array([7, 3, 0, 1])
    batch[3, 0] = batch[2, 0]
    alone = np.full((1, 14, F), np.nan, np.float32)  # even non-finite padding is ignored
    alone[0, :3] = batch[1, :3]
    in_batch = embed(params, cfg, batch, lengths)
    by_itself = embed(params, cfg, alone, np.array([3]))
    np.testing.assert_allclose(by_itself[0], in_batch[1], atol=1e-5)
    np.testing.assert_allclose(in_batch[2], in_batch[3], atol=1e-6)  # length 0 counts as 1
    assert np.all(np.isfinite(in_batch)) and not np.allclose(in_batch[0], in_batch[1])


def test_gradients_reach_every_parameter():
    cfg = small_config(
        pooling="attentive", bidirectional=True, residual=True, layer_norm=True, dropout=0.2
    )
    speakers, per_speaker = 3, 2
    heads = {
        kind: SpeakerHead(speakers, LossConfig(kind=kind), speakers_per_batch=speakers)
        for kind in ("softmax", "am", "aam", "ge2e")
    }
    rng = np.random.default_rng(4)
    feats = jnp.asarray(rng.normal(size=(speakers * per_speaker, 5, F)), jnp.float32)
    lengths = jnp.array([5, 3, 4, 5, 2, 1])
    labels = jnp.repeat(jnp.arange(speakers), per_speaker)
    emb0 = jnp.zeros((speakers * per_speaker, cfg.embedding_dim))
    params = {"encoder": init_params(cfg, jax.random.key(0))}
    for i, (kind, head) in enumerate(heads.items()):
        params[kind] = head.init(jax.random.key(i + 1), emb0, labels, 0.2)["params"]

    def total_loss(p):
        emb = SpeakerEncoder(cfg).apply(
            {"params": p["encoder"]}, feats, lengths, train=True,
            rngs={"dropout": jax.random.key(9)},
        )  # fmt: skip
        losses = [h.apply({"params": p[k]}, emb, labels, 0.2)[0] for k, h in heads.items()]
        return sum(losses)

    grads = jax.jit(jax.grad(total_loss))(params)
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert len(leaves) == 32
    for path, g in leaves:
        name = jax.tree_util.keystr(path)
        assert np.all(np.isfinite(g)), name
        if name == "['ge2e']['b']":
            assert abs(float(g)) < 1e-5  # softmax over a row ignores a shared offset
        else:
            assert np.any(np.asarray(g) != 0), name


def test_bf16_encoder_is_close_to_f32():
    cfg32 = small_config(layers=1, pooling="stats")
    cfg16 = dataclasses.replace(cfg32, compute_dtype="bfloat16")
    params = init_params(cfg32, jax.random.key(5))
    feats = np.random.default_rng(6).normal(size=(2, 6, F)).astype(np.float32)
    lengths = np.array([6, 4])
    emb32, emb16 = embed(params, cfg32, feats, lengths), embed(params, cfg16, feats, lengths)
    assert emb16.dtype == jnp.float32
    np.testing.assert_allclose(emb16, emb32, atol=3e-2 * float(jnp.abs(emb32).max()))
    assert not np.array_equal(emb16, emb32)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(projection="fused"), "projection"),
        (dict(pooling="max"), "pooling"),
        (dict(compute_dtype="float16"), "compute_dtype"),
        (dict(hidden=0), "hidden"),
        (dict(chunk=2.5), "chunk"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_model_config_rejects_bad_values(overrides, field):
    with pytest.raises(ValueError, match=f"ModelConfig.{field}"):
        ModelConfig(**overrides)


def test_model_config_round_trips_through_json_dict():
    cfg = ModelConfig(bidirectional=True, pooling="attentive", compute_dtype="bfloat16")
    assert configs.from_dict(ModelConfig, configs.to_dict(cfg)) == cfg


# --------------------------------------------------------------------------------------------
# SpecAugment


def _runs(mask: np.ndarray) -> int:
    """Number of maximal runs of True in a 1-D bool array."""
    return int(np.sum(np.diff(np.concatenate([[0], mask.astype(int)])) == 1))


def test_spec_augment_masks_within_lengths_and_bounds():
    time_masks, max_time, freq_masks, max_freq = 2, 4, 2, 3
    lengths = np.array([30, 30, 9, 1, 0])
    feats = np.ones((len(lengths), 30, 12), np.float32)
    augment = jax.jit(
        partial(spec_augment, time_masks=time_masks, max_time=max_time,
                freq_masks=freq_masks, max_freq=max_freq)
    )  # fmt: skip
    outputs = [np.asarray(augment(jax.random.key(seed), feats, lengths)) for seed in range(12)]
    for out in outputs:
        for b, length in enumerate(lengths):
            zero = out[b] == 0
            assert not zero[length:].any(), "padding frames must stay untouched"
            frames = zero[:length].all(axis=1)
            assert _runs(frames) <= time_masks and frames.sum() <= time_masks * max_time
            kept = zero[:length][~frames]
            if len(kept):
                bins = kept.all(axis=0)
                assert _runs(bins) <= freq_masks and bins.sum() <= freq_masks * max_freq
                np.testing.assert_array_equal(kept, np.broadcast_to(bins, kept.shape))
    masked = np.stack(outputs) == 0
    assert masked[:, :2].any(axis=(2, 3)).all(), "full-length utterances get masked"
    assert any(not np.array_equal(out[0], out[1]) for out in outputs), "masks are per utterance"


def test_spec_augment_is_deterministic_per_key():
    feats = jnp.asarray(np.random.default_rng(7).normal(size=(2, 20, 8)), jnp.float32)
    lengths = jnp.array([20, 12])
    a = spec_augment(jax.random.key(1), feats, lengths)
    np.testing.assert_array_equal(a, spec_augment(jax.random.key(1), feats, lengths))
    assert not np.array_equal(a, spec_augment(jax.random.key(2), feats, lengths))
