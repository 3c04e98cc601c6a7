"""`eval.py` / `gru-jax`: evaluate a checkpoint, enrol / verify / identify speakers, export vectors.

The work is in `evaluation`, `enrollment` and `export`; this module parses arguments, prints and
maps outcomes to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gru_jax.cli.common import EXIT_USER_ERROR, guarded, setup_logging, use_every_cpu_core
from gru_jax.core.config import ConfigError
from gru_jax.core.rundir import RunDir

if TYPE_CHECKING:  # JAX is imported only once a command runs, so --help stays instant
    from gru_jax.infer.model import EmbeddingModel

COMMANDS = ("evaluate", "enroll", "verify", "identify", "embed")
EXIT_OK, EXIT_REJECTED = 0, 1
DISCOVERED_LISTS = {
    "trials": "trials.txt",
    "enroll_list": "enroll_list.txt",
    "test_list": "test_list.txt",
}

_DESCRIPTION = """\
Evaluate a trained GRU speaker-embedding checkpoint and use it.

commands (evaluate is the default: `%(prog)s --checkpoint RUN ...` means
`%(prog)s evaluate --checkpoint RUN ...`):
  evaluate   EER / minDCF / closed-set identification; results.json, DET and score plots
  enroll     add a speaker's audio to a speaker database (an .npz file, updated atomically)
  verify     is this audio the claimed speaker? (score and accept/reject)
  identify   which enrolled speakers sound most like this audio?
  embed      write embeddings of a corpus or audio files to .npz and/or Kaldi ark/scp

`%(prog)s COMMAND --help` describes each command.
"""

_EPILOG = """\
exit codes: 0 success (verify: accepted), 1 verify: rejected, 2 usage or input error
(message on stderr), 130 interrupted.

examples:
  %(prog)s --checkpoint runs/demo --data data/demo
  %(prog)s --checkpoint runs/vox --data VoxCeleb1 --trials veri_test2.txt --asnorm 300
  %(prog)s enroll --checkpoint runs/demo --db speakers.npz --speaker alice a1.wav a2.wav
  %(prog)s verify --checkpoint runs/demo --db speakers.npz --speaker alice test.wav
  %(prog)s identify --checkpoint runs/demo --db speakers.npz test.wav --top 5
  %(prog)s embed --checkpoint runs/demo --data data/demo --out emb.npz --ark emb.ark
