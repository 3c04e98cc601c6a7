"""Shared pieces of the synth tests: the small reference corpus and ways to read one back.

Plain functions rather than fixtures, so each test module declares only the fixtures it uses and
no conftest is shared with other tests in this folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from gru_jax.synth import CorpusInfo, make_corpus

SMALL = {"n_speakers": 8, "n_utterances": 4, "seed": 3}
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


def make_small_corpus(root: Path) -> CorpusInfo:
    return make_corpus(root, **SMALL, progress=False)


def read_list(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def wav_files(info: CorpusInfo) -> list[Path]:
    return sorted(info.wav_dir.glob("*/*/*.wav"))


def speaker_of(relpath: str) -> str:
    return relpath.split("/")[0]
