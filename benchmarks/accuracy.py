"""Accuracy on unseen voices: trained recipes and baselines on the same trials, in one run.

    python -m benchmarks.accuracy --out runs/accuracy                      # the recipe table
    python -m benchmarks.accuracy --out runs/ablations --rows ablations
    python -m benchmarks.accuracy --out runs/accuracy-demo --rows demo     # the synthetic corpus

Stages, each reused when its output exists (a killed run continues where it stopped):

1. Corpora: the espeak-ng development corpus (`gru_jax.synth.devcorpus`: speech, test voices
   from variants training never hears), or the synthetic demo corpus; rows that pretrain on
   "generated voices" also get a large corpus of training variants only.
2. Training rows: `train.py` run as a subprocess, exactly what a user runs; the wall time of
   each (feature extraction included) is recorded.
3. Systems: each trained row, an untrained GRU of the first row's shape, MFCC mean+std
   statistics with z-norm, and Resemblyzer's pretrained GE2E LSTM when it is installed.
4. Conditions: the test side of every trial and identification test clean, with noise at
   10 dB SNR, and cut to 1 s; enrolment stays clean. Scores are the library's (cosine, AS-norm
   with each system's own training-speaker cohort, EER, minDCF, closed-set top-1).
5. The table: results.json (stdout too), results.md, det.png (every system, clean).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks._common import emit, machine_info
from benchmarks.peers import GruSystem, MfccStatistics, Resemblyzer, System, resemblyzer_available
from gru_jax.core.files import atomic_write, atomic_write_json
from gru_jax.data.audio import load_audio
from gru_jax.data.augmentation import coloured_noise
from gru_jax.data.corpora import (
    ListedUtterance,
    Trial,
    find_audio,
    read_id_list,
    read_voxceleb_trials,
)
from gru_jax.eval import metrics as scoring
from gru_jax.eval import reports
from gru_jax.infer.model import EmbeddingModel

log = logging.getLogger("accuracy")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
NOISY_SNR_DB = 10.0
CROP_S = 1.0
COHORT_PER_SPEAKER = 3  # training utterances per cohort speaker (AS-norm) and for MFCC z-norm
ASNORM_TOP_N = 100


# --- rows: what is trained --------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One trained system: a preset with overrides, trained on the corpus's own training
    speakers ("target") or on generated voices, optionally starting from another row."""

    name: str
    preset: str
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    data: str = "target"  # "target" | "generated"
    init_from: str | None = None  # another row's name
    average_last: int = 1  # > 1: also score the mean of this many latest checkpoints


@dataclass(frozen=True)
class RowSet:
    """Rows trained and scored together on one corpus's test speakers."""

    corpus: str  # "dev" (the espeak-ng development corpus) | "synth" (the demo's)
    rows: tuple[Row, ...]
    baselines: bool = True  # also an untrained GRU, MFCC statistics and Resemblyzer


# Pretraining on the generated voices, and fine-tuning from it: a lower rate, the margin from the
# start (the encoder already separates voices), the new head trained alone for 100 steps.
PRETRAIN = {"trainer.steps": "2000", "data.val_speakers": "20", "trainer.eval_every": "500"}
FINETUNE = {
    "trainer.steps": "600",
    "trainer.freeze_encoder_steps": "100",
    "optim.learning_rate": "1e-3",
    "loss.margin_warmup_start": "0",
    "loss.margin_warmup_steps": "0",
}
# One noisy and one reverberant copy of every utterance, and 1.5 s crops (the 1 s test condition).
AUGMENTED = {"data.augment.noise": "1", "data.augment.reverb": "1", "data.crop_frames": "150"}
# Aimed at the noisy and 1 s conditions: two noise copies, 1 s crops, more (cheaper) steps.
NOISE_SHORT = {"data.augment.noise": "2", "data.crop_frames": "100", "trainer.steps": "3000"}

