"""The accuracy benchmark's scoring and table code on the shared tiny trained run: its numbers
must be the library's evaluation's on the same trials, its conditions what they say they are.
(Building the espeak-ng corpus and training the rows is the benchmark run itself.)"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import accuracy
from benchmarks.peers import GruSystem, MfccStatistics
from gru_jax.infer.model import EmbeddingModel
from gru_jax.train.config import with_overrides
from gru_jax.train.presets import PRESETS


@pytest.fixture(scope="module")
def test_set(run):
    speakers = {t.enroll.split("/")[0] for t in accuracy.read_voxceleb_trials(run.corpus.trials)}
    genders = {s: ("female", "male")[i % 2] for i, s in enumerate(sorted(speakers))}
    return accuracy.load_test_set(run.corpus.root, genders), genders


def test_gru_scores_equal_the_evaluation_of_the_same_checkpoint(run, test_set):
    tests, genders = test_set
    cohort = accuracy.training_sample(run.corpus.root, accuracy.COHORT_PER_SPEAKER)
    rows = accuracy.score_system(GruSystem("trained", run.model), tests, cohort)
    assert [r["condition"] for r in rows] == list(accuracy.CONDITIONS)
    clean = rows[0]
    cosine = run.results["verification"]["cosine"]
    assert clean["eer"] == pytest.approx(cosine["eer"], abs=2e-3)
    assert clean["min_dcf_0.01"] == pytest.approx(cosine["min_dcf_0.01"], abs=5e-3)
    assert clean["top1"] == pytest.approx(run.results["identification"]["all"]["top1"], abs=1e-6)
    p_fa, p_miss = clean["det"]
    assert len(p_fa) == len(p_miss) > 10 and rows[1]["det"] is None

    labels = np.array([t.label for t in tests.trials])
    same_gender = np.array(
        [genders[t.enroll.split("/")[0]] == genders[t.test.split("/")[0]] for t in tests.trials]
    )
    np.testing.assert_array_equal(tests.hard, (labels == 0) & same_gender)
    assert 0 < tests.hard.sum() < (labels == 0).sum()
    assert 0.0 <= clean["eer_hard"] < 0.5 and 0.0 <= clean["eer_asnorm"] < 0.5

    untrained = EmbeddingModel.untrained(run.model.features, run.model.encoder.model)
    baseline = accuracy.score_system(GruSystem("untrained", untrained), tests, None)[0]
    assert "eer_asnorm" not in baseline and clean["eer"] < baseline["eer"]


def test_conditions_add_noise_at_the_snr_and_crop_to_one_second(test_set):
    tests, _ = test_set
    clean = accuracy.condition_waves(tests, "clean")
    noisy = accuracy.condition_waves(tests, "noise 10 dB")
    cropped = accuracy.condition_waves(tests, "1 s crops")
    assert len(clean) == len(noisy) == len(cropped) == len(tests.test_side)
    for c, n in zip(clean, noisy, strict=True):
        snr = 10 * np.log10(np.mean(c.astype(np.float64) ** 2) / np.mean((n - c) ** 2))
        assert snr == pytest.approx(accuracy.NOISY_SNR_DB, abs=0.01)
    assert {len(w) for w in cropped} == {int(accuracy.CROP_S * accuracy.SAMPLE_RATE)}
    again = accuracy.condition_waves(tests, "noise 10 dB")
    assert all(np.array_equal(a, b) for a, b in zip(noisy, again, strict=True))


def test_mfcc_baseline_is_z_normalised_on_training_utterances(run):
    _, waves = accuracy.training_sample(run.corpus.root, 2)
    system = MfccStatistics(waves)
    vectors = system.embed(waves)
    np.testing.assert_allclose(vectors.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(vectors.std(axis=0), 1.0, atol=1e-3)


def test_markdown_table_shows_percentages_and_training_rows():
    result = {
        "corpus": "/somewhere/dev",
        "n_trials": 10,
        "n_hard_nontargets": 3,
        "n_identification_tests": 4,
        "machine": {"cpu": "X", "cpu_count": 2, "load_avg_1_5_15": [1, 2, 3.04], "time": "T"},
        "results": [
            {
                "system": "GRU a",
                "condition": "clean",
                "eer": 0.0123,
                "min_dcf_0.01": 0.2,
                "top1": 1,
            },
            {"system": "MFCC", "condition": "clean", "eer": 0.25, "eer_asnorm": None},
        ],
        "trained": {
            "a": {
                "preset": "dev",
                "data": "target",
                "init_from": "g",
                "steps": 600,
                "wall_s": 90.0,
                "overrides": {"trainer.steps": "600", "loss.margin": "0.2"},
            },
            "b": {
                "preset": "dev",
                "data": "generated",
                "init_from": None,
                "steps": 600,
                "wall_s": 60.0,
                "overrides": {"trainer.steps": "600", "loss.margin": "0.3"},
            },
        },
    }
    table = accuracy.markdown(result)
    assert table.startswith("Test speakers of `dev`: 10 trials (3 of the non-targets same-gender")
    assert "X, 2 cores (load 3.0 over 15 min at the end), T." in table
    assert "| GRU a | clean | 1.23 | - | - | 0.200 | 100.00 |" in table
    assert "| MFCC | clean | 25.00 | - | - | - | - |" in table
    assert (
        "| a | dev | target | g | 600 | 1.5 min | `trainer.steps=600` `loss.margin=0.2` |" in table
    )
    assert "| b | dev | generated | - | 600 | 1.0 min | `loss.margin=0.3` |" in table
    assert "different code" not in table
    result["trained"]["a"]["code"] = "abc"
    assert "Rows trained by different code (`code_digest`): a: abc, b: unrecorded." in (
        accuracy.markdown(result)
    )


def test_a_finished_row_is_reused_and_says_when_other_code_trained_it(
    tmp_path, monkeypatch, caplog
):
    """A table can mix rows trained by several versions of the code: each records its own."""
    commands = []
    monkeypatch.setattr(accuracy.subprocess, "run", lambda command, **_: commands.append(command))
    row = accuracy.Row("r", "dev", {"trainer.steps": "5"})
    args = (row, tmp_path / "wav", tmp_path / "list.txt", tmp_path / "r", None)
    code = accuracy.code_digest()
    assert accuracy.train_row(*args, code)[1] == code
    assert len(commands) == 1 and "trainer.steps=5" in commands[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="accuracy"):
        assert accuracy.train_row(*args, code)[1] == code and not caplog.records
        assert accuracy.train_row(*args, "other")[1] == code
    assert len(commands) == 1
    assert f"r: reused, trained by other code ({code}, now other)" in caplog.text


@pytest.mark.parametrize("row_set", sorted(accuracy.ROW_SETS))
def test_every_row_is_a_valid_training_config(row_set):
    """A typo in a row would otherwise surface an hour into the benchmark."""
    names = set()
    for row in accuracy.ROW_SETS[row_set].rows:
        source = {"trainer.init_from": f"runs/{row.init_from}"} if row.init_from else {}
        with_overrides(PRESETS[row.preset](), {**row.overrides, **source}).validate()
        assert row.init_from is None or row.init_from in names, "a row starts from a later one"
        names.add(row.name)
    assert len(names) == len(accuracy.ROW_SETS[row_set].rows)


def test_the_pretrain_preset_is_the_measured_recipe_row():
    """The README's starting model (`--preset pretrain`) is the row whose numbers it quotes."""
    (row,) = [r for r in accuracy.ROW_SETS["recipe"].rows if r.name == "that + attentive pooling"]
    assert with_overrides(PRESETS[row.preset](), row.overrides) == PRESETS["pretrain"]()
