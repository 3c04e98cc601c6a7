"""The hand-written GRU gradient (`backward="custom"`) against `jax.grad` of the plain scan."""

from __future__ import annotations

import dataclasses
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from gru_jax.nn.encoder import GRUWeights, ModelConfig, SpeakerEncoder, init_params
from gru_jax.nn.gru import PROJECTIONS, gru_layer

F, H = 5, 4
LENGTHS = np.array([7, 4, 0, 1, 6])  # ragged, with an empty and a one-frame sequence
N_STEPS = 7  # not a multiple of the gradient chunks used below


def layer_inputs(seed: int, dtype=jnp.float32):
    """Parameters, inputs, initial state and output cotangents of one layer, all random."""
    keys = jax.random.split(jax.random.key(seed), 5)
    params = GRUWeights(F, H).init(keys[0])["params"]
    params = {k: v.astype(dtype) for k, v in params.items()}
    batch = len(LENGTHS)
    x = jax.random.normal(keys[1], (N_STEPS, batch, F), dtype)
    h0 = 0.5 * jax.random.normal(keys[2], (batch, H), dtype)
    d_ys = jax.random.normal(keys[3], (N_STEPS, batch, H), dtype)  # nonzero on padding too
    d_h = jax.random.normal(keys[4], (batch, H), dtype)
    return params, x, h0, d_ys, d_h


@cache  # the autodiff references are shared between tests
def layer_grads(backward: str, seed: int = 0, dtype=jnp.float32, **options):
    """Gradients of <ys, d_ys> + <h_last, d_h> w.r.t. params, x and the initial state."""
    params, x, h0, d_ys, d_h = layer_inputs(seed, dtype)

    def objective(params, x, h0):
        ys, h_last = gru_layer(
            params, x, jnp.asarray(LENGTHS), initial_state=h0, backward=backward, **options
        )
        return jnp.sum(ys * d_ys) + jnp.sum(h_last * d_h)

    return jax.jit(jax.grad(objective, argnums=(0, 1, 2)))(params, x, h0)


def assert_trees_close(got, want, rtol: float) -> None:
    """Every leaf within rtol of the largest entry of its reference."""
    for path, a, b in zip(
        jax.tree_util.tree_leaves_with_path(want),
        jax.tree_util.tree_leaves(got),
        jax.tree_util.tree_leaves(want),
        strict=True,
    ):
        scale = float(jnp.max(jnp.abs(b)))
        assert scale > 0, jax.tree_util.keystr(path[0])
        err = float(jnp.max(jnp.abs(a - b)))
        assert err <= rtol * scale, f"{jax.tree_util.keystr(path[0])}: {err:.3g} vs {scale:.3g}"


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_custom_gradient_matches_autodiff(projection, reverse):
    options = dict(reverse=reverse, projection=projection, chunk=3, unroll=1)
    want = layer_grads("autodiff", **options)
    got = layer_grads("custom", grad_chunk=3, **options)
    assert_trees_close(got, want, rtol=1e-6)
    d_x, d_h0 = got[1], got[2]
    np.testing.assert_array_equal(d_x[:, 2], 0)  # an empty sequence takes no gradient...
    np.testing.assert_array_equal(d_x[4:, 1], 0)  # ... nor do padding frames
    assert np.all(np.asarray(d_h0[2]) != 0)  # but its state passes the h_last gradient through


@pytest.mark.parametrize("grad_chunk, remat", [(1, False), (8, False), (2, True), (8, True)])
def test_custom_gradient_does_not_depend_on_chunking_or_remat(grad_chunk, remat):
    want = layer_grads("autodiff", unroll=1)  # chunk 8 > T: a single, padded chunk
    got = layer_grads("custom", unroll=1, grad_chunk=grad_chunk, remat=remat)
    assert_trees_close(got, want, rtol=1e-6)