# The two ablations that helped in noise and on short tests most, together at full length.
GE2E_80 = {"loss.kind": "ge2e", "data.speakers_per_batch": "16", "data.features.n_mels": "80"}
# Crops half as long as the 1 s test condition.
SHORTER_CROPS = {"data.crop_frames": "50"}
# The ablation that beat the GE2E recipe with both seeds (the `pretrain` preset).
ATTENTIVE = {"model.pooling": "attentive"}

# Ablations: one change each to the GE2E recipe (the recipe row "that + 0.5 s crops") at half its
# steps (1,500), with the last 5 checkpoints kept 100 steps apart for checkpoint averaging.
ABLATION_BASE = {
    **PRETRAIN,
    **NOISE_SHORT,
    **GE2E_80,
    **SHORTER_CROPS,
    "trainer.steps": "1500",
    "trainer.checkpoint_every": "100",
    "trainer.keep_checkpoints": "5",
}
# WeSpeaker's large-margin fine-tuning: the trained encoder, a new AAM head with a large margin,
# longer crops.
LARGE_MARGIN = {
    "data.augment.noise": "2",
    "data.val_speakers": "20",
    "trainer.steps": "300",
    "trainer.freeze_encoder_steps": "50",
    "optim.learning_rate": "5e-4",
    "optim.warmup_steps": "20",
    "loss.margin": "0.4",
    "loss.margin_warmup_start": "0",
    "loss.margin_warmup_steps": "0",
    "data.crop_frames": "200",
}
AAM = {"loss.kind": "aam", "data.speakers_per_batch": "0"}
ABLATIONS = {
    "AAM (not GE2E)": AAM,
    "AAM, margin 0.3": {**AAM, "loss.margin": "0.3"},
    "GE2E+AAM": {"loss.kind": "ge2e+aam"},
    "attentive stats pooling": ATTENTIVE,
    "3 layers": {"model.layers": "3"},
    "width 128 (not 256)": {"model.hidden": "128"},
    "bidirectional": {"model.bidirectional": "true"},
    "40 log-mel": {"data.features.n_mels": "40"},
    "1 s crops": {"data.crop_frames": "100"},
    "no noise copies": {"data.augment.noise": "0"},
    "no crop CMN": {"data.crop_cmn": "false"},
    "running CMN (3 s, streamable)": {"data.features.cmn": "running"},
    "no CMN": {"data.features.cmn": "none"},
    "step LR schedule": {"optim.schedule": "step", "optim.step_every": "500"},
    # A second seed of the base and of the change that helped most, to size the seed's spread.
    "base, seed 1": {"trainer.seed": "1"},
    "attentive stats pooling, seed 1": {**ATTENTIVE, "trainer.seed": "1"},
}

ROW_SETS: dict[str, RowSet] = {
    "recipe": RowSet(
        "dev",
        (
            Row("scratch", "dev"),
            Row("generated", "dev", PRETRAIN, data="generated"),
            Row("generated+finetune", "dev", FINETUNE, init_from="generated"),
            Row("generated+aug", "dev", {**PRETRAIN, **AUGMENTED}, data="generated"),
            Row("generated+aug+finetune", "dev", FINETUNE, init_from="generated+aug"),
            Row("generated+noise, 1 s crops", "dev", {**PRETRAIN, **NOISE_SHORT}, data="generated"),
            Row(
                "that + GE2E, 80 log-mel",
                "dev",
                {**PRETRAIN, **NOISE_SHORT, **GE2E_80},
                "generated",
            ),
            Row(
                "that + 0.5 s crops",
                "dev",
                {**PRETRAIN, **NOISE_SHORT, **GE2E_80, **SHORTER_CROPS},
                "generated",
            ),
            Row(
                "that + attentive pooling",
                "dev",
                {**PRETRAIN, **NOISE_SHORT, **GE2E_80, **SHORTER_CROPS, **ATTENTIVE},
                "generated",
            ),
        ),
    ),
    "ablations": RowSet(
        "dev",
        (
            Row("base", "dev", ABLATION_BASE, data="generated", average_last=5),
            Row("base + large-margin fine-tune", "dev", LARGE_MARGIN, "generated", "base"),
            *(
                Row(name, "dev", {**ABLATION_BASE, **change}, data="generated")
                for name, change in ABLATIONS.items()
            ),
        ),
        baselines=False,
    ),
    "demo": RowSet("synth", (Row("demo", "demo"),)),
}


