"""The two sequential parts of a GRU layer, as contracts a kernel implements.

Everything else in a layer (the input projection, gate recomputation, weight and input
gradients) is large matmuls and elementwise work that XLA does well over all steps at once; only
these two loops carry a dependency from step to step:

- forward: hs_t = GRU(gi_t, hs_{t-1}) for valid steps, hs_t = hs_{t-1} past each length,
  from gi = x @ W_ih + b_ih [T, B, 3H], W_hh [H, 3H], b_hh, h0 and lengths;
- backward: u_t = dh_t + d_t and dh_{t-1} = u_t * keep_t + (u_t * c_hid_t) @ W_hh^T, in reverse
  time from dh_{T-1} = dh_last, where d is the outputs' cotangent (zero past each length) and
  c_hid, keep the per-step factors of `gru._gate_coefficients`.

`forward`/`backward` run the kernel of the platform the computation is lowered for (Triton on
CUDA, Mosaic on TPU) and the `lax.scan` references below elsewhere, chosen at lowering time
(`lax.platform_dependent`), so one jitted function serves every platform. On CUDA the reference
also stands in where `gpu.plan` finds no tiling worth running (float32; shapes that do not fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from gru_jax.nn.pallas import gpu, tpu

F32 = jnp.float32


def _dot(a: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.dot(a.astype(w.dtype), w, preferred_element_type=F32)


def forward_reference(
    gi: jax.Array, w_hh: jax.Array, b_hh: jax.Array, h0: jax.Array, lengths: jax.Array
) -> jax.Array:
    """The forward recurrence as a `lax.scan`: hs [T, B, H], held past each length."""
    hidden = w_hh.shape[0]

    def step(h, xs):
        gi_t, t = xs
        gh = _dot(h, w_hh) + b_hh
        r = jax.nn.sigmoid(gi_t[:, :hidden] + gh[:, :hidden])
        z = jax.nn.sigmoid(gi_t[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = jnp.tanh(gi_t[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = jnp.where((t < lengths)[:, None], n + z * (h - n), h)
        return h, h

    _, hs = lax.scan(step, h0.astype(F32), (gi.astype(F32), jnp.arange(gi.shape[0])))
    return hs


def backward_reference(
    d: jax.Array, c_hid: jax.Array, keep: jax.Array, w_hh_t: jax.Array, dh_last: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The backward recurrence as a reverse `lax.scan`: (u [T, B, H], dh0 [B, H])."""

    def step(dh, xs):
        d_t, c_t, keep_t = xs
        u = dh + d_t
        v = jnp.tile(u, 3) * c_t
        return u * keep_t + _dot(v, w_hh_t), u

    dh0, u = lax.scan(step, dh_last.astype(F32), (d, c_hid, keep), reverse=True)
    return u, dh0


@dataclass(frozen=True)
class Kernels:
    """Which implementation runs where: `interpret` ("gpu" or "tpu") runs that kernel in Pallas'
    interpreter on every platform (for testing on a CPU); otherwise each platform gets its own
    kernel when it takes the shape, and the scan reference when it does not."""

    interpret: str | None = None
    gpu_tiles: gpu.GpuTiles | None = None
    tpu_tiles: tpu.TpuTiles | None = None


def forward(
    gi: jax.Array,
    w_hh: jax.Array,
    b_hh: jax.Array,
    h0: jax.Array,
    lengths: jax.Array,
    kernels: Kernels = Kernels(),
) -> jax.Array:
    args = (gi, w_hh, b_hh, h0, lengths)
    if kernels.interpret == "gpu":
        return gpu.forward(*args, tiles=kernels.gpu_tiles, interpret=True)
    if kernels.interpret == "tpu":
        return tpu.forward(*args, tiles=kernels.tpu_tiles, interpret=True)
    batch, hidden = h0.shape
    branches = {}
    tiles = kernels.gpu_tiles or gpu.plan(batch, hidden, w_hh.dtype, pass_="forward")
    if tiles is not None:
        branches["cuda"] = lambda *a: gpu.forward(*a, tiles=tiles)
    branches["tpu"] = lambda *a: tpu.forward(*a, tiles=kernels.tpu_tiles)
    return lax.platform_dependent(*args, default=forward_reference, **branches)


def backward(
    d: jax.Array,
    c_hid: jax.Array,
    keep: jax.Array,
    w_hh_t: jax.Array,
    dh_last: jax.Array,
    kernels: Kernels = Kernels(),
) -> tuple[jax.Array, jax.Array]:
    args = (d, c_hid, keep, w_hh_t, dh_last)
    if kernels.interpret == "gpu":
        return gpu.backward(*args, tiles=kernels.gpu_tiles, interpret=True)
    if kernels.interpret == "tpu":
        return tpu.backward(*args, tiles=kernels.tpu_tiles, interpret=True)
    _, batch, hidden = d.shape
    branches = {}
    tiles = kernels.gpu_tiles or gpu.plan(batch, hidden, w_hh_t.dtype, pass_="backward")
    if tiles is not None:
        branches["cuda"] = lambda *a: gpu.backward(*a, tiles=tiles)
    branches["tpu"] = lambda *a: tpu.backward(*a, tiles=kernels.tpu_tiles)
    return lax.platform_dependent(*args, default=backward_reference, **branches)
