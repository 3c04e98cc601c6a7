"""The training state and the train step: pure functions, jitted once over a device mesh.

`make_train_step(cfg, n_classes, mesh)` returns the step the trainer runs and the benchmarks time:
replicated state (donated, so it is updated in place), batch rows split over the mesh's ``data``
axis. The encoder runs inside `shard_map`, one block of rows per device, so the GRU's backward
pass runs per device and the replicated parameters' gradients are summed once, at the boundary;
under plain `jit` the partitioner all-reduces the weight gradients inside the backward scan, at
every time step. The loss head sees the whole global batch (GE2E groups rows across devices).

Random masks (SpecAugment, dropout) are drawn per row of the global batch, from the step's key
folded with the row index, so a run is the same on any number of devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from gru_jax.nn.augment import row_keys, spec_augment
from gru_jax.nn.encoder import SpeakerEncoder
from gru_jax.nn.heads import SpeakerHead, margin_at
from gru_jax.nn.mesh import DATA_AXIS, replicated, row_sharded
from gru_jax.train.config import TrainConfig
from gru_jax.train.optim import learning_rate_schedule, make_optimizer

Batch = dict[str, jax.Array]  # feats [B, T, F] float32, lengths [B] int32, labels [B] int32
StepFn = Callable[["TrainState", Batch], tuple["TrainState", dict[str, jax.Array]]]

_AUGMENT_STREAM, _DROPOUT_STREAM = 0, 1


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any  # {"encoder": ..., "head": ...}
    opt_state: Any
    rng: jax.Array  # raw key data (uint32), portable through orbax
    bad_steps: jax.Array  # consecutive non-finite steps, now
    worst_bad_run: jax.Array  # longest run of consecutive non-finite steps so far
    skipped_steps: jax.Array  # all non-finite steps of the run


@dataclass(frozen=True)
class TrainParts:
    """The modules and optimizer of one config; `encoder` may be any module with the
    `SpeakerEncoder` call signature (the benchmarks time Flax's nn.RNN with the same step)."""

    cfg: TrainConfig
    n_classes: int
    encoder: nn.Module
    head: SpeakerHead
    tx: optax.GradientTransformation
    schedule: optax.Schedule


def train_parts(cfg: TrainConfig, n_classes: int, encoder: nn.Module | None = None) -> TrainParts:
    return TrainParts(
        cfg=cfg,
        n_classes=n_classes,
        encoder=SpeakerEncoder(cfg.model) if encoder is None else encoder,
        head=SpeakerHead(
            n_classes=n_classes,
            config=cfg.loss,
            speakers_per_batch=cfg.data.speakers_per_batch or None,
        ),
        tx=make_optimizer(cfg.optim, cfg.decay_steps, cfg.trainer.freeze_encoder_steps),
        schedule=learning_rate_schedule(cfg.optim, cfg.decay_steps),
    )


def init_state(parts: TrainParts, seed: int, encoder: Any = None) -> TrainState:
    """A fresh training state, a pure function of the config, `seed` and the `encoder`
    parameters to start from (fine-tuning; default: new ones). The head is always new: it
    classifies this run's training speakers."""
    enc_key, head_key, run_key = jax.random.split(jax.random.key(seed), 3)
    if encoder is None:
        feats = jnp.zeros((2, 8, parts.cfg.n_features), jnp.float32)
        lengths = jnp.full((2,), 8, jnp.int32)
        encoder = parts.encoder.init(enc_key, feats, lengths)["params"]
    rows = max(2, parts.cfg.trainer.batch_size)
    emb = jnp.zeros((rows, parts.cfg.model.embedding_dim), jnp.float32)
    head = parts.head.init(head_key, emb, jnp.zeros((rows,), jnp.int32), 0.0)["params"]
    params = {"encoder": encoder, "head": head}
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
        step=zero,
        params=params,
        opt_state=parts.tx.init(params),
        rng=jax.random.key_data(run_key),
        bad_steps=zero,
        worst_bad_run=zero,
        skipped_steps=zero,
    )


def _encode(parts: TrainParts, mesh: jax.sharding.Mesh, check_vma: bool) -> Callable:
    """Training-mode embeddings of the global batch, each device encoding its own rows."""
    augment = parts.cfg.spec_augment

    def local(params: Any, feats: jax.Array, lengths: jax.Array, key: jax.Array) -> jax.Array:
        n_rows = feats.shape[0]
        keys = row_keys(key, jax.lax.axis_index(DATA_AXIS) * n_rows, n_rows)
        fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
        if augment.enabled:
            feats = spec_augment(fold(keys, _AUGMENT_STREAM), feats, lengths, augment)
        return parts.encoder.apply(
            {"params": params}, feats, lengths, train=True, keys=fold(keys, _DROPOUT_STREAM)
        )

    rows = P(DATA_AXIS)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(P(), rows, rows, P()),
        out_specs=rows,
        check_vma=check_vma,
    )


def step_function(parts: TrainParts, mesh: jax.sharding.Mesh, check_vma: bool = True) -> StepFn:
    """One optimizer step (not jitted); a non-finite loss or gradient leaves parameters and
    optimizer state untouched and is counted."""
    encode = _encode(parts, mesh, check_vma)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        margin = margin_at(state.step, parts.cfg.loss)

        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            emb = encode(params["encoder"], batch["feats"], batch["lengths"], step_key)
            return parts.head.apply({"params": params["head"]}, emb, batch["labels"], margin)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = parts.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep_if_finite = lambda new, old: jax.tree.map(
            lambda a, b: jnp.where(finite, a, b), new, old
        )
        bad_steps = jnp.where(finite, 0, state.bad_steps + 1)
        new_state = state.replace(
            step=state.step + 1,
            params=keep_if_finite(params, state.params),
            opt_state=keep_if_finite(opt_state, state.opt_state),
            bad_steps=bad_steps,
            worst_bad_run=jnp.maximum(state.worst_bad_run, bad_steps),
            skipped_steps=state.skipped_steps + (~finite).astype(jnp.int32),
        )
        metrics = dict(
            metrics, loss=loss, grad_norm=grad_norm, lr=parts.schedule(state.step), margin=margin
        )
        return new_state, metrics

    return train_step


def make_train_step(
    cfg: TrainConfig,
    n_classes: int,
    mesh: jax.sharding.Mesh,
    encoder: nn.Module | None = None,
    check_vma: bool = True,
) -> tuple[TrainParts, StepFn]:
    """The jitted, donated train step of `cfg` on `mesh`, and the parts it was built from.

    `check_vma=False` lets modules that do not type their values per device (Flax's nn.RNN)
    run inside `shard_map`; gradients are the same.
    """
    parts = train_parts(cfg, n_classes, encoder)
    state_shape = jax.eval_shape(functools.partial(init_state, parts, 0))
    state_sharding = jax.tree.map(lambda _: replicated(mesh), state_shape)
    rows = row_sharded(mesh)
    step = jax.jit(
        step_function(parts, mesh, check_vma),
        in_shardings=(state_sharding, {"feats": rows, "lengths": rows, "labels": rows}),
        out_shardings=(state_sharding, replicated(mesh)),
        donate_argnums=0,
    )
    return parts, step


def initial_state(
    parts: TrainParts, mesh: jax.sharding.Mesh, seed: int, encoder: Any = None
) -> TrainState:
    """`init_state` computed once, replicated over `mesh` (`encoder`, if given, already is)."""
    init = jax.jit(init_state, static_argnums=(0, 1), out_shardings=replicated(mesh))
    return init(parts, seed, encoder)