# --- the test set -----------------------------------------------------------------------------


@dataclass
class TestSet:
    """Trials and identification lists of a corpus's test speakers, with their audio in memory
    (a few hundred utterances), so every system and condition sees the very same samples."""

    trials: list[Trial]
    enroll: list[ListedUtterance]
    test: list[ListedUtterance]
    waves: dict[str, np.ndarray]  # utt_id -> clean 16 kHz audio
    hard: np.ndarray | None  # per trial: a non-target of the same gender (when genders are known)

    @property
    def enroll_side(self) -> list[str]:
        return sorted({t.enroll for t in self.trials} | {u.utt_id for u in self.enroll})

    @property
    def test_side(self) -> list[str]:
        return sorted({t.test for t in self.trials} | {u.utt_id for u in self.test})


def load_test_set(corpus: Path, genders: Mapping[str, str] | None = None) -> TestSet:
    trials = read_voxceleb_trials(corpus / "trials.txt")
    enroll = read_id_list(corpus / "enroll_list.txt")
    test = read_id_list(corpus / "test_list.txt")
    ids = {t.enroll for t in trials} | {t.test for t in trials}
    ids |= {u.utt_id for u in [*enroll, *test]}
    wav = corpus / "wav"
    waves = {
        utt: load_audio(find_audio(wav, utt), SAMPLE_RATE)
        for utt in tqdm(sorted(ids), desc="test audio", unit="utt", leave=False)
    }
    hard = None
    if genders:
        speaker = lambda utt: utt.split("/")[0]
        hard = np.array(
            [
                t.label == 0 and genders[speaker(t.enroll)] == genders[speaker(t.test)]
                for t in trials
            ]
        )
    return TestSet(trials, enroll, test, waves, hard)


def training_sample(corpus: Path, per_speaker: int) -> tuple[list[str], list[np.ndarray]]:
    """Up to `per_speaker` training utterances of every training speaker: each system's AS-norm
    cohort, and the MFCC baseline's z-norm statistics."""
    chosen: dict[str, list[str]] = {}
    for line in (corpus / "train_list.txt").read_text().splitlines():
        if line.strip():
            speaker, rel = line.split()
            if len(chosen.setdefault(speaker, [])) < per_speaker:
                chosen[speaker].append(rel)
    speakers, waves = [], []
    for speaker, rels in sorted(chosen.items()):
        for rel in rels:
            speakers.append(speaker)
            waves.append(load_audio(corpus / "wav" / rel, SAMPLE_RATE))
    return speakers, waves


# --- conditions -------------------------------------------------------------------------------


def _noisy(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pink noise at `NOISY_SNR_DB` against the utterance's power."""
    pink = coloured_noise(rng, len(wave), 1)
    gain = np.sqrt(np.mean(wave**2) / (np.mean(pink**2) * 10 ** (NOISY_SNR_DB / 10)))
    return (wave + gain * pink).astype(np.float32)


def _cropped(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(CROP_S * SAMPLE_RATE)
    if len(wave) <= n:
        return wave
    start = int(rng.integers(0, len(wave) - n + 1))
    return wave[start : start + n]


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray] | None] = {
    "clean": None,
    f"noise {NOISY_SNR_DB:g} dB": _noisy,
    f"{CROP_S:g} s crops": _cropped,
}


def condition_waves(test_set: TestSet, condition: str, seed: int = 0) -> list[np.ndarray]:
    """The test side under `condition`; each utterance's randomness depends only on its id."""
    transform = CONDITIONS[condition]
    out = []
    for utt in test_set.test_side:
        wave = test_set.waves[utt]
        if transform is not None:
            key = int.from_bytes(utt.encode(), "little") % (2**63)
            wave = transform(wave, np.random.default_rng([seed, key]))
        out.append(wave)
    return out


# --- scoring ----------------------------------------------------------------------------------


