"""Small real corpus layouts for the reader tests (tiny real audio files written with soundfile).

Plain functions rather than fixtures, so each test module declares only the fixtures it uses and
no conftest is shared with other tests in this folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from gru_jax.data.corpora import Utterance

SAMPLE_RATE = 8000


def write_audio(path: Path, seconds: float = 0.05, sample_rate: int = SAMPLE_RATE) -> Path:
    """Noise in the format the extension names; the short default is enough for readers, which
    never decode it, while feature extraction needs at least 0.5 s at 16 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_samples = round(seconds * sample_rate)
    noise = np.random.default_rng(0).standard_normal(n_samples).astype(np.float32) * 0.1
    sf.write(path, noise, sample_rate)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ids(utterances: list[Utterance]) -> list[str]:
    return [u.utt_id for u in utterances]


VOXCELEB_FILES = [
    "id10002/xyz/00001.wav",
    "id10001/1zcIwhmdeo4/00002.wav",
    "id10001/1zcIwhmdeo4/00001.wav",
    "id10001/7gWzIy6yIIk/00001.wav",
]


def make_voxceleb(tmp_path: Path) -> Path:
    root = tmp_path / "vox1"
    for rel in VOXCELEB_FILES:
        write_audio(root / "wav" / rel)
    write_text(root / "wav" / "id10001" / "1zcIwhmdeo4" / "notes.txt", "not audio")
    write_audio(root / "wav" / "id10001" / "1zcIwhmdeo4" / "._00001.wav")  # macOS resource fork
    return root


LIBRI_FILES = [
    "train-clean-100/19/198/19-198-0001.flac",
    "train-clean-100/19/198/19-198-0000.flac",
    "train-clean-100/19/227/19-227-0000.flac",
    "dev-clean/84/121123/84-121123-0000.flac",
]


def make_librispeech(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    for rel in LIBRI_FILES:
        write_audio(root / rel)
    write_text(root / "train-clean-100/19/198/19-198.trans.txt", "19-198-0000 HELLO\n")
    return root


def make_kaldi(tmp_path: Path) -> Path:
    """Data dir with absolute, cwd-relative and data-dir-relative wav.scp paths."""
    data = tmp_path / "data" / "train"
    a = write_audio(tmp_path / "audio" / "a.wav")
    write_audio(data / "local" / "b.flac")
    write_audio(tmp_path / "audio" / "c.wav")
    write_text(data / "wav.scp", f"rec_c audio/c.wav\nrec_a {a}\n\nrec_b local/b.flac\n")
    write_text(data / "utt2spk", "rec_a spk1\nrec_b spk2\nrec_c spk1\n")
    write_text(data / "spk2utt", "spk1 rec_a rec_c\nspk2 rec_b\n")
    return data


def make_folders(tmp_path: Path) -> Path:
    root = tmp_path / "speakers"
    write_audio(root / "alice" / "one.wav")
    write_audio(root / "alice" / "day2" / "morning" / "two.flac")
    write_audio(root / "bob" / "x.ogg")
    write_audio(root / ".cache" / "hidden.wav")
    return root


def make_manifest(tmp_path: Path) -> Path:
    write_audio(tmp_path / "clips" / "a.wav")
    absolute = write_audio(tmp_path / "elsewhere" / "b.flac")
    return write_text(
        tmp_path / "clips.csv",
        "path,speaker,split,utt_id,start,end,gender\n"
        "clips/a.wav,s1,train,,,,f\n"
        f"{absolute},s2,test,b_seg,0.5,1.25,m\n"
        "clips/a.wav,s1,train,a_tail,0.01,,f\n",
    )
