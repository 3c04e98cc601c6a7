"""Atomic writes: the old file or the new one, never half of one, and no temporary left behind."""

import json
import os
import threading

import pytest

from gru_jax.core.files import atomic_write, atomic_write_json, atomic_write_jsonl


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def fail_halfway(f):
        f.write(b"partial new content")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail_halfway)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_text_bytes_json_and_jsonl(tmp_path):
    atomic_write(tmp_path / "a" / "t.txt", "hé\n")  # parent folders are created
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "hé\n"
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    atomic_write_jsonl(tmp_path / "d.jsonl", [{"step": 1}, {"step": 2}])
    assert (tmp_path / "d.jsonl").read_text().splitlines() == ['{"step": 1}', '{"step": 2}']
    assert oct((tmp_path / "c.json").stat().st_mode & 0o777) == oct(0o644)


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "shared.txt"
    payloads = [str(i) * 10_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in payloads
    assert os.listdir(tmp_path) == ["shared.txt"]


def test_bucket_paths_are_written_whole_through_epath(monkeypatch):
    written = {}

    class FakePath:
        def __init__(self, path):
            self.path = path

        def write_bytes(self, data):
            written[self.path] = data

    monkeypatch.setattr("gru_jax.core.files.epath.Path", FakePath)
    atomic_write("gs://bucket/run/config.json", "{}")
    atomic_write("gs://bucket/run/curves.png", lambda f: f.write(b"\x89PNG"))
    assert written == {
        "gs://bucket/run/config.json": b"{}",
        "gs://bucket/run/curves.png": b"\x89PNG",
    }