"""


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN",
        help="training run directory (holds checkpoints/)",
    )
    sub.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    sub.add_argument(
        "--best", action="store_true", help="use the checkpoint with the best validation EER"
    )
    sub.add_argument("--no-progress", action="store_true")
    sub.add_argument("-v", "--verbose", action="store_true")


def _database(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--db", required=True, type=Path, help="speaker database file (.npz)")


def _feature_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--store-dir",
        help="feature store directory (default: the feature cache, "
        "$GRU_JAX_CACHE or ~/.cache/gru_jax, keyed by data, utterances and config)",
    )
    sub.add_argument(
        "--workers", type=int, help="feature-extraction processes (default: all cores)"
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = top.add_subparsers(dest="command", metavar="COMMAND")

    ev = subs.add_parser(
        "evaluate",
        help="verification and identification metrics (default command)",
        description="Score a VoxCeleb-style trial list (`label enroll test`, paths relative to "
        "--data or --data/wav) and/or closed-set identification lists (`speaker path` lines). "
        "Without --trials/--enroll-list/--test-list, trials.txt, enroll_list.txt and "
        "test_list.txt are looked up in --data (the synthetic demo corpus has them). Writes "
        "results.json, det.png, scores.png, scores.txt and embeddings.npz to --out and prints "
        "the results.",
    )
    _common(ev)
    ev.add_argument("--data", required=True, help="audio root the lists are relative to")
    ev.add_argument("--trials", help="trial list: `1|0 enroll/path.wav test/path.wav` lines")
    ev.add_argument("--enroll-list", help="identification enrolment list: `speaker path` lines")
    ev.add_argument("--test-list", help="identification test list: `speaker path` lines")
    ev.add_argument(
        "--asnorm",
        type=int,
        default=0,
        metavar="N",
        help="also score with AS-norm, top-N cohort of training speakers (e.g. 300)",
    )
    ev.add_argument(
        "--cohort-store",
        help="feature store for the AS-norm cohort (default: the "
        "training store recorded in the checkpoint)",
    )
    ev.add_argument(
        "--far",
        type=float,
        help="calibrate the decision threshold at this false "
        "accept rate (e.g. 0.01) instead of at the EER",
    )
    ev.add_argument(
        "--out",
        help="output directory (default: RUN/eval, where verify finds the calibrated threshold)",
    )
    _feature_options(ev)

    en = subs.add_parser(
        "enroll",
        help="add a speaker's audio to a speaker database",
        description="Embed the audio files and add them to the speaker (new or "
        "already enrolled: re-enrolling adds utterances). The database is "
        "created if missing and replaced atomically.",
    )
    _common(en)
    _database(en)
    en.add_argument("--speaker", required=True, help="speaker id (no whitespace)")
    en.add_argument("audio", nargs="+", help="audio files of the speaker")

    ve = subs.add_parser(
        "verify",
        help="accept or reject a claimed identity",
        description="Score the audio against the claimed speaker's enrolment "
        "and accept when the score reaches the threshold: --threshold, else the "
        "calibrated one of RUN/eval/results.json (same checkpoint step), else "
        "the one stored in the database. Exit 0 accepted, 1 rejected.",
    )
    _common(ve)
    _database(ve)
    ve.add_argument("--speaker", required=True, help="claimed speaker id")
    ve.add_argument("audio", help="audio file to verify")
    ve.add_argument("--threshold", type=float, help="decision threshold on the cosine score")

    idf = subs.add_parser(
        "identify",
        help="rank the enrolled speakers for audio",
        description="Print the best-scoring enrolled speakers for each file.",
    )
    _common(idf)
    _database(idf)
    idf.add_argument("audio", nargs="+", help="audio file(s)")
    idf.add_argument("--top", type=int, default=5, metavar="K", help="speakers shown (default 5)")

    em = subs.add_parser(
        "embed",
        help="export embeddings (.npz, Kaldi ark/scp)",
        description="Embed every utterance of a corpus (any layout train.py "
        "reads; bad audio is skipped and counted) or the given audio files. "
        ".npz: `ids` and `embeddings` (float32), loadable with "
        "allow_pickle=False. Kaldi: binary float vectors in --ark, indexed by "
        "the .scp beside it.",
    )
    _common(em)
    em.add_argument("audio", nargs="*", help="audio files (instead of --data)")
    em.add_argument("--data", help="corpus directory or CSV manifest")
    em.add_argument("--list", dest="list_file", help="speaker list for --data (`speaker path`)")
    em.add_argument("--split", help="CSV manifests: embed only the rows of this split")
    em.add_argument("--out", help="output .npz")
    em.add_argument("--ark", help="output Kaldi ark (the scp is written beside it)")
    em.add_argument(
        "--speaker-level",
        action="store_true",
        help="write one vector per speaker (mean of its L2-normalised utterance "
        "vectors, e.g. for speaker adaptation in ASR) instead of per utterance",
    )
    _feature_options(em)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    if not argv:
        top.print_help(sys.stderr)
        return EXIT_USER_ERROR
    if argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["evaluate", *argv]
    args = top.parse_args(argv)
    setup_logging(args.verbose)
    use_every_cpu_core()
    handlers = {
        "evaluate": _evaluate,
        "enroll": _enroll,
        "verify": _verify,
        "identify": _identify,
        "embed": _embed,
    }
    return guarded(lambda: handlers[args.command](args))


def _model(args: argparse.Namespace) -> EmbeddingModel:
    from gru_jax.infer.model import EmbeddingModel

    return EmbeddingModel.load(args.checkpoint, step=args.step, best=args.best)


def _discover_lists(args: argparse.Namespace) -> None:
    """Fill in the demo corpus's lists when none was given (in --data or, for DIR/wav, DIR)."""
    if args.trials or args.enroll_list or args.test_list:
        return
    data = Path(args.data)
    for folder in (data, data.parent) if data.name == "wav" else (data,):
        found = {
            key: folder / name
            for key, name in DISCOVERED_LISTS.items()
            if (folder / name).is_file()
        }
        if found:
            for key, path in found.items():
                setattr(args, key, str(path))
            logging.getLogger("eval").info("using %s", ", ".join(map(str, found.values())))
            return


