"""What every corpus reader shares: the records, the error, the file scans and the final checks.

Audio files are .wav, .flac, .ogg and .m4a (VoxCeleb2's AAC, which `gru_jax.data.audio` decodes
with PyAV, so the corpus is read as downloaded); names starting with "." are skipped when scanning
(macOS resource forks, editor and sync droppings). Utterance ids leave the extension out, so a
listed file that is missing is looked for in the other formats: lists written for the original
.m4a files still work on a corpus converted to .wav, and the reverse. A scanned .m4a beside a
converted copy (same stem, another format) is left out: the copy is read. Two other formats of
one stem (x.wav and x.flac) are a duplicate id, an error naming both.

Missing files are treated by where a path came from. A file found by scanning that does not exist
is a broken link, an error in how the corpus was assembled. A file named in a list (a training
list, a speaker list, ``wav.scp``, a CSV manifest) that does not exist is the normal state of a
partial download or a pruned corpus: it is logged once and kept, so feature extraction skips it
with reason "missing" and the store counts it like unreadable audio. Only a list in which no file
exists is an error, since that is almost surely a wrong root.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".m4a")  # the order lookups by id try them in
_MAX_LISTED = 5  # missing files named in a warning or error


@dataclass(frozen=True)
class Utterance:
    """A file, or a span of one (seconds; None: the file's start / end), with its speaker."""

    utt_id: str
    speaker: str
    path: str
    session: str = ""
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Trial:
    """Two utterance ids to verify; label 1: same speaker, 0: different speakers."""

    label: int
    enroll: str
    test: str


class CorpusError(ValueError):
    """A corpus that cannot be read as given; the message names the file, line and reason."""


# An utterance plus where it came from ("file:line" or its audio path), for messages.
_Found = tuple[Utterance, str]


def utt_id_from_relpath(rel: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001/1zcIwhmdeo4/00001``.

    Ids ignore the audio format and the OS separator so that trial lists still match a corpus
    after it was converted (m4a -> wav) or listed on Windows.
    """
    posix = PurePosixPath(rel.strip().replace("\\", "/"))
    if not posix.name:
        raise ValueError(f"not a file path: {rel!r}")
    return posix.with_suffix("").as_posix()


# --- directories and scans ------------------------------------------------------------------------


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _require_dir(path: Path) -> None:
    if not path.is_dir():
        raise CorpusError(f"{path}: no such directory")


def _visible_entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _subdirs(directory: Path) -> list[Path]:
    return [Path(e.path) for e in _visible_entries(directory) if e.is_dir()]


def _without_converted_m4a(files: list[Path]) -> list[Path]:
    """Drop each .m4a that has a converted copy among `files` (see the module docstring)."""
    converted = {f.with_suffix("") for f in files if _suffix(f.name) != ".m4a"}
    return [f for f in files if _suffix(f.name) != ".m4a" or f.with_suffix("") not in converted]


def _audio_files_in(directory: Path) -> list[Path]:
    """Audio files directly in `directory`; broken links stay, to be reported."""
    return _without_converted_m4a(
        [
            Path(e.path)
            for e in _visible_entries(directory)
            if not e.is_dir() and _suffix(e.name) in AUDIO_EXTENSIONS
        ]
    )


def _audio_files_at_depth(root: Path, depth: int) -> list[Path]:
    """Audio files exactly `depth` directories below `root` (fixed layouts such as VoxCeleb)."""
    directories = [root]
    for _ in range(depth):
        directories = [child for d in directories for child in _subdirs(d)]
    return [f for d in directories for f in _audio_files_in(d)]


def _walk_audio_files(root: Path) -> list[Path]:
    """Recursive scan that follows directory links (corpora are often assembled from links) but
    visits each real directory once, so a link loop cannot hang it."""
    found: list[Path] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            dirnames.clear()
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            _without_converted_m4a(
                [
                    Path(dirpath, name)
                    for name in sorted(filenames)
                    if not name.startswith(".") and _suffix(name) in AUDIO_EXTENSIONS
                ]
            )
        )
    return found


def _utterance_under(root: Path, file: Path) -> Utterance:
    """Utterance for `root/<speaker>/[<session dirs>/]<file>`."""
    rel = file.relative_to(root).as_posix()
    parts = rel.split("/")
    return Utterance(
        utt_id=utt_id_from_relpath(rel),
        speaker=parts[0],
        path=str(file),
        session="/".join(parts[1:-1]),
    )


# --- listed files ---------------------------------------------------------------------------------


def _resolve_listed_audio(path: Path, where: str) -> Path:
    """Check a listed file's format; a listed file that is missing is replaced by the same stem
    in another audio format when one exists (see the module docstring). Whether the file exists
    at all is checked later, for all files at once."""
    if _suffix(path.name) not in AUDIO_EXTENSIONS:
        raise CorpusError(
            f"{where}: {path.name!r} is not a supported audio file ({', '.join(AUDIO_EXTENSIONS)})"
        )
    if path.is_file():
        return path
    for extension in AUDIO_EXTENSIONS:
        candidate = path.with_suffix(extension)
        if candidate.is_file():
            return candidate
    return path


# --- text lists -----------------------------------------------------------------------------------


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank stripped lines with 1-based numbers, so errors can point at file:line."""
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                stripped = line.strip()
                if stripped:
                    yield number, stripped
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason})") from e


