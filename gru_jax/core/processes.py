"""Worker processes that never outlive their parent.

A `ProcessPoolExecutor` worker blocks on its task queue; if the parent is killed (SIGKILL, OOM
killer, a lost SSH session) nothing tells it to stop, and it lingers with its memory. Pools here
start workers with `exit_with_parent`, which ends a worker soon after its parent is gone.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
import time

PARENT_POLL_SECONDS = 0.5


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent_pid:  # re-parented: the parent died
            os._exit(1)


def exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: a daemon thread exits this process once `parent_pid` is no longer its parent."""
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def worker_pool(n_workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """Spawned (never forked: the parent may hold JAX and its threads) workers tied to this process."""
    return concurrent.futures.ProcessPoolExecutor(
        n_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )
