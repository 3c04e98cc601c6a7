"""Corpus readers: a dataset on disk becomes a sorted, validated list of utterances.

Readers check everything they can before any audio is decoded (missing files, duplicate ids,
malformed lists), because a bad path found hours into feature extraction is expensive. Every
error is a `CorpusError` naming the file (and line, for text lists) and the reason. Results are
sorted by ``utt_id`` so the same corpus always yields the same order.

Layouts
-------
VoxCeleb
    ``root/wav/<speaker>/<session>/<utt>.wav`` (``root`` may be the ``wav`` dir itself);
    utt_id ``<speaker>/<session>/<utt>``. An optional training list of
    ``<speaker> <speaker>/<session>/<utt>.wav`` lines (relative to the wav dir) restricts the
    corpus. Trial lists are ``<label> <enroll path> <test path>`` with label 1 (same speaker) or 0.
LibriSpeech
    ``root/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac`` with ``root`` one split
    (``train-clean-100``) or a folder holding several splits; utt_id is the file stem and the
    session is the chapter. ``*.trans.txt`` is ignored.
Kaldi data dir
    ``wav.scp`` (``<recording> <path>``) and ``utt2spk`` are required; ``spk2utt``, if present, must
    agree with ``utt2spk``; with ``segments`` (``<utt> <recording> <start> <end>``, end -1 meaning
    the end of the recording) utterances are spans of recordings and the session is the recording
    id. Piped commands (any ``|``), stdin (``-``) and ark references (``foo.ark:123``) are refused:
    nothing in a data dir is ever executed. Relative paths are tried against the current
    directory first (as Kaldi does), then against the data dir.
CSV manifest
    A header with ``path`` and ``speaker`` (never empty) and optionally ``utt_id``, ``session``,
    ``split``, ``start``, ``end`` (seconds); other columns are ignored. An empty optional field
    takes its default: ``utt_id`` the path as written without extension, ``start`` / ``end`` the
    start / end of the file. Relative paths are relative to the CSV's folder.
Folder per speaker
    ``root/<speaker>/**/<file>``; utt_id is the path relative to ``root`` without extension and the
    session is the folders between the speaker folder and the file.
Speaker list
    ``<speaker> <relative/path>`` lines, paths relative to a given root; the session is the folders
    between the speaker folder (if the path starts with it) and the file.

Audio files are .wav, .flac and .ogg; names starting with "." are skipped when scanning.
soundfile cannot decode .m4a (VoxCeleb2's AAC), so a scanned or listed .m4a is replaced by a
converted file with the same stem (.wav/.flac/.ogg) when one exists, and is an error otherwise.

Auto-detection (`read_corpus`), first match wins
------------------------------------------------
1. a file ending in ``.csv``: CSV manifest;
2. a directory containing ``wav.scp``: Kaldi data dir;
3. a directory with a ``wav/`` subdirectory, or whose subdirectories are all named ``id<digits>``
   with audio files in a subdirectory of the first one (speaker/session/utt): VoxCeleb;
4. a directory holding LibriSpeech split dirs (``train-clean-100``, ``dev-other``, ...), or whose
   first numeric speaker dir's first numeric chapter dir holds ``<speaker>-<chapter>-<n>.*`` audio:
   LibriSpeech;
5. any other directory: folder per speaker.
A ``list_file`` goes to the VoxCeleb reader for VoxCeleb layouts and is read as a speaker list
relative to the directory for the other directory layouts; with CSV or Kaldi it is an error.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

StrPath = str | os.PathLike[str]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
UNSUPPORTED_EXTENSIONS = (".m4a",)
_SCANNED_EXTENSIONS = AUDIO_EXTENSIONS + UNSUPPORTED_EXTENSIONS
_M4A_ADVICE = (
    "soundfile cannot decode .m4a (AAC); convert to .wav or .flac first, "
    "e.g. ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav"
)
_MAX_LISTED = 5
_LIBRISPEECH_SPLIT = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")
_VOXCELEB_SPEAKER = re.compile(r"^id\d+$")
_ARK_REFERENCE = re.compile(r":\d+(\[[^\]]*\])?$")

# An utterance plus where it came from ("file:line" or its audio path), for error messages.
_Found = tuple["Utterance", str]


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: str
    path: str
    session: str = ""
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Trial:
    label: int
    enroll: str
    test: str


class CorpusError(ValueError):
    """A corpus that cannot be read as given; the message names the file, line and reason."""


def utt_id_from_relpath(rel: str) -> str:
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001/1zcIwhmdeo4/00001``.

    Ids ignore the audio format and the OS separator so that trial lists still match a corpus
    after it was converted (m4a -> wav) or listed on Windows.
    """
    posix = PurePosixPath(rel.strip().replace("\\", "/"))
    if not posix.name:
        raise ValueError(f"not a file path: {rel!r}")
    return posix.with_suffix("").as_posix()


