"""Tiny look-alikes of the real corpora, in their exact layouts, made from one synthetic corpus.

The synthetic speakers stand in for real ones; only the layout, names, formats and lists are the
corpora's own (VoxCeleb2's .m4a is AAC encoded here with PyAV, LibriSpeech and CN-Celeb are .flac).
The first `N_TRAIN` synthetic speakers are training speakers in every layout, the last `N_TEST`
test speakers, so every fixture's test speakers are unseen in training, as in the real recipes.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from gru_jax.synth import make_corpus

N_TRAIN, N_TEST, N_UTTERANCES, SAMPLE_RATE = 10, 4, 6, 16000
GENRES = ("interview", "singing", "speech", "vlog", "drama", "recitation")

# The preset's model family at a size that compiles and runs in seconds on a CPU.
SHRUNK = [
    "--steps", "3",
    "--set", "model.hidden=16",
    "--set", "model.layers=1",
    "--set", "model.attention_dim=8",
    "--set", "model.embedding_dim=16",
    "--set", "data.features.n_mels=24",
    "--set", "data.crop_frames=50",
    "--set", "data.min_frames=30",
    "--set", "data.val_speakers=2",
    "--set", "trainer.batch_size=8",
    "--set", "trainer.val_trials=40",
    "--set", "trainer.eval_every=1000",
    "--set", "trainer.checkpoint_every=3",
    "--set", "trainer.log_every=1",
    "--set", "optim.warmup_steps=1",
    "--no-progress",
]  # fmt: skip


@dataclass(frozen=True)
class Source:
    """The synthetic corpus: speaker -> [(session, wav path)], and its VoxCeleb trial list."""

    root: Path
    train: dict[str, list[tuple[str, Path]]]
    test: dict[str, list[tuple[str, Path]]]
    trials: Path  # `label enroll test`, paths relative to root/wav


def synthetic_source(root: Path) -> Source:
    info = make_corpus(
        root,
        n_speakers=N_TRAIN + N_TEST,
        n_utterances=N_UTTERANCES,
        seed=7,
        n_test_speakers=N_TEST,
        duration_s=(1.0, 1.6),
        progress=False,
    )
    by_speaker: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for path in sorted(info.wav_dir.glob("*/*/*.wav")):
        by_speaker[path.parent.parent.name].append((path.parent.name, path))
    speakers = sorted(by_speaker)
    return Source(
        root,
        {s: by_speaker[s] for s in speakers[:N_TRAIN]},
        {s: by_speaker[s] for s in speakers[N_TRAIN:]},
        info.trials,
    )


def encode_m4a(wav: Path, out: Path) -> Path:
    """AAC in an MP4 container, as VoxCeleb2 ships its audio."""
    import av

    wave, rate = sf.read(wav, dtype="float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for first in range(0, len(wave), 1024):
            chunk = np.ascontiguousarray(wave[None, first : first + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, first
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out


def to_flac(wav: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    wave, rate = sf.read(wav, dtype="int16")
    sf.write(out, wave, rate, format="FLAC")
    return out


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- VoxCeleb ------------------------------------------------------------------------------------


def voxceleb(source: Source, root: Path) -> tuple[Path, Path]:
    """(VoxCeleb2 as unpacked: vox2/dev/aac/<spk>/<session>/<utt>.m4a, VoxCeleb1 with wav/ and
    veri_test2.txt); the recipe is given the unpacked folder above dev/aac."""
    vox2 = root / "vox2"
    for speaker, files in source.train.items():
        for session, wav in files:
            encode_m4a(wav, vox2 / "dev" / "aac" / speaker / session / f"{wav.stem}.m4a")
    vox1 = root / "vox1"
    for speaker, files in source.test.items():
        for session, wav in files:
            target = vox1 / "wav" / speaker / session / wav.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wav, target)
    shutil.copyfile(source.trials, vox1 / "veri_test2.txt")
    return vox2, vox1


# --- LibriSpeech ---------------------------------------------------------------------------------


def librispeech(source: Source, root: Path) -> Path:
    """``LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac`` with transcripts:
    the training speakers in train-clean-100, the test speakers split over dev- and test-clean."""
    test = sorted(source.test)
    splits = {
        "train-clean-100": source.train,
        "dev-clean": {s: source.test[s] for s in test[: N_TEST // 2]},
        "test-clean": {s: source.test[s] for s in test[N_TEST // 2 :]},
    }
    libri = root / "LibriSpeech"
    number = 19
    for split, speakers in splits.items():
        for files in speakers.values():
            number += 7
            chapters = {
                s: number * 100 + k for k, s in enumerate(dict.fromkeys(s for s, _ in files))
            }
            lines: dict[int, list[str]] = defaultdict(list)
            for n, (session, wav) in enumerate(files):
                chapter = chapters[session]
                stem = f"{number}-{chapter}-{n:04d}"
                to_flac(wav, libri / split / str(number) / str(chapter) / f"{stem}.flac")
                lines[chapter].append(f"{stem} A SYNTHETIC SPEAKER READS\n")
            for chapter, text in lines.items():
                write(
                    libri / split / str(number) / str(chapter) / f"{number}-{chapter}.trans.txt",
                    "".join(text),
                )
    return libri


# --- CN-Celeb ------------------------------------------------------------------------------------


def _cnceleb_name(session: str, sessions: list[str], n: int) -> str:
    """`<genre>-<nn>-<nnn>`: each synthetic session becomes a genre's video."""
    genre = GENRES[sessions.index(session) % len(GENRES)]
    return f"{genre}-{sessions.index(session) + 1:02d}-{n:03d}"


