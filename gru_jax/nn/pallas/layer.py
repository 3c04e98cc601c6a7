"""One GRU direction with the recurrences as kernels and everything else as large matmuls.

Forward: gi = x @ W_ih + b_ih for all steps in one GEMM, then the forward recurrence kernel
(hs: the state after every step). Backward: the gates of every step are recomputed from the
saved states in two GEMMs (the previous state of step t is hs[t-1]), their per-step gradient
factors are computed for all steps at once (`gates.gate_coefficients`), the backward recurrence
kernel carries dh through time, and the weight, bias and input gradients are single GEMMs and sums
over all steps. Only hs is saved between the passes ([T, B, H] float32).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from gru_jax.nn.gates import gate_coefficients, gate_values, times_gates
from gru_jax.nn.pallas import recurrence

F32 = jnp.float32


def _project(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """x [T, B, K] @ w [K, N] + b for all steps at once, inputs in w's dtype, float32 out."""
    return jnp.einsum("tbk,kn->tbn", x.astype(w.dtype), w, preferred_element_type=F32) + b


def _contract_steps(a: jax.Array, b: jax.Array, dtype) -> jax.Array:
    """sum over t, b of a[t, b, :]^T b[t, b, :]: a weight gradient over all steps."""
    return jnp.einsum("tbk,tbn->kn", a.astype(dtype), b.astype(dtype), preferred_element_type=F32)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def fused_gru(
    compute_dtype: jnp.dtype,
    kernels: recurrence.Kernels,
    weights: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    h0: jax.Array,
    x: jax.Array,
    lengths: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """(ys [T, B, H] zero past each length, h_last [B, H]) of time-major x [T, B, F];
    weights = (w_ih, b_ih, w_hh, b_hh) in torch layout (see `gru.gru_layer`)."""
    (ys, h_last), _ = _fused_fwd(compute_dtype, kernels, weights, h0, x, lengths)
    return ys, h_last


def _valid(lengths: jax.Array, n_steps: int) -> jax.Array:
    return jnp.arange(n_steps)[:, None] < lengths[None, :]


def _fused_fwd(compute_dtype, kernels, weights, h0, x, lengths):
    w_ih, b_ih, w_hh, b_hh = weights
    gi = _project(x, w_ih.astype(compute_dtype), b_ih)
    hs = recurrence.forward(gi, w_hh.astype(compute_dtype), b_hh, h0, lengths, kernels)
    ys = jnp.where(_valid(lengths, x.shape[0])[..., None], hs, 0.0)
    return (ys, hs[-1]), (weights, h0, x, lengths, hs)


def _fused_bwd(compute_dtype, kernels, residuals, cotangents):
    weights, h0, x, lengths, hs = residuals
    d_ys, d_h_last = cotangents
    w_ih, b_ih, w_hh, b_hh = weights
    cd = jnp.dtype(compute_dtype)
    valid = _valid(lengths, x.shape[0])
    h_prev = jnp.concatenate([h0[None].astype(F32), hs[:-1]])
    gi = _project(x, w_ih.astype(cd), b_ih)
    gh = _project(h_prev, w_hh.astype(cd), b_hh)
    c_in, c_hid, keep = gate_coefficients(gate_values(gi, gh), h_prev, valid)
    d = jnp.where(valid[..., None], d_ys, 0.0).astype(F32)
    u, dh0 = recurrence.backward(d, c_hid, keep, w_hh.astype(cd).T, d_h_last, kernels)
    d_gi = times_gates(u, c_in)
    d_gh = times_gates(u, c_hid)
    grads = (
        _contract_steps(x, d_gi, cd),
        d_gi.sum((0, 1)),
        _contract_steps(h_prev, d_gh, cd),
        d_gh.sum((0, 1)),
    )
    d_weights = tuple(g.astype(w.dtype) for g, w in zip(grads, weights, strict=True))
    dx = jnp.einsum("tbn,kn->tbk", d_gi.astype(cd), w_ih.astype(cd), preferred_element_type=F32)
    return d_weights, dh0.astype(h0.dtype), dx.astype(x.dtype), None


fused_gru.defvjp(_fused_fwd, _fused_bwd)
