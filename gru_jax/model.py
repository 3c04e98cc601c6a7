"""Multi-layer GRU speaker encoder: a masked `lax.scan` GRU, utterance pooling and an embedding.

The GRU is a pure function of `(params, x [T, B, F], lengths)` with `torch.nn.GRU`'s parameters
(gate order r, z, n; separate input and hidden biases), so weights interchange with PyTorch and
another kernel (a Pallas kernel on GPU) can stand in for the scan behind the same signature.
Steps past a sequence's length neither update the state nor produce output, so results never
depend on how much padding a batch carries. The scan's gradient is hand-written by default
(`jax.custom_vjp`): training steps on the 2-core CPU were 1.16-1.24x faster than with autodiff of
the scan (benchmarks/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PROJECTIONS = ("step", "chunk", "hoisted")
BACKWARDS = ("custom", "autodiff")
POOLINGS = ("mean", "stats", "attentive")
COMPUTE_DTYPES = ("float32", "bfloat16")
DIRECTIONS = (("fwd", False), ("bwd", True))
STD_EPSILON = 1e-5  # inside the sqrt of pooled stds: a finite gradient at zero variance

GRUParams = Mapping[str, jax.Array]


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = 80
    hidden: int = 256
    layers: int = 3
    bidirectional: bool = False
    projection: str = "step"  # where x @ w_ih runs: "step" | "chunk" | "hoisted"
    chunk: int = 16
    unroll: int = 2
    backward: str = "custom"  # GRU gradient: "custom" (hand-written VJP) | "autodiff"
    grad_chunk: int = 4  # custom backward: steps per weight- and input-gradient matmul
    remat: bool = False  # custom backward: recompute gate activations instead of storing them
    pooling: str = "stats"  # "mean" | "stats" (mean + std) | "attentive" (Okabe et al. 2018)
    attention_dim: int = 128
    embedding_dim: int = 256
    residual: bool = False  # identity skip where widths match, a bias-free projection otherwise
    layer_norm: bool = False  # LayerNorm on each layer's output
    dropout: float = 0.0  # between GRU layers, training only
    compute_dtype: str = "float32"  # matmul inputs; state and accumulation stay float32

    def __post_init__(self) -> None:
        positive = (
            "n_features",
            "hidden",
            "layers",
            "chunk",
            "unroll",
            "grad_chunk",
            "attention_dim",
            "embedding_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        choices = {
            "projection": PROJECTIONS,
            "backward": BACKWARDS,
            "pooling": POOLINGS,
            "compute_dtype": COMPUTE_DTYPES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.remat, bool):
            raise ValueError(f"ModelConfig.remat must be a bool, got {self.remat!r}")
        if self.remat and self.backward != "custom":
            raise ValueError("ModelConfig.remat needs backward='custom'")

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.dtype(self.compute_dtype)


# --------------------------------------------------------------------------------------------
# GRU core (pure functions)


class _Gates(NamedTuple):
    """Per-step activations the backward pass needs: r, z, n and the hidden part of n's input."""

    r: jax.Array
    z: jax.Array
    n: jax.Array
    h_n: jax.Array  # h @ W_hn + b_hn, before r multiplies it


def _gate_values(gi: jax.Array, gh: jax.Array) -> _Gates:
    """Gate activations from input-gate and hidden-gate preactivations (both with their biases)."""
    i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    return _Gates(r, z, jnp.tanh(i_n + r * h_n), h_n)


def _gru_update(gi: jax.Array, gh: jax.Array, h: jax.Array) -> jax.Array:
    """New state from input-gate and hidden-gate preactivations (both with their biases)."""
    _, z, n, _ = _gate_values(gi, gh)
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
) -> tuple[jax.Array, jax.Array, _Gates | None]:
    """Scan the recurrence over time; `project` turns one step's input into gi [B, 3H]."""

    def step(h: jax.Array, xs: tuple[jax.Array, jax.Array]):
        inp, ok = xs
        gates = _gate_values(project(inp), _dot(h, w_hh) + b_hh)
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
) -> tuple[jax.Array, jax.Array, _Gates | None]:
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