# --- shared helpers ---------------------------------------------------------------------------


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _require_dir(path: Path) -> None:
    if not path.is_dir():
        raise CorpusError(f"{path}: no such directory")


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


def _visible_entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _subdirs(directory: Path) -> list[Path]:
    return [Path(e.path) for e in _visible_entries(directory) if e.is_dir()]


def _audio_files_in(directory: Path) -> list[Path]:
    """Audio (and .m4a) files directly in `directory`; broken links stay, to be reported."""
    return [
        Path(e.path)
        for e in _visible_entries(directory)
        if not e.is_dir() and _suffix(e.name) in _SCANNED_EXTENSIONS
    ]


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
            Path(dirpath, name)
            for name in sorted(filenames)
            if not name.startswith(".") and _suffix(name) in _SCANNED_EXTENSIONS
        )
    return found


def _without_m4a(files: list[Path], root: Path) -> list[Path]:
    """Drop .m4a files that have a converted sibling; any other .m4a is an error rather than a
    silently smaller corpus."""
    converted = {f.with_suffix("") for f in files if _suffix(f.name) in AUDIO_EXTENSIONS}
    orphans = [
        f
        for f in files
        if _suffix(f.name) in UNSUPPORTED_EXTENSIONS and f.with_suffix("") not in converted
    ]
    if orphans:
        raise CorpusError(
            f"{len(orphans)} .m4a file(s) under {root} have no converted copy "
            f"(first: {orphans[0]}); {_M4A_ADVICE}"
        )
    return [f for f in files if _suffix(f.name) in AUDIO_EXTENSIONS]


def _resolve_listed_audio(path: Path, where: str) -> Path:
    """Check a listed file's format; a listed .m4a (VoxCeleb2 lists) is replaced by a converted
    file with the same stem. Existence is checked later, for all files at once."""
    suffix = _suffix(path.name)
    if suffix in AUDIO_EXTENSIONS:
        return path
    if suffix not in UNSUPPORTED_EXTENSIONS:
        raise CorpusError(
            f"{where}: {path.name!r} is not a supported audio file ({', '.join(AUDIO_EXTENSIONS)})"
        )
    for extension in AUDIO_EXTENSIONS:
        candidate = path.with_suffix(extension)
        if candidate.is_file():
            return candidate
    if path.exists():
        raise CorpusError(f"{where}: {path} has no converted .wav/.flac/.ogg copy; {_M4A_ADVICE}")
    return path


