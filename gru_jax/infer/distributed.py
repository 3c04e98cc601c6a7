"""Several processes of one run (`jax.distributed`): starting them, and collecting rows from all.

Inference and validation embed each process's own utterances on its own devices and then gather
the rows, so every process ends with the same full result, in an order that does not depend on
how many processes there are (callers sort by utterance id).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

log = logging.getLogger(__name__)

ENV = {
    "coordinator": "GRU_JAX_COORDINATOR",
    "num_processes": "GRU_JAX_NUM_PROCESSES",
    "process_id": "GRU_JAX_PROCESS_ID",
}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cpu: bool = False,
) -> None:
    """Join the run's processes. With no arguments (and none of the GRU_JAX_* variables), JAX
    detects the cluster itself (TPU pod slices, Slurm, Kubernetes with the right environment).
    `cpu`: the processes compute on CPUs (tests, a cluster without accelerators), whose
    collectives need gloo."""
    coordinator = coordinator or os.environ.get(ENV["coordinator"])
    if num_processes is None and os.environ.get(ENV["num_processes"]):
        num_processes = int(os.environ[ENV["num_processes"]])
    if process_id is None and os.environ.get(ENV["process_id"]):
        process_id = int(os.environ[ENV["process_id"]])
    if cpu:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    log.info(
        "process %d of %d; %d local and %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def is_main() -> bool:
    """The process that writes files and prints results."""
    return jax.process_index() == 0


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Every process's rows of `local` ([n_p, ...], n_p may differ), in process order."""
    local = np.asarray(local)
    if jax.process_count() == 1:
        return local
    counts = multihost_utils.process_allgather(np.array([len(local)], np.int64)).reshape(-1)
    padded = np.zeros((int(counts.max()), *local.shape[1:]), local.dtype)
    padded[: len(local)] = local
    stacked = multihost_utils.process_allgather(padded)  # [processes, max, ...]
    return np.concatenate([stacked[p, :n] for p, n in enumerate(counts)])


def gather_strings(local: Sequence[str]) -> list[str]:
    """Every process's strings, in process order."""
    if jax.process_count() == 1:
        return list(local)
    encoded = [s.encode() for s in local]
    width = int(gather_rows(np.array([max((len(e) for e in encoded), default=0)])).max())
    table = np.zeros((len(encoded), max(width, 1)), np.uint8)
    for i, e in enumerate(encoded):
        table[i, : len(e)] = np.frombuffer(e, np.uint8)
    return [bytes(row).rstrip(b"\0").decode() for row in gather_rows(table)]


def barrier(name: str) -> None:
    """Wait until every process gets here (a no-op on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def local_copy(tree: Any) -> Any:
    """A replicated global array's local value (on this process's first device)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)
