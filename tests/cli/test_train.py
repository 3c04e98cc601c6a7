"""train.py end to end: runs, resumes, continues, refuses, survives SIGKILL; CSV splits."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gru_jax.infer.checkpoint import load_encoder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tiny_data):
    return tiny_data


def train_cli(data, out, *extra: str) -> list[str]:
    """A train.py command line for a tiny model on the module's corpus and store."""
    wav_dir = Path(data.store.paths[0]).parents[2]
    tiny = [
        "data.features.n_mels=24",
        f"data.features.hop_ms={data.store.feature_config.hop_ms}",  # the store's, not the preset's
        "model.hidden=16",
        "model.layers=1",
        "data.val_speakers=3",
        "data.crop_frames=40",
        *extra,
    ]
    return [
        sys.executable,
        str(REPO / "train.py"),
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


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_train_cli_runs_continues_and_refuses_other_configs(data, tmp_path):
    cmd = train_cli(data, tmp_path / "run", "trainer.eval_every=4", "model.residual=False")
    first = _run([*cmd, "4"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trained 4 steps" in first.stdout and "validation EER best" in first.stdout
    assert "extracted" not in first.stderr  # the store was reused, not rebuilt
    for name in ("config.json", "metrics.jsonl", "training_curves.png"):
        assert (tmp_path / "run" / name).exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["residual"] is False and saved["trainer"]["steps"] == 4

    longer = _run([*cmd, "6"])  # a finished run continues when --steps is raised
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "resumed from step 4" in longer.stderr and "trained 6 steps" in longer.stdout

    other = _run([*cmd, "6", "--set", "model.hidden=8"])
    assert other.returncode == 2 and "another config" in other.stderr
    assert "model.hidden: saved 16, asked 8" in other.stderr


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.hiden=3", "unknown field; did you mean model.hidden?"),
        ("model.residual=nope", "model.residual='nope': expected true or false"),
        ("trainer.log_every=0", "TrainerConfig.log_every must be >= 1"),
    ],
)
def test_train_cli_bad_settings_exit_2_naming_the_field(data, tmp_path, item, message):
    bad = _run([*train_cli(data, tmp_path / "run", item), "4"])
    assert bad.returncode == 2 and message in bad.stderr, bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr


def test_sigkilled_train_py_resumes_to_the_uninterrupted_result(data, tmp_path):
    def command(out):
        every = ["trainer.eval_every=100", "trainer.checkpoint_every=5", "trainer.log_every=5"]
        return [*train_cli(data, out, *every), "40"]

    straight = _run(command(tmp_path / "straight"))
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

    resumed = _run(command(killed_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    a, b = load_encoder(tmp_path / "straight"), load_encoder(killed_dir)
    assert a.step == b.step == 40
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_csv_manifest_trains_on_its_train_split(data, tmp_path):
    """Test rows of a CSV manifest are not trained on (the split column used to be ignored)."""
    manifest = tmp_path / "corpus.csv"
    speakers = sorted(set(data.store.speakers.tolist()))
    held_out = set(speakers[:2])
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker", "split"])
        for path, speaker in zip(data.store.paths, data.store.speakers, strict=True):
            writer.writerow([path, speaker, "test" if speaker in held_out else "train"])
    cmd = train_cli(data, tmp_path / "run")
    cmd[cmd.index("--data") + 1] = str(manifest)
    cmd = [c for i, c in enumerate(cmd) if c != "--list" and cmd[i - 1] != "--list"]
    cmd[cmd.index("--store-dir") + 1] = str(tmp_path / "store")
    done = _run([*cmd, "2", "--workers", "1"])
    assert done.returncode == 0, done.stderr[-3000:]
    trained_on = set(load_encoder(tmp_path / "run").class_names)
    assert trained_on and not trained_on & held_out


def test_init_from_takes_the_sources_model_and_refuses_a_contradicting_set(run):
    """--init-from adopts the trained run's features and architecture over the preset's; a --set
    that contradicts them, or a freeze without a source, is an error naming the field."""
    from gru_jax.cli.train import config_from_args, parser
    from gru_jax.core.config import ConfigError

    source = str(run.run_dir)
    cfg = config_from_args(
        parser().parse_args(
            ["--preset", "dev", "--init-from", source, "--freeze-encoder-steps", "5"]
        )
    )
    trained = run.model.encoder.model
    assert (cfg.model.hidden, cfg.model.layers) == (trained.hidden, trained.layers) != (256, 2)
    assert cfg.data.features == run.model.features
    assert (cfg.trainer.init_from, cfg.trainer.freeze_encoder_steps) == (source, 5)
    with pytest.raises(ConfigError, match=r"model\.hidden: source 48, asked 256"):
        config_from_args(parser().parse_args(["--init-from", source, "--set", "model.hidden=256"]))
    with pytest.raises(ValueError, match=r"freeze_encoder_steps needs trainer\.init_from"):
        config_from_args(parser().parse_args(["--freeze-encoder-steps", "5"]))
