"""Orbax checkpoints that hold everything needed to continue a run bit for bit.

Each checkpoint step has two items: ``state`` (parameters, optimizer state, step, PRNG key data, the
non-finite counters: device arrays, saved asynchronously) and ``meta`` (JSON: the full training config,
class names, the data-stream position, validation metrics). The data stream is a pure function of the
step, so the position is just the step number; it is still stored explicitly so a reader needs nothing
but the checkpoint. The manager keeps the latest N steps plus the best by validation EER.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

CHECKPOINT_DIR = "checkpoints"


def _best_metric(metrics: dict[str, Any]) -> float:
    return float(metrics["val_eer"])


def make_manager(out_dir: str | os.PathLike[str], keep: int = 3) -> ocp.CheckpointManager:
    """A manager under ``out_dir/checkpoints`` keeping the last `keep` steps and the lowest-EER one."""
    preservation = policies.AnyPreservationPolicy(
        [
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=_best_metric, reverse=True, n=1),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation,
        best_fn=_best_metric,
        best_mode="min",
        create=True,
    )
    path = Path(out_dir).absolute() / CHECKPOINT_DIR
    return ocp.CheckpointManager(path, options=options, item_names=("state", "meta"))


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    meta: dict[str, Any],
    metrics: dict[str, float] | None = None,
    force: bool = False,
) -> None:
    """Queue an asynchronous save; call ``manager.wait_until_finished()`` before exiting."""
    manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics,
        force=force,
    )


def restore(
    manager: ocp.CheckpointManager, abstract_state: Any, step: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """Restore (state, meta) at `step` (default: latest) onto the shardings in `abstract_state`."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
    )
    return restored.state, restored.meta


def read_meta(manager: ocp.CheckpointManager, step: int | None = None) -> dict[str, Any]:
    """The JSON item alone: what a checkpoint was trained with, without touching the arrays."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
