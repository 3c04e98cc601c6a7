"""The checkpoint format, and loading a trained encoder from it without the training code.

A run's ``checkpoints/`` is an orbax `CheckpointManager` with two items per step: ``state`` (the
whole training state: step, parameters ``{"encoder", "head"}``, optimizer state, PRNG key data,
counters) and ``meta`` (JSON: the config tree, the training speakers, the data position, metrics).
Training writes both (`gru_jax.train.checkpoint`); inference restores only
``state.params.encoder`` (orbax partial restore), onto whatever devices it runs on, and reads only
the feature and model sections of the config, so it never builds an optimizer.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from gru_jax.core.config import ConfigError, from_dict
from gru_jax.core.rundir import RunDir
from gru_jax.data.features import FeatureConfig, upgrade_feature_dict
from gru_jax.nn.encoder import ModelConfig, init_params

STATE, META = "state", "meta"
BEST_METRIC = "val_eer"  # lower is better

# Runs written before the config tree had sections kept these fields at its top level.
_FLAT_DATA_FIELDS = ("crop_frames", "min_frames", "speakers_per_batch", "val_speakers")
_FLAT_TRAINER_FIELDS = (
    "steps",
    "batch_size",
    "seed",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "val_trials",
    "max_bad_steps",
    "eval_max_frames",
)


def _best_metric(metrics: dict[str, Any]) -> float:
    return float(metrics[BEST_METRIC])


def checkpoint_manager(run: RunDir, keep: int = 3, create: bool = False) -> ocp.CheckpointManager:
    """The run's manager: keeps the latest `keep` steps and the one with the lowest validation EER.

    A step saved between validations has no metrics, and `BestN` would keep every such step
    forever unless told not to: a run's disk use would grow with its length.
    """
    best = policies.BestN(
        get_metric_fn=_best_metric, reverse=True, n=1, keep_checkpoints_without_metrics=False
    )
    preservation = policies.AnyPreservationPolicy([policies.LatestN(n=keep), best])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation, best_fn=_best_metric, best_mode="min", create=create
    )
    return ocp.CheckpointManager(run.checkpoints, options=options, item_names=(STATE, META))


def pick_step(manager: ocp.CheckpointManager, step: int | None, best: bool) -> int:
    """`step` if given, else the best by validation EER (`best`) or the latest."""
    if step is None:
        step = manager.best_step() if best else manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{manager.directory}: no checkpoint has been written yet")
    if step not in manager.all_steps():
        raise FileNotFoundError(
            f"{manager.directory}: no checkpoint at step {step} (kept: {sorted(manager.all_steps())})"
        )
    return step


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The JSON item alone: what a checkpoint was trained with, without touching the arrays."""
    return manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict in the current layout (runs written before sections existed had the
    feature config and training fields at the top level, and the input width in the model; runs
    written before `data.crop_cmn` existed normalised crops with their utterance's statistics)."""
    if "features" in config:
        config = _sectioned(config)
    if "data" not in config:
        return config
    data = dict(config["data"])
    if "features" in data:  # the bool cmn / vad of older feature configs
        data["features"] = upgrade_feature_dict(data["features"])
    data.setdefault("crop_cmn", False)
    return {**config, "data": data}


def _sectioned(old: dict[str, Any]) -> dict[str, Any]:
    old = dict(old)
    model = dict(old.pop("model"))
    model.pop("n_features", None)  # now the feature config's, not set twice
    spec_augment = {"enabled": bool(old.pop("spec_augment", False))}
    data = {"features": old.pop("features")}
    data.update({k: old.pop(k) for k in _FLAT_DATA_FIELDS if k in old})
    trainer = {k: old.pop(k) for k in _FLAT_TRAINER_FIELDS if k in old}
    return {**old, "data": data, "model": model, "spec_augment": spec_augment, "trainer": trainer}


def encoder_configs(config: dict[str, Any]) -> tuple[FeatureConfig, ModelConfig]:
    """The feature and model configs of a saved training config."""
    config = upgrade_config(config)
    try:
        features = from_dict(FeatureConfig, config["data"]["features"], "data.features")
        model = from_dict(ModelConfig, config["model"], "model")
    except KeyError as e:
        raise ConfigError(f"the saved config has no {e} section") from None
    return features, model


@dataclass(frozen=True)
class TrainedEncoder:
    """What inference needs from a run: the encoder's parameters and the configs they belong to."""

    run: RunDir
    step: int  # the checkpoint read (the latest of them when averaged)
    features: FeatureConfig
    model: ModelConfig
    params: Any
    class_names: tuple[str, ...]  # the training speakers (the AS-norm cohort, for example)
    meta: dict[str, Any]
    averaged_steps: tuple[int, ...] = ()  # the checkpoints whose parameters were averaged


def steps_to_average(
    manager: ocp.CheckpointManager, last: int, k: int, meta: dict[str, Any]
) -> list[int]:
    """The `k` latest kept steps up to `last`: the checkpoints an average is taken over.

    Only the run's `keep_checkpoints` latest are kept in sequence (the best one may be older),
    so more than that is refused rather than averaged with a stray early checkpoint.
    """
    kept = upgrade_config(meta["config"]).get("trainer", {}).get("keep_checkpoints", k)
    steps = [s for s in sorted(manager.all_steps()) if s <= last]
    if len(steps) < k or k > kept:
        raise FileNotFoundError(
            f"{manager.directory}: cannot average the last {k} checkpoints up to step {last}: "
            f"the run keeps its latest {kept} (kept up to that step: {steps}); train with "
            f"--set trainer.keep_checkpoints={k} or more"
        )
    return steps[-k:]


def load_encoder(
    run_dir: str | os.PathLike[str],
    step: int | None = None,
    best: bool = False,
    sharding: jax.sharding.Sharding | None = None,
    average_last: int = 1,
) -> TrainedEncoder:
    """Restore a run's encoder (latest checkpoint, `step`, or the best by validation EER).

    Only the encoder's arrays are read, placed with `sharding` (default: replicated on the first
    local device's mesh of one), whatever the device count of the run that saved them.
    `average_last` > 1 averages the parameters of that many latest checkpoints up to the chosen
    one (as WeSpeaker and ESPnet do): the late checkpoints of a decaying schedule sit around
    one minimum, and their mean generalises a little better than any of them.
    """
    if average_last < 1:
        raise ConfigError(f"average_last must be >= 1, got {average_last}")
    if average_last > 1 and best:
        raise ConfigError("average the last checkpoints or take the best one, not both")
    run = RunDir(run_dir)
    if not run.checkpoints.is_dir():
        raise FileNotFoundError(f"{run}: not a training run directory (no checkpoints/ inside)")
    manager = checkpoint_manager(run)
    try:
        step = pick_step(manager, step, best)
        meta = read_meta(manager, step)
        features, model = encoder_configs(meta["config"])
        steps = steps_to_average(manager, step, average_last, meta) if average_last > 1 else [step]
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shapes = jax.eval_shape(
            functools.partial(init_params, model, features.n_features), jax.random.key(0)
        )
        abstract = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), shapes
        )
        restored = [_restore_encoder(manager, run, s, abstract) for s in steps]
    finally:
        manager.close()
    params = jax.tree.map(lambda *leaves: sum(leaves) / len(leaves), *restored)
    return TrainedEncoder(
        run=run,
        step=step,
        features=features,
        model=model,
        params=params,
        class_names=tuple(meta["class_names"]),
        meta=meta,
        averaged_steps=tuple(steps) if len(steps) > 1 else (),
    )


