"""Tests for the gru-jax-synth command, in process and as `python -m gru_jax.synth`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gru_jax.synth import CorpusInfo, main, make_corpus

from ._corpus_files import file_hashes, make_small_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    return make_small_corpus(tmp_path_factory.mktemp("synth") / "corpus")


def test_cli_writes_the_same_corpus(
    corpus: CorpusInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path), "--speakers", "8", "--utterances", "4", "--seed", "3", "--quiet"]
    assert main(argv) == 0
    assert "wrote 32 utterances of 8 speakers" in capsys.readouterr().out
    assert file_hashes(tmp_path) == file_hashes(corpus.root)
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("re-used")


def test_cli_options_sample_rate_and_no_noise(tmp_path: Path) -> None:
    argv = ["--speakers", "3", "--utterances", "2", "--test-speakers", "2", "--quiet"]
    assert main([str(tmp_path / "clean"), *argv, "--sample-rate", "8000", "--no-noise"]) == 0
    assert main([str(tmp_path / "noisy"), *argv, "--sample-rate", "8000"]) == 0
    meta = json.loads((tmp_path / "clean" / "meta.json").read_text())
    assert meta["arguments"]["snr_db"] is None and meta["arguments"]["n_test_speakers"] == 2
    assert main([str(tmp_path / "sessions"), *argv, "--train-sessions", "1"]) == 0
    meta = json.loads((tmp_path / "sessions" / "meta.json").read_text())
    sessions = {s: len(entry["sessions"]) for s, entry in meta["speakers"].items()}
    assert [sessions[s] for s in meta["train_speakers"] + meta["test_speakers"]] == [1, 2, 2]
    for name, expect_silent_start in (("clean", True), ("noisy", False)):
        for path in sorted((tmp_path / name / "wav").glob("*/*/*.wav")):
            samples, rate = sf.read(path, dtype="int16")
            assert rate == 8000
            # The leading 20 ms before speech hold only the background noise, if any.
            assert (np.all(samples[:160] == 0)) == expect_silent_start, path


def test_python_m_writes_a_new_corpus_then_reuses_it(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    command = [sys.executable, "-m", "gru_jax.synth", str(out), "--speakers", "3"]
    command += ["--utterances", "2", "--seed", "1", "--quiet"]

    def run() -> str:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run().startswith("wrote 6 utterances of 3 speakers")
    expected = make_corpus(tmp_path / "in_process", 3, 2, seed=1, progress=False)
    assert file_hashes(out) == file_hashes(expected.root)
    assert run().startswith("re-used 6 utterances")
