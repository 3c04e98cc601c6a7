"""What every command shares: logging, CPU device flags, `--set` parsing, user-error handling."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from gru_jax.core.config import ConfigError

MAX_CPU_DEVICES = 8  # beyond this a default batch of 64 leaves too few rows per device


def cpu_device_flags(environ: dict[str, str], cores: int) -> str | None:
    """XLA_FLAGS for one single-threaded XLA CPU device per core, or None to leave them be.

    Splitting the batch over the cores beats XLA's multi-threaded matmuls, which synchronise
    at every recurrent step (benchmarks/README.md, "Threads"). Only the host platform reads
    these flags, so GPU and TPU runs are unaffected; flags the user set are never touched.
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


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several processes (jax.distributed)",
        "one process per host (or per GPU); every process runs the same command. "
        "Also from $GRU_JAX_COORDINATOR, $GRU_JAX_NUM_PROCESSES, $GRU_JAX_PROCESS_ID.",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join the other processes, found by JAX itself (TPU pod slices, Slurm, Kubernetes)",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    group.add_argument("--num-processes", type=int, metavar="N")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1")


def wants_distributed(args: argparse.Namespace) -> bool:
    explicit = (args.coordinator, args.num_processes, args.process_id)
    from_env = any(os.environ.get(name) for name in _DISTRIBUTED_ENV)
    return bool(args.distributed or any(v is not None for v in explicit) or from_env)


def start_distributed(args: argparse.Namespace) -> None:
    """Join the run's processes (before anything touches a device)."""
    from gru_jax.infer.distributed import initialize

    initialize(args.coordinator, args.num_processes, args.process_id, cpu=True)


_DISTRIBUTED_ENV = ("GRU_JAX_COORDINATOR", "GRU_JAX_NUM_PROCESSES", "GRU_JAX_PROCESS_ID")


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


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`--set section.field=value` arguments -> {dotted field: raw value string}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's input or data: reported in one line, without a traceback."""
    from gru_jax.data.audio import AudioError
    from gru_jax.data.corpora import CorpusError
    from gru_jax.data.store import StoreError
    from gru_jax.eval.database import EnrollmentError
    from gru_jax.infer.streaming import StreamError
    from gru_jax.train.loop import NonFiniteError

    return (
        AudioError,
        ConfigError,
        CorpusError,
        EnrollmentError,
        StreamError,
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


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
