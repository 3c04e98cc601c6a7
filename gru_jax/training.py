"""Training: one jitted, sharded `train_step` and the loop around it.

The step is compiled once over a `Mesh` with a ``data`` axis spanning every device of every process:
parameters and optimizer state are replicated, the batch is split along its rows, the loss is the
mean over the global batch and XLA inserts the gradient all-reduce. The state is donated so it is
updated in place. Everything a run needs to continue bit for bit (state, PRNG key, data position =
step, config) goes into orbax checkpoints; the stream of batches is a pure function of the step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from gru_jax import checkpoint, configs
from gru_jax.batching import Batch, CropBatches, Prefetcher
from gru_jax.embed import Embedder
from gru_jax.features import FeatureConfig
from gru_jax.losses import LossConfig, SpeakerHead, margin_at
from gru_jax.model import ModelConfig, SpeakerEncoder, spec_augment
from gru_jax.scoring import cosine_scores
from gru_jax.scoring import eer as compute_eer

if TYPE_CHECKING:
    from gru_jax.data import TrainingData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # "adamw" | "sgd" (with momentum)
    learning_rate: float = 2e-3  # peak, reached after warm-up
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    final_lr_fraction: float = 0.02  # cosine floor, as a fraction of the peak
    step_every: int = 10_000  # "step" schedule: multiply by step_gamma every step_every steps
    step_gamma: float = 0.5
    weight_decay: float = 1e-4
    momentum: float = 0.9
    clip_norm: float = 5.0  # global-norm clipping; 0 disables

    def __post_init__(self) -> None:
        if self.name not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', not {self.name!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ValueError(f"schedule must be cosine, step or constant, not {self.schedule!r}")


@dataclass(frozen=True)
class TrainConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 2000
    batch_size: int = 64  # global, over all devices
    crop_frames: int = 200
    min_frames: int = 50  # utterances shorter than this are not used for training
    speakers_per_batch: int = 0  # >0: speaker-balanced batches (required by GE2E)
    spec_augment: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_speakers: int = 8  # held-out speakers for validation EER
    val_trials: int = 2000
    max_bad_steps: int = 5  # stop after this many non-finite steps in a row
    eval_max_frames: int = 32_000  # frames per embedding batch during validation

    def __post_init__(self) -> None:
        if self.model.n_features != self.features.n_features:
            raise ValueError(
                f"model.n_features={self.model.n_features} but the features have "
                f"{self.features.n_features}; set them equal"
            )
        if self.loss.kind == "ge2e" and self.speakers_per_batch <= 0:
            raise ValueError("GE2E needs speaker-balanced batches: set speakers_per_batch > 0")
        if self.speakers_per_batch and self.batch_size % self.speakers_per_batch:
            raise ValueError(
                f"batch_size={self.batch_size} is not a multiple of "
                f"speakers_per_batch={self.speakers_per_batch}"
            )


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array  # raw key data (uint32), portable through orbax
    bad_steps: jax.Array  # consecutive non-finite steps
    skipped_steps: jax.Array  # all non-finite steps of the run


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    warmup = max(cfg.warmup_steps, 0)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0,
            cfg.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(total_steps, warmup + 1),
            end_value=cfg.learning_rate * cfg.final_lr_fraction,
        )
    if cfg.schedule == "step":
        decay = optax.exponential_decay(
            cfg.learning_rate, cfg.step_every, cfg.step_gamma, staircase=True
        )
    else:
        decay = optax.constant_schedule(cfg.learning_rate)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.learning_rate, warmup), decay], [warmup]
    )


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg, total_steps)
    if cfg.name == "adamw":
        opt = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    else:
        opt = optax.chain(
            optax.add_decayed_weights(cfg.weight_decay),
            optax.sgd(schedule, momentum=cfg.momentum, nesterov=True),
        )
    if cfg.clip_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt


def data_mesh(devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over all devices (of all processes) with one ``data`` axis."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


class Model:
    """The encoder and the classification head of one config, with pure init/apply functions."""

    def __init__(self, cfg: TrainConfig, n_classes: int, mesh: jax.sharding.Mesh | None = None):
        self.cfg = cfg
        self.n_classes = n_classes
        self.mesh = mesh
        self.encoder = SpeakerEncoder(cfg.model)
        self.head = SpeakerHead(
            n_classes=n_classes,
            config=cfg.loss,
            speakers_per_batch=cfg.speakers_per_batch or None,
        )
        self.tx = make_optimizer(cfg.optim, cfg.steps)
        self.schedule = learning_rate_schedule(cfg.optim, cfg.steps)

    def init_state(self, seed: int) -> TrainState:
        key = jax.random.key(seed)
        enc_key, head_key, run_key = jax.random.split(key, 3)
        feats = jnp.zeros((2, 8, self.cfg.model.n_features), jnp.float32)
        lengths = jnp.full((2,), 8, jnp.int32)
        enc = self.encoder.init(enc_key, feats, lengths)["params"]
        emb = jnp.zeros((max(2, self.cfg.batch_size), self.cfg.model.embedding_dim), jnp.float32)
        labels = jnp.zeros((emb.shape[0],), jnp.int32)
        head = self.head.init(head_key, emb, labels, 0.0)["params"]
        params = {"encoder": enc, "head": head}
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.tx.init(params),
            rng=jax.random.key_data(run_key),
            bad_steps=jnp.zeros((), jnp.int32),
            skipped_steps=jnp.zeros((), jnp.int32),
        )

    def encode(self, enc_params: Any, feats: jax.Array, lengths: jax.Array, key: jax.Array):
        """Training-mode embeddings; on a mesh, each device encodes its own rows.

        Under `shard_map` the GRU's backward runs per device and the replicated parameters'
        gradient is summed over devices once, at the boundary. Under plain `jit` the partitioner
        all-reduces the weight gradients inside the backward scan, at every time step (1.5x slower
        on 2 CPU devices). Each device folds its index into the key, so dropout and SpecAugment
        masks differ between devices.
        """

        def local(params: Any, feats: jax.Array, lengths: jax.Array, key: jax.Array):
            if self.mesh is not None:
                key = jax.random.fold_in(key, jax.lax.axis_index("data"))
            aug_key, dropout_key = jax.random.split(key)
            if self.cfg.spec_augment:
                feats = spec_augment(aug_key, feats, lengths)
            return self.encoder.apply(
                {"params": params}, feats, lengths, train=True, rngs={"dropout": dropout_key}
            )

        if self.mesh is None:
            return local(enc_params, feats, lengths, key)
        rows = P("data")
        return jax.shard_map(
            local, mesh=self.mesh, in_specs=(P(), rows, rows, P()), out_specs=rows
        )(enc_params, feats, lengths, key)

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        """One optimizer step; a non-finite loss or gradient leaves params and optimizer untouched."""
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        feats, lengths, labels = batch["feats"], batch["lengths"], batch["labels"]
        margin = margin_at(state.step, self.cfg.loss)

        def loss_fn(params):
            emb = self.encode(params["encoder"], feats, lengths, step_key)
            return self.head.apply({"params": params["head"]}, emb, labels, margin)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep_if_finite = lambda new, old: jax.tree.map(
            lambda a, b: jnp.where(finite, a, b), new, old
        )
        new_state = state.replace(
            step=state.step + 1,
            params=keep_if_finite(params, state.params),
            opt_state=keep_if_finite(opt_state, state.opt_state),
            bad_steps=jnp.where(finite, 0, state.bad_steps + 1),
            skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        )
        metrics = dict(
            metrics, loss=loss, grad_norm=grad_norm, lr=self.schedule(state.step), margin=margin
        )
        return new_state, metrics


def compile_train_step(model: Model, mesh: jax.sharding.Mesh, state: TrainState) -> Callable:
    """`train_step` jitted once: replicated state (donated), batch rows split over ``data``."""
    replicated = NamedSharding(mesh, P())
    rows = NamedSharding(mesh, P("data"))
    state_sharding = jax.tree.map(lambda _: replicated, state)
    batch_sharding = {"feats": rows, "lengths": rows, "labels": rows}
    return jax.jit(
        model.train_step,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )


def put_batch(batch: Batch, mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """This process's rows of a global batch -> device arrays sharded by rows over the mesh."""
    rows = NamedSharding(mesh, P("data"))
    global_rows = len(batch.labels) * jax.process_count()
    arrays = {
        "feats": batch.feats,
        "lengths": batch.lengths.astype(np.int32),
        "labels": batch.labels.astype(np.int32),
    }
    return {
        k: jax.make_array_from_process_local_data(rows, v, (global_rows, *v.shape[1:]))
        for k, v in arrays.items()
    }


