"""Each recipe, one command, on its corpus's tiny look-alike: corpus -> features -> the recipe's
full-size preset, shrunk and run for 3 steps -> evaluation with AS-norm -> the results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recipes import cnceleb, kaldi, librispeech, voxceleb
from tests.recipes import _fixtures
from tests.recipes._fixtures import N_TRAIN, N_UTTERANCES, SHRUNK, Source


def check_results(out: Path, preset: str, tests: list[str], identification: bool) -> dict[str, Any]:
    """The table files exist and hold the numbers of every evaluation, as its results.json has."""
    summary = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()
    assert summary["preset"] == preset and summary["steps"] == 3
    assert summary["batch_size"] == 8 and summary["train_wall_s"] > 0
    assert summary["hardware"]["description"] in table
    assert [t["name"] for t in summary["tests"]] == tests
    for test in summary["tests"]:
        evaluated = json.loads((Path(test["eval_dir"]) / "results.json").read_text())
        verification = evaluated["verification"]
        assert test["eer_cosine"] == verification["cosine"]["eer"]
        assert test["eer_asnorm"] == verification["asnorm"]["eer"]  # AS-norm was applied
        assert test["min_dcf_0.01"] == verification["asnorm"]["min_dcf_0.01"]
        row = next(line for line in table.splitlines() if f"| {test['name']} |" in line)
        assert f"| {100 * test['eer_cosine']:.2f} | {100 * test['eer_asnorm']:.2f} |" in row
        assert f"{test['min_dcf_0.01']:.3f}" in row and "3 x 8" in row
        if identification:
            assert test["top1"] == evaluated["identification"]["all"]["top1"]
            assert f"| {100 * test['top1']:.2f} |" in row
        else:
            assert test["top1"] is None
    assert (out / "eval" / "results.json").is_file()  # the first set calibrates `verify`
    assert (out / "checkpoints").is_dir() and (out / "config.json").is_file()
    return summary


@pytest.mark.slow
def test_voxceleb(source: Source, tmp_path: Path, feature_cache: Path) -> None:
    vox2, vox1 = _fixtures.voxceleb(source, tmp_path)
    out = tmp_path / "run"
    argv = ["--vox2-dev", str(vox2), "--vox1", str(vox1), "--out", str(out), *SHRUNK]
    assert voxceleb.main(argv) == 0
    summary = check_results(out, "voxceleb", ["VoxCeleb1-O (cleaned)"], identification=False)
    assert summary["train_data"] == str(vox2 / "dev" / "aac")
    # every .m4a was decoded in-process into the training store, none skipped
    (store,) = [
        json.loads(m.read_text())
        for m in feature_cache.glob("features/*/manifest.json")
        if str(vox2) in " ".join(json.loads(m.read_text())["sources"])
    ]
    assert store["n_utterances"] == N_TRAIN * N_UTTERANCES and store["skipped"] == {}


@pytest.mark.slow
def test_librispeech(source: Source, tmp_path: Path) -> None:
    root = _fixtures.librispeech(source, tmp_path)
    out = tmp_path / "run"
    assert librispeech.main(["--root", str(root), "--out", str(out), *SHRUNK]) == 0
    tests = ["LibriSpeech test-clean", "LibriSpeech dev-clean"]
    summary = check_results(out, "librispeech", tests, identification=True)
    assert summary["trained_on"] == "LibriSpeech train-clean-100"
    assert (out / "lists" / "test-clean" / "trials.txt").is_file()
    assert (out / "eval-librispeech-dev-clean" / "results.json").is_file()


@pytest.mark.slow
def test_cnceleb(source: Source, tmp_path: Path) -> None:
    cn1, cn2 = _fixtures.cnceleb(source, tmp_path)
    out = tmp_path / "run"
    argv = ["--cnceleb1", str(cn1), "--cnceleb2", str(cn2), "--out", str(out), *SHRUNK]
    assert cnceleb.main(argv) == 0
    summary = check_results(out, "cnceleb", ["CN-Celeb1 eval"], identification=True)
    assert summary["trained_on"] == "CN-Celeb2 + CN-Celeb1 dev"
    (test,) = summary["tests"]
    assert test["trials"] == 4 * 4 * (N_UTTERANCES - 2)  # every test file x every enrolled speaker
    assert test["eer_enrolled"] is not None  # enroll.map's utterances, averaged per speaker


@pytest.mark.slow
def test_kaldi(source: Source, tmp_path: Path) -> None:
    train, test = _fixtures.kaldi(source, tmp_path)
    out = tmp_path / "run"
    argv = ["--train", str(train), "--test", str(test), "--out", str(out), *SHRUNK]
    assert kaldi.main(argv) == 0
    summary = check_results(out, "voxceleb", ["Kaldi test"], identification=True)
    (row,) = summary["tests"]
    assert row["list"].startswith("trials: ")
    assert row["trials"] == len((test / "trials").read_text().splitlines())
