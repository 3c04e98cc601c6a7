"""espeak-ng as a subprocess: which voices it has, its version, and one utterance as samples.

The development corpus needs real speech from a deterministic synthesiser. espeak-ng is one
(equal arguments give equal bytes), ships with Debian/Ubuntu and runs at a few hundred times real
time. Only its own formant voices are used: MBROLA voices (`mb-*`) and other engines are separate
installs and would make a corpus depend on what else a machine has.

The voice tables are built in (taken from espeak-ng 1.51's `--voices` listings) so that a speaker
plan is a pure function that needs no espeak-ng; `check_voices` confirms, before a build, that the
installed espeak-ng has them all, since espeak-ng silently falls back to its default voice for an
unknown variant.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

import numpy as np
import soundfile

ESPEAK = "espeak-ng"
SAMPLE_RATE = 22050  # what `--stdout` writes
PITCH_RANGE = (0, 99)  # `-p`: 50 is the voice's own pitch, each step 2**(1/50) (pitch_adjust_tab)
SPEED_RANGE = (80, 450)  # `-s`, words per minute
TIMEOUT_S = 60.0

# Languages written in the Latin alphabet that read the corpus's Latin-letter pseudo-words with
# their own phonology. Non-Latin-script languages switch to English for them (`espeak-ng -x` shows
# `(en)`), and so do vi and ga, so those are left out.
# fmt: off
LANGUAGES = (
    "af", "ca", "cs", "cy", "da", "de", "en-gb", "en-us", "eo", "es", "et", "eu", "fi", "fr-fr",
    "hr", "hu", "id", "is", "it", "la", "lt", "lv", "ms", "mt", "nb", "nl", "pl", "pt", "pt-br",
    "ro", "sk", "sl", "sq", "sv", "sw", "tr",
)

# Voice variants (`-v <language>+<variant>`, the file name under espeak-ng-data/voices/!v) and the
# gender `--voices=variant` gives them. Left out: `whisper` and `whisperf` (nearly unvoiced, so
# pitch means nothing) and `fast` (an engine speed test, not a voice).
FEMALE_VARIANTS = (
    "Alicia", "Andrea", "anika", "anikaRobot", "Annie", "aunty", "belinda", "f1", "f2", "f3",
    "f4", "f5", "grandma", "linda", "steph", "steph2", "steph3",
)
MALE_VARIANTS = (
    "adam", "Alex", "Andy", "announcer", "antonio", "AnxiousAndy", "benjamin", "boris", "caleb",
    "croak", "david", "Demonic", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2",
    "grandpa", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Lee", "m1", "m2",
    "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "Marco", "Mario", "max", "Michael", "michel",
    "miguel", "Mike", "Mr serious", "Nguyen", "norbert", "pablo", "paul", "pedro", "quincy",
    "RicishayMax", "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft", "robosoft2",
    "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro",
    "shelby", "Storm", "travis", "Tweaky", "UniRobot", "victor", "zac",
)
# fmt: on
VARIANT_GENDER = {v: "female" for v in FEMALE_VARIANTS} | {v: "male" for v in MALE_VARIANTS}

_VARIANT_LINE = re.compile(r"^\s*\d+\s+variant\s+\S+/([MF-])\s+\S+\s+!v/(.+?)\s*(\(.*\))?\s*$")
_LANGUAGE_LINE = re.compile(r"^\s*\d+\s+(\S+)\s")
_VERSION = re.compile(r"text-to-speech:\s*(\S+)")


class EspeakError(RuntimeError):
    """espeak-ng is missing, lacks a voice, or failed."""


def executable() -> str:
    """The espeak-ng program on PATH; the error says how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakError(
            f"{ESPEAK} not found on PATH; install it (Debian/Ubuntu: apt-get install espeak-ng)"
        )
    return path


def _run(args: list[str], shown: Sequence[str] | None = None) -> bytes:
    """espeak-ng's stdout for `args` (a list: never through a shell); any failure, a timeout
    included, is an EspeakError that names the command (`shown`, default `args`)."""
    command = " ".join([ESPEAK, *(args if shown is None else shown)])
    try:
        done = subprocess.run(
            [executable(), *args], capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise EspeakError(f"{command} did not finish within {TIMEOUT_S:.0f} s") from None
    except OSError as error:
        raise EspeakError(f"{command} could not run: {error}") from error
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise EspeakError(f"{command} failed (exit status {done.returncode}): {stderr}")
    return done.stdout


def version() -> str:
    """The version string (e.g. "1.51"): recorded in meta.json, since other versions sound
    different."""
    text = _run(["--version"]).decode(errors="replace")
    match = _VERSION.search(text)
    if match is None:
        raise EspeakError(f"cannot read a version from {ESPEAK} --version: {text.strip()!r}")
    return match.group(1)


def installed_variants() -> dict[str, str]:
    """Variant file name -> "female" or "male" (an unspecified gender counts as male, as
    espeak-ng lists it)."""
    lines = _run(["--voices=variant"]).decode(errors="replace").splitlines()
    variants = {}
    for line in lines:
        match = _VARIANT_LINE.match(line)
        if match:
            variants[match.group(2)] = "female" if match.group(1) == "F" else "male"
    return variants


def installed_languages() -> set[str]:
    lines = _run(["--voices"]).decode(errors="replace").splitlines()
    return {m.group(1) for m in map(_LANGUAGE_LINE.match, lines) if m}


def check_voices(languages: Iterable[str], variants: Iterable[str]) -> None:
    """Raise unless every language and variant exists with the gender the tables give it."""
    have_languages, have_variants = installed_languages(), installed_variants()
    problems = [f"language {lang!r}" for lang in languages if lang not in have_languages]
    problems += [
        f"variant {v!r}" for v in variants if have_variants.get(v) != VARIANT_GENDER.get(v)
    ]
    if problems:
        raise EspeakError(
            f"{ESPEAK} {version()} lacks (or genders differently) {', '.join(sorted(problems))}"
        )


def synthesize(text: str, language: str, variant: str, pitch: int, speed: int) -> np.ndarray:
    """`text` spoken by `language+variant` at `-p pitch -s speed`: float32 samples at
    SAMPLE_RATE.

    Arguments go as a list (no shell); `--` ends the options, so no text is read as one.
    """
    if language.startswith("mb-") or variant.startswith("mb-"):
        raise EspeakError(f"MBROLA voices are not used: {language}+{variant}")
    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise ValueError(f"pitch must be in {PITCH_RANGE}, got {pitch}")
    if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
        raise ValueError(f"speed must be in {SPEED_RANGE}, got {speed}")
    voice = f"{language}+{variant}"
    options = ["-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout"]
    wav = _run([*options, "--", text], shown=options)
    # espeak-ng streams, so its header gives no length; soundfile reads to the end regardless.
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    if rate != SAMPLE_RATE or samples.ndim != 1 or samples.size == 0:
        raise EspeakError(f"{ESPEAK} -v {voice}: unexpected output ({rate} Hz, {samples.shape})")
    return samples
