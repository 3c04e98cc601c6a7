"""A synthetic corpus on disk: VoxCeleb layout, trial and identification lists, re-use.

The demo and the tests need speakers without downloading anything, laid out like the real corpora
the pipeline reads (`wav/<speaker>/<session>/<utt>.wav` plus list files), so the same code paths
run on both. A corpus is a pure function of its arguments: every file depends only on its own
random streams, so the same arguments give byte-identical files whatever the order of generation
or the number of worker processes, and a matching corpus already on disk is re-used as is.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import os
import shutil
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from gru_jax.core.config import to_dict
from gru_jax.core.files import atomic_write
from gru_jax.core.processes import worker_pool
from gru_jax.synth.dsp import synthesize_utterance
from gru_jax.synth.voices import (
    STREAM_TRIALS,
    STREAM_UTTERANCE,
    draw_channel,
    draw_session_ids,
    draw_voice,
    stream_rng,
)

# Bump when anything that changes the generated audio or lists changes, so stale corpora are
# rebuilt.
FORMAT_VERSION = 1
FORMAT_NAME = "gru-jax-synth"
MARKER_NAME = ".gru-jax-synth"
META_NAME = "meta.json"
WAV_DIR = "wav"
TRAIN_LIST = "train_list.txt"
TRIALS = "trials.txt"
ENROLL_LIST = "enroll_list.txt"
TEST_LIST = "test_list.txt"

# Calibrated with the voice and channel spreads in voices.py; see the note there.
DEFAULT_SNR_DB = (10.0, 40.0)

# Trials per test utterance and label (each utterance enrols against this many same- and
# other-speaker utterances), which gives a few hundred trials for the default corpus size.
TRIALS_PER_UTTERANCE = 3

PARALLEL_MIN_UTTERANCES = 400  # below this, starting worker processes costs more than it saves


@dataclasses.dataclass(frozen=True)
class CorpusInfo:
    """Where a corpus lives and what it holds; `reused` says it was found, not written."""

    root: Path
    wav_dir: Path
    train_list: Path
    trials: Path
    enroll_list: Path
    test_list: Path
    meta: Path
    n_speakers: int
    n_train_speakers: int
    n_test_speakers: int
    n_files: int
    n_trials: int
    sample_rate: int
    reused: bool


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One file of a corpus: its speaker, session and place (`relpath` under the wav dir)."""

    speaker_index: int
    speaker: str
    session: str
    session_index: int
    utt_index: int
    relpath: str


@dataclasses.dataclass(frozen=True)
class _Arguments:
    """What a corpus is made from, recorded in meta.json: equal arguments, equal corpus."""

    n_speakers: int
    n_utterances: int
    seed: int
    n_test_speakers: int
    sample_rate: int
    duration_s: tuple[float, float]
    snr_db: tuple[float, float] | None
    n_sessions: int
    n_train_sessions: int


@dataclasses.dataclass(frozen=True)
class _SpeakerJob:
    """Everything a worker process needs to write one speaker's files (picklable)."""

    wav_dir: Path
    seed: int
    speaker_index: int
    utterances: tuple[Utterance, ...]
    sample_rate: int
    duration_s: tuple[float, float]
    snr_db: tuple[float, float] | None


def _arguments(
    n_speakers: int,
    n_utterances: int,
    seed: int,
    n_test_speakers: int | None,
    sample_rate: int,
    duration_s: tuple[float, float],
    snr_db: tuple[float, float] | None,
    n_sessions: int,
    n_train_sessions: int | None,
) -> _Arguments:
    """Validated, as plain Python numbers, so meta.json round-trips and compares equal on re-use."""
    n_speakers, n_utterances, seed = map(operator.index, (n_speakers, n_utterances, seed))
    sample_rate, n_sessions = operator.index(sample_rate), operator.index(n_sessions)
    n_train_sessions = n_sessions if n_train_sessions is None else operator.index(n_train_sessions)
    duration_s = (float(duration_s[0]), float(duration_s[1]))
    snr_db = None if snr_db is None else (float(snr_db[0]), float(snr_db[1]))
    _validate(
        n_speakers,
        n_utterances,
        seed,
        sample_rate,
        (n_sessions, n_train_sessions),
        duration_s,
        snr_db,
    )
    n_test = _resolve_test_speakers(n_speakers, n_test_speakers)
    return _Arguments(
        n_speakers,
        n_utterances,
        seed,
        n_test,
        sample_rate,
        duration_s,
        snr_db,
        n_sessions,
        n_train_sessions,
    )