def score_system(
    system: System, test_set: TestSet, cohort: tuple[list[str], list[np.ndarray]] | None
) -> list[dict[str, Any]]:
    """One row per condition: EER (cosine and AS-norm), hard-trial EER, minDCF, top-1."""
    enroll_ids, test_ids = test_set.enroll_side, test_set.test_side
    enroll_vectors = system.embed([test_set.waves[u] for u in enroll_ids])
    enroll_row = {u: i for i, u in enumerate(enroll_ids)}
    test_row = {u: i for i, u in enumerate(test_ids)}
    e_idx = np.array([enroll_row[t.enroll] for t in test_set.trials])
    t_idx = np.array([test_row[t.test] for t in test_set.trials])
    labels = np.array([t.label for t in test_set.trials], np.int32)
    cohort_models = None
    if cohort is not None:
        speakers, waves = cohort
        cohort_models = np.asarray(scoring.speaker_means(system.embed(waves), speakers)[1])
    rows = []
    for condition in CONDITIONS:
        start = time.perf_counter()
        test_vectors = system.embed(condition_waves(test_set, condition))
        cosine = np.asarray(scoring.cosine_scores(enroll_vectors, test_vectors, e_idx, t_idx))
        row: dict[str, Any] = {"system": system.name, "condition": condition}
        metrics = scoring.verification_metrics(cosine, labels, p_targets=(0.01,))
        row["eer"], row["min_dcf_0.01"] = metrics["eer"], metrics["min_dcf_0.01"]
        if cohort_models is not None:
            normed = scoring.as_norm(
                cosine, enroll_vectors, test_vectors, e_idx, t_idx, cohort_models, ASNORM_TOP_N
            )
            row["eer_asnorm"] = scoring.eer(normed, labels)[0]
        if test_set.hard is not None:
            keep = (labels == 1) | test_set.hard
            row["eer_hard"] = scoring.eer(cosine[keep], labels[keep])[0]
        if test_set.test:
            accuracy = scoring.identification_accuracy(
                enroll_vectors[[enroll_row[u.utt_id] for u in test_set.enroll]],
                [u.speaker for u in test_set.enroll],
                test_vectors[[test_row[u.utt_id] for u in test_set.test]],
                [u.speaker for u in test_set.test],
                ks=(1,),
            )
            row["top1"] = accuracy[1]
        row["det"] = scoring.det_curve(cosine, labels)[:2] if condition == "clean" else None
        row["embed_s"] = time.perf_counter() - start
        rows.append(row)
    return rows


# --- training ---------------------------------------------------------------------------------


def code_digest() -> str:
    """A hash of the code that trains a row (the package and train.py): a finished row is reused
    when its settings match, and this tells a table whose rows different code trained."""
    digest = hashlib.sha256()
    for path in sorted([REPO / "train.py", *(REPO / "gru_jax").rglob("*.py")]):
        digest.update(f"{path.relative_to(REPO).as_posix()}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def train_row(
    row: Row, data: Path, list_file: Path, run: Path, init: Path | None, code: str
) -> tuple[float, str | None]:
    """Train `row` with train.py (resumed if it was interrupted) by the code of digest `code`,
    or reuse it when it finished with the same settings: the wall seconds it took and the
    `code_digest` it was trained with (None for a row recorded before digests were)."""
    done = run / "accuracy-row.json"
    spec = {"row": dataclasses.asdict(row), "data": str(data), "init_from": str(init or "")}
    record = json.loads(done.read_text()) if done.is_file() else {}
    if record.get("spec") == spec:
        if record.get("code") != code:
            log.warning(
                "%s: reused, trained by other code (%s, now %s); delete %s to retrain it",
                row.name,
                record.get("code", "unrecorded"),
                code,
                run,
            )
        return float(record["wall_s"]), record.get("code")
    command = [sys.executable, str(REPO / "train.py"), "--preset", row.preset, "--data", str(data)]
    command += ["--list", str(list_file), "--out", str(run), "--no-progress"]
    if init is not None:
        command += ["--init-from", str(init)]
    for key, value in row.overrides.items():
        command += ["--set", f"{key}={value}"]
    log.info("training %s: %s", row.name, " ".join(command))
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    wall_s = time.perf_counter() - start
    atomic_write_json(done, {"spec": spec, "wall_s": wall_s, "code": code})
    return wall_s, code