def train_stream(cfg: TrainConfig, data: TrainingData) -> CropBatches:
    """The run's batch stream: batch k is a pure function of (seed, k), so a step number resumes it."""
    return CropBatches(
        data.store,
        data.train_indices,
        data.train_labels,
        cfg.batch_size,
        crop_frames=cfg.crop_frames,
        min_frames=cfg.min_frames,
        seed=cfg.seed,
        speakers_per_batch=cfg.speakers_per_batch or None,
    )


def sample_trials(labels: np.ndarray, n_trials: int, seed: int) -> tuple[np.ndarray, ...]:
    """Balanced genuine/impostor pairs (i, j, target) over utterances with speaker `labels`."""
    rng = np.random.default_rng(seed)
    by_speaker = [np.flatnonzero(labels == s) for s in np.unique(labels)]
    multi = [u for u in by_speaker if len(u) >= 2]
    if not multi or len(by_speaker) < 2:
        raise ValueError("validation needs >= 2 speakers and a speaker with >= 2 utterances")
    half = n_trials // 2
    first, second = [], []
    for _ in range(half):
        utts = multi[rng.integers(len(multi))]
        i, j = rng.choice(utts, 2, replace=False)
        first.append(i)
        second.append(j)
    for _ in range(n_trials - half):
        a, b = rng.choice(len(by_speaker), 2, replace=False)
        first.append(rng.choice(by_speaker[a]))
        second.append(rng.choice(by_speaker[b]))
    target = np.r_[np.ones(half, np.int32), np.zeros(n_trials - half, np.int32)]
    return np.asarray(first), np.asarray(second), target


