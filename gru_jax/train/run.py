"""From a corpus on disk to a trained run: feature store, speaker split, trainer."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import jax

from gru_jax.core import config as configs
from gru_jax.data.prepare import TrainingData, prepare_parts, prepare_store, split_speakers
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


def training_data(cfg: TrainConfig, source: CorpusSource, progress: bool) -> TrainingData:
    """One store and split on one process; this process's part of the corpus on several."""
    options = dict(
        list_file=source.list_file,
        split=source.split,
        store_dir=source.store_dir,
        workers=source.workers,
        rebuild=source.rebuild,
        progress=progress and jax.process_index() == 0,
        augment=cfg.data.augment,
    )
    if jax.process_count() == 1:
        store = prepare_store(source.path, cfg.data.features, **options)
        log.info("%s", store)
        return split_speakers(store, cfg.data.val_speakers, cfg.trainer.seed)
    data = prepare_parts(
        source.path,
        cfg.data.features,
        [jax.process_index()],
        jax.process_count(),
        cfg.data.val_speakers,
        cfg.trainer.seed,
        by_speaker=bool(cfg.data.speakers_per_batch),
        **options,
    )
    log.info("part %d of %d: %s", jax.process_index(), data.n_parts, data.parts[0].store)
    return data


def train(
    cfg: TrainConfig,
    source: CorpusSource,
    run_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    devices: list[jax.Device] | None = None,
) -> RunResult:
    """Build (or reuse) the feature store, hold out validation speakers, train (or resume).

    On several processes each extracts and reads only its own part of the corpus
    (`data.prepare.prepare_parts`): no shared filesystem is needed for features, and a process
    never waits for another's extraction.
    """
    data = training_data(cfg, source, progress)
    n_devices = len(devices) if devices is not None else jax.device_count()
    log.info(
        "%d training speakers (%d utterances here), %d validation speakers (%d utterances "
        "here); %d %s device(s)",
        data.n_classes,
        sum(len(p.train_indices) for p in data.parts),
        cfg.data.val_speakers,
        data.n_val,
        n_devices,
        jax.devices()[0].platform,
    )
    log.info("config:\n%s", configs.to_json(cfg))
    trainer = Trainer(cfg, data, run_dir, progress=progress, devices=devices)
    try:
        return trainer.fit()
    finally:
        trainer.close()