def _gate_coefficients(
    gates: _Gates, h_prev: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-step factors that turn u = dL/dh_t into gate gradients, for a chunk of steps at once.

    With u the gradient reaching h_t (zero weight at padded steps), the preactivation
    gradients are u * c_in (input side, [r | z | n]) and u * c_hid (hidden side, whose n part
    is scaled by r), and the gradient passed to h_{t-1} is u * keep + (u * c_hid) @ W_hh^T.
    Computing the factors over a whole chunk in one vectorised pass leaves each sequential step
    with one multiply, one matmul and one multiply-add. Done per step, the same arithmetic took
    four fusions, two concatenations and two bias reductions per step on CPU, and the custom
    backward ran 3-5% slower (benchmarks/README.md).
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


def _times_gates(u: jax.Array, coefficients: jax.Array) -> jax.Array:
    """u [..., H] times each gate's third of coefficients [..., 3H]."""
    split = coefficients.reshape(*coefficients.shape[:-1], 3, u.shape[-1])
    return (u[..., None, :] * split).reshape(coefficients.shape)


def _gru_scan_bwd(opts: _ScanOptions, residuals, cotangents):
    """Reverse scan carrying only dh; gradients of weights and inputs per `grad_chunk` steps.

    Only dh @ W_hh^T is truly sequential. The other matmuls (weight gradients, the input
    gradient) run once per chunk of a few steps, as [chunk * B]-row GEMMs whose operands are
    still in cache: faster than per step (tiny matmuls) or over the whole sequence (memory
    bound). The elementwise work is likewise done per chunk (`_gate_coefficients`). The state
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
            gates_c = _gate_values(gi, _dot(h_prev_c, w_hh) + weights.b_hh)
        c_in, c_hid, keep = _gate_coefficients(gates_c, h_prev_c, ok_c)
        d_ys_c = jnp.where(ok_c[..., None], d_ys_c, 0.0)

        def step(dh, xs_t):
            # a loop, not unrolled: XLA fused the unrolled chain of u's into each step's ops,
            # recomputing it (2-7x slower elementwise work)
            d_ys_t, c_hid_t, keep_t = xs_t
            u = dh + d_ys_t
            return u * keep_t + _dot(_times_gates(u, c_hid_t), w_hh_t), u

        dh, u_c = lax.scan(step, dh, (d_ys_c, c_hid, keep), reverse=True)
        d_gi_rows = _times_gates(u_c, c_in).reshape(rows, 3 * hidden)
        d_gh_rows = _times_gates(u_c, c_hid).reshape(rows, 3 * hidden)
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


def gru_layer(
    params: GRUParams,
    x: jax.Array,
    lengths: jax.Array,
    *,
    reverse: bool = False,
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
    """
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
    if backward == "custom":
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


# --------------------------------------------------------------------------------------------
# Flax modules


def _torch_uniform(hidden: int) -> Callable:
    """torch.nn.GRU's init, U(-1/sqrt(H), 1/sqrt(H)), for weights and biases alike."""
    bound = 1.0 / math.sqrt(hidden)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class GRUWeights(nn.Module):
    """Declares one direction's torch-compatible parameters and hands them to `gru_layer`."""

    in_features: int
    hidden: int

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        gates = 3 * self.hidden
        shapes = {
            "w_ih": (self.in_features, gates),
            "w_hh": (self.hidden, gates),
            "b_ih": (gates,),
            "b_hh": (gates,),
        }
        init = _torch_uniform(self.hidden)
        return {name: self.param(name, init, shape) for name, shape in shapes.items()}


class GRULayer(nn.Module):
    """One (bi)directional GRU layer on time-major frames, with optional residual and LayerNorm."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        cfg = self.config
        outputs = []
        for name, reverse in DIRECTIONS[: 2 if cfg.bidirectional else 1]:
            params = GRUWeights(x.shape[-1], cfg.hidden, name=name)()
            ys, _ = gru_layer(
                params,
                x,
                lengths,
                reverse=reverse,
                projection=cfg.projection,
                chunk=cfg.chunk,
                unroll=cfg.unroll,
                compute_dtype=cfg.dtype,
                backward=cfg.backward,
                grad_chunk=cfg.grad_chunk,
                remat=cfg.remat,
            )
            outputs.append(ys)
        y = jnp.concatenate(outputs, axis=-1)
        if cfg.residual:
            same_width = x.shape[-1] == y.shape[-1]
            y = y + (x if same_width else nn.Dense(y.shape[-1], use_bias=False, name="skip")(x))
        if cfg.layer_norm:
            y = nn.LayerNorm(name="norm")(y)
        return y


def weighted_mean_std(
    frames: jax.Array, weights: jax.Array, time_axis: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Mean and std over time of frames ([T, B, D], or [B, T, D] with time_axis=1) under
    weights ([T, B] or [B, T]) that sum to 1 over time.

    Both weighted sums are contractions over time, which XLA runs as matmuls: the elementwise
    sums over the time axis took ~20 ms of a 500 ms train step on CPU (now ~5). The variance
    is two-pass (centred on the mean) for accuracy, with the mean's gradient path cut: it
    contributes -2 * sum_t w_t (x_t - mean) = 0 when the weights sum to 1, and computing it
    made the backward pass 3.5x slower. HIGHEST precision keeps accelerators from rounding the
    products to bfloat16.
    """
    spec = {0: "tb,tbd->bd", 1: "bt,btd->bd"}[time_axis]
    contract = partial(jnp.einsum, spec, weights, precision=lax.Precision.HIGHEST)
    mean = contract(frames)
    centred = frames - jnp.expand_dims(lax.stop_gradient(mean), time_axis)
    return mean, jnp.sqrt(contract(jnp.square(centred)) + STD_EPSILON)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018): attention-weighted mean and std.

    The score e_t = v . tanh(W h_t + b) has no bias of its own: softmax over time ignores it.
    """

    attention_dim: int

    @nn.compact
    def __call__(self, frames: jax.Array, valid: jax.Array) -> jax.Array:
        hidden = jnp.tanh(nn.Dense(self.attention_dim, name="attention")(frames))
        scores = nn.Dense(1, use_bias=False, name="score")(hidden)[..., 0]
        weights = jax.nn.softmax(jnp.where(valid, scores, -jnp.inf), axis=0)
        return jnp.concatenate(weighted_mean_std(frames, weights), axis=-1)


class SpeakerEncoder(nn.Module):
    """feats [B, T, F], lengths [B] -> embeddings [B, E].

    Lengths of 0 count as 1 (the first, padding, frame) so that pooling always has a frame to
    average and attention never normalises over nothing. The last GRU layer's time-major output
    is sown as `intermediates/frames` ([T, B, D], zero past each length without residual/norm).
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, feats: jax.Array, lengths: jax.Array, train: bool = False) -> jax.Array:
        cfg = self.config
        if feats.ndim != 3 or feats.shape[-1] != cfg.n_features:
            raise ValueError(
                f"SpeakerEncoder expects feats [B, T, {cfg.n_features}], got {feats.shape}"
            )
        n_frames = feats.shape[1]
        lengths = jnp.maximum(lengths.astype(jnp.int32), 1)
        x = jnp.swapaxes(feats.astype(jnp.float32), 0, 1)
        for layer in range(cfg.layers):
            if layer:
                x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
            x = GRULayer(cfg, name=f"layer_{layer}")(x, lengths)
        self.sow("intermediates", "frames", x)

        valid = jnp.arange(n_frames)[:, None] < lengths[None, :]
        # GRU outputs are already zero past each length; a skip or LayerNorm output is not
        frames = jnp.where(valid[..., None], x, 0.0) if cfg.residual or cfg.layer_norm else x
        if cfg.pooling == "attentive":
            pooled = AttentiveStatsPooling(cfg.attention_dim, name="pooling")(frames, valid)
        else:
            weights = valid / jnp.minimum(lengths, n_frames)[None, :]
            mean, std = weighted_mean_std(frames, weights)
            pooled = mean if cfg.pooling == "mean" else jnp.concatenate([mean, std], axis=-1)
        return nn.Dense(cfg.embedding_dim, name="embedding")(pooled)


