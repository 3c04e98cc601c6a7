"""Training-step and embedding throughput of gru_jax's GRU encoder vs Flax nn.RNN and torch.nn.GRU.

Every implementation runs the same model: a GRU stack, masked mean+std pooling, a Dense
embedding, and for training an AAM-softmax head, global-norm clipping (5.0) and AdamW. They are
timed in one process, interleaved round by round with a jitted f32 matmul that measures the
device's peak, so ratios and peak fractions compare like with like even on a busy machine.

    python -m benchmarks.gru_throughput [--config default] [--impl gru_jax --impl flax ...]

JSON on stdout (and in --json PATH), a table on stderr. Imports only jax, flax, optax, numpy and
gru_jax's model/losses (torch when importable): the GPU machine has no librosa. The `trainer`
impl times `gru_jax.training`'s real compiled step, which also needs scipy and tqdm.

FLOPs counted (matmuls only; elementwise work and the optimizer are not counted):
  forward = sum over layers l of 2*B*T*3H*(F_l + H)  +  2*B*(2H)*E      (F_0 = F, F_l = H)
  train   = 3 * (forward + 2*B*E*C)                     (backward = 2x forward)
  embed   = forward
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks._common import (
    emit,
    interleaved_times,
    machine_info,
    paired_ratio,
    print_table,
    summarize,
)
from gru_jax.losses import LossConfig, SpeakerHead
from gru_jax.model import STD_EPSILON, ModelConfig, SpeakerEncoder, weighted_mean_std

MODES = ("train", "embed")
# One single-threaded XLA CPU device per core, data-parallel: on the 2-core machine this beat
# XLA's multi-threaded matmuls by 1.3x (train) and 1.6x (embedding): their per-step
# synchronisation costs more than it saves.
RECOMMENDED_CPU_FLAGS = (
    f"--xla_force_host_platform_device_count={os.cpu_count()} --xla_cpu_multi_thread_eigen=false"
)
LOSS = LossConfig(kind="aam", scale=30.0, margin=0.2)
LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM = 2e-3, 1e-4, 5.0
# Targets of the throughput issue (CPU, default config): speed-up over each baseline and the
# fraction of the measured matmul peak.
TARGETS = {
    "train": {"torch": 1.5, "flax": 1.4, "peak_fraction": 0.60},
    "embed": {"torch": 1.7, "peak_fraction": 0.75},
}


@dataclass(frozen=True)
class BenchConfig:
    layers: int = 3
    hidden: int = 256
    n_features: int = 80
    batch: int = 64
    frames: int = 200
    embedding: int = 256
    classes: int = 1000


PRESETS = {
    "default": BenchConfig(),
    "small": BenchConfig(
        layers=2, hidden=64, n_features=40, batch=16, frames=50, embedding=64, classes=100
    ),
    "h512": BenchConfig(hidden=512),
    "h1024": BenchConfig(hidden=1024),
    "h512-b256": BenchConfig(hidden=512, batch=256),
    "h1024-b256": BenchConfig(hidden=1024, batch=256),
}


def forward_flops(cfg: BenchConfig) -> int:
    inputs = [cfg.n_features] + [cfg.hidden] * (cfg.layers - 1)
    gru = sum(2 * cfg.batch * cfg.frames * 3 * cfg.hidden * (n + cfg.hidden) for n in inputs)
    return gru + 2 * cfg.batch * 2 * cfg.hidden * cfg.embedding


def mode_flops(cfg: BenchConfig, mode: str) -> int:
    if mode == "embed":
        return forward_flops(cfg)
    return 3 * (forward_flops(cfg) + 2 * cfg.batch * cfg.embedding * cfg.classes)


@dataclass(frozen=True)
class Data:
    feats: np.ndarray  # [B, T, F] float32
    lengths: np.ndarray  # [B] int32, all T: training crops have one length
    labels: np.ndarray  # [B] int32


def make_data(cfg: BenchConfig, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    return Data(
        feats=rng.standard_normal((cfg.batch, cfg.frames, cfg.n_features), np.float32),
        lengths=np.full(cfg.batch, cfg.frames, np.int32),
        labels=rng.integers(0, cfg.classes, cfg.batch).astype(np.int32),
    )


class Impl(Protocol):
    name: str

    def prepare(self, mode: str) -> dict[str, Any]:
        """Build and compile `mode`; returns compile seconds and memory facts."""

    def run(self, mode: str) -> None:
        """One step of `mode`, blocking until it is done."""


# --------------------------------------------------------------------------------------------
# JAX implementations: gru_jax's encoder and Flax's nn.RNN(GRUCell) under one train step


def masked_stats_pooling(frames: jax.Array, lengths: jax.Array) -> jax.Array:
    """Mean and std over valid frames of batch-major frames [B, T, D] -> [B, 2D]."""
    valid = jnp.arange(frames.shape[1])[None, :] < lengths[:, None]
    weights = valid / jnp.maximum(lengths, 1)[:, None]
    return jnp.concatenate(weighted_mean_std(frames, weights, time_axis=1), axis=-1)


class FlaxRNNEncoder(nn.Module):
    """The baseline: Flax's stock nn.RNN(nn.GRUCell) stack with gru_jax's pooling and embedding."""

    hidden: int
    layers: int
    embedding_dim: int

    @nn.compact
    def __call__(self, feats: jax.Array, lengths: jax.Array) -> jax.Array:
        x = feats
        for layer in range(self.layers):
            x = nn.RNN(nn.GRUCell(self.hidden), name=f"rnn_{layer}")(x, seq_lengths=lengths)
        return nn.Dense(self.embedding_dim, name="embedding")(masked_stats_pooling(x, lengths))


def make_optimizer() -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(CLIP_NORM),
        optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY),
    )


def data_mesh() -> Mesh:
    """All devices on one ``data`` axis, as the trainer: batch rows split, parameters replicated."""
    devices = jax.devices()
    return jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,), devices=devices)


class JaxImpl:
    """An encoder module + AAM head + AdamW in one jitted, donated step (the trainer's step
    without its finite-loss guard, metrics and SpecAugment), data-parallel over all devices.

    Gradients are computed per device in `shard_map` and summed once. Under plain jit the
    partitioner all-reduces the scan's weight-gradient accumulators in every loop iteration
    (measured 1.5x slower with 2 CPU devices). `check_vma=False` because Flax's nn.RNN builds
    its initial carry without the per-device type `shard_map` checks for.
    """

    def __init__(self, name: str, encoder: nn.Module, cfg: BenchConfig, data: Data):
        self.name = name
        self.encoder = encoder
        self.head = SpeakerHead(cfg.classes, LOSS)
        self.tx = make_optimizer()
        self.mesh = mesh = data_mesh()
        self.replicated = NamedSharding(mesh, P())
        self.rows = NamedSharding(mesh, P("data"))
        self.batch = self.put_batch(data)
        enc_key, head_key = jax.random.split(jax.random.key(0))
        feats, lengths, labels = self.batch
        params = {"encoder": encoder.init(enc_key, feats[:2], lengths[:2])["params"]}
        emb = jnp.zeros((cfg.batch, cfg.embedding), jnp.float32)
        params["head"] = self.head.init(head_key, emb, labels, LOSS.margin)["params"]
        self.state = jax.device_put((params, self.tx.init(params)), self.replicated)
        self.compiled: dict[str, Callable] = {}

    def _local_loss_and_grads(self, params, feats, lengths, labels):
        """This device's share of the global mean loss and its gradient, summed over devices."""
        n_devices = self.mesh.size

        def loss_fn(p):
            emb = self.encoder.apply({"params": p["encoder"]}, feats, lengths)
            loss = self.head.apply({"params": p["head"]}, emb, labels, LOSS.margin)[0]
            return loss / n_devices

        return jax.lax.psum(jax.value_and_grad(loss_fn)(params), "data")

    def _train_step(self, state, feats, lengths, labels):
        params, opt_state = state
        loss, grads = jax.shard_map(
            self._local_loss_and_grads,
            mesh=self.mesh,
            in_specs=(P(), P("data"), P("data"), P("data")),
            out_specs=P(),
            check_vma=False,
        )(params, feats, lengths, labels)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def encoder_params(self) -> Any:
        return self.state[0]["encoder"]

    def _embed(self, params, feats, lengths):
        return self.encoder.apply({"params": params}, feats, lengths)

    def _compile_train(self) -> Any:
        step = jax.jit(
            self._train_step,
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=0,
        )
        return step.lower(self.state, *self.batch).compile()

    def _train(self) -> None:
        self.train_on(self.batch)

    def put_batch(self, batch: Any) -> tuple[jax.Array, ...]:
        """A host batch (with feats, lengths, labels) as device arrays split by rows."""
        arrays = (batch.feats, batch.lengths.astype(np.int32), batch.labels.astype(np.int32))
        return tuple(jax.device_put(a, self.rows) for a in arrays)

    def train_on(self, batch: tuple[jax.Array, ...]) -> None:
        """One compiled train step on device arrays from `put_batch`."""
        self.state, loss = self.compiled["train"](self.state, *batch)
        jax.block_until_ready((self.state, loss))

    def prepare(self, mode: str) -> dict[str, Any]:
        start = time.perf_counter()
        if mode == "train":
            compiled = self._compile_train()
        else:
            compiled = jax.jit(self._embed).lower(self.encoder_params(), *self.batch[:2]).compile()
        seconds = time.perf_counter() - start
        self.compiled[mode] = compiled
        return {"compile_s": seconds, **memory_facts(compiled)}

    def run(self, mode: str) -> None:
        if mode == "train":
            self._train()
        else:
            jax.block_until_ready(self.compiled["embed"](self.encoder_params(), *self.batch[:2]))


