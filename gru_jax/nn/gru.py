"""The GRU recurrence: a masked `lax.scan` with a hand-written backward pass.

One layer is a pure function of `(params, x [T, B, F], lengths, initial_state) -> (ys, h_last)`
with `torch.nn.GRU`'s parameters (gate order r, z, n; separate input and hidden biases), so
weights interchange with PyTorch, another kernel (Pallas on GPU/TPU) can stand in for the scan
behind the same signature, and streaming can carry the state between chunks. Steps past a
sequence's length neither update the state nor produce output, so results never depend on how
much padding a batch carries. The gradient is a custom VJP by default: its backward scan carries
only dh and computes weight gradients per chunk of steps, which autodiff of the scan cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gru_jax.nn.gates import Gates, gate_coefficients, gate_values, times_gates
from gru_jax.nn.pallas.layer import fused_gru
from gru_jax.nn.pallas.recurrence import Kernels

PROJECTIONS = ("step", "chunk", "hoisted")
BACKWARDS = ("custom", "autodiff")
KERNELS = ("auto", "scan", "pallas")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
ACCELERATORS = ("gpu", "tpu")  # where "auto" computes in bfloat16
# (platform, compute dtype) pairs where a device run measured the Pallas kernels faster than the
# scan in training and embedding (benchmarks/README.md, "GPU"); "auto" picks them there
PALLAS_WINS: frozenset[tuple[str, str]] = frozenset()
DIRECTIONS = (("fwd", False), ("bwd", True))

GRUParams = Mapping[str, jax.Array]


def _gru_update(gi: jax.Array, gh: jax.Array, h: jax.Array) -> jax.Array:
    """New state from input-gate and hidden-gate preactivations (both with their biases)."""
    _, z, n, _ = gate_values(gi, gh)
    return n + z * (h - n)  # (1 - z) * n + z * h with one multiply fewer


def _accumulation_dtype(compute_dtype) -> jnp.dtype:
    """State and matmul-accumulation dtype: float32, or float64 when computing in float64."""
    return jnp.promote_types(compute_dtype, jnp.float32)


def _dot(a: jax.Array, w: jax.Array) -> jax.Array:
    """`a @ w` with inputs in w's dtype (the compute dtype) and float32 (or wider) accumulation."""
    return jnp.dot(a.astype(w.dtype), w, preferred_element_type=_accumulation_dtype(w.dtype))


def _dot_first(a: jax.Array, b: jax.Array, compute_dtype) -> jax.Array:
    """`a.T @ b` for a [N, K], b [N, M]: a weight gradient summed over N rows."""
    return lax.dot_general(
        a.astype(compute_dtype),
        b.astype(compute_dtype),
        (((0,), (0,)), ((), ())),
        preferred_element_type=_accumulation_dtype(compute_dtype),
    )


def gru_cell(
    params: GRUParams, x: jax.Array, h: jax.Array, *, compute_dtype=jnp.float32
) -> jax.Array:
    """One unmasked GRU step, x [B, F], h [B, H] -> h' [B, H] (for streaming and tests)."""
    gi = _dot(x, params["w_ih"].astype(compute_dtype)) + params["b_ih"]
    gh = _dot(h, params["w_hh"].astype(compute_dtype)) + params["b_hh"]
    return _gru_update(gi, gh, h.astype(jnp.float32))


@dataclass(frozen=True)
class _ScanOptions:
    """How one layer's scan runs; none of these change its numbers (up to rounding)."""

    projection: str
    chunk: int
    unroll: int
    grad_chunk: int
    remat: bool
    compute_dtype: jnp.dtype


class _Weights(NamedTuple):
    w_ih: jax.Array
    b_ih: jax.Array
    w_hh: jax.Array
    b_hh: jax.Array


def _masked_recurrence(
    project: Callable[[jax.Array], jax.Array],
    w_hh: jax.Array,
    b_hh: jax.Array,
    h0: jax.Array,
    inputs: jax.Array,
    valid: jax.Array,
    unroll: int,
    save_gates: bool,
) -> tuple[jax.Array, jax.Array, Gates | None]:
    """Scan the recurrence over time; `project` turns one step's input into gi [B, 3H]."""

    def step(h: jax.Array, xs: tuple[jax.Array, jax.Array]):
        inp, ok = xs
        gates = gate_values(project(inp), _dot(h, w_hh) + b_hh)
        h_new = gates.n + gates.z * (h - gates.n)
        return jnp.where(ok, h_new, h), (jnp.where(ok, h_new, 0.0), gates if save_gates else None)

    h_last, (ys, gates) = lax.scan(step, h0, (inputs, valid[..., None]), unroll=unroll)
    return ys, h_last, gates


