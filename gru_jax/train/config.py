"""The training config tree: data, model, loss, optimizer, SpecAugment and the trainer's cadences.

One tree, saved with every checkpoint and in ``config.json``; ``--set section.field=value``
reaches any field (`with_overrides`). The model's input width is the feature config's, so it is
set once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gru_jax.core import config as configs
from gru_jax.core.config import Config
from gru_jax.data.augmentation import AugmentConfig
from gru_jax.data.features import FeatureConfig
from gru_jax.infer.checkpoint import upgrade_config
from gru_jax.nn.augment import SpecAugmentConfig
from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.heads import SPEAKER_BALANCED, LossConfig

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class DataConfig(Config):
    """Which frames training sees: features, crop length, batch composition, held-out speakers."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    crop_frames: int = 200
    min_frames: int = 50  # utterances shorter than this are not used for training
    # Normalise each crop over its own frames (features.cmn="utterance" only), as a test utterance
    # of its length is normalised, instead of with its whole utterance's statistics.
    crop_cmn: bool = True
    speakers_per_batch: int = 0  # >0: speaker-balanced batches (required by GE2E)
    val_speakers: int = 8  # held out from training, for the validation EER
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # copies in the feature store

    def validate(self) -> None:
        for name in ("crop_frames", "min_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("speakers_per_batch", "val_speakers"):
            if getattr(self, name) < 0:
                raise ValueError(f"DataConfig.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class OptimConfig(Config):
    name: str = "adamw"  # "adamw" | "sgd" (with Nesterov momentum)
    learning_rate: float = 2e-3  # peak, reached after warm-up
    warmup_steps: int = 100
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    decay_steps: int = 0  # cosine: steps to decay over (0: the run's trainer.steps)
    final_lr_fraction: float = 0.02  # cosine floor, as a fraction of the peak
    step_every: int = 10_000  # "step" schedule: multiply by step_gamma every step_every steps
    step_gamma: float = 0.5
    weight_decay: float = 1e-4
    momentum: float = 0.9
    clip_norm: float = 5.0  # global-norm clipping; 0 disables

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"OptimConfig.name must be one of {OPTIMIZERS}, not {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"OptimConfig.schedule must be one of {SCHEDULES}, not {self.schedule!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"OptimConfig.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("warmup_steps", "decay_steps", "clip_norm", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"OptimConfig.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainerConfig(Config):
    """How long, how big, and how often to log, validate and checkpoint."""

    steps: int = 2000
    batch_size: int = 64  # global, over all devices
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    val_trials: int = 2000
    max_bad_steps: int = 5  # stop after this many non-finite steps in a row
    eval_max_frames: int = 32_000  # frames per embedding batch during validation
    prefetch_workers: int = 2  # threads reading crops ahead (raise for many devices per host)
    init_from: str = ""  # a run, or one of its checkpoint steps, whose encoder the run starts from
    freeze_encoder_steps: int = 0  # with init_from: train only the new head for this many steps

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            if f.name not in ("seed", "init_from", "freeze_encoder_steps") and (
                getattr(self, f.name) < 1
            ):
                raise ValueError(
                    f"TrainerConfig.{f.name} must be >= 1, got {getattr(self, f.name)}"
                )
        if self.freeze_encoder_steps < 0:
            raise ValueError(
                f"TrainerConfig.freeze_encoder_steps must be >= 0, got {self.freeze_encoder_steps}"
            )
        if self.freeze_encoder_steps and not self.init_from:
            raise ValueError(
                "TrainerConfig.freeze_encoder_steps needs trainer.init_from (--init-from): "
                "only a trained encoder is worth freezing"
            )


# Fields that do not change what is computed: a run can continue with other values.
RESUMABLE_CHANGES = frozenset(
    {
        "trainer.steps",
        "trainer.log_every",
        "trainer.eval_every",
        "trainer.checkpoint_every",
        "trainer.keep_checkpoints",
        "trainer.max_bad_steps",
        "trainer.eval_max_frames",
        "trainer.prefetch_workers",
    }
)


@dataclass(frozen=True)
class TrainConfig(Config):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def validate(self) -> None:
        spb = self.data.speakers_per_batch
        if self.loss.kind in SPEAKER_BALANCED and spb <= 0:
            raise ValueError("GE2E needs speaker-balanced batches: set data.speakers_per_batch > 0")
        if spb and self.trainer.batch_size % spb:
            raise ValueError(
                f"trainer.batch_size={self.trainer.batch_size} is not a multiple of "
                f"data.speakers_per_batch={spb}"
            )

    @property
    def n_features(self) -> int:
        return self.data.features.n_features

    @property
    def decay_steps(self) -> int:
        """The learning-rate schedule's horizon (a run extended past it stays at the floor)."""
        return self.optim.decay_steps or self.trainer.steps


def with_overrides(cfg: TrainConfig, overrides: Mapping[str, str]) -> TrainConfig:
    """`cfg` with ``section.field=value`` strings applied, each parsed by its field's type."""
    return configs.replace(cfg, overrides)


def from_saved(config: dict[str, Any]) -> TrainConfig:
    """The config saved in a checkpoint or config.json (older layouts are upgraded)."""
    return configs.from_dict(TrainConfig, upgrade_config(config))


def differences(saved: TrainConfig, asked: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (saved, asked) for every field that differs."""
    out: dict[str, tuple[Any, Any]] = {}

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}{key}.")
        elif a != b:
            out[prefix.rstrip(".")] = (a, b)

    walk(configs.to_dict(saved), configs.to_dict(asked), "")
    return out


def resumed_config(saved: TrainConfig, asked: TrainConfig) -> TrainConfig:
    """The config to continue a run with: `asked`, if it differs from `saved` only in fields that
    do not change what is computed. The learning-rate schedule keeps the saved run's horizon
    unless `asked` sets optim.decay_steps itself, so raising trainer.steps extends a finished run
    at its final learning rate instead of jumping back up the schedule."""
    if not asked.optim.decay_steps:
        optim = configs.replace(asked.optim, {"decay_steps": str(saved.decay_steps)})
        asked = configs.from_dict(
            TrainConfig, {**configs.to_dict(asked), "optim": configs.to_dict(optim)}
        )
    changed = differences(saved, asked)
    changed.pop("optim.decay_steps", None)  # an explicit new horizon is the user's choice
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES}
    if refused:
        shown = "; ".join(f"{k}: saved {a!r}, asked {b!r}" for k, (a, b) in refused.items())
        raise configs.ConfigError(
            f"the run holds another config ({shown}); use another --out, or keep those fields "
            f"(what may change when resuming: {', '.join(sorted(RESUMABLE_CHANGES))})"
        )
    return asked
