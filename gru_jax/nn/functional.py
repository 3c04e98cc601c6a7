"""Small numerical helpers shared by the loss heads and scoring."""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORM_EPSILON = 1e-12  # as torch.nn.functional.normalize: a zero vector stays zero, not NaN


def l2_normalize(x: jax.typing.ArrayLike, axis: int = -1) -> jax.Array:
    """`x` scaled to unit L2 norm along `axis` (float32 or wider)."""
    x = jnp.asarray(x)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    norm_sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(norm_sq, NORM_EPSILON**2))