def init_params(config: ModelConfig, rng: jax.Array, n_frames: int = 2) -> dict:
    """Fresh encoder parameters (shapes do not depend on the dummy input's size)."""
    feats = jnp.zeros((1, n_frames, config.n_features), jnp.float32)
    lengths = jnp.full((1,), n_frames, jnp.int32)
    return SpeakerEncoder(config).init(rng, feats, lengths)["params"]


@partial(jax.jit, static_argnames="config")
def embed(params: dict, config: ModelConfig, feats: jax.Array, lengths: jax.Array) -> jax.Array:
    """Evaluation-mode embeddings [B, E] of feats [B, T, F] (jitted; one compile per shape)."""
    return SpeakerEncoder(config).apply({"params": params}, feats, lengths)


# --------------------------------------------------------------------------------------------
# Augmentation


def _random_spans(
    key: jax.Array, count: int, max_width: int, extent: jax.Array, size: int
) -> jax.Array:
    """[B, size] bool: `count` spans per row, widths U{0..max_width}, inside [0, extent[b])."""
    width_key, start_key = jax.random.split(key)
    shape = (extent.shape[0], count)
    widths = jnp.minimum(jax.random.randint(width_key, shape, 0, max_width + 1), extent[:, None])
    starts = jax.random.randint(start_key, shape, 0, extent[:, None] - widths + 1)
    pos = jnp.arange(size)
    inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
    return jnp.any(inside, axis=1)


def spec_augment(
    rng: jax.Array,
    feats: jax.Array,
    lengths: jax.Array,
    *,
    time_masks: int = 2,
    max_time: int = 20,
    freq_masks: int = 2,
    max_freq: int = 10,
) -> jax.Array:
    """SpecAugment-style masking of feats [B, T, F]: spans of frames and of bins set to 0.

    Zero is the mean of normalised (CMVN) features. Each utterance draws its own masks, time
    masks lie within its length, and padding frames are never touched.
    """
    for name, value in (
        ("time_masks", time_masks),
        ("max_time", max_time),
        ("freq_masks", freq_masks),
        ("max_freq", max_freq),
    ):
        if value < 0:
            raise ValueError(f"spec_augment: {name} must be >= 0, got {value}")
    batch, n_frames, n_feats = feats.shape
    lengths = jnp.clip(lengths.astype(jnp.int32), 0, n_frames)
    time_key, freq_key = jax.random.split(rng)
    in_time = _random_spans(time_key, time_masks, max_time, lengths, n_frames)
    all_bins = jnp.full((batch,), n_feats, jnp.int32)
    in_freq = _random_spans(freq_key, freq_masks, max_freq, all_bins, n_feats)
    valid = jnp.arange(n_frames)[None, :] < lengths[:, None]
    masked = valid[:, :, None] & (in_time[:, :, None] | in_freq[:, None, :])
    return jnp.where(masked, jnp.zeros((), feats.dtype), feats)
