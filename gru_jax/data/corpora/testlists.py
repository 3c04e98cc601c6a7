"""Test lists for corpora that ship none: verification trials and identification lists drawn
from held-out speakers, in the formats `eval.py` reads.

LibriSpeech's dev/test splits and most Kaldi test dirs have speakers but no trial list, so one is
drawn here, deterministically (the same listing and seed give the same lists) and the same way for
every corpus, so that numbers on one corpus can be compared between runs:

- identification: each speaker enrols with its first `enroll_per_speaker` utterances (in id
  order) of its first session (LibriSpeech: chapter); every other utterance is a test utterance;
- verification: every test utterance is the test side of `targets_per_utterance` same-speaker
  trials, against utterances of other sessions first (same-session pairs are easier and would
  flatter the EER), and of as many trials against other speakers' utterances.

Every path is written relative to the audio root `eval.py --data` is given, since evaluation
finds audio under that one root; a corpus whose files lie anywhere (a Kaldi data dir) is first
given such a root by `link_audio_tree`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from gru_jax.core.files import atomic_write
from gru_jax.data.corpora.base import CorpusError, StrPath, Trial, Utterance, utt_id_from_relpath

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestLists:
    """Lists written by `write_test_lists`, paths relative to `data` (`eval.py --data`)."""

    __test__ = False  # not a pytest test class, whatever its name

    data: Path
    trials: Path | None
    enroll_list: Path
    test_list: Path
    n_trials: int
    n_speakers: int
    n_enroll: int
    n_test: int


def _relative_paths(utterances: Sequence[Utterance], root: Path) -> dict[str, str]:
    """utt_id -> path relative to `root`, of whole files only: evaluation reads no spans."""
    relative = {}
    for u in utterances:
        if u.start is not None or u.end is not None:
            raise CorpusError(
                f"utterance {u.utt_id!r} is a span of {u.path}; test lists name whole files "
                "(cut the spans into files first)"
            )
        try:
            rel = Path(os.path.abspath(u.path)).relative_to(os.path.abspath(root)).as_posix()
        except ValueError:
            raise CorpusError(
                f"{u.path} (utterance {u.utt_id!r}) is not under {root}; link the audio into "
                "one root first (link_audio_tree)"
            ) from None
        relative[u.utt_id] = rel
    return relative


def split_enrolment(
    utterances: Sequence[Utterance], enroll_per_speaker: int = 3
) -> tuple[list[Utterance], list[Utterance]]:
    """(enrolment, test) utterances, both in id order; speakers with too few utterances to have
    a test utterance are left out of both, with a warning."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utterances, key=lambda u: u.utt_id):
        by_speaker[u.speaker].append(u)
    enroll, test, dropped = [], [], []
    for speaker in sorted(by_speaker):
        own = by_speaker[speaker]
        if len(own) <= enroll_per_speaker:
            dropped.append(speaker)
            continue
        first_session = own[0].session
        ordered = sorted(own, key=lambda u: (u.session != first_session, u.utt_id))
        enroll += ordered[:enroll_per_speaker]
        test += ordered[enroll_per_speaker:]
    if dropped:
        log.warning(
            "%d speaker(s) have at most %d utterances, too few to enrol and test, and are left "
            "out: %s",
            len(dropped),
            enroll_per_speaker,
            ", ".join(dropped[:5]) + (", ..." if len(dropped) > 5 else ""),
        )
    if len({u.speaker for u in test}) < 2:
        raise CorpusError(
            f"{len({u.speaker for u in test})} speaker(s) with more than {enroll_per_speaker} "
            "utterances: verification and identification need at least 2"
        )
    return sorted(enroll, key=lambda u: u.utt_id), sorted(test, key=lambda u: u.utt_id)


def draw_trials(
    utterances: Sequence[Utterance],
    test: Sequence[Utterance],
    targets_per_utterance: int = 4,
    nontargets_per_utterance: int = 4,
    seed: int = 0,
) -> list[Trial]:
    """Trials with each `test` utterance on the test side (see the module docstring); a pair is
    never scored twice, in either order."""
    pool = sorted(utterances, key=lambda u: u.utt_id)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for k, u in enumerate(pool):
        by_speaker[u.speaker].append(k)
    speaker_of = np.array([u.speaker for u in pool])
    rng = np.random.default_rng([seed, 0x7E57])
    trials, seen = [], set()
    for t in sorted(test, key=lambda u: u.utt_id):
        own = [k for k in by_speaker[t.speaker] if pool[k].utt_id != t.utt_id]
        other_session = [k for k in own if pool[k].session != t.session]
        same_session = [k for k in own if pool[k].session == t.session]
        targets = [*rng.permutation(other_session), *rng.permutation(same_session)]
        n_other = min(nontargets_per_utterance, len(pool) - len(by_speaker[t.speaker]))
        picked = [(1, int(k)) for k in targets[:targets_per_utterance]]
        picked += [(0, k) for k in _other_speakers(rng, speaker_of, t.speaker, n_other)]
        for label, k in picked:
            pair = frozenset((pool[k].utt_id, t.utt_id))
            if pair not in seen:
                seen.add(pair)
                trials.append(Trial(label, pool[k].utt_id, t.utt_id))
    return trials