def _split_chunks(a: jax.Array, size: int) -> jax.Array:
    """[T, ...] -> [ceil(T / size), size, ...], padding the end with zeros (False)."""
    a = jnp.pad(a, [(0, -a.shape[0] % size)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape(-1, size, *a.shape[1:])


def _forward(
    opts: _ScanOptions,
    weights: _Weights,
    h0: jax.Array,
    x: jax.Array,
    valid: jax.Array,
    save_gates: bool,
) -> tuple[jax.Array, jax.Array, Gates | None]:
    """ys [T, B, H], h_last [B, H] and (if asked) the gates of every step."""
    n_steps, batch, _ = x.shape
    w_ih = weights.w_ih.astype(opts.compute_dtype)
    w_hh = weights.w_hh.astype(opts.compute_dtype)
    project = lambda inp: _dot(inp, w_ih) + weights.b_ih
    identity = lambda gi: gi
    recurrence = partial(
        _masked_recurrence, w_hh=w_hh, b_hh=weights.b_hh, unroll=opts.unroll, save_gates=save_gates
    )
    if opts.projection == "step":
        return recurrence(project, h0=h0, inputs=x, valid=valid)
    if opts.projection == "hoisted":
        return recurrence(identity, h0=h0, inputs=project(x), valid=valid)

    def chunk_step(h, xs):
        x_c, ok_c = xs
        ys_c, h, gates_c = recurrence(identity, h0=h, inputs=project(x_c), valid=ok_c)
        return h, (ys_c, gates_c)

    chunks = (_split_chunks(x, opts.chunk), _split_chunks(valid, opts.chunk))
    h_last, by_chunk = lax.scan(chunk_step, h0, chunks)
    ys, gates = jax.tree.map(lambda a: a.reshape(-1, batch, a.shape[-1])[:n_steps], by_chunk)
    return ys, h_last, gates


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gru_scan(
    opts: _ScanOptions, weights: _Weights, h0: jax.Array, x: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """`_forward` with a hand-written backward pass (see `_gru_scan_bwd`)."""
    ys, h_last, _ = _forward(opts, weights, h0, x, valid, save_gates=False)
    return ys, h_last


def _gru_scan_fwd(opts: _ScanOptions, weights: _Weights, h0, x, valid):
    ys, h_last, gates = _forward(opts, weights, h0, x, valid, save_gates=not opts.remat)
    return (ys, h_last), (weights, h0, x, valid, ys, gates)


def _gru_scan_bwd(opts: _ScanOptions, residuals, cotangents):
    """Reverse scan carrying only dh; gradients of weights and inputs per `grad_chunk` steps.

    Only dh @ W_hh^T is truly sequential. The other matmuls (weight gradients, the input
    gradient) run once per chunk of a few steps, as [chunk * B]-row GEMMs whose operands are
    still in cache: faster than per step (tiny matmuls) or over the whole sequence (memory
    bound). The elementwise work is likewise done per chunk (`gates.gate_coefficients`). The state
    before each valid step is the previous output (valid steps form a prefix), so it is not
    stored. With `remat` the gates are recomputed per chunk from those states, with two chunk
    GEMMs, instead of being stored by the forward pass.
    """
    weights, h0, x, valid, ys, saved_gates = residuals
    d_ys, d_h_last = cotangents
    n_steps, batch, hidden = ys.shape
    n_in = x.shape[-1]
    cd = opts.compute_dtype
    acc = _accumulation_dtype(cd)
    size = min(opts.grad_chunk, n_steps)
    rows = size * batch
    w_ih, w_hh = weights.w_ih.astype(cd), weights.w_hh.astype(cd)
    w_ih_t, w_hh_t = w_ih.T, w_hh.T
    ys_chunks = _split_chunks(ys, size)
    # the state before each chunk's first step; the rest of h_prev is in the chunk's ys
    h_before = jnp.concatenate([h0[None].astype(ys.dtype), ys_chunks[:-1, -1]])

    def chunk_step(carry, xs):
        dh, dw_ih, db_ih, dw_hh, db_hh = carry
        x_c, ok_c, ys_c, h_before_c, d_ys_c, gates_c = xs
        h_prev_c = jnp.concatenate([h_before_c[None], ys_c[:-1]])
        if gates_c is None:
            gi = _dot(x_c, w_ih) + weights.b_ih
            gates_c = gate_values(gi, _dot(h_prev_c, w_hh) + weights.b_hh)
        c_in, c_hid, keep = gate_coefficients(gates_c, h_prev_c, ok_c)
        d_ys_c = jnp.where(ok_c[..., None], d_ys_c, 0.0)

        def step(dh, xs_t):
            # a loop, not unrolled: XLA fuses an unrolled chain of u's into each step's ops
            # and recomputes it
            d_ys_t, c_hid_t, keep_t = xs_t
            u = dh + d_ys_t
            return u * keep_t + _dot(times_gates(u, c_hid_t), w_hh_t), u

        dh, u_c = lax.scan(step, dh, (d_ys_c, c_hid, keep), reverse=True)
        d_gi_rows = times_gates(u_c, c_in).reshape(rows, 3 * hidden)
        d_gh_rows = times_gates(u_c, c_hid).reshape(rows, 3 * hidden)
        dw_ih = dw_ih + _dot_first(x_c.reshape(rows, n_in), d_gi_rows, cd)
        dw_hh = dw_hh + _dot_first(h_prev_c.reshape(rows, hidden), d_gh_rows, cd)
        carry = (dh, dw_ih, db_ih + d_gi_rows.sum(0), dw_hh, db_hh + d_gh_rows.sum(0))
        return carry, _dot(d_gi_rows, w_ih_t).reshape(size, batch, n_in)

    gate_chunks = (
        None if saved_gates is None else jax.tree.map(lambda g: _split_chunks(g, size), saved_gates)
    )
    xs = (
        _split_chunks(x, size),
        _split_chunks(valid, size),
        ys_chunks,
        h_before,
        _split_chunks(d_ys, size),
        gate_chunks,
    )
    zeros = lambda w: jnp.zeros_like(w, dtype=acc)
    init = (d_h_last.astype(acc), *map(zeros, weights))
    (dh0, *d_weights), dx = lax.scan(chunk_step, init, xs, reverse=True)
    d_weights = _Weights(*(d.astype(w.dtype) for d, w in zip(d_weights, weights, strict=True)))
    dx = dx.reshape(-1, batch, n_in)[:n_steps].astype(x.dtype)
    return d_weights, dh0.astype(h0.dtype), dx, None


_gru_scan.defvjp(_gru_scan_fwd, _gru_scan_bwd)


def _vary_like(tree, x: jax.Array):
    """`tree` cast to vary over the `shard_map` axes that x varies over (a no-op outside one).

    Inside `shard_map` the custom backward's weight gradients depend on the per-device x, so
    they vary; a custom VJP's cotangents must have its inputs' types, so the weights must vary
    too. JAX then sums their gradients over devices, as it does for autodiff.
    """
    varying = jax.typeof(x).manual_axis_type.varying

    def cast(a: jax.Array) -> jax.Array:
        missing = tuple(sorted(varying - jax.typeof(a).manual_axis_type.varying))
        return lax.pcast(a, missing, to="varying") if missing else a

    return jax.tree.map(cast, tree)


def _reversal_order(lengths: jax.Array, n_steps: int) -> jax.Array:
    """[T, B] time indices reversing each sequence within its length; padding maps to itself."""
    t = jnp.arange(n_steps)[:, None]
    return jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _gather_time(x: jax.Array, order: jax.Array) -> jax.Array:
    return x[order, jnp.arange(x.shape[1])[None, :]]


def resolve_compute_dtype(compute_dtype: str, platform: str | None = None) -> jnp.dtype:
    """ "auto": bfloat16 matmul inputs on GPU and TPU, float32 on a CPU."""
    if compute_dtype != "auto":
        return jnp.dtype(compute_dtype)
    platform = platform or jax.default_backend()
    return jnp.dtype(jnp.bfloat16 if platform in ACCELERATORS else jnp.float32)


def resolve_kernel(kernel: str, compute_dtype: jnp.dtype, platform: str | None = None) -> str:
    """ "auto": the Pallas kernels where a device run recorded a win for this platform and
    dtype (`PALLAS_WINS`), the scan everywhere else."""
    if kernel != "auto":
        return kernel
    platform = platform or jax.default_backend()
    return "pallas" if (platform, jnp.dtype(compute_dtype).name) in PALLAS_WINS else "scan"


def gru_layer(
    params: GRUParams,
    x: jax.Array,
    lengths: jax.Array,
    *,
    reverse: bool = False,
    kernel: str = "scan",
    pallas: Kernels | None = None,
    projection: str = "step",
    chunk: int = 16,
    unroll: int = 2,
    compute_dtype=jnp.float32,
    initial_state: jax.Array | None = None,
    backward: str = "custom",
    grad_chunk: int = 4,
    remat: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """One GRU direction over time-major x [T, B, F] -> (ys [T, B, H], h_last [B, H]).

    ys is zero at steps t >= lengths[b]; h_last is each sequence's state at its own end (the
    initial state, zeros by default, for length 0). Lengths above T count as T. `reverse` runs
    each sequence backwards within its own length, with outputs at the input's time positions.
    `projection` only changes where x @ w_ih is computed: per step, per `chunk` steps, or hoisted
    into one [T*B, F] matmul before the scan; the numbers are the same.

    `backward` picks the gradient: "custom" (a hand-written reverse scan whose weight and input
    gradients run per `grad_chunk` steps; faster on CPU) or "autodiff" (of the forward scan).
    `remat` (custom only) recomputes the gate activations in the backward pass instead of
    storing them, saving 4 * H floats per frame at some speed. Neither changes the numbers
    beyond rounding. The custom gradient supports reverse-mode differentiation only.

    `kernel="pallas"` runs the two recurrences as Pallas kernels on GPU and TPU (`nn.pallas`;
    the projection, backward and chunking options then do not apply; `pallas` picks kernels
    and tiles) and the same hoisted computation with `lax.scan` recurrences elsewhere.
    """
    if kernel not in ("scan", "pallas"):
        raise ValueError(
            f"kernel must be 'scan' or 'pallas' (resolve 'auto' first), got {kernel!r}"
        )
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if remat and backward != "custom":
        raise ValueError("remat=True needs backward='custom'")
    n_steps, batch, _ = x.shape
    hidden = params["w_hh"].shape[0]
    lengths = jnp.minimum(lengths.astype(jnp.int32), n_steps)
    valid = jnp.arange(n_steps)[:, None] < lengths[None, :]
    if reverse:
        order = _reversal_order(lengths, n_steps)
        x = _gather_time(x, order)
    state_dtype = _accumulation_dtype(compute_dtype)
    h0 = (
        jnp.zeros_like(x, shape=(batch, hidden), dtype=state_dtype)  # varies as x in shard_map
        if initial_state is None
        else initial_state.astype(state_dtype)
    )
    opts = _ScanOptions(projection, chunk, unroll, grad_chunk, remat, jnp.dtype(compute_dtype))
    weights = _Weights(params["w_ih"], params["b_ih"], params["w_hh"], params["b_hh"])
    if kernel == "pallas":
        weights, h0 = _vary_like((tuple(weights), h0), x)
        kernels = pallas or Kernels()
        ys, h_last = fused_gru(jnp.dtype(compute_dtype), kernels, weights, h0, x, lengths)
    elif backward == "custom":
        ys, h_last = _gru_scan(opts, *_vary_like((weights, h0), x), x, valid)
    else:
        ys, h_last, _ = _forward(opts, weights, h0, x, valid, save_gates=False)
    if reverse:
        ys = _gather_time(ys, order)
    return ys, h_last


def from_torch_gru(
    state_dict_numpy: Mapping[str, np.ndarray], num_layers: int, bidirectional: bool
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """`torch.nn.GRU` weights -> {"layer_i": {"fwd"|"bwd": {w_ih, w_hh, b_ih, b_hh}}}.

    Torch stores weights as [3H, F] for W x; ours are transposed for x @ W. Gate order matches.
    """
    torch_names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
    converted: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for layer in range(num_layers):
        layer_params = {}
        for direction, reverse in DIRECTIONS[: 2 if bidirectional else 1]:
            suffix = f"_l{layer}" + ("_reverse" if reverse else "")
            weights = {}
            for ours, theirs in torch_names.items():
                key = theirs + suffix
                if key not in state_dict_numpy:
                    raise KeyError(
                        f"torch GRU state dict has no {key!r} (num_layers={num_layers}, "
                        f"bidirectional={bidirectional})"
                    )
                value = np.asarray(state_dict_numpy[key], dtype=np.float32)
                weights[ours] = value.T if value.ndim == 2 else value
            layer_params[direction] = weights
        converted[f"layer_{layer}"] = layer_params
    return converted
