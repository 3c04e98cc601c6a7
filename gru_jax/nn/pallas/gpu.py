"""The GRU recurrences as Pallas kernels for NVIDIA GPUs (Triton backend): one launch per layer,
direction and pass, the time loop inside the kernel.

Design. A step's work is `h @ W_hh` ([B, H] x [H, 3H]) plus gate arithmetic, and the next step
needs all of `h`. One program per batch tile holding all of `W_hh` streams 6H^2 bytes (bf16)
from L2 into one SM every step, which L2-to-SM bandwidth makes far slower than the XLA scan
(benchmarks/README.md, "GPU"). So the programs form a grid of column tiles x batch tiles: the
program (c, i) owns columns [c*hn, (c+1)*hn) of each gate of `W_hh` (a [H, 3*hn] slice: 1/n_cols
of the weights) for batch rows [i*bt, (i+1)*bt), computes its slice of the new state, writes it to
the output in global memory, and waits at a barrier for the other column tiles of its batch tile
before reading the whole new state back. The barrier is a counter per batch tile, incremented with
a release-acquire atomic by each program after its store and polled until every column tile of the
step has arrived. The backward recurrence (reverse time, carrying dh) has the same structure with
`W_hh^T`.

Limits (`plan`, `fits`). Every program must be resident at once, or batch tiles wait for
whole sequences of other tiles: at most one program per SM. Triton stages every unrolled K chunk
of the weight slice, and of the state, in shared memory together, which bounds the slice.
A barrier that waits too long (`MAX_SPINS`, far beyond any healthy step) stops waiting and the
kernel writes NaN, so a broken launch shows up as a non-finite loss rather than a hang or silent
garbage. Tiles are powers of two of at least 16 (Triton's dot); the batch is padded to a
multiple of the batch tile. float32 weights would use 3xTF32 dots, but `plan` refuses float32:
the scan is faster. The state is float32 throughout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from gru_jax.nn.pallas.vma import out_struct

F32 = jnp.float32
MAX_SPINS = 1 << 20  # polls of a barrier before giving up (a healthy step needs a handful)
DEFAULT_SMS = 132  # H100/H200, when the device cannot be asked (lowering on another host)
SHARED_MEMORY = 227 * 1024 - 8192  # a Hopper SM's 227 KiB per program, less the estimate's error
_COUNTER_PAD = 16  # counters per allocation block


@dataclass(frozen=True)
class GpuTiles:
    """How the grid is cut: `bt` batch rows and `hn` hidden columns per program, K in `hk`
    chunks, `num_warps` warps per program, and whether the weight slice stays resident."""

    bt: int = 16
    hn: int = 32
    hk: int = 128
    num_warps: int = 4
    resident: bool = False

    def check(self, hidden: int) -> None:
        for name in ("bt", "hn", "hk"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"GpuTiles.{name} must be a power of two >= 16, got {value}")
        if hidden % self.hn or hidden % self.hk:
            raise ValueError(f"hidden {hidden} is not a multiple of hn={self.hn} and hk={self.hk}")


def _sm_count() -> int:
    try:
        device = jax.devices("gpu")[0]
    except RuntimeError:
        return DEFAULT_SMS
    return int(getattr(device, "core_count", DEFAULT_SMS))


def shared_memory_bytes(tiles: GpuTiles, hidden: int, dtype: jnp.dtype) -> int:
    """What Triton stages in shared memory for one program: every unrolled K chunk of the
    weight slice ([H, 3 * hn]) and of the state ([bt, H]) at once (matches the H200 run's
    requests to within a few KiB)."""
    return jnp.dtype(dtype).itemsize * (3 * hidden * tiles.hn + tiles.bt * hidden)


def fits(tiles: GpuTiles, batch: int, hidden: int, dtype: jnp.dtype, sms: int) -> bool:
    """Within shared memory, and every program resident at once (one per SM)."""
    try:
        tiles.check(hidden)
    except ValueError:
        return False
    n_programs = (hidden // tiles.hn) * (-(-batch // tiles.bt))
    return n_programs <= sms and shared_memory_bytes(tiles, hidden, dtype) <= SHARED_MEMORY


# Tiles a device run measured fastest, by (hidden, compute dtype, "forward" | "backward")
# (benchmarks/device_check.py; results in benchmarks/README.md, "GPU").
TUNED: dict[tuple[int, str, str], GpuTiles] = {
    (512, "bfloat16", "forward"): GpuTiles(bt=16, hn=64, hk=128),
    (512, "bfloat16", "backward"): GpuTiles(bt=32, hn=32, hk=128),
}


def plan(
    batch: int, hidden: int, dtype: jnp.dtype, sms: int | None = None, pass_: str = "forward"
) -> GpuTiles | None:
    """Tiles for a problem, or None where the kernels should not run: float32 (3xTF32 dots
    made them 18-25x slower than the scan on an H200), or no tiling that fits (`fits`).
    Tuned tiles first; otherwise the fewest column tiles whose weight slice fits in shared
    memory, and batch tiles just large enough that every program is resident at once."""
    if jnp.dtype(dtype) == F32:
        return None
    sms = sms or _sm_count()
    tuned = TUNED.get((hidden, jnp.dtype(dtype).name, pass_))
    if tuned is not None and fits(tuned, batch, hidden, dtype, sms):
        return tuned
    for hn in (64, 32, 16):
        for bt in (16, 32, 64):
            tiles = GpuTiles(bt=bt, hn=min(hn, hidden), hk=min(128, hidden))
            if fits(tiles, batch, hidden, dtype, sms):
                return tiles
    return None


def _precision(dtype: jnp.dtype, interpret: bool):
    if jnp.dtype(dtype) != F32:
        return None
    return lax.Precision.HIGHEST if interpret else lax.DotAlgorithmPreset.TF32_TF32_F32_X3


def _dot(a: jax.Array, b: jax.Array, precision) -> jax.Array:
    return jnp.dot(a, b, preferred_element_type=F32, precision=precision)


def _barrier_sync(interpret: bool) -> None:
    """All threads of the program have stored (a no-op when interpreted: programs run in turn)."""
    if not interpret:
        plt.debug_barrier()


def _wait_for_step(cnt_ref, tile: jax.Array, target: jax.Array, interpret: bool) -> jax.Array:
    """Arrive at batch tile `tile`'s barrier and wait until `target` arrivals; True if it timed out."""
    _barrier_sync(interpret)
    zero = jnp.zeros((), jnp.int32)
    plt.atomic_add(cnt_ref, tile, jnp.ones((), jnp.int32))

    def waiting(state):
        seen, spins, _ = state
        return (seen < target) & (spins < MAX_SPINS)

    def poll(state):
        _, spins, z = state
        return plt.atomic_add(cnt_ref, tile, z), spins + 1, z

    seen, _, _ = lax.while_loop(waiting, poll, (plt.atomic_add(cnt_ref, tile, zero), 0, zero))
    _barrier_sync(interpret)
    return seen < target


