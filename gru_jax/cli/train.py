"""`train.py` / `gru-jax-train`: train a GRU speaker-embedding model (`--help`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gru_jax.cli.common import (
    add_distributed_arguments,
    guarded,
    parse_overrides,
    setup_logging,
    start_distributed,
    training_devices,
    use_every_cpu_core,
    wants_distributed,
)
from gru_jax.core.config import ConfigError
from gru_jax.core.rundir import RunDir

# Generated voices are free and unseen-voice EER fell with their number more than with anything
# else the demo's time allows (benchmarks/README.md, "The demo"); the last 50 stay unseen, in 3
# sessions each. Every training utterance is its own session: more channels per voice to ignore.
DEMO_CORPUS = {
    "n_speakers": 1500,
    "n_utterances": 10,
    "n_test_speakers": 50,
    "n_train_sessions": 10,
    "seed": 0,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a GRU speaker-embedding model. With no --data, the synthetic demo corpus "
        "is generated (under --demo-dir) and used.",
    )
    p.add_argument(
        "--preset", default="demo", help="demo (default), dev, voxceleb, librispeech or cnceleb"
    )
    p.add_argument(
        "--data",
        help="corpus: VoxCeleb dir, LibriSpeech dir, Kaldi data dir, "
        "CSV manifest or folder per speaker",
    )
    p.add_argument(
        "--list", dest="list_file", help="training list (`speaker path` lines) for --data"
    )
    p.add_argument(
        "--split",
        help="CSV manifests: train on the rows of this split (default: 'train' when the "
        "manifest has a split column; 'all' for every row)",
    )
    p.add_argument("--out", help="run directory (default: runs/<preset>)")
    p.add_argument("--steps", type=int, help="total training steps (trainer.steps)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="global batch size, a multiple of the device count (trainer.batch_size)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set model.hidden=256 "
        "--set optim.learning_rate=1e-3 --set data.features.vad=utterance (repeatable)",
    )
    p.add_argument("--demo-dir", default="data/demo", help="where the demo corpus is written")
    p.add_argument(
        "--store-dir",
        help="feature store directory (default: a cache keyed by the "
        "corpus and the feature config)",
    )
    p.add_argument("--workers", type=int, help="feature-extraction processes (default: all cores)")
    p.add_argument(
        "--rebuild-features",
        action="store_true",
        help="rebuild a store that was built with another feature config",
    )
    p.add_argument(
        "--init-from",
        metavar="RUN_OR_CHECKPOINT",
        help="fine-tune: start from the encoder of a trained run (its best checkpoint by "
        "validation EER, else its latest) or of one checkpoint (RUN/checkpoints/STEP), with a new "
        "head for this run's speakers, a fresh optimizer and step 0; the source's model and "
        "feature config are taken (trainer.init_from)",
    )
    p.add_argument(
        "--freeze-encoder-steps",
        type=int,
        metavar="N",
        help="with --init-from: train only the new head for the first N steps, then the whole "
        "model, the encoder with a warm-up of its own (trainer.freeze_encoder_steps)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="refuse to resume: fail if --out already holds checkpoints",
    )
    add_distributed_arguments(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def config_from_args(args: argparse.Namespace):  # -> TrainConfig (JAX loads with gru_jax.train)
    from gru_jax.train.config import with_overrides
    from gru_jax.train.finetune import fine_tune_config
    from gru_jax.train.presets import PRESETS

    if args.preset not in PRESETS:
        raise ConfigError(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    overrides = parse_overrides(args.set)
    if args.steps is not None:
        overrides["trainer.steps"] = str(args.steps)
    if args.batch_size is not None:
        overrides["trainer.batch_size"] = str(args.batch_size)
    if args.init_from is not None:
        overrides["trainer.init_from"] = args.init_from
    if args.freeze_encoder_steps is not None:
        overrides["trainer.freeze_encoder_steps"] = str(args.freeze_encoder_steps)
    cfg = with_overrides(PRESETS[args.preset](), overrides)
    return fine_tune_config(cfg, explicit=overrides) if cfg.trainer.init_from else cfg


def _split(args: argparse.Namespace, data_path: str) -> str | None:
    if args.split == "all":
        return None
    if args.split is not None or not data_path.lower().endswith(".csv"):
        return args.split
    from gru_jax.data.corpora import manifest_splits

    return "train" if manifest_splits(data_path) else None


def run(args: argparse.Namespace) -> int:
    log = logging.getLogger("train")
    distributed = wants_distributed(args)
    per_core = not distributed and use_every_cpu_core()
    if distributed:
        start_distributed(args)
    from gru_jax.infer.distributed import barrier, is_main
    from gru_jax.train.run import CorpusSource, train

    cfg = config_from_args(args)
    data_path, list_file = args.data, args.list_file
    if data_path is None:
        from gru_jax.synth import make_corpus

        log.info("no --data: using the synthetic demo corpus in %s", args.demo_dir)
        if is_main():  # one writer; the others read it once it is there (a shared filesystem)
            make_corpus(args.demo_dir, progress=not args.no_progress, **DEMO_CORPUS)
        barrier("demo corpus")
        info = make_corpus(args.demo_dir, progress=False, **DEMO_CORPUS)  # re-used as it is
        data_path, list_file = str(info.wav_dir), str(info.train_list)
    out = Path(args.out or f"runs/{args.preset}")
    if args.fresh and RunDir(out).has_checkpoints():
        raise ConfigError(f"{out} already holds checkpoints and --fresh was given")
    devices = training_devices(cfg.trainer.batch_size) if per_core else None
    if devices is not None:
        log.info(
            "CPU: one XLA device per core, training on %d (set XLA_FLAGS to choose yourself)",
            len(devices),
        )
    source = CorpusSource(
        path=data_path,
        list_file=list_file,
        split=_split(args, data_path),
        store_dir=args.store_dir,
        workers=args.workers,
        rebuild=args.rebuild_features,
    )
    result = train(cfg, source, out, progress=not args.no_progress, devices=devices)
    if not is_main():
        return 0
    eer = "n/a" if result.best_val_eer is None else f"{100 * result.best_val_eer:.2f}%"
    print(
        f"\ntrained {result.step} steps in {result.wall_s:.0f} s "
        f"({result.frames_per_s:,.0f} frames/s at the end); validation EER best {eer}; "
        f"{result.skipped_steps} non-finite step(s) skipped"
    )
    print(f"run directory: {out}  (config.json, metrics.jsonl, training_curves.png, checkpoints/)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)
    return guarded(lambda: run(args))