def _evaluate(args: argparse.Namespace) -> int:
    from gru_jax.eval.evaluation import evaluate, format_report

    _discover_lists(args)
    results = evaluate(
        args.checkpoint,
        args.data,
        trials=args.trials,
        enroll_list=args.enroll_list,
        test_list=args.test_list,
        out_dir=args.out,
        asnorm_top_n=args.asnorm,
        far=args.far,
        step=args.step,
        best=args.best,
        store_dir=args.store_dir,
        cohort_store=args.cohort_store,
        workers=args.workers,
        progress=not args.no_progress,
    )
    out = Path(args.out) if args.out else RunDir(results["checkpoint"]["run_dir"]).eval
    print(format_report(results))
    print(f"\nresults.json, plots (det*.png, scores*.png), scores*.txt, embeddings.npz: {out}")
    return EXIT_OK


def _enroll(args: argparse.Namespace) -> int:
    from gru_jax.eval.database import enroll, open_database

    db = open_database(args.db, _model(args), create=True)
    added_before = db.count(args.speaker) if args.speaker in db.speakers else 0
    total = enroll(db, args.speaker, args.audio)
    print(
        f"enrolled {args.speaker}: {total - added_before} utterance(s) added, {total} in "
        f"total; {args.db} holds {len(db)} speaker(s)"
    )
    if db.threshold is None:
        print(
            "note: no calibrated threshold is known yet; evaluate the checkpoint on a trial "
            "list before verify, or give verify --threshold"
        )
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from gru_jax.eval.database import claim_score, no_threshold_message, open_database

    db = open_database(args.db, _model(args), threshold=args.threshold)
    score = claim_score(db, args.audio, args.speaker)
    if db.threshold is None:
        print(f"{args.speaker}  score {score:.4f}")
        print(f"error: {no_threshold_message(db.model)}", file=sys.stderr)
        return EXIT_USER_ERROR
    accepted = score >= db.threshold
    print(
        f"{args.speaker}  score {score:.4f}  threshold {db.threshold:.4f} "
        f"({db.threshold_source})  {'ACCEPT' if accepted else 'REJECT'}"
    )
    return EXIT_OK if accepted else EXIT_REJECTED


def _identify(args: argparse.Namespace) -> int:
    from gru_jax.eval.database import identify, open_database
    from gru_jax.eval.reports import format_table

    db = open_database(args.db, _model(args))
    for audio in args.audio:
        ranked = identify(db, audio, args.top)
        rows = [
            {"rank": r, "speaker": s, "score": score}
            for r, (s, score) in enumerate(ranked, start=1)
        ]
        print(f"{audio}\n{format_table(rows, ['rank', 'speaker', 'score'])}\n")
    return EXIT_OK


def _embed(args: argparse.Namespace) -> int:
    from gru_jax.data.corpora import read_corpus, utt_id_from_relpath
    from gru_jax.infer.export import save_kaldi, save_npz, speaker_vectors
    from gru_jax.infer.model import default_store_dir, embed_utterances

    if not args.out and not args.ark:
        raise ConfigError("nothing to write: give --out FILE.npz and/or --ark FILE.ark")
    if bool(args.data) == bool(args.audio):
        raise ConfigError("give either --data (a corpus) or audio files, not both or neither")
    if args.speaker_level and args.audio:
        raise ConfigError("--speaker-level needs a corpus (--data) that says who is speaking")
    model = _model(args)
    skipped: dict[str, int] = {}
    if args.data:
        utterances = read_corpus(args.data, args.list_file, split=args.split)
        corpus = embed_utterances(
            model,
            utterances,
            args.store_dir or default_store_dir(args.data, utterances, model.features),
            workers=args.workers,
            progress=not args.no_progress,
        )
        ids, vectors, speakers, skipped = (
            corpus.ids,
            corpus.vectors,
            corpus.speakers,
            corpus.skipped,
        )
    else:
        ids = [utt_id_from_relpath(a) for a in args.audio]
        vectors, speakers = model.embed_files(args.audio), None
    extra = {} if speakers is None else {"speakers": speakers}
    level = "utterance"
    if args.speaker_level:
        ids, vectors, counts = speaker_vectors(vectors, speakers)
        extra, level = {"counts": counts}, "speaker"
    written = []
    if args.out:
        save_npz(args.out, ids, vectors, **extra)
        written.append(args.out)
    if args.ark:
        written += [args.ark, str(save_kaldi(args.ark, ids, vectors))]
    note = f"; skipped {sum(skipped.values())} ({skipped})" if skipped else ""
    print(
        f"wrote {len(ids)} {level} embeddings (dim {vectors.shape[1]}) to "
        f"{', '.join(written)}{note}"
    )
    return EXIT_OK
