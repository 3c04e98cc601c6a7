"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from gru_jax.train.config import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, decay_steps: int) -> optax.Schedule:
    """Linear warm-up to the peak, then cosine decay to a floor over `decay_steps` (held at the
    floor afterwards), step decay, or constant."""
    warmup = cfg.warmup_steps
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0,
            cfg.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(decay_steps, warmup + 1),
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


def thaw_schedule(frozen_steps: int, warmup_steps: int) -> optax.Schedule:
    """The encoder's share of the learning rate when it starts frozen: 0 for `frozen_steps`
    updates, then its own linear warm-up to 1 over `warmup_steps` (the first thawed update already
    moves), so a pretrained encoder is not hit at full rate by a head it has never trained with."""

    def share(count: jax.Array) -> jax.Array:
        return jnp.clip((count - frozen_steps + 1) / max(warmup_steps, 1), 0.0, 1.0)

    return share


def make_optimizer(
    cfg: OptimConfig, decay_steps: int, freeze_encoder_steps: int = 0
) -> optax.GradientTransformation:
    """The optimizer of ``{"encoder", "head"}`` parameters. With `freeze_encoder_steps`, the
    encoder's updates (weight decay included) are scaled by `thaw_schedule`; its gradients still
    feed the optimizer's moments, so they are estimated, not cold, when it thaws."""
    schedule = learning_rate_schedule(cfg, decay_steps)
    if cfg.name == "adamw":
        opt = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    else:
        opt = optax.chain(
            optax.add_decayed_weights(cfg.weight_decay),
            optax.sgd(schedule, momentum=cfg.momentum, nesterov=True),
        )
    if cfg.clip_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    if freeze_encoder_steps:
        thaw = optax.scale_by_schedule(thaw_schedule(freeze_encoder_steps, cfg.warmup_steps))
        opt = optax.chain(
            opt,
            optax.partition(
                {"encoder": thaw, "head": optax.identity()},
                {"encoder": "encoder", "head": "head"},
            ),
        )
    return opt
