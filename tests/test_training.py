"""Training across devices, non-finite handling and exact kill-and-resume, on a tiny synthetic corpus."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gru_jax.configs import ConfigError
from gru_jax.data import prepare_store, split_speakers
from gru_jax.features import FeatureConfig
from gru_jax.losses import LossConfig
from gru_jax.model import ModelConfig
from gru_jax.synth import make_corpus
from gru_jax.training import (
    Model,
    NonFiniteError,
    OptimConfig,
    TrainConfig,
    Trainer,
    compile_train_step,
    data_mesh,
    load_trained,
    put_batch,
    replace_config,
    train_stream,
    validation_eer,
)

N_MELS = 24
ONE = dict(devices=jax.devices()[:1])  # 3x faster on a 2-core CPU than 4 virtual devices


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        features=FeatureConfig(n_mels=N_MELS),
        model=ModelConfig(n_features=N_MELS, hidden=32, layers=2, embedding_dim=32),
        loss=LossConfig(kind="aam", margin=0.1, margin_warmup_steps=4),
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=2),
        steps=6,
        batch_size=16,
        crop_frames=60,
        min_frames=30,
        log_every=2,
        eval_every=3,
        checkpoint_every=2,
        val_speakers=3,
        val_trials=200,
    )
    base.update(kw)
    return TrainConfig(**base)


def synthetic_training_data(root, n_speakers, seed, n_val_speakers):
    """A synthetic corpus of `n_speakers` x 6 utterances -> feature store -> train/val split."""
    info = make_corpus(
        root / "corpus",
        n_speakers=n_speakers,
        n_utterances=6,
        seed=seed,
        n_test_speakers=2,
        progress=False,
    )
    store = prepare_store(
        info.wav_dir,
        FeatureConfig(n_mels=N_MELS),
        list_file=info.train_list,
        store_dir=root / "store",
        workers=1,
        progress=False,
    )
    return split_speakers(store, n_val_speakers, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_training_data(tmp_path_factory.mktemp("data"), 12, seed=3, n_val_speakers=3)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _metric_rows(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "frames_per_s"} for r in rows]


def test_four_devices_match_one_device(data):
    assert jax.device_count() == 4, "conftest should provide 4 CPU devices"
    cfg = tiny_config()
    stream = train_stream(cfg, data)
    results = []
    for n in (1, 4):
        mesh = data_mesh(jax.devices()[:n])
        model = Model(cfg, data.n_classes, mesh)
        state = jax.device_put(model.init_state(0), jax.sharding.NamedSharding(mesh, jax.P()))
        step = compile_train_step(model, mesh, state)
        losses = []
        for k in range(3):
            state, metrics = step(state, put_batch(stream.batch(k), mesh))
            losses.append(float(metrics["loss"]))
        assert state.params["encoder"]["layer_0"]["fwd"]["w_hh"].sharding.mesh.size == n
        results.append((losses, _leaves(state.params)))
    (loss1, params1), (loss4, params4) = results
    np.testing.assert_allclose(loss1, loss4, rtol=1e-5)
    for a, b in zip(params1, params4, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(loss1[0], loss1[-1])  # the steps really trained


def test_kill_and_resume_is_bit_exact(data, tmp_path):
    cfg = tiny_config()
    straight = Trainer(cfg, data, tmp_path / "straight", progress=False)
    straight.fit()
    straight.close()

    first = Trainer(cfg, data, tmp_path / "resumed", progress=False)
    first.fit(stop_at=4)  # as if killed right after the step-4 checkpoint
    first.close()
    del first
    resumed = Trainer(cfg, data, tmp_path / "resumed", progress=False)
    assert int(resumed.state.step) == 4
    resumed.fit()
    resumed.close()

    for a, b in zip(_leaves(straight.state), _leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _metric_rows(tmp_path / "straight" / "metrics.jsonl") == _metric_rows(
        tmp_path / "resumed" / "metrics.jsonl"
    )
    assert (tmp_path / "resumed" / "training_curves.png").stat().st_size > 1000

    restored = load_trained(tmp_path / "resumed")
    assert restored.step == 6 and restored.class_names == data.class_names
    for a, b in zip(
        _leaves(restored.encoder_params), _leaves(straight.state.params["encoder"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_resume_with_another_config_is_refused(data, tmp_path):
    t = Trainer(tiny_config(steps=2), data, tmp_path / "run", progress=False, **ONE)
    t.fit()
    t.close()
    with pytest.raises(ConfigError, match="another config"):
        Trainer(tiny_config(steps=2, seed=1), data, tmp_path / "run", progress=False, **ONE)


def test_non_finite_steps_are_skipped_then_stop(data, tmp_path):
    cfg = tiny_config(steps=20, max_bad_steps=3, log_every=1, eval_every=100, checkpoint_every=2)
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    clean = trainer.stream.batch

    def poisoned(step, part=(0, 1)):
        b = clean(step, part)
        if step == 1 or step >= 4:
            b.feats[0, 0, 0] = np.nan
        return b

    trainer.stream.batch = poisoned
    with pytest.raises(NonFiniteError, match="last good checkpoint is step 4"):
        trainer.fit()
    trainer.close()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["skipped_steps"] for r in rows]
    assert skipped == [0, 1, 1, 1, 2, 3, 4]  # step 2 skipped; steps 5..7 skipped, then stop
    # parameters after the stop are those of the last finite step (4), as saved at step 4
    kept = load_trained(tmp_path / "run", step=4).encoder_params
    for a, b in zip(_leaves(kept), _leaves(trainer.state.params["encoder"]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_must_divide_over_devices(data, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 4"):
        Trainer(tiny_config(batch_size=18), data, tmp_path / "run", progress=False)


def test_config_overrides():
    cfg = replace_config(tiny_config(), {"model.hidden": "48", "optim.name": "sgd", "steps": "9"})
    assert cfg.model.hidden == 48 and cfg.optim.name == "sgd" and cfg.steps == 9
    with pytest.raises(ConfigError, match="unknown config field"):
        replace_config(cfg, {"model.hiden": "3"})
    with pytest.raises(ValueError, match="n_features"):
        replace_config(cfg, {"features.n_mels": "40"})


@pytest.mark.slow
def test_short_training_lowers_loss_and_validation_eer(tmp_path):
    data = synthetic_training_data(tmp_path, 48, seed=5, n_val_speakers=10)
    cfg = tiny_config(
        steps=150,
        eval_every=150,
        log_every=10,
        checkpoint_every=150,
        val_speakers=10,
        val_trials=1000,
        optim=OptimConfig(learning_rate=5e-3, warmup_steps=10),
    )
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    eer_before = validation_eer(trainer.embedder, trainer.state.params, data, cfg)
    result = trainer.fit()
    trainer.close()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert result.last_val_eer < eer_before - 0.05, (eer_before, result.last_val_eer)


def test_ge2e_trains_on_speaker_balanced_batches(data, tmp_path):
    cfg = tiny_config(steps=3, eval_every=3, loss=LossConfig(kind="ge2e"), speakers_per_batch=4)
    trainer = Trainer(cfg, data, tmp_path / "run", progress=False, **ONE)
    batch = trainer.stream.batch(0)
    assert [len(set(batch.labels[i : i + 4])) for i in range(0, 16, 4)] == [1, 1, 1, 1]
    result = trainer.fit()
    trainer.close()
    assert result.step == 3 and result.skipped_steps == 0 and result.last_val_eer is not None


def train_cli(data, out, *extra: str) -> list[str]:
    """A train.py command line for a tiny model on the module's corpus and store."""
    root = Path(__file__).resolve().parents[1]
    wav_dir = Path(data.store.paths[0]).parents[2]
    tiny = [
        "features.n_mels=24",
        "model.n_features=24",
        "model.hidden=16",
        "model.layers=1",
        "val_speakers=3",
        "crop_frames=40",
        *extra,
    ]
    return [
        sys.executable,
        str(root / "train.py"),
        "--data",
        str(wav_dir),
        "--list",
        str(wav_dir.parent / "train_list.txt"),
        "--out",
        str(out),
        "--store-dir",
        str(data.store.path),
        "--batch-size",
        "8",
        "--no-progress",
        *[arg for item in tiny for arg in ("--set", item)],
        "--steps",
    ]