def _restore_encoder(manager: ocp.CheckpointManager, run: RunDir, step: int, abstract: Any) -> Any:
    """`state.params.encoder` of one step (orbax partial restore) into `abstract`'s placement."""
    _check_saved_shapes(manager, run, step, abstract)
    target = {"params": {"encoder": abstract}}
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{
                STATE: ocp.args.PyTreeRestore(
                    item=target,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                    partial_restore=True,
                )
            }
        ),
    )
    return restored[STATE]["params"]["encoder"]


def _check_saved_shapes(
    manager: ocp.CheckpointManager, run: RunDir, step: int, abstract: Any
) -> None:
    """Refuse encoder arrays that do not fit the saved config from the checkpoint's metadata,
    before any array is read: a restore that fails part-way leaves orbax's other reads pending,
    and they surface as "Exception ignored in coroutine" noise at exit."""
    saved = ocp.PyTreeCheckpointHandler().metadata(manager.directory / str(step) / STATE).tree
    have = _shapes(saved.get("params", {}).get("encoder", {}))
    want = _shapes(abstract)
    wrong = [
        f"{name}: saved {have.get(name, 'nothing')}, config {want.get(name, 'nothing')}"
        for name in sorted(have.keys() | want.keys())
        if have.get(name) != want.get(name)
    ]
    if wrong:
        raise ConfigError(
            f"{run} step {step}: the saved encoder parameters do not match the model config "
            f"saved with them ({'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''})"
        )


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    return {
        jax.tree_util.keystr(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }
