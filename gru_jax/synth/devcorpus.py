"""A development corpus of real synthetic speech: espeak-ng voices in VoxCeleb layout.

`corpus.py`'s source-filter speech is cheap and controlled, but nothing in it sounds like a
language; this corpus gives a model phonetically real speech (36 languages) from many voices,
still without downloading anything, and with the same layout, lists, re-use and determinism.

Speakers. A speaker is an espeak-ng voice (`language+variant`, own formant voices only) plus three
settings on a grid, so distinct speakers differ by at least one step:

- pitch: `-p` in PITCH_STEPS (each -p step is 2**(1/50) in F0);
- speed: `-s` in SPEED_STEPS (words per minute);
- vocal tract: a scale in TRACT_STEPS. espeak-ng's output (22050 Hz) is read as if recorded at
  22050 * tract Hz and resampled to 16 kHz, which multiplies every frequency (formants and F0) by
  `tract` and divides durations by it. espeak-ng is run with `-p pitch - 50 * log2(tract)` and
  `-s speed / tract`, so F0 and rate come out as `pitch` and `speed` asked and only the formants
  (the tract length) move.

Split. Variants, not just speakers, are held out: a test speaker's variant never appears in
training. Variants are split once, by a fixed seed that no corpus argument changes, so every
corpus (a small dev set, a 2000-speaker pretraining set, any seed) shares one split and training
on one never sees the test variants of another. The split is per gender (about
TEST_VARIANT_FRACTION of each) and by family (`steph`, `steph2`, `steph3` go together, and so do
the NEAR_COPIES), so near copies never straddle it. Speakers alternate female/male, so both
splits are gender-balanced. Test speakers are keyed apart from the training ones (ids from id20001), so a split's speakers
do not depend on the other's size.

Text and audio. Each utterance is a pseudo-sentence drawn for it: Latin-letter pseudo-words,
numbers (read in the language) and punctuation (commas, questions), lengthened or shortened a
word at a time until its speech lasts 2-6 s. Audio is resampled, lightly trimmed of silence,
coloured by the session's channel (`voices.draw_channel`: band limits, EQ, level) and normalised;
NOISY_FRACTION of utterances get the session's coloured noise at an SNR in SNR_DB.

Lists. `trials.txt` pairs each test utterance with up to TRIALS_PER_UTTERANCE same-speaker
utterances (other sessions first) and as many other-speaker ones, half of them "hard" (same
gender). `enroll_list.txt` holds ENROLL_UTTERANCES utterances of each test speaker's first session
and `test_list.txt` its later sessions, so enrolment and test are on different channels.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import operator
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from scipy import signal

from gru_jax.core.config import to_dict
from gru_jax.core.files import atomic_write
from gru_jax.synth import espeak
from gru_jax.synth.corpus import (
    ENROLL_LIST,
    META_NAME,
    TEST_LIST,
    TRAIN_LIST,
    TRIALS,
    WAV_DIR,
    CorpusInfo,
    Utterance,
    existing_corpus_matches,
    layout,
    prepare_output,
    synthesize_all,
    write_lines,
    write_wav,
)
from gru_jax.synth.dsp import background_noise, channel_sos, to_int16
from gru_jax.synth.voices import Channel, draw_channel, stream_rng

# Bump when anything that changes the audio or the lists changes, so stale corpora are rebuilt.
FORMAT_VERSION = 1
FORMAT_NAME = "gru-jax-devcorpus"

SAMPLE_RATE = 16000
DURATION_S = (2.0, 6.0)
NOISY_FRACTION = 0.2
SNR_DB = (5.0, 20.0)
TRIM_DB = 40.0  # below the loudest 10 ms frame counts as silence at the ends
TRIM_PAD_S = 0.1  # silence kept either side

PITCH_STEPS = tuple(range(30, 71, 4))
SPEED_STEPS = tuple(range(140, 201, 10))
TRACT_STEPS = (0.88, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12)

GENDERS = ("female", "male")
SPLITS = ("train", "test")
VARIANT_SPLIT_SEED = 13  # fixed: the variant split must not change with any corpus argument
TEST_VARIANT_FRACTION = 0.25
TEST_INDEX_BASE = 10000  # test speakers are keyed (and named) from here; train ones from 0
MAX_TRAIN_SPEAKERS = TEST_INDEX_BASE

TRIALS_PER_UTTERANCE = 4
ENROLL_UTTERANCES = 3

# Random streams, apart from those of voices.py (0-4), whose channels and session ids are reused.
STREAM_VARIANT_ORDER, STREAM_SPEAKER, STREAM_TEXT, STREAM_AUDIO, STREAM_TRIALS = range(100, 105)

# Pseudo-words: syllables every Latin-script language reads, 1-3 per word.
ONSETS = (*"bdfgklmnprstvz", "br", "tr", "st", "pl", "kr", "", "", "")  # "": vowel-initial
VOWELS = tuple("aeiou")
CODAS = ("", "", "", "", "n", "s", "r", "l", "m")
MAX_WORDS = 40  # enough for 6 s at the slowest speed
NUMBER_PROBABILITY = 0.08
SECONDS_PER_SYLLABLE = 0.2  # at 175 words per minute (measured), for the first guess only
MAX_RENDERS = 8


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One generated voice: an espeak-ng voice and the grid settings that make it someone."""

    split: str
    gender: str
    language: str
    variant: str
    pitch: int
    speed: int
    tract: float

    @property
    def espeak_pitch(self) -> int:
        """`-p` that, after the tract resampling, gives the F0 that `pitch` does without it."""
        return round(self.pitch - 50.0 * math.log2(self.tract))

    @property
    def espeak_speed(self) -> int:
        return round(self.speed / self.tract)

    def settings(self) -> tuple[str, str, int, int, float]:
        return (self.language, self.variant, self.pitch, self.speed, self.tract)


