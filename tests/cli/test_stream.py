"""`eval.py stream` and `eval.py export` from the command line."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]


def _eval(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "eval.py"), *args],
        input=stdin,
        capture_output=True,
        timeout=300,
    )


def _enrolled(run, tmp_path) -> tuple[Path, str, Path]:
    """A database with one test speaker enrolled from three files, and a fourth file."""
    speaker_dir = sorted(p for p in run.corpus.wav_dir.iterdir() if p.is_dir())[-1]
    files = sorted(speaker_dir.rglob("*.wav"))
    db = tmp_path / "speakers.npz"
    enrolled = _eval(
        "enroll", "--checkpoint", str(run.run_dir), "--db", str(db), "--speaker", "alice",
        *map(str, files[:3]),
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr.decode()[-2000:]
    return db, "alice", files[-1]


def test_stream_a_file_prints_running_scores_and_the_final_verdict(run, tmp_path):
    db, speaker, audio = _enrolled(run, tmp_path)
    out = tmp_path / "final.npy"
    done = _eval(
        "stream", "--checkpoint", str(run.run_dir), "--db", str(db), "--speaker", speaker,
        "--chunk-ms", "200", "--out", str(out), str(audio),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) >= 3 and "frames" in lines[0] and " ms]" in lines[0]
    assert lines[-1].startswith("final after") and "alice" in lines[-1]
    assert "ACCEPT" in lines[-1] or "reject" in lines[-1]  # a calibrated threshold exists
    assert "running variants" in done.stderr.decode()  # the run uses utterance CMN
    assert np.load(out).shape == (run.model.embedding_dim,)


def test_stream_raw_pcm_from_stdin_identifies(run, tmp_path):
    db, _, audio = _enrolled(run, tmp_path)
    pcm, rate = sf.read(audio, dtype="int16")
    done = _eval(
        "stream", "--checkpoint", str(run.run_dir), "--db", str(db), "--top", "1", "-",
        stdin=pcm.astype("<i2").tobytes(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert rate == 16000 and "alice" in done.stdout.decode().splitlines()[-1]
    wrong_rate = _eval("stream", "--checkpoint", str(run.run_dir), "--rate", "8000", "-", stdin=b"")
    assert wrong_rate.returncode == 2 and b"16000 Hz" in wrong_rate.stderr


def test_export_writes_a_loadable_model_file(run, tmp_path):
    out = tmp_path / "model.jaxexport"
    done = _eval("export", "--checkpoint", str(run.run_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "wrote" in done.stdout.decode()
    with zipfile.ZipFile(out) as z:
        assert {"meta.json", "embed.bin", "stream_init.bin", "stream_step.bin"} <= set(z.namelist())