def _require_files(paths: Iterable[str], source: str, hint: str = "") -> None:
    unique = list(dict.fromkeys(paths))
    missing = [p for p in unique if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")
        raise CorpusError(
            f"{len(missing)} of {len(unique)} audio files {source} do not exist: {shown}{hint}"
        )


def _finalize(found: list[_Found], source: str, missing_hint: str = "") -> list[Utterance]:
    """Checks every reader shares: not empty, unique ids, files exist; then sort by utt_id."""
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
    _require_files((u.path for u, _ in found), source, missing_hint)
    return sorted((u for u, _ in found), key=lambda u: u.utt_id)


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


# --- speaker lists and VoxCeleb ---------------------------------------------------------------


def _parse_speaker_list(path: Path) -> list[tuple[int, str, str]]:
    """(line number, speaker, relative path) for each `speaker relative/path` line."""
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


def read_speaker_list(path: StrPath, root: StrPath) -> list[Utterance]:
    """Utterances from `speaker relative/path` lines, paths relative to `root`."""
    list_path, root = Path(path), Path(root)
    entries = _parse_speaker_list(list_path)
    return _finalize(_list_utterances(entries, list_path, root), f"in {list_path}")


def _voxceleb_wav_dir(root: Path) -> Path:
    return root / "wav" if (root / "wav").is_dir() else root


def _check_voxceleb_entries(entries: list[tuple[int, str, str]], list_path: Path) -> None:
    for number, speaker, rel in entries:
        parts = PurePosixPath(rel.replace("\\", "/")).parts
        if len(parts) != 3 or parts[0] != speaker:
            raise CorpusError(
                f"{list_path}:{number}: expected '{speaker} {speaker}/<session>/<utt>.wav', "
                f"got path {rel!r}"
            )


def read_voxceleb(root: StrPath, list_file: StrPath | None = None) -> list[Utterance]:
    """VoxCeleb 1/2 under `root/wav` (or `root` itself), optionally limited to a training list."""
    wav_dir = _voxceleb_wav_dir(Path(root))
    _require_dir(wav_dir)
    if list_file is not None:
        list_path = Path(list_file)
        entries = _parse_speaker_list(list_path)
        _check_voxceleb_entries(entries, list_path)
        return _finalize(_list_utterances(entries, list_path, wav_dir), f"in {list_path}")
    files = _without_m4a(_audio_files_at_depth(wav_dir, 2), wav_dir)
    return _finalize([(_utterance_under(wav_dir, f), str(f)) for f in files], f"under {wav_dir}")


def read_voxceleb_trials(path: StrPath) -> list[Trial]:
    """VoxCeleb1 trial list, in file order (scores are reported against it line by line)."""
    path = Path(path)
    trials = []
    for number, line in _numbered_lines(path):
        fields = line.split()
        if len(fields) != 3:
            raise CorpusError(
                f"{path}:{number}: expected 'label enroll test', got {len(fields)} fields"
            )
        label, enroll, test = fields
        if label not in ("0", "1"):
            raise CorpusError(f"{path}:{number}: label must be 0 or 1, got {label!r}")
        trials.append(Trial(int(label), utt_id_from_relpath(enroll), utt_id_from_relpath(test)))
    if not trials:
        raise CorpusError(f"{path}: no trials")
    return trials


# --- LibriSpeech --------------------------------------------------------------------------------


def _librispeech_utterance(file: Path) -> Utterance:
    speaker, chapter = file.parent.parent.name, file.parent.name
    prefix = f"{speaker}-{chapter}-"
    if not file.stem.startswith(prefix):
        raise CorpusError(
            f"{file}: LibriSpeech file names must start with '{prefix}' "
            "(<speaker>-<chapter>- of the folders holding them)"
        )
    return Utterance(utt_id=file.stem, speaker=speaker, path=str(file), session=chapter)


def read_librispeech(root: StrPath) -> list[Utterance]:
    """One LibriSpeech split, or every split dir (`train-clean-100`, ...) found in `root`."""
    root = Path(root)
    _require_dir(root)
    splits = [d for d in _subdirs(root) if _LIBRISPEECH_SPLIT.match(d.name)]
    found: list[_Found] = []
    for split in splits or [root]:
        files = _without_m4a(_audio_files_at_depth(split, 2), split)
        found.extend((_librispeech_utterance(f), str(f)) for f in files)
    return _finalize(found, f"under {root}")


# --- Kaldi data dirs ----------------------------------------------------------------------------


def _read_kaldi_table(
    path: Path, n_fields: int | None, form: str
) -> dict[str, tuple[int, list[str]]]:
    """Key -> (line number, remaining fields); `n_fields` None means two or more fields."""
    table: dict[str, tuple[int, list[str]]] = {}
    for number, line in _numbered_lines(path):
        fields = line.split()
        if len(fields) < 2 or (n_fields is not None and len(fields) != n_fields):
            raise CorpusError(f"{path}:{number}: expected '{form}', got {len(fields)} fields")
        key = fields[0]
        if key in table:
            raise CorpusError(
                f"{path}:{number}: duplicate id {key!r} (first on line {table[key][0]})"
            )
        table[key] = (number, fields[1:])
    return table


def _resolve_kaldi_path(spec: str, data_dir: Path) -> Path:
    path = Path(spec)
    if path.is_absolute() or path.exists():
        return path
    beside = data_dir / path
    return beside if beside.exists() else path


def _read_wav_scp(path: Path, data_dir: Path) -> dict[str, tuple[int, Path]]:
    """Recording id -> (line number, audio path); refuses anything but a plain file path."""
    recordings = {}
    for recording, (number, values) in _read_kaldi_table(path, None, "recording-id path").items():
        where = f"{path}:{number}"
        spec = " ".join(values)
        if "|" in spec:
            raise CorpusError(
                f"{where}: {recording!r} is a piped command ({spec!r}); piped commands are never "
                "executed: write the audio to files and list their paths"
            )
        if len(values) != 1:
            raise CorpusError(
                f"{where}: expected 'recording-id path', got {len(values) + 1} fields"
            )
        if spec == "-":
            raise CorpusError(f"{where}: reading audio from stdin ('-') is not supported")
        if _ARK_REFERENCE.search(spec):
            raise CorpusError(
                f"{where}: {recording!r} is an ark reference ({spec!r}), which is unsupported: "
                "list audio files instead"
            )
        located = _resolve_kaldi_path(spec, data_dir)
        recordings[recording] = (number, _resolve_listed_audio(located, where))
    return recordings


def _read_segments(path: Path, recordings: dict[str, tuple[int, Path]]) -> list[_Found]:
    found = []
    table = _read_kaldi_table(path, 4, "utterance-id recording-id start end")
    for segment, (number, (recording, start_text, end_text)) in table.items():
        where = f"{path}:{number}"
        if recording not in recordings:
            raise CorpusError(f"{where}: recording {recording!r} is not in wav.scp")
        start = _parse_seconds(start_text, "start", where)
        end = None if end_text == "-1" else _parse_seconds(end_text, "end", where)
        _check_span(start, end, where)
        audio = str(recordings[recording][1])
        found.append(
            (Utterance(segment, "", audio, session=recording, start=start, end=end), where)
        )
    return found


def _check_spk2utt(path: Path, utt2spk_path: Path, utt2spk: dict[str, tuple[int, str]]) -> None:
    """spk2utt is derived data; a disagreement means one of the two files is stale."""
    listed: set[str] = set()
    for speaker, (number, utterances) in _read_kaldi_table(path, None, "speaker utt...").items():
        for utt in utterances:
            where = f"{path}:{number}"
            if utt not in utt2spk:
                raise CorpusError(f"{where}: utterance {utt!r} is not in {utt2spk_path}")
            utt2spk_line, utt2spk_speaker = utt2spk[utt]
            if utt2spk_speaker != speaker:
                raise CorpusError(
                    f"{where}: utterance {utt!r} is listed under speaker {speaker!r} but "
                    f"{utt2spk_path}:{utt2spk_line} gives speaker {utt2spk_speaker!r}"
                )
            if utt in listed:
                raise CorpusError(f"{where}: utterance {utt!r} is listed twice")
            listed.add(utt)
    for utt, (number, speaker) in utt2spk.items():
        if utt not in listed:
            raise CorpusError(
                f"{utt2spk_path}:{number}: utterance {utt!r} (speaker {speaker!r}) is missing "
                f"from {path}"
            )


def _assign_speakers(
    pieces: list[_Found], utt2spk: dict[str, tuple[int, str]], utt2spk_path: Path, source: Path
) -> list[_Found]:
    """utt2spk must cover exactly the utterances, as Kaldi's validate_data_dir.sh requires."""
    ids = {u.utt_id for u, _ in pieces}
    for utt, (number, _) in utt2spk.items():
        if utt not in ids:
            raise CorpusError(f"{utt2spk_path}:{number}: utterance {utt!r} is not in {source}")
    found = []
    for utterance, origin in pieces:
        if utterance.utt_id not in utt2spk:
            raise CorpusError(f"{origin}: utterance {utterance.utt_id!r} is not in {utt2spk_path}")
        found.append((replace(utterance, speaker=utt2spk[utterance.utt_id][1]), origin))
    return found


def read_kaldi_dir(data_dir: StrPath) -> list[Utterance]:
    """Kaldi data dir (wav.scp + utt2spk, optional spk2utt and segments); nothing is executed."""
    data_dir = Path(data_dir)
    _require_dir(data_dir)
    wav_scp, utt2spk_path = data_dir / "wav.scp", data_dir / "utt2spk"
    for required in (wav_scp, utt2spk_path):
        if not required.is_file():
            raise CorpusError(f"{required}: missing (a Kaldi data dir needs wav.scp and utt2spk)")
    recordings = _read_wav_scp(wav_scp, data_dir)
    utt2spk = {
        utt: (number, values[0])
        for utt, (number, values) in _read_kaldi_table(
            utt2spk_path, 2, "utterance-id speaker-id"
        ).items()
    }
    spk2utt_path = data_dir / "spk2utt"
    if spk2utt_path.is_file():
        _check_spk2utt(spk2utt_path, utt2spk_path, utt2spk)
    segments_path = data_dir / "segments"
    if segments_path.is_file():
        pieces, source = _read_segments(segments_path, recordings), segments_path
    else:
        pieces = [
            (Utterance(recording, "", str(audio)), f"{wav_scp}:{number}")
            for recording, (number, audio) in recordings.items()
        ]
        source = wav_scp
    found = _assign_speakers(pieces, utt2spk, utt2spk_path, source)
    hint = f" (relative paths are tried against the current directory, then {data_dir})"
    return _finalize(found, f"in {wav_scp}", hint)


# --- folder per speaker and CSV -----------------------------------------------------------------


def read_folder_per_speaker(root: StrPath) -> list[Utterance]:
    """`root/<speaker>/**/<file>`: the first folder level names the speaker."""
    root = Path(root)
    _require_dir(root)
    files = _without_m4a(_walk_audio_files(root), root)
    loose = [f for f in files if f.parent == root]
    if loose:
        raise CorpusError(
            f"{loose[0]}: audio directly under {root} has no speaker folder; "
            f"expected {root}/<speaker>/.../<file>"
        )
    return _finalize([(_utterance_under(root, f), str(f)) for f in files], f"under {root}")


_CSV_REQUIRED = ("path", "speaker")


def _check_csv_header(path: Path, header: list[str], split: str | None) -> None:
    missing = [c for c in _CSV_REQUIRED if c not in header]
    if missing:
        raise CorpusError(
            f"{path}:1: missing column(s) {', '.join(missing)} (header: {','.join(header)}); "
            "a manifest needs at least path,speaker"
        )
    if len(set(header)) != len(header):
        raise CorpusError(f"{path}:1: repeated column name in header {','.join(header)}")
    if split is not None and "split" not in header:
        raise CorpusError(f"{path}:1: no 'split' column to select split {split!r} with")


def _csv_values(row: dict, n_columns: int, where: str) -> dict[str, str]:
    """Stripped values of a well-formed row (csv.DictReader pads short rows and collects extras)."""
    if None in row or any(value is None for value in row.values()):
        raise CorpusError(f"{where}: expected {n_columns} fields, as in the header")
    return {key: value.strip() for key, value in row.items()}


def _csv_utterance(values: dict[str, str], csv_dir: Path, where: str) -> Utterance:
    for column in _CSV_REQUIRED:
        if not values[column]:
            raise CorpusError(f"{where}: empty {column!r} field")
    start_text, end_text = values.get("start", ""), values.get("end", "")
    start = _parse_seconds(start_text, "start", where) if start_text else None
    end = _parse_seconds(end_text, "end", where) if end_text else None
    _check_span(start, end, where)
    return Utterance(
        utt_id=values.get("utt_id") or utt_id_from_relpath(values["path"]),
        speaker=values["speaker"],
        path=str(_resolve_listed_audio(csv_dir / values["path"], where)),
        session=values.get("session", ""),
        start=start,
        end=end,
    )


def read_csv_manifest(path: StrPath, split: str | None = None) -> list[Utterance]:
    """CSV manifest (see the module docstring); `split` keeps only rows of that split."""
    path = Path(path)
    found: list[_Found] = []
    splits_seen: set[str] = set()
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise CorpusError(f"{path}: empty file; expected a header with path,speaker")
            reader.fieldnames = header = [name.strip() for name in reader.fieldnames]
            _check_csv_header(path, header, split)
            for row in reader:
                where = f"{path}:{reader.line_num}"
                values = _csv_values(row, len(header), where)
                splits_seen.add(values.get("split", ""))
                if split is None or values["split"] == split:
                    found.append((_csv_utterance(values, path.parent, where), where))
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason})") from e
    except csv.Error as e:
        raise CorpusError(f"{path}: malformed CSV ({e})") from e
    if not found and split is not None:
        present = ", ".join(sorted(splits_seen)) or "none"
        raise CorpusError(f"{path}: no rows with split {split!r} (splits present: {present})")
    return _finalize(found, f"in {path}")