@dataclasses.dataclass(frozen=True)
class _Arguments:
    """What a corpus is made from, recorded in meta.json: equal arguments, equal corpus."""

    n_train_speakers: int
    n_test_speakers: int
    n_utterances: int
    n_sessions: int
    seed: int


@dataclasses.dataclass(frozen=True)
class _SpeakerJob:
    """Everything a worker process needs to write one speaker's files (picklable)."""

    wav_dir: Path
    seed: int
    speaker: Speaker
    utterances: tuple[Utterance, ...]


# Variants that are near copies of one named otherwise (the same formant table, or none, with an
# echo, a pitch or an engine setting changed), so that they stay on one side of the split.
NEAR_COPIES = {
    "anikaRobot": "anika",
    "caleb": "klatt",
    "m8": "robosoft",
    "RicishayMax": "max",
    "RicishayMax2": "max",
    "RicishayMax3": "max",
    "robosoft7": "max",
    "robosoft8": "max",
}


def variant_family(variant: str) -> str:
    """Variants that share a family go to the same split: numbered versions (`steph2`) and
    NEAR_COPIES."""
    return NEAR_COPIES.get(variant, variant).lower().rstrip("0123456789")


@functools.cache
def variant_split() -> dict[str, dict[str, tuple[str, ...]]]:
    """split -> gender -> variants. Whole families go to test, in a fixed random order, until
    about TEST_VARIANT_FRACTION of the gender's variants are there."""
    rng = stream_rng(VARIANT_SPLIT_SEED, STREAM_VARIANT_ORDER)
    split: dict[str, dict[str, tuple[str, ...]]] = {s: {} for s in SPLITS}
    for gender, variants in (("female", espeak.FEMALE_VARIANTS), ("male", espeak.MALE_VARIANTS)):
        families = sorted({variant_family(v) for v in variants})
        target = max(2, round(TEST_VARIANT_FRACTION * len(variants)))
        test: list[str] = []
        for k in rng.permutation(len(families)):
            if len(test) >= target:
                break
            test += [v for v in variants if variant_family(v) == families[k]]
        split["test"][gender] = tuple(sorted(test))
        split["train"][gender] = tuple(sorted(set(variants) - set(test)))
    return split


