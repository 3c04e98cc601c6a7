"""A speaker database for enrolment, verification and identification with one checkpoint.

The database is one ``.npz`` file: ``ids`` (speaker ids), ``sums`` (sum of each speaker's
L2-normalised utterance embeddings, so enrolling more audio later is exact), ``counts``,
``embeddings`` (``sums / counts``: the same per-speaker vectors `export.speaker_vectors` gives, so
the file also reads as an embeddings file) and ``meta``, a JSON string: the checkpoint that made the
vectors (run dir, step, model and feature config hashes, a hash of the weights) and the calibrated
decision threshold known at the last update. Vectors of different checkpoints live in different
spaces, so a database is refused by any other checkpoint.

Every update rewrites the file under a temporary name and renames it into place: a crash leaves the
previous database intact. Updates are read-modify-write, so run one enrolment at a time per file.

The decision threshold, in order of precedence: an explicit one; the calibrated threshold in
``<run>/eval/results.json`` when it was computed for the same checkpoint step; the one stored in
the database. Scores are cosine similarities of a test utterance with a speaker's mean vector.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gru_jax.core.files import atomic_write
from gru_jax.infer.model import EmbeddingModel
from gru_jax.nn.functional import l2_normalize

log = logging.getLogger(__name__)

DB_FORMAT = "gru-jax-speakers"
DB_VERSION = 1
_SHOWN_SPEAKERS = 5


class EnrollmentError(ValueError):
    """A speaker-database request that cannot be served (unknown speaker, other checkpoint, ...)."""


@dataclass
class SpeakerDatabase:
    """A database file opened with the checkpoint its vectors must come from."""

    path: Path
    model: EmbeddingModel
    speakers: list[str] = field(default_factory=list)
    sums: np.ndarray | None = None  # [S, E] float64 sums of unit utterance vectors
    counts: np.ndarray | None = None  # [S] int64
    threshold: float | None = None
    threshold_source: str = ""

    def __post_init__(self) -> None:
        dim = self.model.embedding_dim
        self.sums = np.zeros((0, dim)) if self.sums is None else np.asarray(self.sums, np.float64)
        self.counts = np.zeros(0, np.int64) if self.counts is None else np.asarray(self.counts)

    def __len__(self) -> int:
        return len(self.speakers)

    def means(self) -> np.ndarray:
        """[S, E] float32 mean of each speaker's unit vectors."""
        return (self.sums / self.counts[:, None]).astype(np.float32)

    def count(self, speaker: str) -> int:
        return int(self.counts[self.index_of(speaker)])

    def index_of(self, speaker: str) -> int:
        try:
            return self.speakers.index(speaker)
        except ValueError:
            raise EnrollmentError(self._unknown(speaker)) from None

    def _unknown(self, speaker: str) -> str:
        if not self.speakers:
            return f"unknown speaker {speaker!r}: {self.path} has no enrolled speakers"
        close = difflib.get_close_matches(speaker, self.speakers, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(sorted(self.speakers)[:_SHOWN_SPEAKERS])
        more = ", ..." if len(self.speakers) > _SHOWN_SPEAKERS else ""
        return (
            f"unknown speaker {speaker!r} (the {len(self.speakers)} enrolled in {self.path}: "
            f"{shown}{more}){hint}"
        )


def calibrated_threshold(model: EmbeddingModel) -> float | None:
    """The threshold in ``<run>/eval/results.json`` if that evaluation used this very checkpoint."""
    path = model.run.results
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
        evaluated = results["checkpoint"]
        threshold = float(results["calibration"]["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: no calibrated threshold could be read (%s)", path, e)
        return None
    if evaluated.get("weights") != model.fingerprint:
        log.warning(
            "%s is for checkpoint step %s, not this one (step %s): its threshold is not used; "
            "evaluate this checkpoint to calibrate it",
            path,
            evaluated.get("step"),
            model.step,
        )
        return None
    return threshold


def open_database(
    path: str | os.PathLike[str],
    model: EmbeddingModel,
    *,
    threshold: float | None = None,
    create: bool = False,
) -> SpeakerDatabase:
    """Open (or, with `create`, start) a database; refuse one made with another checkpoint."""
    path = Path(path)
    run_threshold = calibrated_threshold(model)
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path}: no speaker database; enrol a speaker first")
        db = SpeakerDatabase(path, model)
        stored = None
    else:
        meta, speakers, sums, counts = _read(path)
        _check_same_model(path, meta, model)
        db = SpeakerDatabase(path, model, speakers, sums, counts)
        stored = meta.get("threshold")
    for value, source in (
        (threshold, "given"),
        (run_threshold, str(model.run.results)),
        (stored, f"stored in {path}"),
    ):
        if value is not None:
            db.threshold, db.threshold_source = float(value), source
            break
    return db


def _read(path: Path) -> tuple[dict[str, Any], list[str], np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = data["ids"].tolist(), data["sums"], data["counts"]
    except (OSError, ValueError, KeyError) as e:
        raise EnrollmentError(f"{path}: not a readable speaker database ({e})") from None
    if meta.get("format") != DB_FORMAT or meta.get("version") != DB_VERSION:
        raise EnrollmentError(
            f"{path}: not a {DB_FORMAT} v{DB_VERSION} database "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
        )
    return meta, *arrays


def _check_same_model(path: Path, meta: dict[str, Any], model: EmbeddingModel) -> None:
    made, given = meta["checkpoint"], model.identity()
    if made["weights"] == given["weights"]:
        return
    differs = "model config" if made["model_hash"] != given["model_hash"] else "weights"
    if made["feature_hash"] != given["feature_hash"]:
        differs += " and feature config"
    raise EnrollmentError(
        f"{path} was enrolled with checkpoint {made['run_dir']} step {made['step']}, but "
        f"{given['run_dir']} step {given['step']} was given (other {differs}); its vectors are "
        "not comparable: pass the checkpoint the database was made with, or enrol again into "
        "a new database"
    )


def save_database(db: SpeakerDatabase) -> None:
    """Write the whole database atomically."""
    meta = {
        "format": DB_FORMAT,
        "version": DB_VERSION,
        "checkpoint": db.model.identity(),
        "threshold": db.threshold if db.threshold_source != "given" else None,
    }
    arrays = {
        "ids": np.array(db.speakers, dtype=str),
        "sums": db.sums,
        "counts": db.counts,
        "embeddings": db.means(),
        "meta": np.array(json.dumps(meta)),
    }
    atomic_write(db.path, lambda f: np.savez(f, **arrays))


def _check_speaker_id(speaker: str) -> None:
    if not speaker or any(c.isspace() for c in speaker):
        raise EnrollmentError(f"speaker id {speaker!r} must be non-empty and without whitespace")


def enroll(db: SpeakerDatabase, speaker: str, audio_files: Sequence[str | os.PathLike[str]]) -> int:
    """Add the files' embeddings to `speaker` (new or already enrolled) and save the database.

    All files are embedded before anything is written: one that fails the audio checks raises
    `AudioError` and leaves the database as it was. Returns the speaker's utterance count.
    """
    _check_speaker_id(speaker)
    if not audio_files:
        raise EnrollmentError(f"no audio files given to enrol {speaker!r}")
    unit = np.asarray(l2_normalize(db.model.embed_files(audio_files)), np.float64)
    speakers = db.speakers if speaker in db.speakers else [*db.speakers, speaker]
    sums = np.zeros((len(speakers), unit.shape[1]))
    sums[: len(db.speakers)] = db.sums
    counts = np.zeros(len(speakers), np.int64)
    counts[: len(db.speakers)] = db.counts
    i = speakers.index(speaker)
    sums[i] += unit.sum(axis=0)
    counts[i] += len(unit)
    updated = replace(db, speakers=speakers, sums=sums, counts=counts)
    save_database(updated)  # the file first: a failed write leaves `db` as the file is
    db.speakers, db.sums, db.counts = updated.speakers, updated.sums, updated.counts
    return int(counts[i])


def _scores(db: SpeakerDatabase, audio: str | os.PathLike[str]) -> np.ndarray:
    """Cosine of the utterance with every enrolled speaker: [S]."""
    if not db.speakers:
        raise EnrollmentError(f"{db.path} has no enrolled speakers")
    test = np.asarray(l2_normalize(db.model.embed_files([audio])))[0]
    return np.asarray(l2_normalize(db.means())) @ test


def claim_score(db: SpeakerDatabase, audio: str | os.PathLike[str], claimed_id: str) -> float:
    """Cosine score of `audio` against the claimed speaker's enrolment."""
    index = db.index_of(claimed_id)
    return float(_scores(db, audio)[index])


def verify(
    db: SpeakerDatabase, audio: str | os.PathLike[str], claimed_id: str
) -> tuple[float, bool]:
    """(score, accepted): accepted when the score reaches the database's decision threshold."""
    db.index_of(claimed_id)  # an unknown speaker is reported before a missing threshold
    if db.threshold is None:
        raise EnrollmentError(no_threshold_message(db.model))
    score = claim_score(db, audio, claimed_id)
    return score, score >= db.threshold


def no_threshold_message(model: EmbeddingModel) -> str:
    return (
        f"no calibrated decision threshold is known for {model.run} step {model.step}: "
        f"evaluate that checkpoint on a trial list first (eval.py --checkpoint {model.run} "
        "--data DIR --trials FILE writes it to <run>/eval/results.json), or give one "
        "(--threshold)"
    )


def identify(
    db: SpeakerDatabase, audio: str | os.PathLike[str], k: int = 5
) -> list[tuple[str, float]]:
    """The `k` best-scoring enrolled speakers (fewer if fewer are enrolled), best first."""
    if k < 1:
        raise EnrollmentError(f"k must be >= 1, got {k}")
    scores = _scores(db, audio)
    order = np.argsort(-scores, kind="stable")[:k]
    return [(db.speakers[i], float(scores[i])) for i in order]
