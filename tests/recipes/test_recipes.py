"""The recipes' parts that need no training: presets, corpus discovery and checks, the results
table, and failing stages reported in one line."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gru_jax.data.corpora import CorpusError
from gru_jax.train.config import with_overrides
from gru_jax.train.presets import PRESETS, voxceleb
from recipes import _common, cnceleb, kaldi, librispeech
from recipes import voxceleb as voxceleb_recipe
from recipes._common import RecipeError, TestSet
from tests.recipes import _fixtures
from tests.recipes._fixtures import SHRUNK, Source

RECIPES = ("voxceleb", "librispeech", "cnceleb", "kaldi")


# --- presets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["librispeech", "cnceleb"])
def test_corpus_presets_are_voxcelebs_model_adapted_to_the_corpus(name: str) -> None:
    preset, base = PRESETS[name](), voxceleb()
    assert preset.model == base.model and preset.spec_augment == base.spec_augment
    assert preset.data.features == base.data.features
    assert (preset.loss.kind, preset.loss.scale, preset.loss.margin) == ("aam", 32.0, 0.2)
    assert preset.trainer.batch_size == base.trainer.batch_size == 256
    assert preset.trainer.steps < base.trainer.steps
    assert preset.loss.margin_warmup_start + preset.loss.margin_warmup_steps < preset.trainer.steps
    assert preset.data.val_speakers < base.data.val_speakers
    assert voxceleb() == base  # building the others leaves VoxCeleb's preset as it was


def test_every_recipe_default_preset_exists_and_shrinks() -> None:
    overrides = dict(
        item.split("=", 1) for item in SHRUNK if "=" in item and not item.startswith("--")
    )
    for name in ("voxceleb", "librispeech", "cnceleb"):
        shrunk = with_overrides(PRESETS[name](), overrides)
        assert (shrunk.model.hidden, shrunk.trainer.batch_size) == (16, 8)
        assert shrunk.model.pooling == "attentive" and shrunk.model.layer_norm  # still the family
    for recipe in (voxceleb_recipe, librispeech, cnceleb, kaldi):
        assert recipe.parser().get_default("preset") in PRESETS


# --- command lines --------------------------------------------------------------------------------


def test_help_of_every_recipe_imports_no_jax() -> None:
    code = (
        "import sys, contextlib, io\n"
        f"for name in {RECIPES!r}:\n"
        "    module = __import__(f'recipes.{name}', fromlist=['main'])\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out, "
        "contextlib.suppress(SystemExit):\n"
        "        module.main(['--help'])\n"
        "    assert 'usage: python -m recipes.' + name in out.getvalue(), name\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("recipe", RECIPES)
def test_python_dash_m_runs_the_recipe(recipe: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"recipes.{recipe}", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--preset" in done.stdout and "--set" in done.stdout


def test_kaldi_trials_need_a_test_dir(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        kaldi.main(["--train", "data/train", "--trials", "trials"])
    assert "--trials needs --test" in capsys.readouterr().err


# --- corpus discovery and checks ------------------------------------------------------------------


def test_voxceleb_lists_found_checked_and_named(
    source: Source, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vox2, vox1 = _fixtures.voxceleb(source, tmp_path)
    assert voxceleb_recipe.training_root(vox2) == vox2 / "dev" / "aac"
    assert voxceleb_recipe.training_root(vox2 / "dev" / "aac") == vox2 / "dev" / "aac"
    with pytest.raises(RecipeError, match=r"no VoxCeleb layout"):
        voxceleb_recipe.training_root(tmp_path)
    hard = vox1 / "list_test_hard2.txt"
    hard.write_text("1 id00001/a/00001.wav id00001/b/00001.wav\n")  # VoxCeleb1 dev: not here
    with caplog.at_level(logging.WARNING):
        (found,) = voxceleb_recipe.find_test_sets(vox1, [])
    assert (found.name, found.list_name, found.data) == (
        "VoxCeleb1-O (cleaned)",
        "veri_test2.txt",
        vox1,
    )
    assert "list_test_hard2.txt: 2 listed utterance(s) have no audio" in caplog.text
    with pytest.raises(RecipeError, match=r"list_test_hard2\.txt: 2 listed"):
        voxceleb_recipe.find_test_sets(vox1, [hard])
    (vox1 / "veri_test2.txt").unlink()
    with pytest.raises(RecipeError, match=r"no trial list found in .* has all its audio"):
        voxceleb_recipe.find_test_sets(vox1, [])
    hard.unlink()
    with pytest.raises(RecipeError, match=r"no trial list in .*give --trials"):
        voxceleb_recipe.find_test_sets(vox1, [])


def test_librispeech_needs_its_splits_and_disjoint_speakers(source: Source, tmp_path: Path):
    root = _fixtures.librispeech(source, tmp_path)
    args = librispeech.parser().parse_args(["--root", str(root), "--out", str(tmp_path / "run")])
    planned = librispeech.plan(args)
    assert [t.name for t in planned.test_sets] == [
        "LibriSpeech test-clean",
        "LibriSpeech dev-clean",
    ]
    assert planned.train_data.suffix == ".csv"
    assert librispeech.plan(args).train_data == planned.train_data  # same corpus, same manifest
    none = librispeech.parser().parse_args(
        ["--root", str(root), "--train-splits", "train-other-500"]
    )
    with pytest.raises(RecipeError, match=r"none of the training splits train-other-500"):
        librispeech.plan(none)
    overlap = librispeech.parser().parse_args(
        ["--root", str(root), "--train-splits", "train-clean-100,dev-clean", "--out", str(tmp_path)]
    )
    with pytest.raises(RecipeError, match=r"dev-clean: speaker.* also trained on"):
        librispeech.plan(overlap)


def test_cnceleb_refuses_training_on_evaluation_speakers(source: Source, tmp_path: Path) -> None:
    cn1, _ = _fixtures.cnceleb(source, tmp_path)
    (cn1 / "dev" / "dev.lst").write_text("id00000\nid00800\n")
    args = cnceleb.parser().parse_args(["--cnceleb1", str(cn1), "--out", str(tmp_path / "run")])
    with pytest.raises(RecipeError, match=r"evaluation speaker.* id00800 are also trained on"):
        cnceleb.plan(args)


def test_kaldi_test_dir_with_segments_is_refused(source: Source, tmp_path: Path) -> None:
    train, test = _fixtures.kaldi(source, tmp_path)
    first = (test / "wav.scp").read_text().split()[0]
    (test / "segments").write_text(f"{first}-seg {first} 0.0 0.5\n")
    (test / "utt2spk").write_text(f"{first}-seg spk\n")
    (test / "spk2utt").unlink()
    args = kaldi.parser().parse_args(
        ["--train", str(train), "--test", str(test), "--out", str(tmp_path)]
    )
    with pytest.raises(CorpusError, match=r"a span of .* segments"):
        kaldi.plan(args)


# --- stages and the table ---------------------------------------------------------------------------


def test_a_failing_stage_is_one_line_and_exit_code_2(
    source: Source, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    train, _ = _fixtures.kaldi(source, tmp_path)
    argv = ["--train", str(train), "--out", str(tmp_path / "run"), "--set", "model.hidden=many"]
    assert kaldi.main(argv) == 2
    assert "error: train.py failed (exit code 2): train.py --data" in capfd.readouterr().err


def test_eval_dirs_the_first_where_verify_looks() -> None:
    test = TestSet("LibriSpeech dev-clean", "drawn", Path("x"))
    assert _common.eval_dir_of(Path("run"), 0, test) == Path("run/eval")
    assert _common.eval_dir_of(Path("run"), 1, test) == Path("run/eval-librispeech-dev-clean")


def _summary(tests: list[dict]) -> dict:
    hardware = {"platform": "gpu", "devices": 1, "device_kind": "NVIDIA H200"}
    hardware["host_cpus"], hardware["cpu_model"] = 16, "AMD EPYC"
    hardware["description"] = _common.describe_hardware(hardware)
    return {
        "trained_on": "VoxCeleb2 dev",
        "preset": "voxceleb",
        "overrides": ["model.hidden=256"],
        "steps": 300_000,
        "batch_size": 256,
        "train_wall_s": 3 * 3600 + 61.4,
        "resumed": True,
        "hardware": hardware,
        "asnorm_top_n": 300,
        "tests": tests,
    }


def test_results_table_rows_and_missing_numbers() -> None:
    row = {
        "name": "VoxCeleb1-O (cleaned)",
        "list": "veri_test2.txt",
        "trials": 37611,
        "eer_cosine": 0.01234,
        "eer_asnorm": 0.0111,
        "min_dcf_0.01": 0.12345,
        "eer_enrolled": None,
        "top1": None,
    }
    table = _common.results_table(_summary([row]))
    lines = table.splitlines()
    assert lines[0].startswith("| trained on | test set | list | trials | EER % (cosine) |")
    assert lines[2] == (
        "| VoxCeleb2 dev | VoxCeleb1-O (cleaned) | veri_test2.txt | 37,611 | 1.23 | 1.11 | 0.123 "
        "| - | - | 300,000 x 256 | 3:01:01 (resumed) | 1 x NVIDIA H200 (host: AMD EPYC, 16 cores) |"
    )
    assert "`model.hidden=256`" in table
    assert "(no test set)" in _common.results_table(_summary([]))