def draw_speakers(seed: int, split: str, n: int) -> list[Speaker]:
    """The first `n` generated voices of `split`: alternately female and male, each gender cycling
    through its variants, the other settings drawn without repeats.

    Speaker k depends only on (seed, split, k) and the speakers before it, so a larger set (e.g.
    2000 for pretraining) extends a smaller one; the grid holds over a million train voices.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    split_no = SPLITS.index(split)
    variants = variant_split()[split]
    orders = {}
    for gender_no, gender in enumerate(GENDERS):
        order = stream_rng(seed, STREAM_VARIANT_ORDER, split_no, gender_no).permutation(
            len(variants[gender])
        )
        orders[gender] = [variants[gender][i] for i in order]
    speakers: list[Speaker] = []
    seen: set[tuple[str, str, int, int, float]] = set()
    for k in range(n):
        gender = GENDERS[k % 2]
        variant = orders[gender][(k // 2) % len(orders[gender])]
        rng = stream_rng(seed, STREAM_SPEAKER, split_no, k)
        while True:
            speaker = Speaker(
                split=split,
                gender=gender,
                language=espeak.LANGUAGES[rng.integers(len(espeak.LANGUAGES))],
                variant=variant,
                pitch=PITCH_STEPS[rng.integers(len(PITCH_STEPS))],
                speed=SPEED_STEPS[rng.integers(len(SPEED_STEPS))],
                tract=TRACT_STEPS[rng.integers(len(TRACT_STEPS))],
            )
            if speaker.settings() not in seen:
                break
        seen.add(speaker.settings())
        speakers.append(speaker)
    return speakers


def _first_index(split: str) -> int:
    return TEST_INDEX_BASE if split == "test" else 0


def plan(args: _Arguments) -> tuple[dict[str, Speaker], list[Utterance]]:
    """Speakers by id (train first) and every utterance, without touching espeak-ng or disk."""
    speakers: dict[str, Speaker] = {}
    utterances: list[Utterance] = []
    for split, n in (("train", args.n_train_speakers), ("test", args.n_test_speakers)):
        own = layout(args.seed, n, args.n_utterances, args.n_sessions, _first_index(split))
        ids = list(dict.fromkeys(u.speaker for u in own))
        speakers.update(zip(ids, draw_speakers(args.seed, split, n), strict=True))
        utterances += own
    return speakers, utterances


def make_trials(
    seed: int, test_utts: Sequence[Utterance], gender: dict[str, str]
) -> list[tuple[int, str, str]]:
    """Verification trials (label, enrol, test): per utterance, up to TRIALS_PER_UTTERANCE
    targets (other sessions first) and exactly as many non-targets; half of all non-targets (as
    near as the pools allow) are "hard", of the same gender.

    Unordered pairs never repeat. Candidates come from a permutation walked only as far as needed,
    so large test sets stay fast.
    """
    rng = stream_rng(seed, STREAM_TRIALS)
    speakers = np.array([u.speaker for u in test_utts])
    sessions = np.array([u.session_index for u in test_utts])
    genders = np.array([gender[u.speaker] for u in test_utts])
    seen: set[tuple[int, int]] = set()
    trials: list[tuple[int, str, str]] = []
    n_non_targets = 0

    def pick(pool: np.ndarray, i: int, k: int) -> list[int]:
        chosen: list[int] = []
        for j in rng.permutation(pool):
            if len(chosen) == k:
                break
            if (min(i, j), max(i, j)) not in seen:
                chosen.append(int(j))
        return chosen

    everyone = np.arange(len(test_utts))
    for i, utt in enumerate(test_utts):
        same = everyone[(speakers == speakers[i]) & (everyone != i)]
        targets = pick(same[sessions[same] != sessions[i]], i, TRIALS_PER_UTTERANCE)
        targets += pick(same[sessions[same] == sessions[i]], i, TRIALS_PER_UTTERANCE - len(targets))
        others = speakers != speakers[i]
        hard_pool, easy_pool = (
            everyone[others & (genders == genders[i])],
            everyone[others & (genders != genders[i])],
        )
        # Half of all non-targets so far hard: an odd count alternates which kind gets one more.
        n_hard = (n_non_targets + len(targets) + 1) // 2 - (n_non_targets + 1) // 2
        hard = pick(hard_pool, i, n_hard)
        easy = pick(easy_pool, i, len(targets) - len(hard))
        hard += pick(np.setdiff1d(hard_pool, hard), i, len(targets) - len(hard) - len(easy))
        targets = targets[: len(hard) + len(easy)]
        n_non_targets += len(hard) + len(easy)
        for label, partners in ((1, targets), (0, hard + easy)):
            for j in partners:
                seen.add((min(i, j), max(i, j)))
                trials.append((label, utt.relpath, test_utts[j].relpath))
    return trials


def enroll_test_split(
    test_utts: Sequence[Utterance],
) -> tuple[list[Utterance], list[Utterance]]:
    """Closed-set identification: the first ENROLL_UTTERANCES of each speaker's first session
    (all of it, if shorter) enrol, its later sessions test (another channel); the rest of the
    first session is in neither list."""
    enroll: dict[str, list[Utterance]] = {}
    test = []
    for utt in test_utts:
        if utt.session_index == 0:
            own = enroll.setdefault(utt.speaker, [])
            if len(own) < ENROLL_UTTERANCES:
                own.append(utt)
        else:
            test.append(utt)
    return [u for own in enroll.values() for u in own], test


def _words(rng: np.random.Generator) -> list[str]:
    """MAX_WORDS tokens: pseudo-words and numbers, some followed by a comma, a full stop or a
    question mark (which changes the intonation)."""
    words = []
    for _ in range(MAX_WORDS):
        if rng.uniform() < NUMBER_PROBABILITY:
            word = str(rng.integers(1, 1000))
        else:
            word = "".join(
                ONSETS[rng.integers(len(ONSETS))]
                + VOWELS[rng.integers(len(VOWELS))]
                + CODAS[rng.integers(len(CODAS))]
                for _ in range(rng.integers(1, 4))
            )
        words.append(word + str(rng.choice(["", ",", ".", "?"], p=[0.8, 0.1, 0.07, 0.03])))
    return words


def _sentence(words: Sequence[str]) -> str:
    text = " ".join(words)
    return text if text[-1] in ".?" else text.rstrip(",") + "."


def _trim(x: np.ndarray) -> np.ndarray:
    """Cut leading and trailing silence (TRIM_DB below the loudest 10 ms), keeping TRIM_PAD_S."""
    frame = SAMPLE_RATE // 100
    n_frames = len(x) // frame
    rms = np.sqrt(np.mean(x[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    if n_frames == 0 or rms.max() == 0.0:
        raise espeak.EspeakError("espeak-ng produced silence")
    loud = np.flatnonzero(rms > rms.max() * 10.0 ** (-TRIM_DB / 20.0))
    pad = round(TRIM_PAD_S * SAMPLE_RATE)
    return x[max(0, loud[0] * frame - pad) : min(len(x), (loud[-1] + 1) * frame + pad)]


def _render(speaker: Speaker, text: str) -> np.ndarray:
    """espeak-ng's samples with the speaker's vocal-tract scale applied, at SAMPLE_RATE, trimmed."""
    samples = espeak.synthesize(
        text, speaker.language, speaker.variant, speaker.espeak_pitch, speaker.espeak_speed
    )
    resampled = soxr.resample(samples, espeak.SAMPLE_RATE * speaker.tract, SAMPLE_RATE)
    return _trim(resampled.astype(np.float64))


def _speech(speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """A pseudo-sentence for a duration drawn in DURATION_S, a word more or less per try until
    the speech lasts within DURATION_S; cut at its end if still too long."""
    words = _words(rng)
    target = rng.uniform(*DURATION_S)
    syllable_s = SECONDS_PER_SYLLABLE * 175.0 / speaker.speed
    n = max(1, round(target / (syllable_s * 2.0)))  # about two syllables per word
    lo, hi = (round(d * SAMPLE_RATE) for d in DURATION_S)
    for _ in range(MAX_RENDERS):
        speech = _render(speaker, _sentence(words[:n]))
        if lo <= len(speech) <= hi:
            return speech
        guess = round(n * target * SAMPLE_RATE / len(speech))
        n = min(MAX_WORDS, max(n + 1, guess)) if len(speech) < lo else max(1, min(n - 1, guess))
    return speech[:hi]


def _utterance(speaker: Speaker, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    """Speech -> (session noise) -> session channel -> level: int16 samples."""
    speech = _speech(speaker, rng)
    if rng.uniform() < NOISY_FRACTION:
        speech = speech + background_noise(
            channel, rng, float(np.mean(speech**2)), len(speech), SNR_DB
        )
    out = signal.sosfilt(channel_sos(channel, SAMPLE_RATE), speech)
    return to_int16(out, channel, rng, slice(None))


def _synthesize_speaker(job: _SpeakerJob) -> int:
    """Write one speaker's files; returns how many."""
    first = job.utterances[0]
    channels = [
        draw_channel(job.seed, first.speaker_index, s)
        for s in range(job.utterances[-1].session_index + 1)
    ]
    for utt in job.utterances:
        rng = stream_rng(job.seed, STREAM_AUDIO, utt.speaker_index, utt.utt_index)
        samples = _utterance(job.speaker, channels[utt.session_index], rng)
        atomic_write(job.wav_dir / utt.relpath, functools.partial(write_wav, samples, SAMPLE_RATE))
    return len(job.utterances)