class TrainerImpl(JaxImpl):
    """`gru_jax.training`'s own compiled step (GSPMD data parallelism; needs scipy and tqdm)."""

    def __init__(self, name: str, cfg: BenchConfig, data: Data):
        from gru_jax import training
        from gru_jax.features import FeatureConfig

        train_cfg = training.TrainConfig(
            features=FeatureConfig(n_mels=cfg.n_features),
            model=encoder_config(cfg),
            loss=LOSS,
            optim=training.OptimConfig(
                learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, clip_norm=CLIP_NORM
            ),
            batch_size=cfg.batch,
            crop_frames=cfg.frames,
        )
        self.name = name
        self.mesh = training.data_mesh()
        self.model = training.Model(train_cfg, cfg.classes, self.mesh)
        self.state = jax.device_put(self.model.init_state(0), NamedSharding(self.mesh, P()))
        self.encoder = self.model.encoder
        self.rows = NamedSharding(self.mesh, P("data"))
        self.batch = self.put_batch(data)
        self.batch_dict = dict(zip(("feats", "lengths", "labels"), self.batch, strict=True))
        self.compiled = {}
        self._step = training.compile_train_step(self.model, self.mesh, self.state)

    def encoder_params(self) -> Any:
        return self.state.params["encoder"]

    def _compile_train(self) -> Any:
        return self._step.lower(self.state, self.batch_dict).compile()

    def _train(self) -> None:
        self.state, metrics = self.compiled["train"](self.state, self.batch_dict)
        jax.block_until_ready((self.state, metrics))


