"""Starting a run from a trained encoder: the encoder carried over exactly with a new head, frozen
steps, exact kill-and-resume, and another model config adopted or refused."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest

from gru_jax.core.config import ConfigError
from gru_jax.core.rundir import RunDir
from gru_jax.data.prepare import split_speakers
from gru_jax.infer.checkpoint import checkpoint_manager, load_encoder
from gru_jax.train import loop
from gru_jax.train.finetune import fine_tune_config, init_source
from gru_jax.train.loop import Trainer
from tests.train._tiny import tiny_config, train

ONE = dict(devices=jax.devices()[:1])


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def _differs_everywhere(a, b) -> bool:
    return not any(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


@pytest.fixture(scope="module")
def source(tiny_data, tmp_path_factory):
    """A trained run (9 speakers, validated at steps 2 and 4): the encoder to start from."""
    run_dir = tmp_path_factory.mktemp("source") / "run"
    cfg = tiny_config(trainer={"steps": 4, "eval_every": 2})
    train(cfg, tiny_data, run_dir, **ONE)
    return run_dir


@pytest.fixture(scope="module")
def small(tiny_data):
    """The "user's corpus": other speakers held out, so 6 training speakers, not 9."""
    return split_speakers(tiny_data.store, 6, seed=1)


def test_source_is_the_best_checkpoint_of_a_run_or_the_named_step(source):
    manager = checkpoint_manager(RunDir(source))
    best = manager.best_step()
    manager.close()
    picked = init_source(str(source))
    assert picked.best and picked.step == best
    named = init_source(f"{source}/checkpoints/2/")
    assert named.step == 2 and not named.best and named.run == picked.run
    with pytest.raises(FileNotFoundError, match="neither a training run directory"):
        init_source(str(source / "checkpoints"))


def test_freeze_then_thaw_and_kill_and_resume_on_two_devices(source, small, tmp_path, monkeypatch):
    """The encoder arrives exactly (onto a 2-device mesh from a 1-device run) with a new 6-way
    head; frozen for 3 steps it does not move while the head does; a run killed at step 2
    resumes from its own checkpoint to the uninterrupted parameters."""
    two = dict(devices=jax.devices()[:2])
    cfg = tiny_config(trainer={"steps": 5, "init_from": str(source), "freeze_encoder_steps": 3})
    start = load_encoder(source, step=init_source(str(source)).step).params

    straight = Trainer(cfg, small, tmp_path / "straight", progress=False, **two)
    first = straight.state.params
    assert int(straight.state.step) == 0 and _same(first["encoder"], start)
    assert first["encoder"]["layer_0"]["fwd"]["w_hh"].sharding.mesh.size == 2
    assert {leaf.shape[-1] for leaf in jax.tree.leaves(first["head"])} == {small.n_classes}
    first = jax.device_get(first)  # the state is donated to the step
    straight.fit(until=3)
    frozen = jax.device_get(straight.state.params)
    assert _same(frozen["encoder"], start) and _differs_everywhere(frozen["head"], first["head"])
    straight.fit()
    straight.close()
    thawed = straight.state.params
    assert _differs_everywhere(thawed["encoder"], start)
    assert _differs_everywhere(thawed["head"], frozen["head"])

    train(cfg, small, tmp_path / "resumed", until=2, **two)  # as if killed after step 2

    def source_read_again(*_):
        raise AssertionError("a resumed run must not start from the source again")

    monkeypatch.setattr(loop, "source_encoder", source_read_again)
    resumed = train(cfg, small, tmp_path / "resumed", **two)
    assert _same(resumed.state, straight.state)
    recorded = {"run": str(source), "step": init_source(str(source)).step}
    assert load_encoder(tmp_path / "resumed").meta["init_from"] == recorded


def test_the_sources_model_is_taken_unless_set_explicitly(source, small, tmp_path, caplog):
    asked = tiny_config(
        model={"hidden": 16, "dropout": 0.2}, trainer={"init_from": f"{source}/../run"}
    )
    with caplog.at_level(logging.INFO, logger="gru_jax.train.finetune"):
        cfg = fine_tune_config(asked)
    assert cfg.model.hidden == 32 and cfg.model.dropout == 0.2  # dropout is the run's own
    assert cfg.trainer.init_from == str(source)
    assert "model.hidden = 32, the source's (the config asked 16)" in caplog.text

    with pytest.raises(
        ConfigError, match=r"model\.hidden: source 32, asked 16\); drop those --set"
    ):
        fine_tune_config(asked, explicit={"model.hidden", "trainer.steps"})
    with pytest.raises(
        ConfigError, match=r"cannot start from .* model\.hidden: source 32, asked 16"
    ):
        Trainer(asked, small, tmp_path / "run", progress=False, **ONE)
