"""CSV manifests: one row per utterance, for corpora no other layout describes.

A header with ``path`` and ``speaker`` (never empty) and optionally ``utt_id``, ``session``,
``split``, ``start``, ``end`` (seconds); other columns are ignored, so a manifest can carry its own
metadata. An empty optional field takes its default: ``utt_id`` the path as written without
extension, ``start`` / ``end`` the start / end of the file. Relative paths are relative to the
CSV's folder, so a manifest moves with its audio. Files that do not exist are kept and skipped
later (see `gru_jax.data.corpora.base`).

Every row is read unless a ``split`` is asked for; `manifest_splits` says which exist, so a
caller can train on ``train`` rows only when the manifest has them. `write_csv_manifest` writes
any reader's utterances as one, which is how several corpora become one training set.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from gru_jax.core.files import atomic_write
from gru_jax.data.corpora.base import (
    CorpusError,
    StrPath,
    Utterance,
    _check_span,
    _finalize,
    _Found,
    _parse_seconds,
    _resolve_listed_audio,
    _resolved_against,
    utt_id_from_relpath,
)

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


def _csv_rows(path: Path, split: str | None) -> Iterator[tuple[str, dict[str, str]]]:
    """("file:line", stripped values) of every row, streamed (manifests of large corpora have
    millions of rows), with every way of failing to read them turned into a `CorpusError`."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise CorpusError(f"{path}: empty file; expected a header with path,speaker")
            reader.fieldnames = header = [name.strip() for name in reader.fieldnames]
            _check_csv_header(path, header, split)
            for row in reader:
                where = f"{path}:{reader.line_num}"
                yield where, _csv_values(row, len(header), where)
    except OSError as e:
        raise CorpusError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason})") from e
    except csv.Error as e:
        raise CorpusError(f"{path}: malformed CSV ({e})") from e


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


def manifest_splits(path: StrPath) -> tuple[str, ...]:
    """The distinct non-empty ``split`` values, sorted; empty without a split column (or with
    only empty values), which means the manifest is one split. A directory is some other layout,
    which has no splits, so a caller can ask before knowing what `path` holds."""
    path = Path(path)
    if path.is_dir():
        return ()
    return tuple(sorted({values.get("split", "") for _, values in _csv_rows(path, None)} - {""}))


def read_csv_manifest(path: StrPath, split: str | None = None) -> list[Utterance]:
    """CSV manifest (see the module docstring); `split` keeps only rows of that split."""
    path = Path(path)
    found: list[_Found] = []
    splits_seen: set[str] = set()
    for where, values in _csv_rows(path, split):
        splits_seen.add(values.get("split", ""))
        if split is None or values["split"] == split:
            found.append((_csv_utterance(values, path.parent, where), where))
    if not found and split is not None:
        present = ", ".join(sorted(splits_seen - {""})) or "none"
        unsplit = " and rows without one" if "" in splits_seen else ""
        raise CorpusError(
            f"{path}: no rows with split {split!r} (splits present: {present}{unsplit})"
        )
    return _finalize(found, f"in {path}", _resolved_against(path.parent))


def write_csv_manifest(utterances: Sequence[Utterance], path: StrPath) -> Path:
    """Write `utterances` as a manifest that `read_csv_manifest` reads back equal (absolute
    paths, so it can live anywhere, e.g. in a cache keyed by its content)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "speaker", "utt_id", "session", "start", "end"])
    for u in utterances:
        writer.writerow(
            [
                os.path.abspath(u.path),
                u.speaker,
                u.utt_id,
                u.session,
                "" if u.start is None else repr(u.start),
                "" if u.end is None else repr(u.end),
            ]
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return path