def _arguments(
    n_train_speakers: int, n_test_speakers: int, n_utterances: int, n_sessions: int, seed: int
) -> _Arguments:
    """Validated, as plain ints, so meta.json round-trips and compares equal on re-use."""
    args = _Arguments(
        *map(operator.index, (n_train_speakers, n_test_speakers, n_utterances, n_sessions, seed))
    )
    problems = []
    if not 1 <= args.n_train_speakers <= MAX_TRAIN_SPEAKERS:
        problems.append(
            f"n_train_speakers must be in [1, {MAX_TRAIN_SPEAKERS}], got {args.n_train_speakers}"
        )
    if not 2 <= args.n_test_speakers <= MAX_TRAIN_SPEAKERS:
        problems.append(
            f"n_test_speakers must be in [2, {MAX_TRAIN_SPEAKERS}] (non-target trials), got {args.n_test_speakers}"
        )
    if args.n_sessions < 2:
        problems.append(
            f"n_sessions must be >= 2 (enrolment and test on other channels), got {args.n_sessions}"
        )
    if args.n_utterances < args.n_sessions:
        problems.append(
            f"n_utterances must be >= n_sessions = {args.n_sessions}, got {args.n_utterances}"
        )
    if args.seed < 0:
        problems.append(f"seed must be >= 0, got {args.seed}")
    if problems:
        raise ValueError("; ".join(problems))
    return args


