"""A run directory names its files in one place, for local and bucket paths alike."""

import os

from gru_jax.core.rundir import RunDir, is_remote


def test_local_run_dirs_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir("runs/demo")
    assert str(run.path) == os.path.join(str(tmp_path), "runs", "demo")
    assert run.checkpoints.name == "checkpoints" and run.results.parent == run.eval
    assert not run.has_checkpoints()
    (tmp_path / "runs" / "demo" / "checkpoints" / "5").mkdir(parents=True)
    assert run.has_checkpoints()


def test_bucket_run_dirs_keep_their_scheme():
    run = RunDir("gs://bucket/runs/vox2")
    assert is_remote("gs://bucket/x") and not is_remote("/data/x")
    assert str(run) == "gs://bucket/runs/vox2"
    assert str(run.checkpoints) == "gs://bucket/runs/vox2/checkpoints"
    assert str(run.results) == "gs://bucket/runs/vox2/eval/results.json"