def memory_facts(compiled) -> dict[str, Any]:
    """XLA's buffer sizes: temp is the working memory (activations, gradients) of one call."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    return {
        "temp_mb": stats.temp_size_in_bytes / 2**20,
        "argument_mb": stats.argument_size_in_bytes / 2**20,
    }


def encoder_config(cfg: BenchConfig, **overrides: Any) -> ModelConfig:
    base = dict(
        n_features=cfg.n_features,
        hidden=cfg.hidden,
        layers=cfg.layers,
        pooling="stats",
        embedding_dim=cfg.embedding,
    )
    return ModelConfig(**{**base, **overrides})


# --------------------------------------------------------------------------------------------
# PyTorch: torch.nn.GRU (MKL/oneDNN on CPU, cuDNN on GPU) with the same pooling, head, optimizer


class TorchImpl:
    """Eager PyTorch; `threads` (default: torch's own, one per core) is set before every call,
    so variants with different thread counts can be timed in one process."""

    def __init__(self, name: str, cfg: BenchConfig, data: Data, threads: int | None):
        import torch

        self.name = name
        self.torch = torch
        self.threads = threads or torch.get_num_threads()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(0)
        self.gru = torch.nn.GRU(cfg.n_features, cfg.hidden, cfg.layers, batch_first=True)
        self.embedding = torch.nn.Linear(2 * cfg.hidden, cfg.embedding)
        self.head = torch.nn.Parameter(torch.empty(cfg.embedding, cfg.classes))
        torch.nn.init.xavier_uniform_(self.head)
        for module in (self.gru, self.embedding):
            module.to(self.device)
        self.head.data = self.head.data.to(self.device)
        self.params = [*self.gru.parameters(), *self.embedding.parameters(), self.head]
        self.optimizer = torch.optim.AdamW(self.params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        to = lambda a: torch.from_numpy(a).to(self.device)
        self.feats, self.labels = to(data.feats), to(data.labels.astype(np.int64))

    def _embed(self):
        frames, _ = self.gru(self.feats)
        mean = frames.mean(dim=1)
        std = (frames.var(dim=1, unbiased=False) + STD_EPSILON).sqrt()
        return self.embedding(self.torch.cat([mean, std], dim=-1))

    def _loss(self, emb):
        """AAM-softmax as `gru_jax.losses.additive_angular_margin` (not easy_margin)."""
        f = self.torch.nn.functional
        cos = f.normalize(emb, dim=-1) @ f.normalize(self.head, dim=0)
        sine = (1.0 - cos.square()).clamp(1e-12, 1.0).sqrt()
        m = LOSS.margin
        phi = cos * math.cos(m) - sine * math.sin(m)
        phi = self.torch.where(cos <= -math.cos(m), cos - math.sin(m) * m, phi)
        target = f.one_hot(self.labels, cos.shape[-1]).bool()
        return f.cross_entropy(LOSS.scale * self.torch.where(target, phi, cos), self.labels)

    def _train_step(self):
        self.optimizer.zero_grad(set_to_none=True)
        self._loss(self._embed()).backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, CLIP_NORM)
        self.optimizer.step()

    def prepare(self, mode: str) -> dict[str, Any]:
        start = time.perf_counter()
        self.run(mode)  # eager: the first call stands in for compilation
        return {"compile_s": time.perf_counter() - start, "threads": self.threads}

    def run(self, mode: str) -> None:
        self.torch.set_num_threads(self.threads)
        if mode == "train":
            self._train_step()
        else:
            with self.torch.inference_mode():
                self._embed()
        if self.device == "cuda":
            self.torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# Matmul peak


def matmul_shapes(cfg: BenchConfig) -> dict[str, tuple[int, int, int]]:
    """A GEMM of the GRU's own shape ([8B, H] x [H, 3H], its backward's chunk GEMM) and a
    large square one; the peak is the faster of the two."""
    return {
        f"{8 * cfg.batch}x{cfg.hidden}x{3 * cfg.hidden}": (
            8 * cfg.batch,
            cfg.hidden,
            3 * cfg.hidden,
        ),
        "2048x2048x2048": (2048, 2048, 2048),
    }


def matmul_task(m: int, k: int, n: int) -> tuple[Callable[[], None], int]:
    """A task running a jitted f32 matmul enough times for ~4 GFLOP, and its FLOP count."""
    a = jax.random.normal(jax.random.key(1), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (k, n), jnp.float32)
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    jax.block_until_ready(matmul(a, b))
    repeats = max(1, round(4e9 / (2 * m * k * n)))

    def task() -> None:
        jax.block_until_ready([matmul(a, b) for _ in range(repeats)])

    return task, repeats * 2 * m * k * n


# --------------------------------------------------------------------------------------------
# Driver


def parse_overrides(spec: str, overrides: str) -> dict[str, Any]:
    """`a=1,b=x` -> {"a": 1, "b": "x"} (values parsed as JSON where they are JSON)."""
    fields: dict[str, Any] = {}
    for item in filter(None, overrides.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--impl {spec!r}: expected field=value, got {item!r}")
        try:
            fields[key] = json.loads(raw)
        except json.JSONDecodeError:
            fields[key] = raw
    return fields


def parse_impl(spec: str, cfg: BenchConfig, data: Data) -> Impl:
    """`gru_jax[:field=value,...]` (ModelConfig overrides), `flax`, `torch[:threads=N]` or
    `trainer`."""
    name, _, overrides = spec.partition(":")
    fields = parse_overrides(spec, overrides)
    if name == "gru_jax":
        try:
            model_cfg = encoder_config(cfg, **fields)
        except (TypeError, ValueError) as err:
            raise SystemExit(f"--impl {spec!r}: {err}") from err
        return JaxImpl(spec, SpeakerEncoder(model_cfg), cfg, data)
    if name == "torch" and set(fields) <= {"threads"}:
        return TorchImpl(spec, cfg, data, fields.get("threads"))
    if fields:
        raise SystemExit(f"--impl {spec!r}: only gru_jax and torch (threads=N) take overrides")
    if name == "flax":
        return JaxImpl(spec, FlaxRNNEncoder(cfg.hidden, cfg.layers, cfg.embedding), cfg, data)
    if name == "trainer":
        return TrainerImpl(spec, cfg, data)
    raise SystemExit(
        f"--impl {spec!r}: unknown; use gru_jax[:field=value,...], flax, torch, trainer"
    )


def torch_available() -> str | None:
    """None when torch imports, else the reason it does not."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        return f"torch not importable ({err}); torch.nn.GRU skipped"
    return None