# --- auto-detection -----------------------------------------------------------------------------


def _looks_like_voxceleb(root: Path) -> bool:
    if (root / "wav").is_dir():
        return True
    speakers = _subdirs(root)
    if not speakers or not all(_VOXCELEB_SPEAKER.match(d.name) for d in speakers):
        return False
    return any(_audio_files_in(session) for session in _subdirs(speakers[0]))


def _looks_like_librispeech(root: Path) -> bool:
    children = _subdirs(root)
    if any(_LIBRISPEECH_SPLIT.match(d.name) for d in children):
        return True
    speaker = next((d for d in children if d.name.isdigit()), None)
    if speaker is None:
        return False
    chapter = next((d for d in _subdirs(speaker) if d.name.isdigit()), None)
    if chapter is None:
        return False
    prefix = f"{speaker.name}-{chapter.name}-"
    return any(f.name.startswith(prefix) for f in _audio_files_in(chapter))


def read_corpus(path: StrPath, list_file: StrPath | None = None) -> list[Utterance]:
    """Read any supported layout; the detection order is in the module docstring."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or directory")
    if not path.is_dir() and _suffix(path.name) != ".csv":
        raise CorpusError(f"{path}: expected a corpus directory or a .csv manifest")
    is_kaldi = path.is_dir() and (path / "wav.scp").is_file()
    if list_file is not None and (is_kaldi or not path.is_dir()):
        raise CorpusError(
            f"{path}: a list file applies only to directory layouts (VoxCeleb, LibriSpeech, "
            "folder per speaker), not to a CSV manifest or Kaldi data dir"
        )
    if not path.is_dir():
        return read_csv_manifest(path)
    if is_kaldi:
        return read_kaldi_dir(path)
    if _looks_like_voxceleb(path):
        return read_voxceleb(path, list_file)
    if list_file is not None:
        return read_speaker_list(list_file, path)
    if _looks_like_librispeech(path):
        return read_librispeech(path)
    return read_folder_per_speaker(path)
