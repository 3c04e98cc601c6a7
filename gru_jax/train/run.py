"""From a corpus on disk to a trained run: feature store, speaker split, trainer."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import jax

from gru_jax.core import config as configs
from gru_jax.data.prepare import prepare_store, split_speakers
from gru_jax.train.config import TrainConfig
from gru_jax.train.loop import RunResult, Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusSource:
    """Where training audio comes from and where its features are cached."""

    path: str  # any layout `data.corpora.read_corpus` detects
    list_file: str | None = None  # a `speaker path` training list for path
    split: str | None = None  # CSV manifests: the `split` value to train on (None: all rows)
    store_dir: str | None = None  # default: the feature cache, keyed by corpus and config
    workers: int | None = None  # feature-extraction processes (default: all cores)
    rebuild: bool = False  # replace a store built with another feature config


def train(
    cfg: TrainConfig,
    source: CorpusSource,
    run_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    devices: list[jax.Device] | None = None,
) -> RunResult:
    """Build (or reuse) the feature store, hold out validation speakers, train (or resume)."""
    store = prepare_store(
        source.path,
        cfg.data.features,
        list_file=source.list_file,
        split=source.split,
        store_dir=source.store_dir,
        workers=source.workers,
        rebuild=source.rebuild,
        progress=progress,
    )
    log.info("%s", store)
    data = split_speakers(store, cfg.data.val_speakers, cfg.trainer.seed)
    n_devices = len(devices) if devices is not None else jax.device_count()
    log.info(
        "%d training speakers (%d utterances), %d validation speakers (%d utterances); "
        "%d %s device(s)",
        data.n_classes,
        len(data.train_indices),
        cfg.data.val_speakers,
        len(data.val_indices),
        n_devices,
        jax.devices()[0].platform,
    )
    log.info("config:\n%s", configs.to_json(cfg))
    trainer = Trainer(cfg, data, run_dir, progress=progress, devices=devices)
    try:
        return trainer.fit()
    finally:
        trainer.close()
