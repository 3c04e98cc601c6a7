"""CN-Celeb: train on CN-Celeb2 and CN-Celeb1 dev, test on CN-Celeb1 eval.

    python -m recipes.cnceleb --cnceleb1 /data/CN-Celeb_flac --cnceleb2 /data/CN-Celeb2_flac

CN-Celeb1's eval/lists become a trial list (each speaker's concatenated enrolment file against
each test file: Kaldi's and WeSpeaker's "concat" trials, scored with cosine and AS-norm) and
enrolment/test lists (the separate enrolment utterances of enroll.map, averaged per speaker:
WeSpeaker's "avg" scoring, the "speaker means" column, with closed-set identification). Without
--cnceleb2 the model trains on CN-Celeb1 dev alone (800 speakers, as Kaldi's cnceleb/v1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gru_jax.data.corpora import read_cnceleb
from gru_jax.data.corpora.cnceleb import read_cnceleb_eval, write_eval_lists
from recipes import _common
from recipes._common import Plan, RecipeError, TestSet

log = logging.getLogger("recipes.cnceleb")


def parser() -> argparse.ArgumentParser:
    p = _common.parser("cnceleb", __doc__ or "", preset="cnceleb")
    p.add_argument(
        "--cnceleb1", required=True, type=Path, help="CN-Celeb1 (CN-Celeb_flac: data/, dev/, eval/)"
    )
    p.add_argument("--cnceleb2", type=Path, help="CN-Celeb2 (CN-Celeb2_flac: data/, spk.lst)")
    p.add_argument(
        "--enrolment",
        choices=("auto", "map", "concat"),
        default="auto",
        help="enrolment of the speaker-mean lists: enroll.map's utterances (map), the "
        "concatenated files (concat), or map when there is one (auto, the default)",
    )
    return p


def plan(args: argparse.Namespace) -> Plan:
    out = _common.run_dir(args, "cnceleb")
    train = read_cnceleb(args.cnceleb1)
    names = ["CN-Celeb1 dev"]
    if args.cnceleb2 is not None:
        train += read_cnceleb(args.cnceleb2)
        names.insert(0, "CN-Celeb2")
    else:
        log.warning("no --cnceleb2: training on CN-Celeb1 dev alone")
    tested = {u.speaker for u in read_cnceleb_eval(args.cnceleb1, args.enrolment).test}
    shared = sorted(tested & {u.speaker for u in train})
    if shared:
        raise RecipeError(f"evaluation speaker(s) {', '.join(shared[:5])} are also trained on")
    lists = write_eval_lists(args.cnceleb1, out / "lists" / "cnceleb1-eval", args.enrolment)
    test = TestSet(
        "CN-Celeb1 eval",
        f"trials.lst ({lists.n_trials:,} trials); {lists.enroll_source}",
        args.cnceleb1,
        lists.trials,
        lists.enroll_list,
        lists.test_list,
    )
    return Plan(
        recipe="cnceleb",
        dataset=" + ".join(names),
        train_data=_common.cached_manifest(train, "cnceleb-train"),
        test_sets=[test],
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return _common.main_guard(lambda: _common.run(plan(args), args))


if __name__ == "__main__":
    sys.exit(main())
