"""The GRU recurrences as Pallas kernels for TPUs (Mosaic backend).

Design. The recurrent weights stay in VMEM for the whole sequence (one resident block, not
double-buffered) and each step is one MXU matmul of the batch tile's state [bt, H] with
`W_hh` [H, 3H] (bf16 inputs, float32 accumulation) plus the gate arithmetic on the VPU. The grid
is (batch tiles, time blocks): batch tiles are independent ("parallel", split over the
TensorCores of a chip that has several), time blocks run in order ("arbitrary") while the input
and output blocks of the next one are copied in the background; the state is carried between
time blocks in a VMEM scratch buffer set from h0 at the first block. The backward recurrence is
the same loop in reverse time with `W_hh^T`.

Shapes. Mosaic wants the last two dimensions of a block in multiples of (8, 128): the hidden
size is padded per gate to a multiple of 128 (the padded units have zero weights, stay zero and
are cut off again), the batch to a multiple of the batch tile (8 rows, 16 for bf16) and time to
a multiple of the time block; none of this is visible to the caller. VMEM holds `W_hh` (6H^2
bytes in bf16: 6 MiB at H=1024) plus two buffers of each streamed block; `vmem_limit_bytes` is
raised to fit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from gru_jax.nn.pallas.vma import out_struct

F32 = jnp.float32
LANES = 128
VMEM_LIMIT = 100 * 2**20


@dataclass(frozen=True)
class TpuTiles:
    """Batch rows per program (`bt`, a multiple of 8; 16 for bf16) and steps per time block."""

    bt: int = 128
    tb: int = 16


def plan(batch: int, dtype: jnp.dtype) -> TpuTiles:
    """The largest batch tile up to 128 rows that the (padded) batch fills, 16 steps a block."""
    rows = 16 if jnp.dtype(dtype).itemsize == 2 else 8
    bt = rows
    while bt < 128 and bt < batch:
        bt *= 2
    return TpuTiles(bt=bt, tb=16)


def _pad_to(a: jax.Array, axis: int, size: int, value: float = 0.0) -> jax.Array:
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - a.shape[axis])
    return jnp.pad(a, widths, constant_values=value) if size != a.shape[axis] else a


def _pad_gates(a: jax.Array, axis: int, hidden: int, padded: int) -> jax.Array:
    """Pad each of the three gate blocks along `axis` from `hidden` to `padded` entries."""
    if padded == hidden:
        return a
    shape = a.shape
    split = a.reshape(*shape[:axis], 3, hidden, *shape[axis + 1 :])
    split = _pad_to(split, axis + 1, padded)
    return split.reshape(*shape[:axis], 3 * padded, *shape[axis + 1 :])


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _precision(dtype: jnp.dtype):
    return lax.Precision.HIGHEST if jnp.dtype(dtype) == F32 else None


def _dot(a: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.dot(a.astype(w.dtype), w, preferred_element_type=F32, precision=_precision(w.dtype))


def _forward_kernel(gi_ref, w_ref, b_ref, h0_ref, len_ref, hs_ref, h_scr, *, tb: int, hidden: int):
    block = pl.program_id(1)

    @pl.when(block == 0)
    def _():
        h_scr[...] = h0_ref[...]

    lengths = len_ref[...]
    bias = b_ref[...]

    def step(s, carry):
        h = h_scr[...]
        gh = _dot(h, w_ref[...]) + bias
        gi = gi_ref[s]
        r = jax.nn.sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = jax.nn.sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
        n = jnp.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
        h = jnp.where(block * tb + s < lengths, n + z * (h - n), h)
        h_scr[...] = h
        hs_ref[s] = h
        return carry

    lax.fori_loop(0, tb, step, 0)


def _backward_kernel(
    d_ref, chid_ref, keep_ref, wt_ref, dhl_ref, u_ref, dhs_ref, dh_scr, *, tb: int, hidden: int
):
    @pl.when(pl.program_id(1) == 0)
    def _():
        dh_scr[...] = dhl_ref[...]

    def step(j, carry):
        s = tb - 1 - j
        u = dh_scr[...] + d_ref[s]
        v = jnp.concatenate([u, u, u], axis=-1) * chid_ref[s]
        dh = u * keep_ref[s] + _dot(v, wt_ref[...])
        u_ref[s] = u
        dhs_ref[s] = dh
        dh_scr[...] = dh
        return carry

    lax.fori_loop(0, tb, step, 0)


def _compiler_params(interpret: bool):
    if interpret:
        return None
    return pltpu.CompilerParams(
        dimension_semantics=("parallel", "arbitrary"), vmem_limit_bytes=VMEM_LIMIT
    )


def _interpret(interpret: bool):
    return pltpu.InterpretParams() if interpret else False


def _resident(shape: tuple[int, ...]) -> pl.BlockSpec:
    """A block that is the same for every program: loaded once, one buffer."""
    return pl.BlockSpec(shape, lambda i, j: (0,) * len(shape), pipeline_mode=pl.Buffered(1))


def forward(
    gi: jax.Array,
    w_hh: jax.Array,
    b_hh: jax.Array,
    h0: jax.Array,
    lengths: jax.Array,
    tiles: TpuTiles | None = None,
    interpret: bool = False,
) -> jax.Array:
    """hs [T, B, H] (see `recurrence.forward_reference`); W_hh's dtype is the compute dtype."""
    n_steps, batch, three_h = gi.shape
    hidden = three_h // 3
    tiles = tiles or plan(batch, w_hh.dtype)
    hp = _round_up(hidden, LANES)
    bp = _round_up(batch, tiles.bt)
    tp = _round_up(n_steps, tiles.tb)
    gi = _pad_to(_pad_to(_pad_gates(gi.astype(F32), 2, hidden, hp), 1, bp), 0, tp)
    w = _pad_to(_pad_gates(w_hh, 1, hidden, hp), 0, hp)
    b = _pad_gates(b_hh.astype(F32), 0, hidden, hp)[None, :]
    h0 = _pad_to(_pad_to(h0.astype(F32), 1, hp), 0, bp)
    lengths = _pad_to(lengths.astype(jnp.int32), 0, bp)[:, None]
    bt, tb = tiles.bt, tiles.tb
    hs = pl.pallas_call(
        functools.partial(_forward_kernel, tb=tb, hidden=hp),
        grid=(bp // bt, tp // tb),
        in_specs=[
            pl.BlockSpec((tb, bt, 3 * hp), lambda i, j: (j, i, 0)),
            _resident((hp, 3 * hp)),
            _resident((1, 3 * hp)),
            pl.BlockSpec((bt, hp), lambda i, j: (i, 0)),
            pl.BlockSpec((bt, 1), lambda i, j: (i, 0)),
        ],
        out_specs=pl.BlockSpec((tb, bt, hp), lambda i, j: (j, i, 0)),
        out_shape=out_struct((tp, bp, hp), F32, gi),
        scratch_shapes=[pltpu.VMEM((bt, hp), F32)],
        compiler_params=_compiler_params(interpret),
        interpret=_interpret(interpret),
    )(gi, w, b, h0, lengths)
    return hs[:n_steps, :batch, :hidden]


def backward(
    d: jax.Array,
    c_hid: jax.Array,
    keep: jax.Array,
    w_hh_t: jax.Array,
    dh_last: jax.Array,
    tiles: TpuTiles | None = None,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """(u [T, B, H], dh0 [B, H]) (see `recurrence.backward_reference`)."""
    n_steps, batch, hidden = d.shape
    tiles = tiles or plan(batch, w_hh_t.dtype)
    hp = _round_up(hidden, LANES)
    bp = _round_up(batch, tiles.bt)
    tp = _round_up(n_steps, tiles.tb)
    pad_rows = lambda a, value=0.0: _pad_to(_pad_to(a.astype(F32), 1, bp), 0, tp, value)
    d = pad_rows(_pad_to(d, 2, hp))
    keep = pad_rows(_pad_to(keep, 2, hp), value=1.0)  # padded steps pass dh through
    c_hid = pad_rows(_pad_gates(c_hid, 2, hidden, hp))
    wt = _pad_to(_pad_gates(w_hh_t, 0, hidden, hp), 1, hp)
    dh_last = _pad_to(_pad_to(dh_last.astype(F32), 1, hp), 0, bp)
    bt, tb = tiles.bt, tiles.tb
    n_blocks = tp // tb
    reverse = lambda i, j: (n_blocks - 1 - j, i, 0)
    u, dhs = pl.pallas_call(
        functools.partial(_backward_kernel, tb=tb, hidden=hp),
        grid=(bp // bt, n_blocks),
        in_specs=[
            pl.BlockSpec((tb, bt, hp), reverse),
            pl.BlockSpec((tb, bt, 3 * hp), reverse),
            pl.BlockSpec((tb, bt, hp), reverse),
            _resident((3 * hp, hp)),
            pl.BlockSpec((bt, hp), lambda i, j: (i, 0)),
        ],
        out_specs=[pl.BlockSpec((tb, bt, hp), reverse), pl.BlockSpec((tb, bt, hp), reverse)],
        out_shape=[out_struct((tp, bp, hp), F32, d), out_struct((tp, bp, hp), F32, d)],
        scratch_shapes=[pltpu.VMEM((bt, hp), F32)],
        compiler_params=_compiler_params(interpret),
        interpret=_interpret(interpret),
    )(d, c_hid, keep, wt, dh_last)
    return u[:n_steps, :batch, :hidden], dhs[0, :batch, :hidden]
