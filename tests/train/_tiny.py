"""A tiny training config and a synthetic corpus's feature store, shared by the training tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gru_jax.data.features import FeatureConfig
from gru_jax.data.prepare import TrainingData, prepare_store, split_speakers
from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.heads import LossConfig
from gru_jax.synth import make_corpus
from gru_jax.train.config import DataConfig, OptimConfig, TrainConfig, TrainerConfig

N_MELS = 24


def tiny_config(**sections: dict[str, Any]) -> TrainConfig:
    """A 2 x 32 GRU on 24 mel bands, 6 steps of 16 crops; `sections` override fields per section,
    e.g. ``tiny_config(trainer={"steps": 2})``."""
    cfg = TrainConfig(
        data=DataConfig(
            features=FeatureConfig(n_mels=N_MELS), crop_frames=60, min_frames=30, val_speakers=3
        ),
        model=ModelConfig(hidden=32, layers=2, embedding_dim=32),
        loss=LossConfig(kind="aam", margin=0.1, margin_warmup_steps=4),
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=2),
        trainer=TrainerConfig(
            steps=6, batch_size=16, log_every=2, eval_every=3, checkpoint_every=2, val_trials=200
        ),
    )
    changes = {
        name: dataclasses.replace(getattr(cfg, name), **fields) for name, fields in sections.items()
    }
    return dataclasses.replace(cfg, **changes)


def synthetic_training_data(
    root: Path, n_speakers: int, seed: int, n_val_speakers: int
) -> TrainingData:
    """A synthetic corpus of `n_speakers` x 6 utterances -> feature store -> train/val split."""
    info = make_corpus(
        root / "corpus",
        n_speakers=n_speakers,
        n_utterances=6,
        seed=seed,
        n_test_speakers=2,
        progress=False,
    )
    store = prepare_store(
        info.wav_dir,
        FeatureConfig(n_mels=N_MELS),
        list_file=str(info.train_list),
        store_dir=root / "store",
        workers=1,
        progress=False,
    )
    return split_speakers(store, n_val_speakers, seed=0)


def train(cfg: TrainConfig, data: TrainingData, run_dir: Path, until: int | None = None, **kw: Any):
    """A Trainer fitted (to `until`, else to the end) and closed."""
    from gru_jax.train.loop import Trainer  # JAX loads only for the tests that train

    trainer = Trainer(cfg, data, run_dir, progress=False, **kw)
    try:
        trainer.fit(until=until)
    finally:
        trainer.close()
    return trainer