def _parse_speaker_list(path: Path) -> list[tuple[int, str, str]]:
    """(line number, speaker, relative path) for each `speaker relative/path` line; shared by the
    speaker-list reader and VoxCeleb training lists, which are the same format."""
    entries = []
    for number, line in _numbered_lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise CorpusError(
                f"{path}:{number}: expected 'speaker relative/path', got {len(fields)} fields"
            )
        speaker, rel = fields
        if rel.startswith(("/", "\\")) or os.path.isabs(rel):
            raise CorpusError(f"{path}:{number}: path {rel!r} must be relative to the corpus root")
        entries.append((number, speaker, rel))
    return entries


def _list_utterances(
    entries: list[tuple[int, str, str]], list_path: Path, root: Path
) -> list[_Found]:
    """The session is the folders between the speaker folder (if the path starts with it) and
    the file, so `spk/day1/a.wav` and `day1/a.wav` under a speaker agree."""
    found = []
    for number, speaker, rel in entries:
        where = f"{list_path}:{number}"
        parts = PurePosixPath(rel.replace("\\", "/")).parts
        between = parts[1:-1] if parts[0] == speaker else parts[:-1]
        utterance = Utterance(
            utt_id=utt_id_from_relpath(rel),
            speaker=speaker,
            path=str(_resolve_listed_audio(root / rel, where)),
            session="/".join(between),
        )
        found.append((utterance, where))
    return found


def _parse_seconds(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CorpusError(f"{where}: {name} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise CorpusError(f"{where}: {name} {text!r} must be a finite number >= 0")
    return value


def _check_span(start: float | None, end: float | None, where: str) -> None:
    if end is not None and end <= (start or 0.0):
        raise CorpusError(f"{where}: end {end} must be after start {start or 0.0}")


# --- final checks ---------------------------------------------------------------------------------


def _shown(missing: list[tuple[str, str]]) -> str:
    """The first few missing files, each with the list line that named it when that differs."""
    named = [path if origin == path else f"{path} ({origin})" for path, origin in missing]
    return ", ".join(named[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")


def _check_missing(found: list[_Found], source: str, resolution: str | None) -> None:
    """Missing scanned files are errors; missing listed files are one warning (see the module
    docstring), unless none of the listed files exists."""
    first_origin: dict[str, str] = {}
    for utterance, origin in found:
        first_origin.setdefault(utterance.path, origin)
    missing = [(p, o) for p, o in first_origin.items() if not os.path.isfile(p)]
    if not missing:
        return
    n_missing, n_files = len(missing), len(first_origin)
    if resolution is None:
        raise CorpusError(
            f"{n_missing} of {n_files} audio files {source} do not exist: {_shown(missing)}"
        )
    if n_missing == n_files:
        raise CorpusError(
            f"none of the {n_files} audio files {source} exist ({resolution}; is that the "
            f"right root?): {_shown(missing)}"
        )
    missing_paths = {p for p, _ in missing}
    n_utterances = sum(u.path in missing_paths for u, _ in found)
    log.warning(
        "%d of %d audio files %s do not exist (%s); feature extraction will skip their %d "
        "utterance(s) as 'missing': %s",
        n_missing,
        n_files,
        source,
        resolution,
        n_utterances,
        _shown(missing),
    )


def _resolved_against(root: Path) -> str:
    """How a list's relative paths were resolved, for `_finalize` and its messages."""
    return f"relative paths are resolved against {root}"


def _finalize(found: list[_Found], source: str, resolution: str | None = None) -> list[Utterance]:
    """Checks every reader shares: not empty, unique ids, files exist; then sort by utt_id so the
    same corpus always yields the same order. Readers of lists pass `resolution` (how relative
    paths were resolved, e.g. `_resolved_against(root)`): their missing files are kept and
    warned about instead of refused, and the text names the likely culprit when none exists."""
    if not found:
        raise CorpusError(f"no audio files found {source}")
    origins: dict[str, str] = {}
    for utterance, origin in found:
        if utterance.utt_id in origins:
            raise CorpusError(
                f"duplicate utterance id {utterance.utt_id!r}: {origins[utterance.utt_id]} "
                f"and {origin}"
            )
        origins[utterance.utt_id] = origin
    _check_missing(found, source, resolution)
    return sorted((u for u, _ in found), key=lambda u: u.utt_id)
