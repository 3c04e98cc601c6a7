"""LibriSpeech: train on the speakers of its training splits, test on held-out speakers.

    python -m recipes.librispeech --root /data/LibriSpeech

Trains on whichever of train-clean-100, train-clean-360 and train-other-500 are under the root
(2,338 speakers with all three). LibriSpeech ships no speaker-verification lists, so for each
test split (test-clean and dev-clean by default: 40 speakers each, none of them in training)
verification trials and closed-set identification lists are drawn, deterministically, by
`gru_jax.data.corpora.testlists`, written into the run directory, then scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gru_jax.data.corpora import read_librispeech
from gru_jax.data.corpora.testlists import write_test_lists
from recipes import _common
from recipes._common import Plan, RecipeError, TestSet

TRAIN_SPLITS = ("train-clean-100", "train-clean-360", "train-other-500")
TEST_SPLITS = ("test-clean", "dev-clean")


def parser() -> argparse.ArgumentParser:
    p = _common.parser("librispeech", __doc__ or "", preset="librispeech")
    p.add_argument("--root", required=True, type=Path, help="the LibriSpeech folder of splits")
    p.add_argument(
        "--train-splits",
        default=",".join(TRAIN_SPLITS),
        help="comma-separated training splits; those missing are skipped (default: all three)",
    )
    p.add_argument(
        "--test-splits",
        default=",".join(TEST_SPLITS),
        help="comma-separated held-out splits to test on (default: %(default)s)",
    )
    return p


def _splits(root: Path, names: str, what: str) -> list[Path]:
    found = [root / n for n in names.split(",") if n and (root / n).is_dir()]
    if not found:
        raise RecipeError(f"{root}: none of the {what} splits {names} is there")
    return found


def plan(args: argparse.Namespace) -> Plan:
    out = _common.run_dir(args, "librispeech")
    train = [
        u
        for split in _splits(args.root, args.train_splits, "training")
        for u in read_librispeech(split)
    ]
    train_speakers = {u.speaker for u in train}
    tests = []
    for split in _splits(args.root, args.test_splits, "test"):
        utterances = read_librispeech(split)
        shared = sorted({u.speaker for u in utterances} & train_speakers)
        if shared:
            raise RecipeError(f"{split}: speaker(s) {', '.join(shared[:5])} are also trained on")
        lists = write_test_lists(utterances, split, out / "lists" / split.name)
        tests.append(
            TestSet(
                f"LibriSpeech {split.name}",
                f"drawn: {lists.n_trials:,} trials, {lists.n_speakers} speakers",
                split,
                lists.trials,
                lists.enroll_list,
                lists.test_list,
            )
        )
    names = ", ".join(sorted({Path(u.path).parents[2].name for u in train}))
    return Plan(
        recipe="librispeech",
        dataset=f"LibriSpeech {names}",
        train_data=_common.cached_manifest(train, "librispeech-train"),
        test_sets=tests,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return _common.main_guard(lambda: _common.run(plan(args), args))


if __name__ == "__main__":
    sys.exit(main())
