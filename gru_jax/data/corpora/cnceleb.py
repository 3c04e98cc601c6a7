"""CN-Celeb 1 and 2: training speakers, and CN-Celeb1's evaluation lists in the formats `eval.py`
reads.

Layouts, as the archives unpack (release 2 is .flac; the first release's .wav reads the same,
since ids leave the extension out and lists written for one format find the other)::

    CN-Celeb_flac/                                  CN-Celeb2_flac/
      data/id00000/<genre>-<nn>-<nnn>.flac            data/id10000/<genre>-<nn>-<nnn>.flac
      dev/dev.lst         training speakers            spk.lst   its speakers
      eval/enroll/id00800-enroll.flac                 (training data only)
      eval/test/id00800-<genre>-<nn>-<nnn>.flac
      eval/lists/enroll.lst   id00800-enroll enroll/id00800-enroll.wav
      eval/lists/test.lst     test/id00800-singing-01-001.wav
      eval/lists/trials.lst   id00800-enroll test/id00800-singing-01-001.wav 1
      eval/lists/enroll.map   id00800-enroll id00800/singing-01-002.wav ... (optional)

Training reads the speakers a root names (``dev/dev.lst`` for CN-Celeb1, ``spk.lst`` for
CN-Celeb2, every speaker folder under ``data/`` when neither exists): ``data/`` also holds
CN-Celeb1's 200 evaluation speakers, which must never be trained on. The utt_id is
``<speaker>/<stem>`` (CN-Celeb1 and 2 speaker ids do not overlap, so both corpora can be one
training set) and the session the ``<genre>-<nn>`` of the file name.

Evaluation is CN-Celeb1's ``eval/``: each enrolled speaker has one file that concatenates its
enrolment speech (``eval/enroll``), and ``trials.lst`` scores every test utterance against every
enrolled speaker. `write_eval_lists` turns that into a VoxCeleb-style trial list (the enrolment
file against the test file; Kaldi's and WeSpeaker's "concat" scoring) and enrolment/test lists
for identification, whose speaker means are WeSpeaker's "avg" scoring when ``enroll.map`` names
the separate enrolment utterances. All paths are relative to the CN-Celeb1 root, which is what
`eval.py --data` takes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gru_jax.core.files import atomic_write
from gru_jax.data.corpora.base import (
    CorpusError,
    StrPath,
    Trial,
    Utterance,
    _audio_files_in,
    _finalize,
    _Found,
    _numbered_lines,
    _require_dir,
    _shown,
    utt_id_from_relpath,
)
from gru_jax.data.corpora.lists import ListedUtterance, find_audio

log = logging.getLogger(__name__)

SPEAKER_LISTS = ("dev/dev.lst", "spk.lst")  # CN-Celeb1's training speakers, CN-Celeb2's speakers
EVAL_LISTS = "eval/lists"
_SESSION = re.compile(r"^([^-]+-\d+)-\d+$")  # singing-01-001 -> singing-01
_ENROLL_SUFFIX = "-enroll"


def looks_like_cnceleb(root: Path) -> bool:
    """A ``data/`` folder beside one of the lists only CN-Celeb ships: a folder per speaker
    alone would otherwise read ``data``, ``dev`` and ``eval`` as three speakers."""
    if not (root / "data").is_dir():
        return False
    return any((root / name).is_file() for name in SPEAKER_LISTS) or (root / EVAL_LISTS).is_dir()


def training_speakers(root: StrPath) -> list[str]:
    """The speakers a root trains on, in list order (see the module docstring)."""
    root = Path(root)
    _require_dir(root / "data")
    for name in SPEAKER_LISTS:
        path = root / name
        if path.is_file():
            speakers = []
            for number, line in _numbered_lines(path):
                # dev.lst names speakers; a path in it (`id00000/x.flac`) names its speaker
                speaker = PurePosixPath(line.split()[0].replace("\\", "/")).parts[0]
                if not speaker.startswith("id"):
                    raise CorpusError(f"{path}:{number}: expected a speaker id (idNNNNN)")
                if speaker not in speakers:
                    speakers.append(speaker)
            if not speakers:
                raise CorpusError(f"{path}: no speakers listed")
            return speakers
    log.warning(
        "%s has neither %s: training on every speaker folder under data/",
        root,
        " nor ".join(SPEAKER_LISTS),
    )
    return [d.name for d in sorted((root / "data").iterdir()) if d.is_dir() and d.name[:1] != "."]


def _session(stem: str) -> str:
    match = _SESSION.match(stem)
    return match.group(1) if match else ""


def read_cnceleb(root: StrPath) -> list[Utterance]:
    """The training utterances of one CN-Celeb root (CN-Celeb1 dev speakers, or CN-Celeb2).

    A listed speaker without a folder (a partial download) is logged and left out, like a
    missing listed file; a root none of whose listed speakers exists is an error.
    """
    root = Path(root)
    speakers = training_speakers(root)
    found: list[_Found] = []
    absent = []
    for speaker in speakers:
        folder = root / "data" / speaker
        if not folder.is_dir():
            absent.append(speaker)
            continue
        for file in _audio_files_in(folder):
            utterance = Utterance(
                utt_id=f"{speaker}/{file.stem}",
                speaker=speaker,
                path=str(file),
                session=_session(file.stem),
            )
            found.append((utterance, str(file)))
    if absent:
        if len(absent) == len(speakers):
            raise CorpusError(
                f"none of the {len(speakers)} listed speakers has a folder in {root}/data"
            )
        log.warning(
            "%d of %d listed speaker(s) have no folder in %s/data and are left out: %s",
            len(absent),
            len(speakers),
            root,
            ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else ""),
        )
    return _finalize(found, f"under {root}/data for the speakers of {root}")


# --- evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CnCelebEval:
    """CN-Celeb1's evaluation with every id relative to the corpus root (`eval.py --data`)."""

    trials: list[Trial]  # enrolment file against test file, trials.lst order
    enroll: list[ListedUtterance]  # enrol.map's utterances, or each speaker's concatenation
    test: list[ListedUtterance]
    enroll_source: str  # "enroll.map" (separate utterances) or "enroll.lst" (concatenations)