# --- the table --------------------------------------------------------------------------------

COLUMNS = ("system", "condition", "eer", "eer_asnorm", "eer_hard", "min_dcf_0.01", "top1")


def markdown(result: Mapping[str, Any]) -> str:
    """The table of a run's `result` (results.json): what the README shows."""
    percent = {"eer", "eer_asnorm", "eer_hard", "top1"}

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "-"
        if key in percent:
            return f"{100 * value:.2f}"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    machine = result["machine"]
    hard = result["n_hard_nontargets"]
    lines = [
        f"Test speakers of `{Path(result['corpus']).name}`: {result['n_trials']} trials"
        + (f' ({hard} of the non-targets same-gender, the "hard" EER)' if hard else "")
        + f", {result['n_identification_tests']} closed-set identification tests."
        f" Hardware: {machine['cpu']}, {machine['cpu_count']} cores"
        f" (load {machine['load_avg_1_5_15'][2]:.1f} over 15 min at the end), {machine['time']}.",
        "",
    ]
    names = {"eer": "EER %", "eer_asnorm": "EER % AS-norm", "eer_hard": "EER % hard"}
    names |= {"min_dcf_0.01": "minDCF 0.01", "top1": "top-1 %"}
    header = [names.get(c, c) for c in COLUMNS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(cell(c, r.get(c)) for c in COLUMNS) + " |" for r in result["results"]
    ]
    if result["trained"]:
        first = next(iter(result["trained"].values()))["overrides"]
        lines += [
            "",
            "| trained row | preset | trained on | starts from | steps | training wall time "
            "| settings (`--set`; after the first row, those that differ from it) |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, (name, t) in enumerate(result["trained"].items()):
            changed = {k: v for k, v in t["overrides"].items() if i == 0 or first.get(k) != v}
            settings = " ".join(f"`{k}={v}`" for k, v in changed.items()) or "-"
            lines.append(
                f"| {name} | {t['preset']} | {t['data']} | {t['init_from'] or '-'} | {t['steps']} "
                f"| {t['wall_s'] / 60:.1f} min | {settings} |"
            )
        codes = {t.get("code") for t in result["trained"].values()}
        if len(codes) > 1:
            by_code = ", ".join(
                f"{name}: {t.get('code') or 'unrecorded'}" for name, t in result["trained"].items()
            )
            lines += ["", f"Rows trained by different code (`code_digest`): {by_code}."]
    return "\n".join(lines) + "\n"


# --- one run ---------------------------------------------------------------------------------

# The development corpus: a small "user's corpus" of training voices (where a GRU trained from
# scratch overfits) and test voices of variants no training set has. The generated corpus is the
# many-voices pretraining set: other draws (seed) of the training variants, fewer utterances each.
DEV_CORPUS = {"n_train_speakers": 40, "n_test_speakers": 40, "n_utterances": 16, "seed": 0}
GENERATED_CORPUS = {"n_train_speakers": 1000, "n_test_speakers": 2, "n_utterances": 8, "seed": 1}


@dataclass(frozen=True)
class Corpus:
    root: Path
    wav_dir: Path
    train_list: Path
    genders: Mapping[str, str] | None  # speaker -> gender, for the hard (same-gender) trials


def build_corpus(kind: str, out: Path) -> Corpus:
    """Write (or re-use) the corpus `kind`: "dev", "generated" (espeak-ng) or "synth" (the
    demo's synthetic corpus, the very one train.py makes without --data)."""
    if kind == "synth":
        from gru_jax.cli.train import DEMO_CORPUS
        from gru_jax.synth import make_corpus

        info = make_corpus(out / "demo", **DEMO_CORPUS)
        return Corpus(info.root, info.wav_dir, info.train_list, None)
    from gru_jax.synth.devcorpus import make_devcorpus

    info = make_devcorpus(out / kind, **(DEV_CORPUS if kind == "dev" else GENERATED_CORPUS))
    speakers = json.loads(info.meta.read_text())["speakers"]
    genders = {speaker: entry["gender"] for speaker, entry in speakers.items()}
    return Corpus(info.root, info.wav_dir, info.train_list, genders)


def baselines(
    trained: EmbeddingModel, cohort: tuple[list[str], list[np.ndarray]], resemblyzer: bool
) -> list[System]:
    """What training is measured against: the same GRU untrained, MFCC statistics, a peer."""
    systems: list[System] = [
        GruSystem(
            "GRU untrained", EmbeddingModel.untrained(trained.features, trained.encoder.model)
        ),
        MfccStatistics(cohort[1]),
    ]
    if resemblyzer and resemblyzer_available():
        systems.append(Resemblyzer())
    elif resemblyzer:
        log.warning("resemblyzer is not installed: its row is left out (see benchmarks/peers.py)")
    return systems


def _trained_steps(run: Path) -> int:
    return int(json.loads((run / "config.json").read_text())["trainer"]["steps"])


def run(out: Path, row_set: str, resemblyzer: bool = True) -> dict[str, Any]:
    """Build, train, score; write results.json, results.md and det.png under `out`."""
    rows = ROW_SETS[row_set].rows
    target = build_corpus(ROW_SETS[row_set].corpus, out / "corpora")
    generated = None
    if any(row.data == "generated" for row in rows):
        generated = build_corpus("generated", out / "corpora")

    trained: dict[str, dict[str, Any]] = {}
    code = code_digest()
    for row in rows:
        corpus = generated if row.data == "generated" and generated is not None else target
        init = out / "runs" / row.init_from if row.init_from else None
        run_dir = out / "runs" / row.name
        wall_s, row_code = train_row(row, corpus.wav_dir, corpus.train_list, run_dir, init, code)
        trained[row.name] = {
            "preset": row.preset,
            "data": row.data,
            "init_from": row.init_from,
            "overrides": dict(row.overrides),
            "steps": _trained_steps(run_dir),
            "wall_s": wall_s,
            "code": row_code,
        }

    test_set = load_test_set(target.root, target.genders)
    cohort = training_sample(target.root, COHORT_PER_SPEAKER)
    models = {row.name: EmbeddingModel.load(out / "runs" / row.name) for row in rows}
    systems: list[System] = []
    for row in rows:
        systems.append(GruSystem(f"GRU {row.name}", models[row.name]))
        if row.average_last > 1:
            averaged = EmbeddingModel.load(out / "runs" / row.name, average_last=row.average_last)
            systems.append(GruSystem(f"GRU {row.name}, last {row.average_last} averaged", averaged))
    if ROW_SETS[row_set].baselines:
        systems += baselines(models[rows[0].name], cohort, resemblyzer)

    scored: list[dict[str, Any]] = []
    curves: dict[str, reports.DetCurve] = {}
    for system in tqdm(systems, desc="systems", unit="system"):
        for row in score_system(system, test_set, cohort):
            det = row.pop("det")
            if det is not None:
                curves[system.name] = reports.DetCurve(*det, eer=row["eer"])
            scored.append(row)
    reports.plot_dets(curves, out / "det.png")
    result = {
        "benchmark": "accuracy",
        "rows": row_set,
        "corpus": str(target.root),
        "n_trials": len(test_set.trials),
        "n_hard_nontargets": None if test_set.hard is None else int(test_set.hard.sum()),
        "n_identification_tests": len(test_set.test),
        "trained": trained,
        "results": scored,
        "machine": machine_info(),
    }
    atomic_write_json(out / "results.json", result)
    atomic_write(out / "results.md", markdown(result))
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="where corpora, runs and the table go")
    p.add_argument("--rows", default="recipe", choices=sorted(ROW_SETS))
    p.add_argument("--no-resemblyzer", action="store_true", help="leave the pretrained peer out")
    p.add_argument("--json", help="also write the JSON result here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = run(Path(args.out), args.rows, resemblyzer=not args.no_resemblyzer)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
