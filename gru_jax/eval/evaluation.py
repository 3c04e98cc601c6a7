"""Evaluate a checkpoint: verification trials, closed-set identification, reports.

Everything referenced by the trial list and the enrolment/test lists is checked to exist before any
work starts (all missing files in one error). The referenced utterances become one float32 feature
store (cached, keyed by the exact utterance set and the checkpoint's feature config) and are
embedded whole. Audio that fails the front end's checks is counted by reason and its trials are
dropped with a warning, as a corpus run would skip it.

Verification is reported for up to five score sets: the trial list's cosine scores, their AS-norm
(cohort: the training speakers) and PLDA scores (a backend fitted on the training speakers'
embeddings), and "enrolled": every identification test utterance against every enrolled
speaker's mean vector, which is exactly what `enrollment.verify` computes (with PLDA, also
"enrolled_plda": the same pairs, each speaker's enrolment utterances scored together). The
decision threshold saved for `verify` is calibrated on the "enrolled" set when there is one: a
speaker mean of several utterances scores higher than a single utterance, for impostors too, so a
threshold from utterance-to-utterance trials would accept more impostors than its EER promises.

Written to the output directory (default ``<run>/eval``): ``results.json`` (every number of the
printed tables, the calibrated threshold, the checkpoint step, counts and skips), ``det.png`` and
``scores.png`` for the first score set (``det_<set>.png``, ``scores_<set>.png`` for the others),
``scores.txt`` (``enroll test label score`` per scored trial; ``scores_asnorm.txt``,
``scores_plda.txt``) and ``embeddings.npz`` (the utterance vectors).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from gru_jax.core.config import ConfigError
from gru_jax.core.files import atomic_write, atomic_write_json
from gru_jax.data.corpora import (
    AUDIO_EXTENSIONS,
    CorpusError,
    ListedUtterance,
    Trial,
    Utterance,
    audio_root,
    find_audio,
    read_id_list,
    read_voxceleb_trials,
)
from gru_jax.data.store import StoreError, open_store
from gru_jax.eval import metrics as scoring
from gru_jax.eval import reports
from gru_jax.eval.plda import Plda
from gru_jax.infer.distributed import is_main
from gru_jax.infer.export import save_npz
from gru_jax.infer.model import EmbeddedCorpus, EmbeddingModel, default_store_dir, embed_utterances

log = logging.getLogger(__name__)

DURATION_EDGES = (2.0, 4.0, 8.0)  # seconds: buckets <2 s, 2-4 s, 4-8 s, >8 s
P_TARGETS = (0.01, 0.05)
ID_KS = (1, 5)
MAX_LISTED = 10  # missing files named in an error


def referenced_utterances(
    root: Path, trials: Sequence[Trial], trials_file: str | None, listed: Sequence[ListedUtterance]
) -> list[Utterance]:
    """Every utterance the trials and lists name, resolved under `root`; all missing ones at once."""
    speaker_of: dict[str, str] = {}
    where: dict[str, str] = {}
    for item in listed:
        speaker_of.setdefault(item.utt_id, item.speaker)
        where.setdefault(item.utt_id, item.where)
    for trial in trials:
        for utt_id in (trial.enroll, trial.test):
            # VoxCeleb ids start with the speaker; only the store's metadata uses it
            speaker_of.setdefault(utt_id, PurePosixPath(utt_id).parts[0])
            where.setdefault(utt_id, str(trials_file))
    paths = {utt_id: find_audio(root, utt_id) for utt_id in speaker_of}
    missing = [utt_id for utt_id, path in paths.items() if path is None]
    if missing:
        shown = "\n".join(f"  {utt_id}  ({where[utt_id]})" for utt_id in missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise CorpusError(
            f"{len(missing)} of {len(paths)} referenced utterances have no audio file under "
            f"{root} (looked for {'/'.join(AUDIO_EXTENSIONS)}):\n{shown}{more}"
        )
    return [Utterance(u, speaker_of[u], str(paths[u])) for u in sorted(paths)]


# --- score sets ------------------------------------------------------------------------------------

SCORE_SETS = {
    "cosine": "cosine of two utterances (trial list)",
    "asnorm": "AS-norm of the trial list's cosine scores",
    "plda": "PLDA log-likelihood ratio of the trial list (a backend fitted on training speakers)",
    "enrolled": "cosine of a test utterance with an enrolled speaker's mean (enrolment and "
    "test lists, each test utterance against every speaker)",
    "enrolled_plda": "PLDA log-likelihood ratio of a test utterance and all of an enrolled "
    "speaker's utterances (the same pairs as enrolled)",
}


@dataclass(frozen=True)
class ScoreSet:
    """Verification trials of one kind: who is compared with which test utterance, and how."""

    labels: np.ndarray  # 1 same speaker, 0 different
    scores: np.ndarray
    durations_s: np.ndarray  # of the test utterances
    trials: list[Trial] | None = None  # for a score file; None: too many pairs to list


@dataclass(frozen=True)
class Backends:
    """What scoring learns from the training speakers: AS-norm's cohort (one mean vector per
    speaker) and a PLDA model; each None when it is not asked for."""

    cohort: np.ndarray | None = None
    asnorm_top_n: int = 0
    plda: Plda | None = None
    sample: tuple[int, int] = (0, 0)  # training speakers, utterances they were made from

    def info(self) -> dict[str, dict[str, int]]:
        """How each backend was made: reported beside its scores."""
        info = {}
        if self.cohort is not None:
            top_n = min(self.asnorm_top_n, len(self.cohort))
            info["asnorm"] = {"top_n": top_n, "cohort_speakers": len(self.cohort)}
        if self.plda is not None:
            speakers, utterances = self.sample
            info["plda"] = {
                "dim": self.plda.dim,
                "train_speakers": speakers,
                "train_utterances": utterances,
            }
        return info


def fit_backends(
    model: EmbeddingModel,
    asnorm_top_n: int = 0,
    plda_dim: int | None = None,
    store_path: str | os.PathLike[str] | None = None,
    per_speaker: int = 10,
) -> Backends:
    """AS-norm's cohort (`asnorm_top_n` > 0) and PLDA (`plda_dim` not None; 0 keeps every
    dimension) from one sample of the training speakers' utterances."""
    if not asnorm_top_n and plda_dim is None:
        return Backends()
    vectors, speakers = training_speaker_sample(model, store_path, per_speaker)
    cohort = np.asarray(scoring.speaker_means(vectors, speakers)[1]) if asnorm_top_n else None
    plda = Plda.fit(vectors, speakers, plda_dim) if plda_dim is not None else None
    return Backends(cohort, asnorm_top_n, plda, (len(set(speakers)), len(speakers)))