def _speaker_of_enrolment(key: str, where: str) -> str:
    if not key.endswith(_ENROLL_SUFFIX):
        raise CorpusError(f"{where}: enrolment id {key!r} does not end in {_ENROLL_SUFFIX!r}")
    return key[: -len(_ENROLL_SUFFIX)]


def _eval_id(rel: str, where: str) -> str:
    """A list path (relative to ``eval/``) as an id relative to the corpus root."""
    posix = rel.replace("\\", "/")
    if posix.startswith("/") or ".." in PurePosixPath(posix).parts:
        raise CorpusError(f"{where}: path {rel!r} must be relative to the eval folder")
    return utt_id_from_relpath(f"eval/{posix}")


def _read_enroll_lst(path: Path) -> dict[str, tuple[str, str]]:
    """Enrolment id -> (utt id of its concatenated file, where)."""
    files: dict[str, tuple[str, str]] = {}
    for number, line in _numbered_lines(path):
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 2:
            raise CorpusError(f"{where}: expected 'id00800-enroll enroll/id00800-enroll.wav'")
        key, rel = fields
        _speaker_of_enrolment(key, where)
        if key in files:
            raise CorpusError(f"{where}: enrolment id {key!r} listed twice")
        files[key] = (_eval_id(rel, where), where)
    if not files:
        raise CorpusError(f"{path}: no enrolment files listed")
    return files


def _read_enroll_map(path: Path, enrolled: dict[str, tuple[str, str]]) -> list[ListedUtterance]:
    """The separate utterances each enrolment concatenates (paths relative to ``data/``)."""
    listed = []
    for number, line in _numbered_lines(path):
        where = f"{path}:{number}"
        key, *files = line.split()
        if not files:
            raise CorpusError(f"{where}: expected 'id00800-enroll id00800/<utt>.wav ...'")
        if key not in enrolled:
            raise CorpusError(f"{where}: {key!r} is not in enroll.lst")
        speaker = _speaker_of_enrolment(key, where)
        for rel in files:
            listed.append(ListedUtterance(utt_id_from_relpath(f"data/{rel}"), speaker, where))
    return listed


def _read_test_lst(path: Path) -> list[ListedUtterance]:
    listed = []
    for number, line in _numbered_lines(path):
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 1:
            raise CorpusError(f"{where}: expected one path ('test/id00800-singing-01-001.wav')")
        utt_id = _eval_id(fields[0], where)
        listed.append(ListedUtterance(utt_id, PurePosixPath(utt_id).name.split("-")[0], where))
    if not listed:
        raise CorpusError(f"{path}: no test files listed")
    return listed