def test_train_cli_runs_and_resumes(data, tmp_path):
    cmd = train_cli(data, tmp_path / "run", "eval_every=4")
    first = subprocess.run([*cmd, "4"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trained 4 steps" in first.stdout and "validation EER best" in first.stdout
    assert "extracted" not in first.stderr  # the store was reused, not rebuilt
    for name in ("config.json", "metrics.jsonl", "training_curves.png"):
        assert (tmp_path / "run" / name).exists()
    again = subprocess.run([*cmd, "40"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "another config" in again.stderr  # steps changed
    bad = subprocess.run(
        [*cmd, "4", "--set", "model.hiden=3"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode != 0 and "unknown config field 'model.hiden'" in bad.stderr


def test_sigkilled_train_py_resumes_to_the_uninterrupted_result(data, tmp_path):
    def command(out):
        return [*train_cli(data, out, "eval_every=100", "checkpoint_every=5", "log_every=5"), "40"]

    straight = subprocess.run(
        command(tmp_path / "straight"), capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        command(killed_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in (killed_dir / "checkpoints").glob("*") if p.name.isdigit()]
        if steps and max(steps) >= 15:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    resumed = subprocess.run(command(killed_dir), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    a, b = load_trained(tmp_path / "straight"), load_trained(killed_dir)
    assert a.step == b.step == 40
    for x, y in zip(_leaves(a.encoder_params), _leaves(b.encoder_params), strict=True):
        np.testing.assert_array_equal(x, y)