def validation_eer(embedder: Embedder, params: Any, data: TrainingData, cfg: TrainConfig) -> float:
    emb = embedder.embed_source(params["encoder"], data.store, data.val_indices)
    labels = data.store_speaker_codes(data.val_indices)
    i, j, target = sample_trials(labels, cfg.val_trials, cfg.seed)
    scores = np.asarray(cosine_scores(emb, emb, i, j))
    return float(compute_eer(scores, target)[0])


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class RunResult:
    step: int
    best_val_eer: float | None
    last_val_eer: float | None
    skipped_steps: int
    frames_per_s: float
    wall_s: float
    out_dir: Path


def _read_metrics(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= up_to_step]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


class Trainer:
    """Owns a run directory: config, metrics.jsonl, training_curves.png and checkpoints/.

    Creating a Trainer on a directory with checkpoints resumes from the latest one (the config must
    match); `fit` runs to ``cfg.steps`` or to `stop_at` (a planned interruption, used by tests).
    `devices` defaults to every device of every process.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: TrainingData,
        out_dir: str | os.PathLike[str],
        progress: bool = True,
        devices: list[jax.Device] | None = None,
    ):
        self.cfg = cfg
        self.data = data
        self.out = Path(out_dir)
        self.is_main = jax.process_index() == 0
        self.progress = progress and self.is_main
        self.history: list[dict[str, Any]] = []
        self.mesh = data_mesh(devices)
        n_dev = self.mesh.size
        if cfg.batch_size % n_dev:
            raise configs.ConfigError(
                f"batch_size={cfg.batch_size} does not divide over {n_dev} devices; "
                f"use a multiple of {n_dev}"
            )
        self.model = Model(cfg, data.n_classes, self.mesh)
        self.stream = train_stream(cfg, data)
        self.embedder = Embedder(self.model.encoder, self.mesh, max_frames=cfg.eval_max_frames)
        self.manager = checkpoint.make_manager(self.out, keep=cfg.keep_checkpoints)
        replicated = NamedSharding(self.mesh, P())
        state = jax.jit(self.model.init_state, static_argnums=0, out_shardings=replicated)(cfg.seed)
        self.best_val_eer: float | None = None
        self.metrics_path = self.out / "metrics.jsonl"
        latest = self.manager.latest_step()
        if latest is not None:
            abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state
            )
            state, meta = checkpoint.restore(self.manager, abstract)
            self._check_resumable(meta)
            self.best_val_eer = meta.get("best_val_eer")
            log.info("%s: resumed from step %d", self.out, int(state.step))
        self.state = state
        self.step_fn = compile_train_step(self.model, self.mesh, state)

    def _check_resumable(self, meta: dict[str, Any]) -> None:
        saved = meta["config"]
        if saved != configs.to_dict(self.cfg):
            diff = {
                k: (saved.get(k), v)
                for k, v in configs.to_dict(self.cfg).items()
                if saved.get(k) != v
            }
            raise configs.ConfigError(
                f"{self.out} holds a run with another config (saved vs asked: {diff}); "
                "use another --out or remove the directory"
            )
        if meta["class_names"] != list(self.data.class_names):
            raise configs.ConfigError(
                f"{self.out}: the training speakers differ from the checkpoint's"
            )

    def meta(self, step: int, val_eer: float | None) -> dict[str, Any]:
        return {
            "config": configs.to_dict(self.cfg),
            "class_names": list(self.data.class_names),
            "data_position": {"step": step, "seed": self.cfg.seed},
            "store": str(self.data.store.path),
            "feature_hash": self.cfg.features.hash(),
            "val_eer": val_eer,
            "best_val_eer": self.best_val_eer,
            "n_devices": self.mesh.size,
        }

    def _save(self, step: int, val_eer: float | None, force: bool = False) -> None:
        metrics = None if val_eer is None else {"val_eer": val_eer}
        checkpoint.save(self.manager, step, self.state, self.meta(step, val_eer), metrics, force)

    def _batches(self, start: int, stop: int) -> Iterator[dict[str, jax.Array]]:
        part = (jax.process_index(), jax.process_count())
        with Prefetcher(
            lambda step: self.stream.batch(step, part),
            start,
            stop,
            depth=4,
            workers=2,
            transform=lambda b: put_batch(b, self.mesh),
        ) as batches:
            yield from batches

    def fit(self, stop_at: int | None = None) -> RunResult:
        """Train to ``cfg.steps`` (or to `stop_at`, a planned interruption) from the current step."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        start = int(self.state.step)
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        self.history = _read_metrics(self.metrics_path, start)
        if self.is_main:
            (self.out / "config.json").write_text(configs.to_json(cfg))
            _write_jsonl(self.metrics_path, self.history)  # drop rows past the resumed step
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            desc="train",
        )
        last_val: float | None = None
        fps = 0.0
        t_run = t_window = time.perf_counter()
        pending: list[dict[str, jax.Array]] = []
        try:
            for step, batch in zip(range(start, end), self._batches(start, end), strict=False):
                self.state, metrics = self.step_fn(self.state, batch)
                pending.append(metrics)
                done = step + 1
                bar.update(1)
                if done % cfg.log_every and done != end:
                    continue
                host_metrics = jax.device_get(pending)  # waits for the dispatched steps
                fps = (
                    len(pending)
                    * cfg.batch_size
                    * cfg.crop_frames
                    / (time.perf_counter() - t_window)
                )
                row = self._log(done, host_metrics, fps)
                pending = []
                bar.set_postfix(loss=f"{row['loss']:.3f}", fps=f"{fps:,.0f}")
                self._stop_if_diverged(done)
                val_due = done % cfg.eval_every == 0 or done == cfg.steps
                if val_due:
                    last_val = self._validate(done)
                    bar.write(
                        f"step {done}: validation EER {100 * last_val:.2f}% "
                        f"(best {100 * self.best_val_eer:.2f}%)"
                    )
                # inside a run of non-finite steps the state has not moved: keep the last good
                # checkpoint as the one a restart resumes from
                save_due = done % cfg.checkpoint_every == 0 or val_due or done == end
                if save_due and int(self.state.bad_steps) == 0:
                    self._save(done, last_val if val_due else None)
                t_window = time.perf_counter()
        finally:
            bar.close()
            self.manager.wait_until_finished()
        return RunResult(
            step=int(self.state.step),
            best_val_eer=self.best_val_eer,
            last_val_eer=last_val,
            skipped_steps=int(self.state.skipped_steps),
            frames_per_s=fps,
            wall_s=time.perf_counter() - t_run,
            out_dir=self.out,
        )

    def _append_row(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.is_main:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    def _log(self, step: int, host: list[dict[str, Any]], fps: float) -> dict[str, Any]:
        """Metrics of the steps since the last log line -> one averaged metrics.jsonl row."""
        row: dict[str, Any] = {"step": step}
        for key in host[0]:
            values = np.array([float(h[key]) for h in host])
            finite = values[np.isfinite(values)]
            row[key] = float(finite.mean()) if len(finite) else math.nan
        row["frames_per_s"] = fps
        row["skipped_steps"] = int(self.state.skipped_steps)
        self._append_row(row)
        return row

    def _stop_if_diverged(self, step: int) -> None:
        if int(self.state.bad_steps) >= self.cfg.max_bad_steps:
            raise NonFiniteError(
                f"{self.cfg.max_bad_steps} consecutive steps had a non-finite loss or gradient "
                f"(last at step {step}); stopping. The last good checkpoint is step "
                f"{self.manager.latest_step()} in {self.manager.directory}. "
                "Lower the learning rate or check the data."
            )

    def _validate(self, step: int) -> float:
        val = validation_eer(self.embedder, self.state.params, self.data, self.cfg)
        if self.best_val_eer is None or val < self.best_val_eer:
            self.best_val_eer = val
        self._append_row({"step": step, "val_eer": val})
        if self.is_main:
            from gru_jax import reports  # matplotlib only where curves are drawn

            reports.plot_training_curves(self.history, self.out / "training_curves.png")
        return val

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def replace_config(cfg: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    """Apply dotted ``section.field=value`` overrides (values parsed as JSON, else kept as strings)."""
    data = configs.to_dict(cfg)
    for dotted, raw in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            if p not in node or not isinstance(node[p], dict):
                raise configs.ConfigError(f"unknown config section {p!r} in {dotted!r}")
            node = node[p]
        if leaf not in node:
            raise configs.ConfigError(f"unknown config field {dotted!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node[leaf] = value
    return configs.from_dict(TrainConfig, data)


@dataclass(frozen=True)
class TrainedModel:
    """What inference needs from a run: its config, the encoder's parameters, the class names."""

    config: TrainConfig
    encoder_params: Any
    class_names: tuple[str, ...]
    step: int
    meta: dict[str, Any]

    @property
    def encoder(self) -> SpeakerEncoder:
        return SpeakerEncoder(self.config.model)


def load_trained(
    run_dir: str | os.PathLike[str], step: int | None = None, best: bool = False
) -> TrainedModel:
    """Restore a run's encoder from its orbax checkpoint (latest, `step`, or the best by val EER)."""
    run_dir = Path(run_dir)
    if not (run_dir / checkpoint.CHECKPOINT_DIR).is_dir():
        raise FileNotFoundError(f"{run_dir}: not a training run directory (no checkpoints/ inside)")
    manager = checkpoint.make_manager(run_dir)
    try:
        if best and step is None:
            step = manager.best_step()
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{run_dir}: no checkpoint has been written yet")
        meta = checkpoint.read_meta(manager, step)
        cfg = configs.from_dict(TrainConfig, meta["config"])
        model = Model(cfg, len(meta["class_names"]))
        abstract = jax.eval_shape(model.init_state, cfg.seed)
        state, meta = checkpoint.restore(manager, abstract, step)
    finally:
        manager.close()
    return TrainedModel(cfg, state.params["encoder"], tuple(meta["class_names"]), step, meta)