def _meta(
    args: _Arguments, version: str, speakers: dict[str, Speaker], utterances: list[Utterance]
) -> dict[str, Any]:
    sessions: dict[str, list[str]] = {}
    for utt in utterances:
        sessions.setdefault(utt.speaker, [])
        if utt.session not in sessions[utt.speaker]:
            sessions[utt.speaker].append(utt.session)
    entries = {}
    for speaker_id, speaker in speakers.items():
        entries[speaker_id] = {
            **dataclasses.asdict(speaker),
            "espeak_pitch": speaker.espeak_pitch,
            "espeak_speed": speaker.espeak_speed,
            "sessions": sessions[speaker_id],
            "n_utterances": args.n_utterances,
        }
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arguments": to_dict(args),
        "espeak_ng_version": version,
        "synthesis": {
            "sample_rate": SAMPLE_RATE,
            "duration_s": list(DURATION_S),
            "noisy_fraction": NOISY_FRACTION,
            "snr_db": list(SNR_DB),
            "pitch_steps": list(PITCH_STEPS),
            "speed_steps": list(SPEED_STEPS),
            "tract_steps": list(TRACT_STEPS),
        },
        "languages": list(espeak.LANGUAGES),
        "variant_split": {
            s: {g: list(v) for g, v in by_gender.items()}
            for s, by_gender in variant_split().items()
        },
        "train_speakers": [s for s, sp in speakers.items() if sp.split == "train"],
        "test_speakers": [s for s, sp in speakers.items() if sp.split == "test"],
        "speakers": entries,
    }
    return json.loads(json.dumps(meta))  # the form it takes after a round trip through the file


