"""Argument parsing for the thin `train.py` / `eval.py` entry points; the work is in the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gru_jax.configs import ConfigError

DEMO_CORPUS = {"n_speakers": 200, "n_utterances": 10, "seed": 0}
MAX_CPU_DEVICES = 8  # beyond this a default batch of 64 leaves too few rows per device


def cpu_device_flags(environ: dict[str, str], cores: int) -> str | None:
    """XLA_FLAGS for one single-threaded XLA CPU device per core, or None to leave them be.

    Splitting the batch over the cores beats XLA's multi-threaded matmuls, which synchronise
    at every recurrent step: the demo trains 1.5x faster and embedding runs 1.6x faster on 2
    cores (benchmarks/README.md). Only the host platform reads these flags, so GPU and TPU
    runs are unaffected; flags the user set are never touched.
    """
    devices = min(cores, MAX_CPU_DEVICES)
    if "XLA_FLAGS" in environ or devices < 2:
        return None
    return f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=false"


def use_every_cpu_core() -> bool:
    """Apply `cpu_device_flags` to this process; True if it did. Must run before JAX loads."""
    if "jax" in sys.modules:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = cpu_device_flags(dict(os.environ), cores or 1)
    if flags is not None:
        os.environ["XLA_FLAGS"] = flags
    return flags is not None


def training_devices(batch_size: int) -> list | None:
    """The most CPU devices that divide the batch (None, meaning all, off the CPU).

    For the devices `use_every_cpu_core` made: 6 cores and a batch of 64 train on 4 of them
    rather than failing. Real accelerators are never dropped silently.
    """
    import jax

    devices = jax.devices()
    if devices[0].platform != "cpu":
        return None
    usable = max(n for n in range(1, len(devices) + 1) if batch_size % n == 0)
    return devices[:usable]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("jax._src", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a GRU speaker-embedding model. With no --data, the synthetic demo corpus "
        "is generated (under --demo-dir) and used.",
    )
    p.add_argument("--preset", default="demo", help="demo (default) or voxceleb")
    p.add_argument(
        "--data",
        help="corpus: VoxCeleb dir, LibriSpeech dir, Kaldi data dir, "
        "CSV manifest or folder per speaker",
    )
    p.add_argument(
        "--list", dest="list_file", help="training list (`speaker path` lines) for --data"
    )
    p.add_argument("--out", help="run directory (default: runs/<preset>)")
    p.add_argument("--steps", type=int, help="total training steps")
    p.add_argument("--batch-size", type=int, help="global batch size (a multiple of the devices)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set model.hidden=256 "
        "--set optim.learning_rate=1e-3 (repeatable)",
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
        "--fresh",
        action="store_true",
        help="refuse to resume: fail if --out already holds checkpoints",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host: TPU pods, SLURM, ...)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    setup_logging(args.verbose)
    log = logging.getLogger("train")
    per_core = not args.distributed and use_every_cpu_core()
    import jax

    if args.distributed:
        jax.distributed.initialize()
    from gru_jax import configs, presets
    from gru_jax.data import prepare_store, split_speakers
    from gru_jax.training import Trainer, replace_config

    if args.preset not in presets.PRESETS:
        raise ConfigError(f"unknown preset {args.preset!r}; choose from {sorted(presets.PRESETS)}")
    overrides = _parse_overrides(args.set)
    if args.steps is not None:
        overrides["steps"] = str(args.steps)
    if args.batch_size is not None:
        overrides["batch_size"] = str(args.batch_size)
    try:
        cfg = replace_config(presets.PRESETS[args.preset](), overrides)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"bad configuration: {e}") from None

    data_path, list_file = args.data, args.list_file
    if data_path is None:
        from gru_jax.synth import make_corpus

        log.info("no --data: using the synthetic demo corpus in %s", args.demo_dir)
        info = make_corpus(args.demo_dir, progress=not args.no_progress, **DEMO_CORPUS)
        data_path, list_file = str(info.wav_dir), str(info.train_list)
    out = Path(args.out or f"runs/{args.preset}")
    if args.fresh and (out / "checkpoints").exists() and any((out / "checkpoints").iterdir()):
        raise ConfigError(f"{out} already holds checkpoints and --fresh was given")

    store = prepare_store(
        data_path,
        cfg.features,
        list_file=list_file,
        store_dir=args.store_dir,
        workers=args.workers,
        rebuild=args.rebuild_features,
        progress=not args.no_progress,
    )
    log.info("%s", store)
    data = split_speakers(store, cfg.val_speakers, cfg.seed)
    log.info(
        "%d training speakers (%d utterances), %d validation speakers (%d utterances); %d "
        "device(s): %s",
        data.n_classes,
        len(data.train_indices),
        cfg.val_speakers,
        len(data.val_indices),
        jax.device_count(),
        jax.devices()[0].platform,
    )
    log.info("config:\n%s", configs.to_json(cfg))
    devices = training_devices(cfg.batch_size) if per_core else None
    if devices is not None:
        log.info(
            "CPU: one XLA device per core, training on %d (set XLA_FLAGS to choose yourself)",
            len(devices),
        )
    trainer = Trainer(cfg, data, out, progress=not args.no_progress, devices=devices)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    eer = "n/a" if result.best_val_eer is None else f"{100 * result.best_val_eer:.2f}%"
    print(
        f"\ntrained {result.step} steps in {result.wall_s:.0f} s "
        f"({result.frames_per_s:,.0f} frames/s at the end); validation EER best {eer}; "
        f"{result.skipped_steps} non-finite step(s) skipped"
    )
    print(f"run directory: {out}  (config.json, metrics.jsonl, training_curves.png, checkpoints/)")
    return 0


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's input or data: reported in one line, without a traceback."""
    from gru_jax.audio import AudioError
    from gru_jax.configs import ConfigError
    from gru_jax.corpora import CorpusError
    from gru_jax.enrollment import EnrollmentError
    from gru_jax.store import StoreError
    from gru_jax.training import NonFiniteError

    return (
        AudioError,
        ConfigError,
        CorpusError,
        EnrollmentError,
        StoreError,
        NonFiniteError,
        FileNotFoundError,
    )


def guarded(call: Callable[[], int]) -> int:
    """Run a command: its exit code, or 2 with ``error: ...`` for a user error, 130 on Ctrl-C."""
    try:
        return call()
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def main_guard(fn: Callable[[], int]) -> None:
    sys.exit(guarded(fn))


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
