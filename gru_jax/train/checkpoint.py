"""Saving and restoring everything a run needs to continue bit for bit.

The format is `gru_jax.infer.checkpoint`'s (the reader side lives with inference, so loading an
encoder never imports training). ``state`` holds the whole `TrainState`; ``meta`` the config tree,
the training speakers, the data-stream position (the batch stream is a pure function of the step,
so the position is the step; it is stored explicitly so a reader needs nothing but the checkpoint)
and the validation metrics.
"""

from __future__ import annotations

from typing import Any

import orbax.checkpoint as ocp

from gru_jax.infer.checkpoint import BEST_METRIC, META, STATE


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    meta: dict[str, Any],
    val_eer: float | None = None,
    force: bool = False,
) -> None:
    """Queue an asynchronous save; call ``manager.wait_until_finished()`` before exiting."""
    manager.save(
        step,
        args=ocp.args.Composite(
            **{STATE: ocp.args.StandardSave(state), META: ocp.args.JsonSave(meta)}
        ),
        metrics=None if val_eer is None else {BEST_METRIC: val_eer},
        force=force,
    )


def restore(
    manager: ocp.CheckpointManager, abstract_state: Any, step: int
) -> tuple[Any, dict[str, Any]]:
    """(state, meta) at `step`, placed with the shardings in `abstract_state`."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{STATE: ocp.args.StandardRestore(abstract_state), META: ocp.args.JsonRestore()}
        ),
    )
    return restored[STATE], restored[META]