def measure_mode(
    mode: str, impls: list[Impl], cfg: BenchConfig, steps: int, warmup: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Compile, warm up, then time every impl and the matmul peak interleaved."""
    prepared = {impl.name: impl.prepare(mode) for impl in impls}
    for impl in impls:
        for _ in range(warmup):
            impl.run(mode)
    peaks = {name: matmul_task(*shape) for name, shape in matmul_shapes(cfg).items()}
    tasks: dict[str, Callable[[], None]] = {impl.name: partial_run(impl, mode) for impl in impls}
    tasks.update({f"matmul {name}": task for name, (task, _) in peaks.items()})
    times = interleaved_times(tasks, steps)

    peak_by_shape = {
        name: flops / float(np.median(times[f"matmul {name}"])) / 1e9
        for name, (_, flops) in peaks.items()
    }
    peak = max(peak_by_shape.values())
    flops = mode_flops(cfg, mode)
    rows = []
    for impl in impls:
        stats = summarize(times[impl.name])
        seconds = stats["ms_median"] / 1e3
        gflops = flops / seconds / 1e9
        rows.append(
            {
                "impl": impl.name,
                "mode": mode,
                **stats,
                "frames_per_s": cfg.batch * cfg.frames / seconds,
                "gflops": gflops,
                "peak_fraction": gflops / peak,
                **prepared[impl.name],
            }
        )
    ours = impls[0].name
    ratios = {
        f"{ours} vs {impl.name}": {
            "ratio_of_medians": float(np.median(times[impl.name]) / np.median(times[ours])),
            "paired": paired_ratio(times[impl.name], times[ours]),
        }
        for impl in impls[1:]
    }
    summary = {"peak_gflops": peak, "peak_gflops_by_shape": peak_by_shape, "ratios": ratios}
    return rows, summary


def partial_run(impl: Impl, mode: str) -> Callable[[], None]:
    return lambda: impl.run(mode)


def target_report(rows: list[dict], summaries: dict[str, dict]) -> list[dict[str, Any]]:
    """Each target of the issue against this run: speed-ups over the fastest variant of each
    baseline (paired per-round medians) and the fraction of the matmul peak."""
    report = []
    for mode, targets in TARGETS.items():
        if mode not in summaries:
            continue
        mode_rows = [r for r in rows if r["mode"] == mode]
        ours = mode_rows[0]
        for what, wanted in targets.items():
            against = None
            if what == "peak_fraction":
                got = ours["peak_fraction"]
            else:
                rivals = [r for r in mode_rows[1:] if r["impl"].split(":")[0] == what]
                if not rivals:
                    continue
                against = min(rivals, key=lambda r: r["ms_median"])["impl"]
                pair = f"{ours['impl']} vs {against}"
                got = summaries[mode]["ratios"][pair]["paired"]["median"]
            report.append(
                {
                    "mode": mode,
                    "target": what,
                    "against": against,
                    "wanted": wanted,
                    "got": got,
                    "met": bool(got >= wanted),
                }
            )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(PRESETS), default="default")
    parser.add_argument(
        "--impl",
        action="append",
        dest="impls",
        help="gru_jax[:field=value,...] (ModelConfig overrides), flax, torch[:threads=N] or "
        "trainer; repeatable; the first is compared with the others "
        "(default: gru_jax, flax, torch, and torch:threads=1 on a multi-core CPU)",
    )
    parser.add_argument("--modes", default="train,embed", help="comma list of train, embed")
    parser.add_argument("--steps", type=int, default=10, help="timed rounds (>= 10 for reports)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON result here")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes takes a comma list of {MODES}, got {args.modes!r}")
    cfg = PRESETS[args.config]
    on_cpu = jax.default_backend() == "cpu"
    specs = args.impls or ["gru_jax", "flax", "torch"] + (
        ["torch:threads=1"] if on_cpu and (os.cpu_count() or 1) > 1 else []
    )
    notes = []
    if on_cpu and "xla_cpu_multi_thread_eigen=false" not in os.environ.get("XLA_FLAGS", ""):
        notes.append(f"XLA_FLAGS lacks the recommended CPU setting: {RECOMMENDED_CPU_FLAGS}")
    machine_before = machine_info()
    if any(s.startswith("torch") for s in specs) and (reason := torch_available()):
        notes.append(reason)
        specs = [s for s in specs if not s.startswith("torch")]
    data = make_data(cfg)
    impls = [parse_impl(spec, cfg, data) for spec in specs]

    rows, summaries = [], {}
    for mode in modes:
        print(
            f"[{mode}] compiling and timing {len(impls)} impls x {args.steps} rounds ...",
            file=sys.stderr,
        )
        mode_rows, summaries[mode] = measure_mode(mode, impls, cfg, args.steps, args.warmup)
        rows += mode_rows
    print_table(
        rows,
        [
            "mode",
            "impl",
            "ms_median",
            "ms_q25",
            "ms_q75",
            "frames_per_s",
            "gflops",
            "peak_fraction",
            "compile_s",
            "temp_mb",
        ],
    )
    for mode, summary in summaries.items():
        print(f"[{mode}] matmul peak {summary['peak_gflops']:.1f} GFLOP/s", file=sys.stderr)
        for pair, ratio in summary["ratios"].items():
            p = ratio["paired"]
            print(
                f"[{mode}] {pair}: x{p['median']:.2f} [{p['q25']:.2f}, {p['q75']:.2f}]",
                file=sys.stderr,
            )
    targets = target_report(rows, summaries) if args.config == "default" else []
    if targets:
        print_table(targets, ["mode", "target", "against", "wanted", "got", "met"])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    result = {
        "benchmark": "gru_throughput",
        "config_name": args.config,
        "config": dataclasses.asdict(cfg),
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "jax_devices": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": versions(),
        "machine": machine_before,
        "load_avg_after": machine_info()["load_avg_1_5_15"],
        "steps": args.steps,
        "warmup": args.warmup,
        "flops": {mode: mode_flops(cfg, mode) for mode in modes},
        "results": rows,
        "summary": summaries,
        "targets": targets,
        "notes": notes,
    }
    emit(result, args.json)


def versions() -> dict[str, str]:
    import flax

    found = {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}
    if torch_available() is None:
        import torch

        found["torch"] = torch.__version__
    return found


if __name__ == "__main__":
    main()
