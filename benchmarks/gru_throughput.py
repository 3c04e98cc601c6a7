"""Training-step and embedding throughput of gru_jax's GRU encoder vs Flax nn.RNN and torch.nn.GRU.

Every implementation runs the same model: a GRU stack, masked mean+std pooling, a Dense
embedding, and for training an AAM-softmax head, global-norm clipping (5.0) and AdamW. They are
timed in one process, interleaved round by round with a jitted f32 matmul that measures the
device's peak, so ratios and peak fractions compare like with like even on a busy machine.

    python -m benchmarks.gru_throughput [--config default] [--impl gru_jax --impl flax ...]

JSON on stdout (and in --json PATH), a table on stderr. The JAX implementations run the trainer's
own compiled step (`gru_jax.train.step.make_train_step`) and the embedding function every
evaluation uses (`gru_jax.infer.embedding.Embedder`); nothing here needs librosa or soundfile.

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

from benchmarks._common import (
    emit,
    interleaved_times,
    machine_info,
    paired_ratio,
    print_table,
    summarize,
)
from gru_jax.data.features import FeatureConfig
from gru_jax.infer.embedding import Embedder
from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.heads import LossConfig
from gru_jax.nn.mesh import data_mesh, put_rows
from gru_jax.nn.pooling import STD_EPSILON, masked_mean_std
from gru_jax.train.config import DataConfig, OptimConfig, TrainConfig, TrainerConfig
from gru_jax.train.step import initial_state, make_train_step

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
    dtype: str = "float32"  # matmul inputs of every implementation (state and loss stay f32)


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
# JAX implementations: gru_jax's encoder and Flax's nn.RNN(GRUCell), both under the trainer's step


class FlaxRNNEncoder(nn.Module):
    """The baseline: Flax's stock nn.RNN(nn.GRUCell) stack with gru_jax's pooling and embedding."""

    hidden: int
    layers: int
    embedding_dim: int
    dtype: str = "float32"

    @nn.compact
    def __call__(
        self, feats: jax.Array, lengths: jax.Array, train: bool = False, keys: Any = None
    ) -> jax.Array:
        x = feats
        for layer in range(self.layers):
            cell = nn.GRUCell(self.hidden, dtype=jnp.dtype(self.dtype), param_dtype=jnp.float32)
            x = nn.RNN(cell, name=f"rnn_{layer}")(x, seq_lengths=lengths)
        pooled = jnp.concatenate(masked_mean_std(x, lengths, time_axis=1), axis=-1)
        return nn.Dense(self.embedding_dim, name="embedding")(pooled)


def train_config(cfg: BenchConfig, **model_overrides: Any) -> TrainConfig:
    """The benchmark model as a training config: the same step the trainer runs."""
    return TrainConfig(
        data=DataConfig(features=FeatureConfig(n_mels=cfg.n_features), crop_frames=cfg.frames),
        model=encoder_config(cfg, **model_overrides),
        loss=LOSS,
        optim=OptimConfig(
            learning_rate=LEARNING_RATE,
            weight_decay=WEIGHT_DECAY,
            clip_norm=CLIP_NORM,
            warmup_steps=0,
            schedule="constant",
        ),
        trainer=TrainerConfig(batch_size=cfg.batch),
    )


class JaxImpl:
    """`gru_jax.train.step.make_train_step` (AAM head, clipping, AdamW, finite-loss guard;
    data-parallel over all devices) and `gru_jax.infer.embedding.Embedder`'s jitted batch
    function, for gru_jax's encoder or another module with its call signature."""

    def __init__(
        self,
        name: str,
        cfg: BenchConfig,
        data: Data,
        model_overrides: dict[str, Any] | None = None,
        encoder: nn.Module | None = None,
    ):
        self.name = name
        self.mesh = data_mesh()
        train_cfg = train_config(cfg, **(model_overrides or {}))
        # Flax's nn.RNN builds its carry without the per-device types shard_map checks for
        self.parts, self.step = make_train_step(
            train_cfg, cfg.classes, self.mesh, encoder=encoder, check_vma=encoder is None
        )
        self.state = initial_state(self.parts, self.mesh, 0)
        self.embedder = Embedder(self.parts.encoder, self.mesh)
        self.batch = self.put_batch(data)
        self.compiled: dict[str, Callable] = {}

    def put_batch(self, batch: Any) -> dict[str, jax.Array]:
        """A host batch (with feats, lengths, labels) as device arrays split by rows."""
        arrays = {
            "feats": batch.feats,
            "lengths": batch.lengths.astype(np.int32),
            "labels": batch.labels.astype(np.int32),
        }
        return put_rows(self.mesh, arrays)

    def encoder_params(self) -> Any:
        return self.state.params["encoder"]

    def train_on(self, batch: dict[str, jax.Array]) -> None:
        """One compiled train step on device arrays from `put_batch`."""
        self.state, metrics = self.compiled["train"](self.state, batch)
        jax.block_until_ready((self.state, metrics))

    def prepare(self, mode: str) -> dict[str, Any]:
        start = time.perf_counter()
        if mode == "train":
            compiled = self.step.lower(self.state, self.batch).compile()
        else:
            compiled = self.embedder.embed_batch.lower(
                self.encoder_params(), self.batch["feats"], self.batch["lengths"]
            ).compile()
        seconds = time.perf_counter() - start
        self.compiled[mode] = compiled
        return {"compile_s": seconds, **memory_facts(compiled)}

    def run(self, mode: str) -> None:
        if mode == "train":
            self.train_on(self.batch)
        else:
            emb = self.compiled["embed"](
                self.encoder_params(), self.batch["feats"], self.batch["lengths"]
            )
            jax.block_until_ready(emb)


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
        compute_dtype=cfg.dtype,
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
        dtype = getattr(torch, cfg.dtype)
        self.gru.to(dtype)  # cuDNN in bf16 when asked; pooling, head and loss stay float32
        self.gru.flatten_parameters()  # one contiguous weight buffer, as cuDNN wants
        self.params = [*self.gru.parameters(), *self.embedding.parameters(), self.head]
        self.optimizer = torch.optim.AdamW(self.params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        to = lambda a: torch.from_numpy(a).to(self.device)
        self.feats, self.labels = to(data.feats).to(dtype), to(data.labels.astype(np.int64))

    def _embed(self):
        frames, _ = self.gru(self.feats)
        frames = frames.float()
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
    """`gru_jax[:field=value,...]` (ModelConfig overrides), `flax` or `torch[:threads=N]`."""
    name, _, overrides = spec.partition(":")
    fields = parse_overrides(spec, overrides)
    if name == "gru_jax":
        try:
            encoder_config(cfg, **fields)
        except (TypeError, ValueError) as err:
            raise SystemExit(f"--impl {spec!r}: {err}") from err
        return JaxImpl(spec, cfg, data, model_overrides=fields)
    if name == "torch" and set(fields) <= {"threads"}:
        return TorchImpl(spec, cfg, data, fields.get("threads"))
    if fields:
        raise SystemExit(f"--impl {spec!r}: only gru_jax and torch (threads=N) take overrides")
    if name == "flax":
        encoder = FlaxRNNEncoder(cfg.hidden, cfg.layers, cfg.embedding, cfg.dtype)
        return JaxImpl(spec, cfg, data, encoder=encoder)
    raise SystemExit(f"--impl {spec!r}: unknown; use gru_jax[:field=value,...], flax or torch")


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


def default_specs() -> list[str]:
    on_cpu = jax.default_backend() == "cpu"
    return ["gru_jax", "flax", "torch"] + (
        ["torch:threads=1"] if on_cpu and (os.cpu_count() or 1) > 1 else []
    )


def run(
    config_name: str,
    specs: list[str],
    modes: list[str],
    steps: int,
    warmup: int,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Compile, warm up and time `specs` on preset `config_name` (compute dtype `dtype`);
    prints the tables and returns the JSON-able result."""
    cfg = PRESETS[config_name]
    if dtype is not None:
        cfg = dataclasses.replace(cfg, dtype=dtype)
    notes = []
    on_cpu = jax.default_backend() == "cpu"
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
            f"[{mode}] compiling and timing {len(impls)} impls x {steps} rounds ...",
            file=sys.stderr,
        )
        mode_rows, summaries[mode] = measure_mode(mode, impls, cfg, steps, warmup)
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
    targets = target_report(rows, summaries) if config_name == "default" else []
    if targets:
        print_table(targets, ["mode", "target", "against", "wanted", "got", "met"])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return {
        "benchmark": "gru_throughput",
        "config_name": config_name,
        "config": dataclasses.asdict(cfg),
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "jax_devices": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": versions(),
        "machine": machine_before,
        "load_avg_after": machine_info()["load_avg_1_5_15"],
        "steps": steps,
        "warmup": warmup,
        "flops": {mode: mode_flops(cfg, mode) for mode in modes},
        "results": rows,
        "summary": summaries,
        "targets": targets,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(PRESETS), default="default")
    parser.add_argument(
        "--impl",
        action="append",
        dest="impls",
        help="gru_jax[:field=value,...] (ModelConfig overrides, e.g. kernel=pallas), flax or "
        "torch[:threads=N]; repeatable; the first is compared with the others "
        "(default: gru_jax, flax, torch, and torch:threads=1 on a multi-core CPU)",
    )
    parser.add_argument("--modes", default="train,embed", help="comma list of train, embed")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="compute dtype of all")
    parser.add_argument("--steps", type=int, default=10, help="timed rounds (>= 10 for reports)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON result here")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes takes a comma list of {MODES}, got {args.modes!r}")
    specs = args.impls or default_specs()
    result = run(args.config, specs, modes, args.steps, args.warmup, args.dtype)
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
