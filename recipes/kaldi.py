"""Any Kaldi data dir: train on one, optionally test on a second one.

    python -m recipes.kaldi --train data/train --test data/test [--trials data/test/trials]

The test dir's utterances are linked by id into the run directory (evaluation finds audio by
id under one root; the files stay where wav.scp says). Its trials are Kaldi's
``<enroll-utt> <test-utt> target|nontarget`` (default: the dir's ``trials`` file if any); without
one, trials are drawn from its speakers as for LibriSpeech. Enrolment and test lists for
identification are always drawn from its speakers. Test dirs with a segments file are refused:
evaluation reads whole files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gru_jax.data.corpora import read_kaldi_dir, read_kaldi_trials
from gru_jax.data.corpora.testlists import link_audio_tree, write_test_lists
from recipes import _common
from recipes._common import Plan, TestSet

log = logging.getLogger("recipes.kaldi")


def parser() -> argparse.ArgumentParser:
    p = _common.parser("kaldi", __doc__ or "", preset="voxceleb")
    p.add_argument("--train", required=True, type=Path, help="training data dir (wav.scp, utt2spk)")
    p.add_argument("--test", type=Path, help="test data dir (wav.scp, utt2spk)")
    p.add_argument(
        "--trials", type=Path, help="Kaldi trials of the test dir (default: its trials file)"
    )
    return p


def _speakers(data_dir: Path) -> set[str]:
    """The speakers of utt2spk, without reading (and checking) the whole data dir again:
    train.py does that."""
    lines = (data_dir / "utt2spk").read_text(encoding="utf-8").splitlines()
    return {fields[1] for fields in map(str.split, lines) if len(fields) == 2}


def plan(args: argparse.Namespace) -> Plan:
    out = _common.run_dir(args, "kaldi")
    tests = []
    if args.test is not None:
        utterances = read_kaldi_dir(args.test)
        trials_file = args.trials or (args.test / "trials")
        given = read_kaldi_trials(trials_file) if trials_file.is_file() else None
        audio = out / "lists" / "test-audio"
        linked = link_audio_tree(utterances, audio)
        lists = write_test_lists(linked, audio, out / "lists" / "test", trials=given)
        shared = {u.speaker for u in utterances} & _speakers(args.train)
        if shared:
            log.warning(
                "%d test speaker(s) are also in the training dir (verification numbers will "
                "flatter the model): %s",
                len(shared),
                ", ".join(sorted(shared)[:5]),
            )
        source = trials_file.name if given is not None else "drawn"
        tests.append(
            TestSet(
                f"Kaldi {args.test.name}",
                f"{source}: {lists.n_trials:,} trials, {lists.n_speakers} speakers",
                audio,
                lists.trials,
                lists.enroll_list,
                lists.test_list,
            )
        )
    return Plan(
        recipe="kaldi",
        dataset=f"Kaldi {args.train.name}",
        train_data=args.train,
        test_sets=tests,
    )


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.trials is not None and args.test is None:
        p.error("--trials needs --test, the data dir of its utterances")
    return _common.main_guard(lambda: _common.run(plan(args), args))


if __name__ == "__main__":
    sys.exit(main())