def score_trials(
    corpus: EmbeddedCorpus, trials: Sequence[Trial], backends: Backends = Backends()
) -> dict[str, ScoreSet]:
    """Cosine scores of the trials whose audio passed the checks, and those of each backend."""
    row_of = corpus.row_of()
    used = [t for t in trials if t.enroll in row_of and t.test in row_of]
    if len(used) < len(trials):
        log.warning(
            "%d of %d trial(s) dropped: their audio failed the checks",
            len(trials) - len(used),
            len(trials),
        )
    enroll_rows = np.array([row_of[t.enroll] for t in used], np.int64)
    test_rows = np.array([row_of[t.test] for t in used], np.int64)
    labels = np.array([t.label for t in used], np.int32)
    if labels.min(initial=1) == 1 or labels.max(initial=0) == 0:
        raise CorpusError(
            f"{len(used)} trial(s) left to score after dropping those with failed audio, and "
            "they need both target (1) and non-target (0) labels"
        )
    vectors = corpus.vectors
    cosine = np.asarray(scoring.cosine_scores(vectors, vectors, enroll_rows, test_rows))
    scores = {"cosine": cosine}
    if backends.cohort is not None:
        scores["asnorm"] = np.asarray(
            scoring.as_norm(
                cosine,
                vectors,
                vectors,
                enroll_rows,
                test_rows,
                backends.cohort,
                backends.asnorm_top_n,
            )
        )
    if backends.plda is not None:
        scores["plda"] = backends.plda.trial_scores(vectors, vectors, enroll_rows, test_rows)
    durations = corpus.durations_s[test_rows]
    return {name: ScoreSet(labels, s, durations, used) for name, s in scores.items()}