def _resolve_test_speakers(n_speakers: int, n_test_speakers: int | None) -> int:
    if n_test_speakers is None:
        n_test_speakers = max(2, round(0.25 * n_speakers))
    n_test_speakers = operator.index(n_test_speakers)
    if not 2 <= n_test_speakers <= n_speakers - 1:
        raise ValueError(
            f"n_test_speakers must be in [2, n_speakers - 1 = {n_speakers - 1}] so that both "
            f"verification trials and training are possible, got {n_test_speakers}"
        )
    return n_test_speakers


def _validate(
    n_speakers: int,
    n_utterances: int,
    seed: int,
    sample_rate: int,
    sessions: tuple[int, int],
    duration_s: tuple[float, float],
    snr_db: tuple[float, float] | None,
) -> None:
    problems = []
    if n_speakers < 3:
        problems.append(f"n_speakers must be >= 3, got {n_speakers}")
    if n_utterances < 2:
        problems.append(f"n_utterances must be >= 2 (same-speaker trials), got {n_utterances}")
    if seed < 0:
        problems.append(f"seed must be >= 0, got {seed}")
    if sample_rate < 8000:
        problems.append(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    for name, n_sessions in zip(("n_sessions", "n_train_sessions"), sessions, strict=True):
        if n_sessions < 1:
            problems.append(f"{name} must be >= 1, got {n_sessions}")
    if not 0.5 <= duration_s[0] <= duration_s[1]:
        problems.append(f"duration_s must be (lo, hi) with 0.5 <= lo <= hi, got {duration_s}")
    if snr_db is not None and snr_db[0] > snr_db[1]:
        problems.append(f"snr_db must be (lo, hi) with lo <= hi, got {snr_db}")
    if problems:
        raise ValueError("; ".join(problems))


def _speaker_id(speaker_index: int) -> str:
    return f"id{10001 + speaker_index}"


def layout(
    seed: int, n_speakers: int, n_utterances: int, n_sessions: int, first_index: int = 0
) -> list[Utterance]:
    """All utterances, VoxCeleb style: contiguous blocks of utterances per session, numbered from
    00001 within each session. Speakers are `first_index` onwards, so that a corpus can key a
    group of speakers (devcorpus's test speakers) apart from how many others it has."""
    utterances = []
    sessions_per_speaker = min(n_sessions, n_utterances)
    blocks = np.array_split(np.arange(n_utterances), sessions_per_speaker)
    for speaker_index in range(first_index, first_index + n_speakers):
        speaker = _speaker_id(speaker_index)
        session_ids = draw_session_ids(seed, speaker_index, sessions_per_speaker)
        for session_index, (session, block) in enumerate(zip(session_ids, blocks, strict=True)):
            for number, utt_index in enumerate(block, start=1):
                relpath = f"{speaker}/{session}/{number:05d}.wav"
                utterances.append(
                    Utterance(
                        speaker_index, speaker, session, session_index, int(utt_index), relpath
                    )
                )
    return utterances


def _make_trials(seed: int, test_utts: list[Utterance]) -> list[tuple[int, str, str]]:
    """Balanced verification trials over the test speakers.

    Each utterance enrols against up to TRIALS_PER_UTTERANCE same-speaker utterances (other sessions
    first, since those are the hard and realistic pairs) and exactly as many other-speaker ones.
    Unordered pairs never repeat; an utterance that gets no pairs of its own was already paired
    with all candidates of one label, so every utterance appears in some trial.
    """
    rng = stream_rng(seed, STREAM_TRIALS)
    speakers = np.array([u.speaker_index for u in test_utts])
    sessions = np.array([u.session_index for u in test_utts])
    seen: set[tuple[int, int]] = set()
    trials: list[tuple[int, str, str]] = []

    def pick(candidates: np.ndarray, k: int) -> list[int]:
        return [int(c) for c in rng.permutation(candidates)[:k]]

    for i, utt in enumerate(test_utts):
        fresh = np.array([j for j in range(len(test_utts)) if j != i and (j, i) not in seen])
        if len(fresh) == 0:
            continue
        same = fresh[speakers[fresh] == speakers[i]]
        others = fresh[speakers[fresh] != speakers[i]]
        n_pairs = min(TRIALS_PER_UTTERANCE, len(same), len(others))
        genuine = pick(same[sessions[same] != sessions[i]], n_pairs)
        genuine += pick(same[sessions[same] == sessions[i]], n_pairs - len(genuine))
        impostor = pick(others, n_pairs)
        for label, partners in ((1, genuine), (0, impostor)):
            for j in partners:
                seen.add((i, j))
                trials.append((label, utt.relpath, test_utts[j].relpath))
    return trials


def _enroll_test_split(test_utts: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
    """Closed-set identification split: each speaker's first session enrols, later sessions test;
    a single-session speaker splits its utterances in half instead."""
    enroll, test = [], []
    for speaker in sorted({u.speaker for u in test_utts}):
        own = [u for u in test_utts if u.speaker == speaker]
        if len({u.session_index for u in own}) > 1:
            enroll += [u for u in own if u.session_index == 0]
            test += [u for u in own if u.session_index > 0]
        else:
            half = max(1, len(own) // 2)
            enroll += own[:half]
            test += own[half:]
    return enroll, test


def _expected_meta(args: _Arguments, utterances: list[Utterance]) -> dict[str, Any]:
    n_speakers = args.n_speakers
    test_indices = set(range(n_speakers - args.n_test_speakers, n_speakers))
    speakers = {}
    for speaker_index in range(n_speakers):
        own = [u for u in utterances if u.speaker_index == speaker_index]
        speakers[_speaker_id(speaker_index)] = {
            "split": "test" if speaker_index in test_indices else "train",
            "sessions": list(dict.fromkeys(u.session for u in own)),
            "n_utterances": len(own),
            "voice": to_dict(draw_voice(args.seed, speaker_index)),
        }
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arguments": to_dict(args),
        "train_speakers": [_speaker_id(i) for i in range(n_speakers) if i not in test_indices],
        "test_speakers": [_speaker_id(i) for i in sorted(test_indices)],
        "speakers": speakers,
    }
    return json.loads(json.dumps(meta))  # the form it takes after a round trip through the file


def existing_corpus_matches(root: Path, meta: dict[str, Any], utterances: list[Utterance]) -> bool:
    """Whether `root` holds a complete corpus whose meta.json equals `meta`."""
    meta_path = root / META_NAME
    if not meta_path.is_file():
        return False
    try:
        stored = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if stored != meta:
        return False
    names = (TRAIN_LIST, TRIALS, ENROLL_LIST, TEST_LIST)
    wav_dir = root / WAV_DIR
    return all((root / n).is_file() for n in names) and all(
        (wav_dir / u.relpath).is_file() for u in utterances
    )


def prepare_output(root: Path) -> None:
    """Clear a previous synthetic corpus at `root`; refuse to touch any other non-empty
    directory."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER_NAME).is_file():
            raise FileExistsError(
                f"{root}: directory is not empty and was not written by {FORMAT_NAME} "
                f"(no {MARKER_NAME} marker); choose an empty or new directory"
            )
        for name in (META_NAME, TRAIN_LIST, TRIALS, ENROLL_LIST, TEST_LIST):
            (root / name).unlink(missing_ok=True)
        shutil.rmtree(root / WAV_DIR, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER_NAME).write_text(f"{FORMAT_NAME} corpus; safe to delete with its directory\n")


def _info(
    root: Path, meta: dict[str, Any], n_files: int, n_trials: int, reused: bool
) -> CorpusInfo:
    args = meta["arguments"]
    return CorpusInfo(
        root=root,
        wav_dir=root / WAV_DIR,
        train_list=root / TRAIN_LIST,
        trials=root / TRIALS,
        enroll_list=root / ENROLL_LIST,
        test_list=root / TEST_LIST,
        meta=root / META_NAME,
        n_speakers=args["n_speakers"],
        n_train_speakers=len(meta["train_speakers"]),
        n_test_speakers=len(meta["test_speakers"]),
        n_files=n_files,
        n_trials=n_trials,
        sample_rate=args["sample_rate"],
        reused=reused,
    )


def _speaker_jobs(
    wav_dir: Path, args: _Arguments, utterances: list[Utterance]
) -> list[_SpeakerJob]:
    by_speaker: dict[int, list[Utterance]] = {}
    for utt in utterances:
        by_speaker.setdefault(utt.speaker_index, []).append(utt)
    return [
        _SpeakerJob(
            wav_dir, args.seed, k, tuple(own), args.sample_rate, args.duration_s, args.snr_db
        )
        for k, own in by_speaker.items()
    ]


class _Job(Protocol):
    """A unit of work for `synthesize_all`: one speaker's files, picklable."""

    @property
    def utterances(self) -> tuple[Utterance, ...]: ...


_J = TypeVar("_J", bound=_Job)


def synthesize_all(
    jobs: Sequence[_J], work: Callable[[_J], int], n_workers: int, progress: bool
) -> None:
    """Run `work` (a module-level function: workers import it) on the jobs, in worker processes
    when there are enough files to repay starting them."""
    n_files = sum(len(job.utterances) for job in jobs)
    if n_files < PARALLEL_MIN_UTTERANCES:
        n_workers = 1
    with tqdm(total=n_files, desc="synth", unit="utt", disable=not progress) as bar:
        if n_workers <= 1:
            for job in jobs:
                bar.update(work(job))
            return
        with worker_pool(n_workers) as pool:
            for n in pool.map(work, jobs, chunksize=4):
                bar.update(n)


def _synthesize_speaker(job: _SpeakerJob) -> int:
    """Write one speaker's files; returns how many."""
    voice = draw_voice(job.seed, job.speaker_index)
    n_channels = job.utterances[-1].session_index + 1
    channels = [draw_channel(job.seed, job.speaker_index, s) for s in range(n_channels)]
    for utt in job.utterances:
        rng = stream_rng(job.seed, STREAM_UTTERANCE, job.speaker_index, utt.utt_index)
        samples = synthesize_utterance(
            voice, channels[utt.session_index], rng, job.sample_rate, job.duration_s, job.snr_db
        )
        atomic_write(
            job.wav_dir / utt.relpath, functools.partial(write_wav, samples, job.sample_rate)
        )
    return len(job.utterances)


def write_wav(samples: np.ndarray, sample_rate: int, handle: IO[bytes]) -> None:
    """16-bit mono PCM via the stdlib writer: a fixed header and no metadata chunks, so equal
    samples give equal bytes."""
    with wave.open(handle, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.astype("<i2").tobytes())


def _write_lists(
    root: Path,
    meta: dict[str, Any],
    utterances: list[Utterance],
    trials: list[tuple[int, str, str]],
) -> None:
    """The list files, then meta.json last: its presence says the corpus is complete."""
    test_ids = set(meta["test_speakers"])
    enroll, test = _enroll_test_split([u for u in utterances if u.speaker in test_ids])
    train = [u for u in utterances if u.speaker not in test_ids]
    write_lines(root / TRAIN_LIST, [f"{u.speaker} {u.relpath}" for u in train])
    write_lines(root / TRIALS, [f"{label} {a} {b}" for label, a, b in trials])
    write_lines(root / ENROLL_LIST, [f"{u.speaker} {u.relpath}" for u in enroll])
    write_lines(root / TEST_LIST, [f"{u.speaker} {u.relpath}" for u in test])
    write_lines(root / META_NAME, [json.dumps(meta, indent=2, sort_keys=True)])


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """`lines`, each ended by a newline, written atomically."""
    atomic_write(path, "".join(f"{line}\n" for line in lines))


def make_corpus(
    out_dir: str | os.PathLike[str],
    n_speakers: int = 40,
    n_utterances: int = 12,
    seed: int = 0,
    *,
    n_test_speakers: int | None = None,
    sample_rate: int = 16000,
    duration_s: tuple[float, float] = (1.5, 4.0),
    snr_db: tuple[float, float] | None = DEFAULT_SNR_DB,
    n_sessions: int = 3,
    n_train_sessions: int | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> CorpusInfo:
    """Write (or re-use) a synthetic corpus under `out_dir`.

    Speakers are synthesised in `workers` processes (default: every core, for corpora of at least
    `PARALLEL_MIN_UTTERANCES` files); every file depends only on its own seeds, so the bytes are the
    same whatever the number of workers.

    The last `n_test_speakers` speakers (default 25%, at least 2) are held out for trials and
    identification lists, like VoxCeleb1's test ids. Each speaker's utterances are spread over
    `n_sessions` recording sessions, a training speaker's over `n_train_sessions` (default: the
    same): more sessions per training voice teach the model more channels to ignore, while the
    test speakers, their files and the trials stay as they are. An existing corpus made with the
    same arguments is returned as is; meta.json is written last, so an interrupted run is rebuilt.
    """
    root = Path(out_dir)
    args = _arguments(
        n_speakers,
        n_utterances,
        seed,
        n_test_speakers,
        sample_rate,
        duration_s,
        snr_db,
        n_sessions,
        n_train_sessions,
    )
    n_train = args.n_speakers - args.n_test_speakers
    utterances = layout(args.seed, n_train, args.n_utterances, args.n_train_sessions) + layout(
        args.seed, args.n_test_speakers, args.n_utterances, args.n_sessions, first_index=n_train
    )
    meta = _expected_meta(args, utterances)
    test_ids = set(meta["test_speakers"])
    trials = _make_trials(args.seed, [u for u in utterances if u.speaker in test_ids])
    if existing_corpus_matches(root, meta, utterances):
        return _info(root, meta, len(utterances), len(trials), reused=True)

    prepare_output(root)
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    jobs = _speaker_jobs(root / WAV_DIR, args, utterances)
    synthesize_all(jobs, _synthesize_speaker, n_workers, progress)
    _write_lists(root, meta, utterances, trials)
    return _info(root, meta, len(utterances), len(trials), reused=False)