def cnceleb(source: Source, root: Path) -> tuple[Path, Path]:
    """(CN-Celeb_flac with data/, dev/dev.lst and eval/ with its four lists, CN-Celeb2_flac with
    data/ and spk.lst). Training speakers: 6 in CN-Celeb1 dev, 4 in CN-Celeb2; the test speakers
    are CN-Celeb1's evaluation speakers, enrolled with a concatenation of 2 utterances each."""
    cn1, cn2 = root / "CN-Celeb_flac", root / "CN-Celeb2_flac"
    train = sorted(source.train)
    dev = [(f"id{k:05d}", source.train[s]) for k, s in enumerate(train[:6])]
    second = [(f"id{10000 + k:05d}", source.train[s]) for k, s in enumerate(train[6:])]
    evaluation = [(f"id{800 + k:05d}", source.test[s]) for k, s in enumerate(sorted(source.test))]
    for corpus, speakers in ((cn1, dev + evaluation), (cn2, second)):
        for speaker, files in speakers:
            sessions = list(dict.fromkeys(s for s, _ in files))
            for n, (session, wav) in enumerate(files, start=1):
                name = _cnceleb_name(session, sessions, n)
                to_flac(wav, corpus / "data" / speaker / f"{name}.flac")
    write(cn1 / "dev" / "dev.lst", "".join(f"{s}\n" for s, _ in dev))
    write(cn2 / "spk.lst", "".join(f"{s}\n" for s, _ in second))

    enroll_lst, enroll_map, tests = [], [], []
    for speaker, files in evaluation:
        sessions = list(dict.fromkeys(s for s, _ in files))
        names = [_cnceleb_name(s, sessions, n) for n, (s, _) in enumerate(files, start=1)]
        waves = [sf.read(wav, dtype="int16")[0] for _, wav in files[:2]]
        enroll = cn1 / "eval" / "enroll" / f"{speaker}-enroll.flac"
        enroll.parent.mkdir(parents=True, exist_ok=True)
        sf.write(enroll, np.concatenate(waves), SAMPLE_RATE, format="FLAC")
        enroll_lst.append(f"{speaker}-enroll enroll/{speaker}-enroll.wav\n")
        enroll_map.append(f"{speaker}-enroll " + " ".join(f"{speaker}/{m}.wav" for m in names[:2]))
        for name, (_, wav) in zip(names[2:], files[2:], strict=True):
            stem = f"{speaker}-{name}"
            to_flac(wav, cn1 / "eval" / "test" / f"{stem}.flac")
            tests.append((speaker, stem))
    lists = cn1 / "eval" / "lists"
    write(lists / "enroll.lst", "".join(enroll_lst))
    write(lists / "enroll.map", "\n".join(enroll_map) + "\n")
    write(lists / "test.lst", "".join(f"test/{stem}.wav\n" for _, stem in tests))
    write(
        lists / "trials.lst",
        "".join(
            f"{speaker}-enroll test/{stem}.wav {int(owner == speaker)}\n"
            for speaker, _ in evaluation
            for owner, stem in tests
        ),
    )
    return cn1, cn2


# --- Kaldi ---------------------------------------------------------------------------------------


def kaldi(source: Source, root: Path) -> tuple[Path, Path]:
    """data/train and data/test (wav.scp with absolute paths, utt2spk, spk2utt; test/trials in
    Kaldi's `<enroll-utt> <test-utt> target|nontarget`), utterance ids prefixed by the speaker."""

    def utt_id(speaker: str, session: str, wav: Path) -> str:
        return f"{speaker}-{session}-{wav.stem}"

    dirs = {}
    for name, speakers in (("train", source.train), ("test", source.test)):
        entries = sorted(
            (utt_id(speaker, session, wav), speaker, wav)
            for speaker, files in speakers.items()
            for session, wav in files
        )
        data = root / "data" / name
        write(data / "wav.scp", "".join(f"{u} {wav.resolve()}\n" for u, _, wav in entries))
        write(data / "utt2spk", "".join(f"{u} {s}\n" for u, s, _ in entries))
        spk2utt = defaultdict(list)
        for u, s, _ in entries:
            spk2utt[s].append(u)
        write(
            data / "spk2utt", "".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items()))
        )
        dirs[name] = data

    def kaldi_id(rel: str) -> str:
        speaker, session, utt = rel.removesuffix(".wav").split("/")
        return f"{speaker}-{session}-{utt}"

    trials = []
    for line in source.trials.read_text().splitlines():
        label, enroll, test = line.split()
        target = "target" if label == "1" else "nontarget"
        trials.append(f"{kaldi_id(enroll)} {kaldi_id(test)} {target}\n")
    write(dirs["test"] / "trials", "".join(trials))
    return dirs["train"], dirs["test"]
