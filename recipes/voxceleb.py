"""VoxCeleb: train on VoxCeleb2 dev (the .m4a files as downloaded), test on VoxCeleb1-O/E/H.

    python -m recipes.voxceleb --vox2-dev /data/voxceleb2/dev/aac --vox1 /data/voxceleb1

The cleaned trial lists (``veri_test2.txt``, ``list_test_all2.txt``, ``list_test_hard2.txt``) are
looked for in the VoxCeleb1 folder, or given with ``--trials``. VoxCeleb1-O needs only VoxCeleb1's
test speakers; E and H need all of VoxCeleb1 (dev and test under one ``wav/``): a list found in the
folder whose files are not all there is skipped with a warning, a list given explicitly is an error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gru_jax.data.corpora import audio_root, find_audio, read_voxceleb_trials
from gru_jax.data.corpora.voxceleb import looks_like_voxceleb
from recipes import _common
from recipes._common import Plan, RecipeError, TestSet

log = logging.getLogger("recipes.voxceleb")

# The cleaned lists (VoxCeleb's errata removed a few mislabelled trials), in the order reported.
TRIAL_LISTS = {
    "veri_test2.txt": "VoxCeleb1-O (cleaned)",
    "list_test_all2.txt": "VoxCeleb1-E (cleaned)",
    "list_test_hard2.txt": "VoxCeleb1-H (cleaned)",
}


def parser() -> argparse.ArgumentParser:
    p = _common.parser("voxceleb", __doc__ or "", preset="voxceleb")
    p.add_argument(
        "--vox2-dev",
        required=True,
        type=Path,
        help="VoxCeleb2 dev: the folder of speaker folders (dev/aac) or one holding wav/ or aac/",
    )
    p.add_argument(
        "--vox1", required=True, type=Path, help="VoxCeleb1: the folder holding wav/ (and lists)"
    )
    p.add_argument(
        "--trials",
        action="append",
        type=Path,
        default=[],
        help="a trial list to test on (repeatable; default: the cleaned O/E/H lists found in --vox1)",
    )
    p.add_argument("--train-list", type=Path, help="train on the files of this list only")
    return p


def training_root(path: Path) -> Path:
    """The VoxCeleb2 dev folder as downloaded (``dev/aac``) or any folder above it."""
    for candidate in (path, path / "aac", path / "dev" / "aac", path / "dev"):
        if candidate.is_dir() and looks_like_voxceleb(candidate):
            return candidate
    raise RecipeError(
        f"{path}: no VoxCeleb layout (<speaker>/<session>/<utt>.m4a or wav/...) here or in "
        "its aac/, dev/aac/ or dev/ folder"
    )


def missing_files(root: Path, trials: Path) -> list[str]:
    """Utterance ids of a trial list without audio under `root`."""
    ids = {i for t in read_voxceleb_trials(trials) for i in (t.enroll, t.test)}
    return sorted(i for i in ids if find_audio(root, i) is None)


def find_test_sets(vox1: Path, explicit: list[Path]) -> list[TestSet]:
    """The trial lists to evaluate, each checked against the audio before anything is trained."""
    root = audio_root(vox1)
    lists = explicit or [vox1 / name for name in TRIAL_LISTS if (vox1 / name).is_file()]
    if not lists:
        raise RecipeError(
            f"no trial list in {vox1} ({', '.join(TRIAL_LISTS)}); download one or give --trials"
        )
    sets = []
    for trials in lists:
        missing = missing_files(root, trials)
        if missing:
            message = (
                f"{trials}: {len(missing)} listed utterance(s) have no audio under {root} "
                f"(first: {missing[0]})"
            )
            if explicit:
                raise RecipeError(message)
            log.warning("%s; skipping this list (E and H need all of VoxCeleb1)", message)
            continue
        name = TRIAL_LISTS.get(trials.name, f"VoxCeleb1 {trials.stem}")
        sets.append(TestSet(name, trials.name, vox1, trials=trials))
    if not sets:
        raise RecipeError(f"no trial list found in {vox1} has all its audio under {root}")
    return sets


def plan(args: argparse.Namespace) -> Plan:
    return Plan(
        recipe="voxceleb",
        dataset="VoxCeleb2 dev",
        train_data=training_root(args.vox2_dev),
        train_list=args.train_list,
        test_sets=find_test_sets(args.vox1, args.trials),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return _common.main_guard(lambda: _common.run(plan(args), args))


if __name__ == "__main__":
    sys.exit(main())
