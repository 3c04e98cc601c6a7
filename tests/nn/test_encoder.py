"""The speaker encoder: torch equivalence of the GRU stack, padding invariance, gradients, config."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru_jax.core import config as configs
from gru_jax.nn.augment import row_keys
from gru_jax.nn.encoder import ModelConfig, SpeakerEncoder, init_params, input_width
from gru_jax.nn.gru import from_torch_gru
from gru_jax.nn.heads import LossConfig, SpeakerHead

F, H = 5, 4


@partial(jax.jit, static_argnums=1)
def embed(params: dict, cfg: ModelConfig, feats, lengths) -> jax.Array:
    return SpeakerEncoder(cfg).apply({"params": params}, feats, lengths)


def small_config(**overrides) -> ModelConfig:
    """Tiny encoder; unroll 1 keeps compile times (most of these tests' time) down."""
    base = dict(hidden=H, layers=2, attention_dim=3, embedding_dim=6, unroll=1)
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
        init_params(cfg, F, jax.random.key(0)), from_torch_gru(state, 2, bidirectional)
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


@pytest.mark.parametrize("overrides", INVARIANCE_CONFIGS, ids=lambda o: o["pooling"])
def test_embedding_does_not_depend_on_padding_or_batch(overrides):
    cfg = small_config(**overrides)
    params = init_params(cfg, F, jax.random.key(0))
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
    params = {"encoder": init_params(cfg, F, jax.random.key(0))}
    for i, (kind, head) in enumerate(heads.items()):
        params[kind] = head.init(jax.random.key(i + 1), emb0, labels, 0.2)["params"]

    def total_loss(p):
        emb = SpeakerEncoder(cfg).apply(
            {"params": p["encoder"]}, feats, lengths, train=True,
            keys=row_keys(jax.random.key(9), 0, len(labels)),
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
    params = init_params(cfg32, F, jax.random.key(5))
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


def test_model_config_rejects_values_of_the_wrong_type():
    with pytest.raises(configs.ConfigError, match=r"ModelConfig.residual must be true or false"):
        ModelConfig(residual="False")  # a string from a command line is not a bool


def test_model_config_round_trips_through_json_dict():
    cfg = ModelConfig(bidirectional=True, pooling="attentive", compute_dtype="bfloat16")
    assert configs.from_dict(ModelConfig, configs.to_dict(cfg)) == cfg


def test_input_width_comes_from_the_parameters():
    params = init_params(small_config(), 7, jax.random.key(0))
    assert input_width(params) == 7
    with pytest.raises(ValueError, match="feats"):
        embed(params, small_config(), np.zeros((2, 5)), np.array([5, 5]))


def test_training_mode_dropout_needs_row_keys():
    cfg = small_config(dropout=0.3)
    params = init_params(cfg, F, jax.random.key(0))
    feats, lengths = jnp.ones((2, 5, F)), jnp.array([5, 3])
    with pytest.raises(ValueError, match="one PRNG key per row"):
        SpeakerEncoder(cfg).apply({"params": params}, feats, lengths, train=True)
    keys = row_keys(jax.random.key(1), 0, 2)
    a = SpeakerEncoder(cfg).apply({"params": params}, feats, lengths, train=True, keys=keys)
    b = SpeakerEncoder(cfg).apply(
        {"params": params}, feats[1:], lengths[1:], train=True, keys=keys[1:]
    )
    np.testing.assert_allclose(a[1:], b, atol=1e-6)  # a row's mask does not depend on its batch
    assert not np.allclose(a, embed(params, cfg, feats, lengths), atol=1e-3)
