"""Two processes on this machine (jax.distributed, CPU collectives), one device each, as a
multi-host run: the same training as one process with two devices, killed and resumed exactly,
the same evaluation as one process, and GE2E on parts split by speaker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gru_jax.cli.train import config_from_args, parser
from gru_jax.data.prepare import prepare_parts
from gru_jax.infer.checkpoint import load_encoder
from gru_jax.train.loop import Trainer

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [
    "data.features.n_mels=24",
    "model.hidden=16",
    "model.layers=1",
    "data.val_speakers=3",
    "data.crop_frames=40",
    "trainer.eval_every=3",
    "trainer.checkpoint_every=2",
    "trainer.log_every=2",
]
STEPS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _args(corpus, out: Path, store: Path) -> list[str]:
    args = ["--data", str(corpus.wav_dir), "--list", str(corpus.train_list), "--out", str(out)]
    args += ["--store-dir", str(store), "--batch-size", "8", "--steps", str(STEPS), "--no-progress"]
    args += ["--workers", "1"]
    return args + [a for s in SETTINGS for a in ("--set", s)]


def _launch(script: str, args: list[str], n: int = 2) -> list[subprocess.Popen]:
    """`n` processes of one run: one XLA CPU device each, joined through a local coordinator."""
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / script),
                *args,
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                str(n),
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(n)
    ]


def _finish(processes: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for p in processes:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-3000:]
        outputs.append(out.decode())
    return outputs


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from gru_jax.synth import make_corpus

    root = tmp_path_factory.mktemp("mh")
    return make_corpus(root / "corpus", n_speakers=12, n_utterances=6, seed=3, progress=False)


@pytest.fixture(scope="module")
def two_process_run(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("mh_run")
    outputs = _finish(_launch("train.py", _args(corpus, root / "run", root / "store")))
    return root, outputs


def test_two_processes_train_like_one_process_with_two_devices(corpus, two_process_run):
    root, outputs = two_process_run
    assert f"trained {STEPS} steps" in outputs[0]  # process 0 reports; 1 says nothing of its own
    assert "trained" not in outputs[1] and "validation EER" not in outputs[1]
    assert sorted(p.name for p in (root / "store").iterdir()) == ["part0of2", "part1of2"]
    cfg = config_from_args(parser().parse_args(_args(corpus, root / "x", root / "store")))
    data = prepare_parts(
        corpus.wav_dir, cfg.data.features, [0, 1], 2, cfg.data.val_speakers, cfg.trainer.seed,
        list_file=str(corpus.train_list), store_dir=root / "store", workers=1, progress=False,
    )  # fmt: skip
    trainer = Trainer(cfg, data, root / "one_process", progress=False, devices=jax.devices()[:2])
    trainer.fit()
    trainer.close()
    two = load_encoder(root / "run")
    assert two.step == STEPS and two.class_names == data.class_names
    for a, b in zip(_leaves(two.params), _leaves(trainer.state.params["encoder"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = [json.loads(x) for x in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (root / "one_process" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_eer"] for r in rows if "val_eer" in r]
    assert val == [r["val_eer"] for r in ref if "val_eer" in r] and len(val) == 2


def test_both_processes_killed_and_restarted_continue_exactly(corpus, two_process_run, tmp_path):
    root, _ = two_process_run
    args = _args(corpus, tmp_path / "run", root / "store")
    processes = _launch("train.py", args)
    deadline = time.monotonic() + 240
    checkpoints = tmp_path / "run" / "checkpoints"
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        if checkpoints.is_dir() and any(p.name == "2" for p in checkpoints.iterdir()):
            break
        time.sleep(0.05)
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert all(p.returncode == -signal.SIGKILL for p in processes), "finished before the kill"
    outputs = _finish(_launch("train.py", args))
    assert f"trained {STEPS} steps" in outputs[0]
    resumed, straight = load_encoder(tmp_path / "run"), load_encoder(root / "run")
    for a, b in zip(_leaves(resumed.params), _leaves(straight.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_two_process_evaluation_equals_one_process(corpus, two_process_run, tmp_path):
    root, _ = two_process_run
    args = ["--checkpoint", str(root / "run"), "--data", str(corpus.root), "--no-progress"]
    args += ["--workers", "1"]
    one_args = [*args, "--out", str(tmp_path / "one"), "--store-dir", str(tmp_path / "store_one")]
    one = subprocess.run(
        [sys.executable, str(REPO / "eval.py"), *one_args], capture_output=True, timeout=300
    )
    assert one.returncode == 0, one.stderr.decode()[-3000:]
    two = _finish(
        _launch(
            "eval.py",
            [*args, "--out", str(tmp_path / "two"), "--store-dir", str(tmp_path / "store_two")],
        )
    )
    assert "verification" in two[0] and "verification" not in two[1]
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    for results in (a, b):
        del results["inputs"]["store"]  # each process's own feature store
    assert a == b


def test_two_processes_train_ge2e_on_their_own_speakers(corpus, tmp_path):
    """Speaker-balanced batches: each process extracts and samples its own speakers; the run is
    the one process with both speaker parts makes."""
    ge2e = ["--set", "loss.kind=ge2e", "--set", "data.speakers_per_batch=2", "--steps", "3"]
    args = [*_args(corpus, tmp_path / "run", tmp_path / "store"), *ge2e]
    outputs = _finish(_launch("train.py", args))
    assert "trained 3 steps" in outputs[0]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [
        "speakers0of2",
        "speakers1of2",
    ]
    cfg = config_from_args(parser().parse_args(args))
    data = prepare_parts(
        corpus.wav_dir, cfg.data.features, [0, 1], 2, cfg.data.val_speakers, cfg.trainer.seed,
        list_file=str(corpus.train_list), store_dir=tmp_path / "store", workers=1, progress=False,
        by_speaker=True,
    )  # fmt: skip
    trainer = Trainer(
        cfg, data, tmp_path / "one_process", progress=False, devices=jax.devices()[:2]
    )
    trainer.fit()
    trainer.close()
    two = load_encoder(tmp_path / "run")
    for a, b in zip(_leaves(two.params), _leaves(trainer.state.params["encoder"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