def _read_trials_lst(path: Path, enrolled: dict[str, tuple[str, str]]) -> list[Trial]:
    trials = []
    for number, line in _numbered_lines(path):
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 3:
            raise CorpusError(f"{where}: expected 'id00800-enroll test/<utt>.wav 0|1'")
        key, rel, label = fields
        if label not in ("0", "1"):
            raise CorpusError(f"{where}: label must be 0 or 1, got {label!r}")
        if key not in enrolled:
            raise CorpusError(f"{where}: {key!r} is not in enroll.lst")
        trials.append(Trial(int(label), enrolled[key][0], _eval_id(rel, where)))
    if not trials:
        raise CorpusError(f"{path}: no trials")
    return trials


def read_cnceleb_eval(root: StrPath, enrolment: str = "auto") -> CnCelebEval:
    """CN-Celeb1's evaluation lists. `enrolment`: "map" (the separate utterances of
    ``enroll.map``), "concat" (each speaker's concatenated file), or "auto" (map if present)."""
    root = Path(root)
    lists = root / EVAL_LISTS
    _require_dir(lists)
    if enrolment not in ("auto", "map", "concat"):
        raise ValueError(f"enrolment must be auto, map or concat, not {enrolment!r}")
    enrolled = _read_enroll_lst(lists / "enroll.lst")
    trials = _read_trials_lst(lists / "trials.lst", enrolled)
    test = _read_test_lst(lists / "test.lst")
    enroll_map = lists / "enroll.map"
    if enrolment == "map" or (enrolment == "auto" and enroll_map.is_file()):
        enroll, source = _read_enroll_map(enroll_map, enrolled), "enroll.map"
    else:
        enroll = [
            ListedUtterance(utt_id, _speaker_of_enrolment(key, where), where)
            for key, (utt_id, where) in enrolled.items()
        ]
        source = "enroll.lst"
    return CnCelebEval(trials, enroll, test, source)


@dataclass(frozen=True)
class EvalLists:
    """Lists written by `write_eval_lists`, all relative to `data` (give it to `eval.py --data`)."""

    data: Path
    trials: Path
    enroll_list: Path
    test_list: Path
    n_trials: int
    n_enrolled_speakers: int
    n_test: int
    enroll_source: str


def write_eval_lists(root: StrPath, out_dir: StrPath, enrolment: str = "auto") -> EvalLists:
    """Write ``trials.txt`` (``label enroll test``), ``enroll_list.txt`` and ``test_list.txt``
    (``speaker path``) for CN-Celeb1's evaluation, paths relative to `root`.

    Every referenced file is checked first, all missing ones in one error, because a partly
    unpacked eval folder would otherwise surface only after a model was trained.
    """
    root, out = Path(root), Path(out_dir)
    evaluation = read_cnceleb_eval(root, enrolment)
    ids = {t.enroll for t in evaluation.trials} | {t.test for t in evaluation.trials}
    ids |= {u.utt_id for u in [*evaluation.enroll, *evaluation.test]}
    files = {utt_id: find_audio(root, utt_id) for utt_id in sorted(ids)}
    missing = [f"{root}/{utt_id}.*" for utt_id, file in files.items() if file is None]
    if missing:
        raise CorpusError(
            f"{len(missing)} of {len(files)} files of CN-Celeb1's evaluation lists are not under "
            f"{root}: {_shown([(path, path) for path in missing])}"
        )

    def rel(utt_id: str) -> str:
        return Path(files[utt_id]).relative_to(root).as_posix()

    out.mkdir(parents=True, exist_ok=True)
    paths = EvalLists(
        data=root,
        trials=out / "trials.txt",
        enroll_list=out / "enroll_list.txt",
        test_list=out / "test_list.txt",
        n_trials=len(evaluation.trials),
        n_enrolled_speakers=len({u.speaker for u in evaluation.enroll}),
        n_test=len(evaluation.test),
        enroll_source=evaluation.enroll_source,
    )
    atomic_write(
        paths.trials,
        "".join(f"{t.label} {rel(t.enroll)} {rel(t.test)}\n" for t in evaluation.trials),
    )
    for path, listed in (
        (paths.enroll_list, evaluation.enroll),
        (paths.test_list, evaluation.test),
    ):
        atomic_write(path, "".join(f"{u.speaker} {rel(u.utt_id)}\n" for u in listed))
    return paths