def _other_speakers(
    rng: np.random.Generator, speaker_of: np.ndarray, speaker: str, n: int
) -> list[int]:
    """`n` distinct utterances of other speakers: drawn and rejected one at a time, which is
    quick when the speaker holds a small share of the pool (scanning the whole pool for every
    test utterance is quadratic); the scan is the fallback."""
    chosen: list[int] = []
    for _ in range(50 * n):
        if len(chosen) == n:
            return chosen
        k = int(rng.integers(len(speaker_of)))
        if speaker_of[k] != speaker and k not in chosen:
            chosen.append(k)
    if len(chosen) == n:
        return chosen
    others = np.flatnonzero(speaker_of != speaker)
    return [int(k) for k in rng.choice(others, n, replace=False)]


def write_test_lists(
    utterances: Sequence[Utterance],
    root: StrPath,
    out_dir: StrPath,
    *,
    trials: Sequence[Trial] | None = None,
    enroll_per_speaker: int = 3,
    targets_per_utterance: int = 4,
    nontargets_per_utterance: int = 4,
    seed: int = 0,
) -> TestLists:
    """Write ``trials.txt`` (``label enroll test``), ``enroll_list.txt`` and ``test_list.txt``
    (``speaker path``) into `out_dir`, paths relative to `root`. `trials` (utterance ids, e.g.
    a corpus's own list) are written instead of drawn ones when given."""
    root, out = Path(root), Path(out_dir)
    relative = _relative_paths(utterances, root)
    enroll, test = split_enrolment(utterances, enroll_per_speaker)
    if trials is None:
        trials = draw_trials(
            utterances, test, targets_per_utterance, nontargets_per_utterance, seed
        )
    unknown = sorted({i for t in trials for i in (t.enroll, t.test)} - set(relative))
    if unknown:
        raise CorpusError(
            f"{len(unknown)} utterance(s) of the trials are not in the test data: "
            + ", ".join(unknown[:5])
            + (", ..." if len(unknown) > 5 else "")
        )
    out.mkdir(parents=True, exist_ok=True)
    written = TestLists(
        data=root,
        trials=out / "trials.txt",
        enroll_list=out / "enroll_list.txt",
        test_list=out / "test_list.txt",
        n_trials=len(trials),
        n_speakers=len({u.speaker for u in test}),
        n_enroll=len(enroll),
        n_test=len(test),
    )
    atomic_write(
        out / "trials.txt",
        "".join(f"{t.label} {relative[t.enroll]} {relative[t.test]}\n" for t in trials),
    )
    for path, listed in ((written.enroll_list, enroll), (written.test_list, test)):
        atomic_write(path, "".join(f"{u.speaker} {relative[u.utt_id]}\n" for u in listed))
    return written


def link_audio_tree(utterances: Sequence[Utterance], root: StrPath) -> list[Utterance]:
    """Symbolic links ``root/<utt_id><extension>`` to each utterance's file: one root for
    evaluation, with the corpus's own ids as file names. Returns the utterances with their
    paths in the tree; links already there are replaced."""
    root = Path(root)
    linked = []
    for u in utterances:
        if u.start is not None or u.end is not None:
            raise CorpusError(
                f"utterance {u.utt_id!r} is a span of {u.path} (a segments file): evaluation "
                "reads whole files, so cut the test spans into files first"
            )
        parts = PurePosixPath(u.utt_id).parts
        link = root / f"{u.utt_id}{Path(u.path).suffix.lower()}"
        unsafe = not parts or parts[0] == "/" or ".." in parts
        if unsafe or utt_id_from_relpath(link.relative_to(root).as_posix()) != u.utt_id:
            raise CorpusError(f"utterance id {u.utt_id!r} cannot name a file under {root}")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.abspath(u.path))
        linked.append(Utterance(u.utt_id, u.speaker, str(link), u.session))
    return linked
