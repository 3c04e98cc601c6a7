"""The training loop: exact kill-and-resume, each cadence on its own, non-finite stops,
continuing a finished run, resuming on another device count."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from gru_jax.core.config import ConfigError
from gru_jax.infer.checkpoint import load_encoder
from gru_jax.train.loop import NonFiniteError, Trainer
from gru_jax.train.optim import learning_rate_schedule
from gru_jax.train.validation import validation_eer
from tests.train._tiny import synthetic_training_data, tiny_config, train

ONE = dict(devices=jax.devices()[:1])  # 3x faster on a 2-core CPU than 4 virtual devices


@pytest.fixture
def data(tiny_data):
    return tiny_data


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _metric_rows(run_dir):
    return [{k: v for k, v in r.items() if k != "frames_per_s"} for r in _rows(run_dir)]


def test_kill_and_resume_is_bit_exact(data, tmp_path):
    cfg = tiny_config()
    straight = train(cfg, data, tmp_path / "straight")
    train(cfg, data, tmp_path / "resumed", until=4)  # as if killed after the step-4 checkpoint
    resumed = Trainer(cfg, data, tmp_path / "resumed", progress=False)
    assert int(resumed.state.step) == 4
    resumed.fit()
    resumed.close()

    for a, b in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _metric_rows(tmp_path / "straight") == _metric_rows(tmp_path / "resumed")
    assert (tmp_path / "resumed" / "training_curves.png").stat().st_size > 1000

    restored = load_encoder(tmp_path / "resumed")
    assert restored.step == 6 and restored.class_names == data.class_names
    for a, b in zip(
        _leaves(restored.params), _leaves(straight.state.params["encoder"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_resume_on_another_device_count_continues_the_same_run(data, tmp_path):
    cfg = tiny_config(model={"dropout": 0.2}, spec_augment={"enabled": True})
    straight = train(cfg, data, tmp_path / "straight", devices=jax.devices()[:2])
    train(cfg, data, tmp_path / "moved", until=4, devices=jax.devices()[:2])
    moved = train(cfg, data, tmp_path / "moved", devices=jax.devices()[:4])
    assert int(moved.state.step) == 6
    for a, b in zip(_leaves(straight.state.params), _leaves(moved.state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_each_cadence_runs_on_its_own(data, tmp_path):
    """Validation and checkpoints that are not multiples of the log interval still happen."""
    cfg = tiny_config(
        trainer={
            "steps": 10,
            "log_every": 4,
            "eval_every": 3,
            "checkpoint_every": 5,
            "keep_checkpoints": 10,
        }
    )
    trainer = train(cfg, data, tmp_path / "run", **ONE)
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows if "val_eer" in r] == [3, 6, 9, 10]
    assert [r["step"] for r in rows if "loss" in r] == [4, 8, 10]
    assert trainer.manager.all_steps() == [3, 5, 6, 9, 10]  # every validation, every 5th step


def test_resume_with_another_config_is_refused(data, tmp_path):
    train(tiny_config(trainer={"steps": 2}), data, tmp_path / "run", **ONE)
    with pytest.raises(ConfigError, match="another config"):
        Trainer(tiny_config(trainer={"steps": 2, "seed": 1}), data, tmp_path / "run", **ONE)


def test_a_finished_run_continues_when_steps_are_raised(data, tmp_path):
    cfg = tiny_config(trainer={"steps": 6})
    train(cfg, data, tmp_path / "run", **ONE)
    longer = train(tiny_config(trainer={"steps": 9}), data, tmp_path / "run", **ONE)
    assert int(longer.state.step) == 9
    assert longer.cfg.optim.decay_steps == 6
    floor = float(learning_rate_schedule(cfg.optim, 6)(10_000))
    lrs = [r["lr"] for r in _rows(tmp_path / "run") if "lr" in r and r["step"] > 6]
    assert lrs and all(lr == pytest.approx(floor) for lr in lrs)  # held at the schedule's end


def _poison(trainer, bad_steps):
    clean = trainer.stream.batch

    def poisoned(step):
        batch = clean(step)
        if step in bad_steps:
            batch.feats[0, 0, 0] = np.nan
        return batch

    trainer.stream.batch = poisoned


def test_non_finite_steps_are_skipped_then_stop(data, tmp_path):
    cfg = tiny_config(
        trainer={
            "steps": 20,
            "max_bad_steps": 3,
            "log_every": 1,
            "eval_every": 100,
            "checkpoint_every": 2,
        }
    )
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    _poison(trainer, {1, *range(4, 20)})
    with pytest.raises(NonFiniteError, match="last good checkpoint is step 4"):
        trainer.fit()
    trainer.close()
    skipped = [r["skipped_steps"] for r in _rows(tmp_path / "run")]
    assert skipped == [0, 1, 1, 1, 2, 3, 4]  # step 2 skipped; steps 5..7 skipped, then stop
    # parameters after the stop are those of the last finite step (4), as saved at step 4
    kept = load_encoder(tmp_path / "run", step=4).params
    for a, b in zip(_leaves(kept), _leaves(trainer.state.params["encoder"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_bad_run_between_log_lines_still_stops_training(data, tmp_path):
    """Three non-finite steps in a row, then finite ones, all between two log lines."""
    cfg = tiny_config(trainer={"steps": 12, "max_bad_steps": 3, "log_every": 10, "eval_every": 100})
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    _poison(trainer, {2, 3, 4})
    with pytest.raises(NonFiniteError, match="3 consecutive steps"):
        trainer.fit()
    trainer.close()


def test_batch_must_divide_over_devices(data, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 4"):
        Trainer(tiny_config(trainer={"batch_size": 18}), data, tmp_path / "run", progress=False)


def test_validation_can_be_switched_off(tmp_path):
    data = synthetic_training_data(tmp_path, 8, seed=4, n_val_speakers=0)
    trainer = Trainer(tiny_config(data={"val_speakers": 0}), data, tmp_path / "run", **ONE)
    result = trainer.fit()
    trainer.close()
    assert result.step == 6 and result.best_val_eer is None and result.last_val_eer is None
    assert not [r for r in _rows(tmp_path / "run") if "val_eer" in r]


@pytest.mark.slow
def test_short_training_lowers_loss_and_validation_eer(tmp_path):
    data = synthetic_training_data(tmp_path, 48, seed=5, n_val_speakers=10)
    cfg = tiny_config(
        data={"val_speakers": 10},
        optim={"learning_rate": 5e-3, "warmup_steps": 10},
        trainer={
            "steps": 150,
            "eval_every": 150,
            "log_every": 10,
            "checkpoint_every": 150,
            "val_trials": 1000,
        },
    )
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    eer_before = validation_eer(
        trainer.embedder, trainer.state.params["encoder"], data, 1000, cfg.trainer.seed
    )
    result = trainer.fit()
    trainer.close()
    losses = [r["loss"] for r in _rows(tmp_path / "run") if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert result.last_val_eer < eer_before - 0.05, (eer_before, result.last_val_eer)


@pytest.mark.parametrize("kind", ["ge2e", "ge2e+aam"])
def test_ge2e_trains_on_speaker_balanced_batches(data, tmp_path, kind):
    cfg = tiny_config(
        data={"speakers_per_batch": 4}, loss={"kind": kind}, trainer={"steps": 3, "eval_every": 3}
    )
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    batch = trainer.stream.batch(0)
    assert [len(set(batch.labels[i : i + 4])) for i in range(0, 16, 4)] == [1, 1, 1, 1]
    result = trainer.fit()
    trainer.close()
    assert result.step == 3 and result.skipped_steps == 0 and result.last_val_eer is not None