def _write_lists(
    root: Path,
    speakers: dict[str, Speaker],
    utterances: list[Utterance],
    trials: list[tuple[int, str, str]],
    meta: dict[str, Any],
) -> None:
    """The list files, then meta.json last: its presence says the corpus is complete."""
    train = [u for u in utterances if speakers[u.speaker].split == "train"]
    enroll, test = enroll_test_split([u for u in utterances if speakers[u.speaker].split == "test"])
    write_lines(root / TRAIN_LIST, [f"{u.speaker} {u.relpath}" for u in train])
    write_lines(root / TRIALS, [f"{label} {a} {b}" for label, a, b in trials])
    write_lines(root / ENROLL_LIST, [f"{u.speaker} {u.relpath}" for u in enroll])
    write_lines(root / TEST_LIST, [f"{u.speaker} {u.relpath}" for u in test])
    write_lines(root / META_NAME, [json.dumps(meta, indent=2, sort_keys=True)])


def make_devcorpus(
    out_dir: str | os.PathLike[str],
    n_train_speakers: int = 200,
    n_test_speakers: int = 40,
    n_utterances: int = 16,
    *,
    n_sessions: int = 3,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> CorpusInfo:
    """Write (or re-use) an espeak-ng development corpus under `out_dir`.

    Files depend only on their own seeds, so the bytes are the same whatever the number of
    `workers` (default: every core). A corpus made with the same arguments and espeak-ng version
    is returned as is; meta.json is written last, so an interrupted build is redone.
    """
    root = Path(out_dir)
    args = _arguments(n_train_speakers, n_test_speakers, n_utterances, n_sessions, seed)
    speakers, utterances = plan(args)
    espeak.check_voices(
        {s.language for s in speakers.values()}, {s.variant for s in speakers.values()}
    )
    meta = _meta(args, espeak.version(), speakers, utterances)
    gender = {speaker_id: s.gender for speaker_id, s in speakers.items()}
    test_utts = [u for u in utterances if speakers[u.speaker].split == "test"]
    trials = make_trials(args.seed, test_utts, gender)
    info = CorpusInfo(
        root=root,
        wav_dir=root / WAV_DIR,
        train_list=root / TRAIN_LIST,
        trials=root / TRIALS,
        enroll_list=root / ENROLL_LIST,
        test_list=root / TEST_LIST,
        meta=root / META_NAME,
        n_speakers=len(speakers),
        n_train_speakers=args.n_train_speakers,
        n_test_speakers=args.n_test_speakers,
        n_files=len(utterances),
        n_trials=len(trials),
        sample_rate=SAMPLE_RATE,
        reused=True,
    )
    if existing_corpus_matches(root, meta, utterances):
        return info

    prepare_output(root)
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in utterances:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    jobs = [
        _SpeakerJob(root / WAV_DIR, args.seed, speakers[s], tuple(own))
        for s, own in by_speaker.items()
    ]
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    synthesize_all(jobs, _synthesize_speaker, n_workers, progress)
    _write_lists(root, speakers, utterances, trials, meta)
    return dataclasses.replace(info, reused=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gru-jax-devcorpus",
        description="Write a speech development corpus from espeak-ng voices "
        "(VoxCeleb layout, 16 kHz 16-bit WAV, trial and identification lists).",
    )
    parser.add_argument(
        "out", type=Path, help="output directory (new, empty, or a previous corpus)"
    )
    parser.add_argument("--train-speakers", type=int, default=200)
    parser.add_argument("--test-speakers", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=16, help="utterances per speaker")
    parser.add_argument("--sessions", type=int, default=3, help="recording sessions per speaker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 2, with the reason on stderr and no traceback, for arguments or an espeak-ng
    that cannot work."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        info = make_devcorpus(
            args.out,
            args.train_speakers,
            args.test_speakers,
            args.utterances,
            n_sessions=args.sessions,
            seed=args.seed,
            workers=args.workers,
            progress=not args.quiet,
        )
    except (ValueError, OSError, espeak.EspeakError) as error:
        print(f"gru-jax-devcorpus: error: {error}", file=sys.stderr)
        return 2
    action = "re-used" if info.reused else "wrote"
    print(
        f"{action} {info.n_files} utterances of {info.n_speakers} speakers "
        f"({info.n_train_speakers} train, {info.n_test_speakers} test, {info.n_trials} trials) "
        f"in {info.root} ({time.perf_counter() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
