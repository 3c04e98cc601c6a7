"""Starting a run from a trained encoder (fine-tuning): which checkpoint, which configs, which
parameters.

A GRU trained from scratch on a small corpus (tens of speakers) overfits; generated voices are
free, so the recipe is to train on many of them, then start a run on the user's speakers from that
encoder. As with WeSpeaker's ``model_init`` and SpeechBrain's pretrained embedding models, only
the encoder is carried over: the classification head is new (it scores this run's speakers), the
optimizer state is fresh and the run starts at step 0 with its whole learning-rate schedule,
warm-up included (the new head needs it). ``trainer.freeze_encoder_steps`` trains the head alone
first ("linear probing, then fine-tuning"), so a random head's first large gradients do not reach
the pretrained encoder; the encoder then gets a warm-up of its own (`optim.thaw_schedule`).

The source is named in the config (``trainer.init_from``) and its checkpoint in every checkpoint's
meta. A restarted run resumes from its own checkpoints and never re-reads the source's
parameters; another source is refused like any other config change.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jax
from etils import epath

from gru_jax.core.config import ConfigError
from gru_jax.core.rundir import RunDir, is_remote
from gru_jax.data.features import FeatureConfig
from gru_jax.infer.checkpoint import (
    checkpoint_manager,
    encoder_configs,
    load_encoder,
    pick_step,
    read_meta,
)
from gru_jax.nn.encoder import ModelConfig
from gru_jax.train.config import TrainConfig, differences

log = logging.getLogger(__name__)

# Model fields that say how the encoder is computed or regularised while training, not what its
# parameters mean: a run started from an encoder keeps its own (a small corpus may want dropout).
RUN_OWN_MODEL_FIELDS = (
    "kernel",
    "projection",
    "chunk",
    "unroll",
    "backward",
    "grad_chunk",
    "remat",
    "dropout",
    "compute_dtype",
)


@dataclass(frozen=True)
class InitSource:
    """The checkpoint a run starts from and the configs its encoder was trained with."""

    run: RunDir
    step: int
    best: bool  # picked as the run's best by validation EER (else named, or the latest)
    features: FeatureConfig
    model: ModelConfig

    def record(self) -> dict[str, Any]:
        """What a fine-tuned run's checkpoints say they started from."""
        return {"run": str(self.run), "step": self.step}

    def __str__(self) -> str:
        how = " (best by validation EER)" if self.best else ""
        return f"{self.run} step {self.step}{how}"


def absolute(path: str) -> str:
    """`path` spelled one way (local paths absolute, bucket paths as they are), so a restarted run
    compares its source by value."""
    return path.rstrip("/") if is_remote(path) else os.path.abspath(path)


def init_source(path: str) -> InitSource:
    """The checkpoint `path` names: a run directory (its best checkpoint by validation EER, else
    its latest) or one of its step directories (``runs/gen/checkpoints/600``)."""
    given = epath.Path(absolute(path))
    step = int(given.name) if given.name.isdigit() and given.parent.name == "checkpoints" else None
    run = RunDir(given.parent.parent if step is not None else given)
    if not run.checkpoints.is_dir():
        raise FileNotFoundError(
            f"init from {path}: neither a training run directory nor one of its checkpoint steps "
            "(<run>/checkpoints/<step>)"
        )
    manager = checkpoint_manager(run)
    try:
        best = step is None and manager.best_step() is not None
        step = pick_step(manager, step, best)
        features, model = encoder_configs(read_meta(manager, step)["config"])
    finally:
        manager.close()
    return InitSource(run=run, step=step, best=best, features=features, model=model)


def _with_encoder_of(cfg: TrainConfig, source: InitSource) -> TrainConfig:
    """`cfg` with the source's feature config and model, keeping `cfg`'s run-own model fields."""
    own = {name: getattr(cfg.model, name) for name in RUN_OWN_MODEL_FIELDS}
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, features=source.features),
        model=dataclasses.replace(source.model, **own),
    )


def _shown(changed: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: source {a!r}, asked {b!r}" for k, (a, b) in changed.items())


def fine_tune_config(cfg: TrainConfig, explicit: Collection[str] = ()) -> TrainConfig:
    """`cfg` set up to start from ``cfg.trainer.init_from``: the source's feature config and model
    architecture replace `cfg`'s (an encoder means nothing with other features or another shape),
    each replaced field logged; the source is spelled as an absolute path.

    `explicit`: the dotted fields the user set (``--set``); a source that contradicts one of them
    is a `ConfigError`, not a silent replacement.
    """
    source = init_source(cfg.trainer.init_from)
    adopted = _with_encoder_of(cfg, source)
    changed = {k: (b, a) for k, (a, b) in differences(cfg, adopted).items()}
    clash = {k: v for k, v in changed.items() if k in explicit}
    if clash:
        raise ConfigError(
            f"the encoder of {source} was trained with other settings than --set asks "
            f"({_shown(clash)}); drop those --set options (the source's are taken) or start "
            "from scratch"
        )
    log.info("starting from the encoder of %s", source)
    for field, (theirs, ours) in changed.items():
        log.info("  %s = %r, the source's (the config asked %r)", field, theirs, ours)
    trainer = dataclasses.replace(adopted.trainer, init_from=absolute(cfg.trainer.init_from))
    return dataclasses.replace(adopted, trainer=trainer)


def source_encoder(cfg: TrainConfig, sharding: jax.sharding.Sharding) -> tuple[Any, InitSource]:
    """The encoder parameters of ``cfg.trainer.init_from``, placed with `sharding` (any device
    count), and where they came from; `cfg` must have the source's features and architecture
    (`fine_tune_config` gives them)."""
    source = init_source(cfg.trainer.init_from)
    mismatch = differences(_with_encoder_of(cfg, source), cfg)
    if mismatch:
        raise ConfigError(
            f"cannot start from the encoder of {source}: this run's config differs in "
            f"{_shown(mismatch)} (train.py --init-from takes the source's)"
        )
    return load_encoder(source.run.path, source.step, sharding=sharding).params, source
