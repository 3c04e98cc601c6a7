"""GRU gate arithmetic shared by the scan and the Pallas layer: activations from preactivations,
and the per-step factors that turn a state gradient into gate gradients."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Gates(NamedTuple):
    """Per-step activations the backward pass needs: r, z, n and the hidden part of n's input."""

    r: jax.Array
    z: jax.Array
    n: jax.Array
    h_n: jax.Array  # h @ W_hn + b_hn, before r multiplies it


def gate_values(gi: jax.Array, gh: jax.Array) -> Gates:
    """Gate activations from input-gate and hidden-gate preactivations (both with their biases)."""
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    return Gates(r, z, jnp.tanh(i_n + r * h_n), h_n)


def gate_coefficients(
    gates: Gates, h_prev: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-step factors that turn u = dL/dh_t into gate gradients, for a chunk of steps at once.

    With u the gradient reaching h_t (zero weight at padded steps), the preactivation
    gradients are u * c_in (input side, [r | z | n]) and u * c_hid (hidden side, whose n part
    is scaled by r), and the gradient passed to h_{t-1} is u * keep + (u * c_hid) @ W_hh^T.
    Computing the factors over a whole chunk in one vectorised pass leaves each sequential step
    with one multiply, one matmul and one multiply-add; done per step, the same arithmetic is
    several fusions, concatenations and bias reductions on the sequential path.
    """
    r, z, n, h_n = gates
    ok = valid[..., None].astype(r.dtype)
    a_n = ok * (1.0 - z) * (1.0 - n * n)
    a_r = a_n * h_n * r * (1.0 - r)
    a_z = ok * (h_prev - n) * z * (1.0 - z)
    c_in = jnp.concatenate([a_r, a_z, a_n], axis=-1)
    c_hid = jnp.concatenate([a_r, a_z, a_n * r], axis=-1)
    keep = ok * z + (1.0 - ok)
    return c_in, c_hid, keep


def times_gates(u: jax.Array, coefficients: jax.Array) -> jax.Array:
    """u [..., H] times each gate's third of coefficients [..., 3H]."""
    split = coefficients.reshape(*coefficients.shape[:-1], 3, u.shape[-1])
    return (u[..., None, :] * split).reshape(coefficients.shape)
