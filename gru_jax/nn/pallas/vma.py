"""Kernel outputs typed as varying over the same `shard_map` axes as their inputs.

Inside `shard_map` (the train step encodes each device's rows there) JAX checks which mesh axes
each value varies over, and a `pallas_call` must say it of its outputs: they vary as the kernel's
inputs do. Outside `shard_map` nothing varies and plain shapes are used.
"""

from __future__ import annotations

import inspect

import jax

_PARAMETERS = inspect.signature(jax.ShapeDtypeStruct).parameters


def out_struct(shape: tuple[int, ...], dtype, like: jax.Array) -> jax.ShapeDtypeStruct:
    aval = jax.typeof(like)
    axis_type = getattr(aval, "manual_axis_type", None)
    varying = axis_type.varying if axis_type is not None else getattr(aval, "vma", frozenset())
    if not varying:
        return jax.ShapeDtypeStruct(shape, dtype)
    if "manual_axis_type" in _PARAMETERS:
        return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=axis_type)
    return jax.ShapeDtypeStruct(shape, dtype, vma=varying)  # the older spelling
