"""The GRU layer against a NumPy reference of PyTorch's equations, and torch weight import."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru_jax.nn.encoder import GRUWeights
from gru_jax.nn.gru import PROJECTIONS, from_torch_gru, gru_cell, gru_layer

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
