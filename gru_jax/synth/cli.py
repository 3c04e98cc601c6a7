"""`gru-jax-synth` and `python -m gru_jax.synth`: a corpus from the shell, outside the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gru_jax.synth.corpus import DEFAULT_SNR_DB, CorpusInfo, make_corpus


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gru-jax-synth",
        description="Write a synthetic speaker corpus (VoxCeleb layout, 16-bit WAV).",
    )
    parser.add_argument(
        "out", type=Path, help="output directory (new, empty, or a previous corpus)"
    )
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=12, help="utterances per speaker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-speakers", type=int, default=None, help="default: 25%%, >= 2")
    parser.add_argument("--sessions", type=int, default=3, help="recording sessions per speaker")
    parser.add_argument(
        "--train-sessions",
        type=int,
        default=None,
        help="recording sessions per training speaker (default: --sessions)",
    )
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--no-noise", action="store_true", help="no additive background noise")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _summary(info: CorpusInfo) -> str:
    action = "re-used" if info.reused else "wrote"
    return (
        f"{action} {info.n_files} utterances of {info.n_speakers} speakers "
        f"({info.n_train_speakers} train, {info.n_test_speakers} test, {info.n_trials} trials) "
        f"at {info.sample_rate} Hz in {info.root}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 2, with the reason on stderr and no traceback, for arguments that cannot work."""
    args = _parser().parse_args(argv)
    try:
        info = make_corpus(
            args.out,
            args.speakers,
            args.utterances,
            args.seed,
            n_test_speakers=args.test_speakers,
            sample_rate=args.sample_rate,
            snr_db=None if args.no_noise else DEFAULT_SNR_DB,
            n_sessions=args.sessions,
            n_train_sessions=args.train_sessions,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as error:
        print(f"gru-jax-synth: error: {error}", file=sys.stderr)
        return 2
    print(_summary(info))
    return 0
