"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from etils import epath

from gru_jax.core.rundir import is_remote

Writer = Callable[[IO[bytes]], None]


def atomic_write(path: str | os.PathLike[str], content: bytes | str | Writer) -> None:
    """Write `content` (bytes, text, or a function writing to a binary file) to `path` atomically.

    The data goes to a uniquely named temporary file beside `path`, is flushed to disk, then
    renamed over `path`. A failure at any point (inside a writer function too) leaves an existing
    `path` untouched and no temporary file behind; concurrent writers never share a temporary file.
    A bucket path (gs://...) is written as one object, which object stores replace atomically.
    """
    if is_remote(path):
        buffer = io.BytesIO()
        if callable(content):
            content(buffer)
        else:
            buffer.write(content.encode() if isinstance(content, str) else content)
        epath.Path(os.fspath(path)).write_bytes(buffer.getvalue())
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs should read like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], value: Any, indent: int | None = 2) -> None:
    atomic_write(path, json.dumps(value, indent=indent) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    atomic_write(path, "".join(json.dumps(row) + "\n" for row in rows))