def training_speaker_sample(
    model: EmbeddingModel,
    store_path: str | os.PathLike[str] | None = None,
    per_speaker: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Embeddings of a bounded sample of every training speaker's utterances from the training
    feature store (the one recorded in the checkpoint by default), and their speakers: AS-norm's
    cohort (one mean per speaker) and PLDA's training data."""
    path = store_path or model.encoder.meta.get("store")
    try:
        store = open_store(path, model.features)
    except (StoreError, TypeError) as e:
        raise StoreError(
            f"AS-norm and PLDA need the training speakers' features, and the feature store "
            f"{path} cannot be used ({e}); pass another one (--cohort-store) or leave them off"
        ) from None
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for speaker in model.encoder.class_names:
        own = np.flatnonzero(store.speakers == speaker)
        if len(own):
            chosen = np.sort(rng.choice(own, min(per_speaker, len(own)), replace=False))
            rows.append(chosen)
            labels += [speaker] * len(chosen)
    if len(rows) < 2:
        raise StoreError(f"{store.path}: fewer than 2 training speakers found")
    return model.embed_source(store, np.concatenate(rows)), labels


# --- identification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """The identification lists, reduced to utterances whose audio passed the checks."""

    enroll: list[ListedUtterance]
    test: list[ListedUtterance]  # only speakers with a usable enrolment (closed set)


def usable_enrolment(
    corpus: EmbeddedCorpus, enroll: Sequence[ListedUtterance], test: Sequence[ListedUtterance]
) -> Enrolment:
    row_of = corpus.row_of()
    enroll = [u for u in enroll if u.utt_id in row_of]
    enrolled = {u.speaker for u in enroll}
    test_kept = [u for u in test if u.utt_id in row_of and u.speaker in enrolled]
    if len(test_kept) < len(test):
        log.warning(
            "identification: %d test utterance(s) dropped (audio failed the checks, or the "
            "speaker has no usable enrolment)",
            len(test) - len(test_kept),
        )
    if not test_kept:
        raise CorpusError("identification: no test utterance is left to score")
    return Enrolment(enroll, test_kept)


def _vectors(corpus: EmbeddedCorpus, utterances: Sequence[ListedUtterance]) -> np.ndarray:
    row_of = corpus.row_of()
    return corpus.vectors[[row_of[u.utt_id] for u in utterances]]


def identification_report(corpus: EmbeddedCorpus, lists: Enrolment) -> dict[str, Any]:
    """Top-k accuracy with all of each speaker's enrolment utterances and with only the first."""
    first_of: dict[str, ListedUtterance] = {}
    for u in sorted(lists.enroll, key=lambda u: u.utt_id):
        first_of.setdefault(u.speaker, u)
    per_speaker = np.unique([u.speaker for u in lists.enroll], return_counts=True)[1]
    report: dict[str, Any] = {
        "n_speakers": len(per_speaker),
        "n_test": len(lists.test),
        "enroll_per_speaker": {"min": int(per_speaker.min()), "max": int(per_speaker.max())},
    }
    test_vectors, test_labels = _vectors(corpus, lists.test), [u.speaker for u in lists.test]
    for name, subset in (("one_utterance", list(first_of.values())), ("all", lists.enroll)):
        accuracy = scoring.identification_accuracy(
            _vectors(corpus, subset), [u.speaker for u in subset], test_vectors, test_labels, ID_KS
        )
        report[name] = {f"top{k}": accuracy[k] for k in ID_KS}
    return report


def enrolled_speaker_trials(
    corpus: EmbeddedCorpus, lists: Enrolment, plda: Plda | None = None
) -> ScoreSet:
    """Every test utterance against every enrolled speaker: the cosine with the speaker's mean
    (the scores `verify` makes), or with `plda` its likelihood ratio given all the speaker's
    enrolment utterances."""
    enroll_vectors, enroll_speakers = (
        _vectors(corpus, lists.enroll),
        [u.speaker for u in lists.enroll],
    )
    test_vectors = _vectors(corpus, lists.test)
    if plda is None:
        speakers, models = scoring.speaker_means(enroll_vectors, enroll_speakers)
        matrix = np.asarray(scoring.score_matrix(test_vectors, models))
    else:
        speakers, index, counts = np.unique(
            enroll_speakers, return_inverse=True, return_counts=True
        )
        means = np.zeros((len(speakers), plda.dim))
        np.add.at(means, index, plda.project(enroll_vectors))
        matrix = plda.llr_matrix(plda.project(test_vectors), means / counts[:, None], counts)
    test_speakers = np.array([u.speaker for u in lists.test])
    durations = corpus.durations_s[[corpus.row_of()[u.utt_id] for u in lists.test]]
    return ScoreSet(
        labels=(test_speakers[:, None] == speakers[None, :]).astype(np.int32).ravel(),
        scores=matrix.ravel(),
        durations_s=np.repeat(durations, len(speakers)),
    )


# --- the whole evaluation ----------------------------------------------------------------------


def evaluate(
    run_dir: str | os.PathLike[str] | EmbeddingModel,
    data_dir: str | os.PathLike[str],
    trials: str | os.PathLike[str] | None = None,
    enroll_list: str | os.PathLike[str] | None = None,
    test_list: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    asnorm_top_n: int = 0,
    far: float | None = None,
    *,
    plda_dim: int | None = None,
    step: int | None = None,
    best: bool = False,
    average_last: int = 1,
    store_dir: str | os.PathLike[str] | None = None,
    cohort_store: str | os.PathLike[str] | None = None,
    cohort_per_speaker: int = 10,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score `trials` and/or identification lists with a checkpoint; write reports; return them.

    `run_dir` may also be an already loaded `EmbeddingModel` (then `step`, `best` and
    `average_last` are unused).
    The decision threshold `verify` uses is calibrated on the scores that match it best: test
    utterances against enrolled speakers' means when identification lists are given, else the
    trial list; at the EER, or at the false-accept rate `far` when given. `asnorm_top_n` > 0
    adds AS-norm scores of the trial list with that cohort size; `plda_dim` adds PLDA scores
    (a backend trained on the training speakers, keeping that many dimensions; 0: all).
    """
    if trials is None and (enroll_list is None or test_list is None):
        raise ConfigError(
            "nothing to evaluate: give a trial list and/or an enrolment list "
            "together with a test list"
        )
    if (enroll_list is None) != (test_list is None):
        raise ConfigError("identification needs both an enrolment list and a test list")
    if far is not None and not 0.0 < far < 1.0:
        raise ConfigError(f"the target false-accept rate must be in (0, 1), got {far}")
    if asnorm_top_n < 0:
        raise ConfigError(f"the AS-norm cohort size must be >= 0, got {asnorm_top_n}")
    root = audio_root(data_dir)
    trial_list = read_voxceleb_trials(trials) if trials is not None else []
    enroll = read_id_list(enroll_list) if enroll_list is not None else []
    test = read_id_list(test_list) if test_list is not None else []
    utterances = referenced_utterances(root, trial_list, trials, [*enroll, *test])

    model = (
        run_dir
        if isinstance(run_dir, EmbeddingModel)
        else EmbeddingModel.load(run_dir, step=step, best=best, average_last=average_last)
    )
    if plda_dim is not None and not 0 <= plda_dim <= model.embedding_dim:
        raise ConfigError(
            f"the PLDA dimension must be in [0, {model.embedding_dim}] (the embedding size; "
            f"0 keeps all), got {plda_dim}"
        )
    out = Path(out_dir) if out_dir is not None else model.run.eval
    sources = [str(Path(p)) for p in (trials, enroll_list, test_list) if p is not None]
    corpus = embed_utterances(
        model,
        utterances,
        store_dir or default_store_dir(root, utterances, model.features),
        workers=workers,
        progress=progress,
        sources=sources,
    )
    if corpus.skipped:
        log.warning(
            "%d of %d utterance(s) failed the audio checks and are left out: %s",
            len(utterances) - len(corpus.ids),
            len(utterances),
            corpus.skipped,
        )
    results: dict[str, Any] = {
        "checkpoint": model.identity(),
        "inputs": {
            "data": str(root),
            "trials": _str(trials),
            "enroll_list": _str(enroll_list),
            "test_list": _str(test_list),
            "store": str(corpus.store),
        },
        "counts": {
            "utterances": len(utterances),
            "embedded": len(corpus.ids),
            "skipped": corpus.skipped,
            "skipped_ids": sorted({u.utt_id for u in utterances} - set(corpus.ids.tolist())),
        },
    }
    backends = fit_backends(
        model, asnorm_top_n if trial_list else 0, plda_dim, cohort_store, cohort_per_speaker
    )
    sets: dict[str, ScoreSet] = {}
    if trial_list:
        sets = score_trials(corpus, trial_list, backends)
        n_scored = len(sets["cosine"].labels)
        results["counts"].update(
            trials=len(trial_list),
            trials_scored=n_scored,
            trials_dropped=len(trial_list) - n_scored,
        )
    if enroll:
        lists = usable_enrolment(corpus, enroll, test)
        results["identification"] = identification_report(corpus, lists)
        sets["enrolled"] = enrolled_speaker_trials(corpus, lists)
        if backends.plda is not None:
            sets["enrolled_plda"] = enrolled_speaker_trials(corpus, lists, backends.plda)
    results["verification"] = {
        name: verification_report(s.scores, s.labels, s.durations_s, far)
        for name, s in sets.items()
    }
    for name, info in backends.info().items():
        for scored in (name, f"enrolled_{name}"):
            if scored in results["verification"]:
                results["verification"][scored].update(info)
    results["calibration"] = calibration(results["verification"], far)
    if is_main():  # every process has the same results; one writes them
        out.mkdir(parents=True, exist_ok=True)
        save_npz(out / "embeddings.npz", corpus.ids, corpus.vectors, speakers=corpus.speakers)
        write_score_reports(out, sets, results)
        atomic_write_json(out / model.run.results.name, results)
    return results


def _str(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(path)


def verification_report(
    scores: np.ndarray, labels: np.ndarray, durations_s: np.ndarray, far: float | None
) -> dict[str, Any]:
    report = scoring.verification_metrics(scores, labels, P_TARGETS)
    if far is not None:
        report["far"] = far
        report["far_threshold"] = scoring.threshold_at_far(scores, labels, far)
    report["by_duration"] = scoring.metrics_by_duration(
        scores, labels, durations_s, DURATION_EDGES, P_TARGETS
    )
    return report


def calibration(verification: dict[str, dict[str, Any]], far: float | None) -> dict[str, Any]:
    """The threshold `verify` applies: on the enrolled-speaker scores if there are any (they are
    what `verify` computes), else on the trial list; at the EER, or at `far`."""
    name = "enrolled" if "enrolled" in verification else "cosine"
    report = verification[name]
    return {
        "scores": name,
        "operating_point": "eer" if far is None else f"far={far:g}",
        "threshold": report["threshold" if far is None else "far_threshold"],
        "eer_threshold": report["threshold"],
    }


def write_score_reports(out: Path, sets: dict[str, ScoreSet], results: dict[str, Any]) -> None:
    """Per score set: the DET curve and score histograms (the first set without a suffix:
    det.png, scores.png), and for trial lists a score file (``enroll test label score``)."""
    calibrated = results["calibration"]
    for position, (name, scored) in enumerate(sets.items()):
        suffix = "" if position == 0 else f"_{name}"
        report = results["verification"][name]
        if scored.trials is not None:
            lines = "".join(
                f"{t.enroll} {t.test} {t.label} {s:.6f}\n"
                for t, s in zip(scored.trials, scored.scores, strict=True)
            )
            atomic_write(out / f"scores{suffix}.txt", lines)
        p_fa, p_miss, _ = scoring.det_curve(scored.scores, scored.labels)
        reports.plot_det(p_fa, p_miss, out / f"det{suffix}.png", eer=report["eer"], label=name)
        threshold = calibrated["threshold"] if name == calibrated["scores"] else report["threshold"]
        reports.plot_score_histograms(
            scored.scores, scored.labels, out / f"scores{suffix}.png", threshold
        )


# --- the printed report ------------------------------------------------------------------------

_SHORT_NAMES = {
    "cosine": "cosine",
    "asnorm": "AS-norm",
    "plda": "PLDA",
    "enrolled": "enrolled",
    "enrolled_plda": "enr. PLDA",
}
_VERIFY_COLUMNS = [
    "scores",
    "test audio",
    "trials",
    "targets",
    "EER %",
    "minDCF 0.01",
    "minDCF 0.05",
    "EER threshold",
]


def format_report(results: dict[str, Any]) -> str:
    """The tables `eval.py` prints; every number in them is in ``results.json`` (rates there are
    fractions, here percentages)."""
    checkpoint, counts = results["checkpoint"], results["counts"]
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts["skipped"].items()))
    lines = [
        f"checkpoint {checkpoint['run_dir']} step {checkpoint['step']}",
        f"{counts['embedded']} of {counts['utterances']} utterances embedded"
        + (f"; skipped ({skipped})" if skipped else ""),
    ]
    if "trials" in counts:
        dropped = counts["trials_dropped"]
        lines.append(
            f"{counts['trials_scored']} of {counts['trials']} listed trials scored"
            + (f" ({dropped} dropped)" if dropped else "")
        )
    verification = results["verification"]
    lines += ["", "verification"]
    lines += [f"  {_SHORT_NAMES[name]}: {SCORE_SETS[name]}" for name in verification]
    lines += [reports.format_table(_verification_rows(verification), _VERIFY_COLUMNS)]
    calibrated = results["calibration"]
    lines.append(
        f"decision threshold for verify ({_SHORT_NAMES[calibrated['scores']]} scores, at "
        f"{calibrated['operating_point']}): {calibrated['threshold']:.4f}"
    )
    if "identification" in results:
        ident = results["identification"]
        rows = [
            {"enrolment": "1 utterance", **_percent(ident["one_utterance"])},
            {
                "enrolment": f"all ({_range(ident['enroll_per_speaker'])} utterances)",
                **_percent(ident["all"]),
            },
        ]
        for row in rows:
            row.update(speakers=ident["n_speakers"], tests=ident["n_test"])
        lines += [
            "",
            "closed-set identification",
            reports.format_table(rows, ["enrolment", "speakers", "tests", "top-1 %", "top-5 %"]),
        ]
    return "\n".join(lines)


def _verification_rows(verification: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, report in verification.items():
        for bucket, metrics in [("all", report), *report["by_duration"].items()]:
            n_target, n_nontarget = metrics["n_target"], metrics["n_nontarget"]
            if bucket != "all" and n_target + n_nontarget == 0:
                continue
            rows.append(
                {
                    "scores": _SHORT_NAMES[name],
                    "test audio": bucket,
                    "trials": n_target + n_nontarget,
                    "targets": n_target,
                    "EER %": None if metrics["eer"] is None else 100 * metrics["eer"],
                    "minDCF 0.01": metrics["min_dcf_0.01"],
                    "minDCF 0.05": metrics["min_dcf_0.05"],
                    "EER threshold": metrics["threshold"],
                }
            )
    return rows


def _percent(accuracy: dict[str, float]) -> dict[str, float]:
    return {f"top-{key[3:]} %": 100 * value for key, value in accuracy.items()}


def _range(bounds: dict[str, int]) -> str:
    low, high = bounds["min"], bounds["max"]
    return str(low) if low == high else f"{low}-{high}"