def _forward_kernel(
    gi_ref,
    w_ref,
    b_ref,
    h0_ref,
    len_ref,
    cnt_in_ref,
    hs_ref,
    cnt_ref,
    *,
    n_steps: int,
    tiles: GpuTiles,
    hidden: int,
    n_cols: int,
    precision,
    interpret: bool,
):
    del cnt_in_ref  # the same buffer as cnt_ref
    hn, hk = tiles.hn, tiles.hk
    col, tile = pl.program_id(0), pl.program_id(1)
    c0 = pl.multiple_of(col * hn, hn)
    gate_cols = [pl.ds(g * hidden + c0, hn) for g in range(3)]
    chunks = [pl.ds(k * hk, hk) for k in range(hidden // hk)]
    cd = w_ref.dtype

    def weights():
        return [[w_ref[k, cols] for k in chunks] for cols in gate_cols]

    resident = weights() if tiles.resident else None
    bias = [b_ref[cols][None, :] for cols in gate_cols]
    lengths = len_ref[...][:, None]

    def step(t, load_prev, failed):
        w = resident if resident is not None else weights()
        prev = [load_prev(k).astype(cd) for k in chunks]
        acc = [sum(_dot(p, w[g][j], precision) for j, p in enumerate(prev)) for g in range(3)]
        gi = [gi_ref[t, :, cols] for cols in gate_cols]
        h_prev = load_prev(pl.ds(c0, hn))
        r = jax.nn.sigmoid(gi[0] + acc[0] + bias[0])
        z = jax.nn.sigmoid(gi[1] + acc[1] + bias[1])
        n = jnp.tanh(gi[2] + r * (acc[2] + bias[2]))
        h = jnp.where(t < lengths, n + z * (h_prev - n), h_prev)
        hs_ref[t, :, pl.ds(c0, hn)] = jnp.where(failed, jnp.nan, h)
        timed_out = _wait_for_step(cnt_ref, tile, n_cols * (t + 1), interpret)
        return failed | timed_out

    from_h0 = lambda cols: h0_ref[:, cols]
    failed = step(0, from_h0, jnp.zeros((), jnp.bool_))

    def later_step(t, failed):
        return step(t, lambda cols: plt.load(hs_ref.at[t - 1, :, cols], volatile=True), failed)

    lax.fori_loop(1, n_steps, later_step, failed)


def _backward_kernel(
    d_ref,
    chid_ref,
    keep_ref,
    wt_ref,
    dhl_ref,
    cnt_in_ref,
    u_ref,
    dhs_ref,
    cnt_ref,
    *,
    n_steps: int,
    tiles: GpuTiles,
    hidden: int,
    n_cols: int,
    precision,
    interpret: bool,
):
    del cnt_in_ref
    hn, hk = tiles.hn, tiles.hk
    col, tile = pl.program_id(0), pl.program_id(1)
    c0 = pl.multiple_of(col * hn, hn)
    own = pl.ds(c0, hn)
    chunks = [pl.ds(k * hk, hk) for k in range(hidden // hk)]
    gate_rows = [[pl.ds(g * hidden + k * hk, hk) for k in range(hidden // hk)] for g in range(3)]
    cd = wt_ref.dtype

    def weights():
        return [[wt_ref[rows, own] for rows in gate_rows[g]] for g in range(3)]

    resident = weights() if tiles.resident else None

    def step(t, load_dh, failed):
        w = resident if resident is not None else weights()
        u = [load_dh(k) + d_ref[t, :, k] for k in chunks]
        acc = sum(
            _dot((u[j] * chid_ref[t, :, rows]).astype(cd), w[g][j], precision)
            for g in range(3)
            for j, rows in enumerate(gate_rows[g])
        )
        u_own = load_dh(own) + d_ref[t, :, own]
        u_ref[t, :, own] = u_own
        dh = u_own * keep_ref[t, :, own] + acc
        dhs_ref[t, :, own] = jnp.where(failed, jnp.nan, dh)
        target = n_cols * (n_steps - t)
        return failed | _wait_for_step(cnt_ref, tile, target, interpret)

    last = n_steps - 1
    failed = step(last, lambda cols: dhl_ref[:, cols], jnp.zeros((), jnp.bool_))

    def earlier_step(j, failed):
        t = last - j
        return step(t, lambda cols: plt.load(dhs_ref.at[t + 1, :, cols], volatile=True), failed)

    lax.fori_loop(1, n_steps, earlier_step, failed)


def _pad_rows(a: jax.Array, axis: int, multiple: int) -> jax.Array:
    pad = -a.shape[axis] % multiple
    if not pad:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, pad)
    return jnp.pad(a, widths)


def _grid_call(tiles: GpuTiles, hidden: int, batch: int, interpret: bool):
    """(column tiles, batch tiles, `pallas_call` with the grid and compiler settings)."""
    n_cols, n_tiles = hidden // tiles.hn, batch // tiles.bt
    if interpret and n_cols > 1:
        raise ValueError(
            "interpreted programs run one at a time and cannot wait for each other: "
            f"use one column tile (hn = hidden = {hidden})"
        )
    return (
        n_cols,
        n_tiles,
        functools.partial(
            pl.pallas_call,
            grid=(n_cols, n_tiles),
            compiler_params=plt.CompilerParams(num_warps=tiles.num_warps, num_stages=1),
            interpret=interpret,
        ),
    )


def forward(
    gi: jax.Array,
    w_hh: jax.Array,
    b_hh: jax.Array,
    h0: jax.Array,
    lengths: jax.Array,
    tiles: GpuTiles | None = None,
    interpret: bool = False,
) -> jax.Array:
    """hs [T, B, H]: the state after each step (held past each length), from gi = x @ W_ih + b_ih
    [T, B, 3H], W_hh [H, 3H] (its dtype is the compute dtype), b_hh [3H], h0 [B, H]."""
    n_steps, batch, three_h = gi.shape
    hidden = three_h // 3
    tiles = tiles or plan(batch, hidden, w_hh.dtype, pass_="forward")
    if tiles is None:
        raise ValueError(f"no GPU kernel tiling for batch {batch}, hidden {hidden}, {w_hh.dtype}")
    tiles.check(hidden)
    gi, h0, lengths = (_pad_rows(a, axis, tiles.bt) for a, axis in ((gi, 1), (h0, 0), (lengths, 0)))
    padded = gi.shape[1]
    n_cols, n_tiles, call = _grid_call(tiles, hidden, padded, interpret)
    kernel = functools.partial(
        _forward_kernel,
        n_steps=n_steps,
        tiles=tiles,
        hidden=hidden,
        n_cols=n_cols,
        precision=_precision(w_hh.dtype, interpret),
        interpret=interpret,
    )
    counters = jnp.zeros_like(lengths, shape=(n_tiles + _COUNTER_PAD,), dtype=jnp.int32)
    bt = tiles.bt
    hs, _ = call(
        kernel,
        in_specs=[
            pl.BlockSpec((n_steps, bt, three_h), lambda c, i: (0, i, 0)),
            pl.BlockSpec((hidden, three_h), lambda c, i: (0, 0)),
            pl.BlockSpec((three_h,), lambda c, i: (0,)),
            pl.BlockSpec((bt, hidden), lambda c, i: (i, 0)),
            pl.BlockSpec((bt,), lambda c, i: (i,)),
            pl.BlockSpec(memory_space=pl.ANY),
        ],
        out_specs=[
            pl.BlockSpec((n_steps, bt, hidden), lambda c, i: (0, i, 0)),
            pl.BlockSpec(memory_space=pl.ANY),
        ],
        out_shape=[
            out_struct((n_steps, padded, hidden), F32, gi),
            out_struct(counters.shape, jnp.int32, gi),
        ],
        input_output_aliases={5: 1},
    )(gi.astype(F32), w_hh, b_hh.astype(F32), h0.astype(F32), lengths.astype(jnp.int32), counters)
    return hs[:, :batch]


def backward(
    d: jax.Array,
    c_hid: jax.Array,
    keep: jax.Array,
    w_hh_t: jax.Array,
    dh_last: jax.Array,
    tiles: GpuTiles | None = None,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """(u [T, B, H], dh0 [B, H]) of the reverse recurrence u_t = dh_t + d_t,
    dh_{t-1} = u_t * keep_t + (u_t * c_hid_t) @ W_hh^T, from dh_{T-1} = dh_last (see
    `recurrence.backward_reference`); W_hh^T [3H, H] in the compute dtype."""
    n_steps, batch, hidden = d.shape
    tiles = tiles or plan(batch, hidden, w_hh_t.dtype, pass_="backward")
    if tiles is None:
        raise ValueError(f"no GPU kernel tiling for batch {batch}, hidden {hidden}, {w_hh_t.dtype}")
    tiles.check(hidden)
    d, c_hid, keep, dh_last = (
        _pad_rows(a, axis, tiles.bt) for a, axis in ((d, 1), (c_hid, 1), (keep, 1), (dh_last, 0))
    )
    padded = d.shape[1]
    n_cols, n_tiles, call = _grid_call(tiles, hidden, padded, interpret)
    kernel = functools.partial(
        _backward_kernel,
        n_steps=n_steps,
        tiles=tiles,
        hidden=hidden,
        n_cols=n_cols,
        precision=_precision(w_hh_t.dtype, interpret),
        interpret=interpret,
    )
    counters = jnp.zeros_like(d, shape=(n_tiles + _COUNTER_PAD,), dtype=jnp.int32)
    bt = tiles.bt
    rows = lambda width: pl.BlockSpec((n_steps, bt, width), lambda c, i: (0, i, 0))
    u, dhs, _ = call(
        kernel,
        in_specs=[
            rows(hidden),
            rows(3 * hidden),
            rows(hidden),
            pl.BlockSpec((3 * hidden, hidden), lambda c, i: (0, 0)),
            pl.BlockSpec((bt, hidden), lambda c, i: (i, 0)),
            pl.BlockSpec(memory_space=pl.ANY),
        ],
        out_specs=[rows(hidden), rows(hidden), pl.BlockSpec(memory_space=pl.ANY)],
        out_shape=[
            out_struct((n_steps, padded, hidden), F32, d),
            out_struct((n_steps, padded, hidden), F32, d),
            out_struct(counters.shape, jnp.int32, d),
        ],
        input_output_aliases={5: 2},
    )(d.astype(F32), c_hid.astype(F32), keep.astype(F32), w_hh_t, dh_last.astype(F32), counters)
    return u[:, :batch], dhs[0, :batch]