def test_custom_gradient_matches_autodiff_in_float64():
    with jax.enable_x64(True):
        options = dict(reverse=True, unroll=2, compute_dtype=jnp.float64, dtype=jnp.float64)
        want = layer_grads("autodiff", seed=2, **options)
        got = layer_grads("custom", seed=2, grad_chunk=3, **options)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(got))
        assert_trees_close(got, want, rtol=1e-12)


def test_custom_gradient_in_bfloat16_is_close_to_float32():
    want = layer_grads("autodiff", seed=3)
    got = layer_grads("custom", seed=3, compute_dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(got))
    assert_trees_close(got, want, rtol=5e-2)
    assert not np.allclose(got[0]["w_hh"], want[0]["w_hh"], rtol=1e-6, atol=0)  # really rounded


def test_custom_backward_is_the_one_differentiated():
    params, x, *_ = layer_inputs(0)
    lengths = jnp.asarray(LENGTHS)

    def jaxpr_of(backward: str) -> str:
        return str(jax.make_jaxpr(partial(gru_layer, backward=backward))(params, x, lengths))

    assert "custom_vjp_call" in jaxpr_of("custom")
    assert "custom_vjp_call" not in jaxpr_of("autodiff")


def test_custom_gradient_inside_shard_map_is_summed_over_devices():
    n_devices = len(jax.devices())  # 4 on CPU, see conftest.py
    if n_devices < 2:
        pytest.skip("needs several devices")
    mesh = jax.make_mesh((n_devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    params, *_ = layer_inputs(5)
    lengths = jnp.asarray(np.resize(LENGTHS, 2 * n_devices))
    x = jax.random.normal(jax.random.key(6), (N_STEPS, len(lengths), F))
    d_ys = jax.random.normal(jax.random.key(7), (N_STEPS, len(lengths), H))

    def objective(params, x, lengths, d_ys):
        ys, _ = gru_layer(params, x, lengths, grad_chunk=3)
        return jnp.sum(ys * d_ys)

    def per_device(params, x, lengths, d_ys):  # params replicated: JAX sums their gradients
        return jax.grad(objective)(params, x, lengths, d_ys)

    sharded = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(P(), P(None, "data"), P("data"), P(None, "data")),
        out_specs=P(),
    )
    want = jax.jit(jax.grad(objective))(params, x, lengths, d_ys)
    assert_trees_close(jax.jit(sharded)(params, x, lengths, d_ys), want, rtol=1e-6)


def test_encoder_gradients_match_between_backwards():
    base = ModelConfig(
        hidden=H, layers=1, bidirectional=True, residual=True, unroll=1,
        pooling="stats", embedding_dim=3, backward="autodiff",
    )  # fmt: skip
    custom = dataclasses.replace(base, backward="custom", grad_chunk=2)
    params = init_params(base, F, jax.random.key(0))
    feats = jax.random.normal(jax.random.key(1), (len(LENGTHS), N_STEPS, F))
    lengths = jnp.asarray(LENGTHS)

    @partial(jax.jit, static_argnums=0)
    def grads(cfg, params):
        loss = lambda p: jnp.sum(jnp.sin(SpeakerEncoder(cfg).apply({"params": p}, feats, lengths)))
        return jax.grad(loss)(params)

    assert_trees_close(grads(custom, params), grads(base, params), rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(backward="reverse"), "ModelConfig.backward"),
        (dict(grad_chunk=0), "ModelConfig.grad_chunk"),
        (dict(remat=1), "ModelConfig.remat"),
        (dict(remat=True, backward="autodiff"), "remat needs backward='custom'"),
    ],
)
def test_model_config_rejects_bad_backward_options(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


def test_gru_layer_rejects_bad_backward_options():
    params, x, *_ = layer_inputs(0)
    lengths = jnp.asarray(LENGTHS)
    with pytest.raises(ValueError, match="backward must be one of"):
        gru_layer(params, x, lengths, backward="numeric")
    with pytest.raises(ValueError, match="remat=True needs"):
        gru_layer(params, x, lengths, backward="autodiff", remat=True)
