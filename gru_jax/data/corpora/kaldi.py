"""Kaldi data dirs: ``wav.scp``, ``utt2spk`` and optionally ``spk2utt`` and ``segments``.

``wav.scp`` (``<recording> <path>``) and ``utt2spk`` (``<utt> <speaker>``) are required;
``spk2utt``, if present, must agree with ``utt2spk``. With ``segments`` (``<utt> <recording>
<start> <end>``, end -1 meaning the end of the recording) utterances are spans of recordings and
the session is the recording id; without it every recording is one utterance.

Piped commands (any ``|``), stdin (``-``) and ark references (``foo.ark:123``) are refused:
nothing in a data dir is ever executed, because a data dir downloaded or copied from elsewhere is
untrusted input. Relative paths are tried against the current directory first (as Kaldi does),
then against the data dir. Recordings that do not exist are kept and skipped later (see
`gru_jax.data.corpora.base`).

Trials (``<enroll-utt> <test-utt> target|nontarget``, as Kaldi's speaker-verification recipes
write them) name utterances of a data dir by id; `read_kaldi_trials` reads them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from gru_jax.data.corpora.base import (
    CorpusError,
    StrPath,
    Trial,
    Utterance,
    _check_span,
    _finalize,
    _Found,
    _numbered_lines,
    _parse_seconds,
    _require_dir,
    _resolve_listed_audio,
)

_ARK_REFERENCE = re.compile(r":\d+(\[[^\]]*\])?$")


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
    resolution = f"relative paths are tried against the current directory, then {data_dir}"
    return _finalize(found, f"in {wav_scp}", resolution)


_KALDI_LABELS = {"target": 1, "nontarget": 0}


def read_kaldi_trials(path: StrPath) -> list[Trial]:
    """Kaldi trials, in file order, with utterance ids as they are (not paths)."""
    path = Path(path)
    trials = []
    for number, line in _numbered_lines(path):
        fields = line.split()
        if len(fields) != 3 or fields[2] not in _KALDI_LABELS:
            raise CorpusError(
                f"{path}:{number}: expected '<enroll-utt> <test-utt> target|nontarget'"
            )
        trials.append(Trial(_KALDI_LABELS[fields[2]], fields[0], fields[1]))
    if not trials:
        raise CorpusError(f"{path}: no trials")
    return trials
