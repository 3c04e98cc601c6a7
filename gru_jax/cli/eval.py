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

from gru_jax.cli import stream as stream_cli
from gru_jax.cli.common import (
    EXIT_USER_ERROR,
    add_distributed_arguments,
    guarded,
    setup_logging,
    start_distributed,
    use_every_cpu_core,
    wants_distributed,
)
from gru_jax.core.config import ConfigError
from gru_jax.core.rundir import RunDir

if TYPE_CHECKING:  # JAX is imported only once a command runs, so --help stays instant
    from gru_jax.infer.model import EmbeddingModel

COMMANDS = ("evaluate", "enroll", "verify", "identify", "embed", "stream", "export")
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
  stream     running verification / identification of audio as it arrives (file or stdin)
  export     a model file that serves embeddings with jax alone (jax.export)

`%(prog)s COMMAND --help` describes each command.
"""

_EPILOG = """\
exit codes: 0 success (verify: accepted), 1 verify: rejected, 2 usage or input error
(message on stderr), 130 interrupted.

examples:
  %(prog)s --checkpoint runs/demo --data data/demo
  %(prog)s --checkpoint runs/vox --data VoxCeleb1 --trials veri_test2.txt --asnorm 300
  %(prog)s --checkpoint runs/demo --data data/demo --plda
  %(prog)s enroll --checkpoint runs/demo --db speakers.npz --speaker alice a1.wav a2.wav
  %(prog)s verify --checkpoint runs/demo --db speakers.npz --speaker alice test.wav
  %(prog)s identify --checkpoint runs/demo --db speakers.npz test.wav --top 5
  %(prog)s embed --checkpoint runs/demo --data data/demo --out emb.npz --ark emb.ark
  %(prog)s embed --checkpoint runs/demo --data data/demo --xvector-dir xvectors/
  %(prog)s stream --checkpoint runs/demo --db speakers.npz --speaker alice test.wav
  arecord -f S16_LE -r 16000 -c 1 | %(prog)s stream --checkpoint runs/demo --db speakers.npz -
  %(prog)s export --checkpoint runs/demo --out model.jaxexport --platforms cpu,cuda
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
    sub.add_argument(
        "--average-last",
        type=int,
        default=1,
        metavar="K",
        help="average the parameters of the K latest checkpoints up to --step (default: 1, "
        "none); the run must keep K (trainer.keep_checkpoints)",
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
        "--plda",
        type=int,
        nargs="?",
        const=0,
        metavar="DIM",
        help="also score with a PLDA backend fitted on the training speakers' embeddings, "
        "keeping DIM dimensions (default: all); it helps when the training speakers are many "
        "and from the test domain",
    )
    ev.add_argument(
        "--cohort-store",
        help="feature store of the training speakers for AS-norm's cohort and PLDA (default: "
        "the training store recorded in the checkpoint)",
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
    add_distributed_arguments(ev)

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
        "the .scp beside it. Kaldi tables (utt2spk, spk2utt, num_utts.ark) list the "
        "embedded utterances, sorted in byte order as Kaldi's scripts expect; they are "
        "never written into a Kaldi data dir (a directory with wav.scp or feats.scp).",
    )
    _common(em)
    em.add_argument("audio", nargs="*", help="audio files (instead of --data)")
    em.add_argument("--data", help="corpus directory or CSV manifest")
    em.add_argument("--list", dest="list_file", help="speaker list for --data (`speaker path`)")
    em.add_argument("--split", help="CSV manifests: embed only the rows of this split")
    em.add_argument(
        "--out", help="output .npz (with --data, utt2spk and spk2utt are written beside it)"
    )
    em.add_argument(
        "--ark",
        help="output Kaldi ark (the scp beside it; with --data, utt2spk and spk2utt too, and "
        "with --speaker-level num_utts.ark)",
    )
    em.add_argument(
        "--speaker-level",
        action="store_true",
        help="--out/--ark get one vector per speaker (mean of its L2-normalised utterance "
        "vectors, e.g. for speaker adaptation in ASR) instead of one per utterance",
    )
    em.add_argument(
        "--xvector-dir",
        metavar="DIR",
        help="with --data: write utterance and speaker vectors in one run, laid out like "
        "Kaldi's extract_xvectors.sh output: xvector.ark/scp, spk_xvector.ark/scp, utt2spk, "
        "spk2utt, num_utts.ark",
    )
    _feature_options(em)
    add_distributed_arguments(em)
    stream_cli.add_parsers(subs, _common)
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
    if hasattr(args, "distributed") and wants_distributed(args):
        start_distributed(args)  # evaluate and embed: every process embeds its part
    else:
        use_every_cpu_core()
    handlers = {
        "evaluate": _evaluate,
        "enroll": _enroll,
        "verify": _verify,
        "identify": _identify,
        "embed": _embed,
        "stream": lambda args: stream_cli.run_stream(args, _model(args)),
        "export": lambda args: stream_cli.run_export(args, _model(args)),
    }
    return guarded(lambda: handlers[args.command](args))


def _model(args: argparse.Namespace) -> EmbeddingModel:
    from gru_jax.infer.model import EmbeddingModel

    return EmbeddingModel.load(
        args.checkpoint, step=args.step, best=args.best, average_last=args.average_last
    )


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
        plda_dim=args.plda,
        step=args.step,
        best=args.best,
        average_last=args.average_last,
        store_dir=args.store_dir,
        cohort_store=args.cohort_store,
        workers=args.workers,
        progress=not args.no_progress,
    )
    from gru_jax.infer.distributed import is_main

    if not is_main():
        return EXIT_OK
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
    from gru_jax.infer.export import (
        kaldi_order,
        save_kaldi,
        save_npz,
        save_speaker_tables,
        save_xvector_dir,
        speaker_order_problem,
        speaker_vectors,
    )
    from gru_jax.infer.model import default_store_dir, embed_utterances

    if not (args.out or args.ark or args.xvector_dir):
        raise ConfigError(
            "nothing to write: give --out FILE.npz, --ark FILE.ark and/or --xvector-dir DIR"
        )
    if bool(args.data) == bool(args.audio):
        raise ConfigError("give either --data (a corpus) or audio files, not both or neither")
    if args.audio and (args.speaker_level or args.xvector_dir):
        raise ConfigError(
            "--speaker-level and --xvector-dir need a corpus (--data) that says who is speaking"
        )
    notes: list[str] = []
    if args.data:
        utterances = read_corpus(args.data, args.list_file, split=args.split)
        tables_dir = _embed_checks(
            args, [u.utt_id for u in utterances], [u.speaker for u in utterances], notes
        )
    else:
        tables_dir = _embed_checks(args, [utt_id_from_relpath(a) for a in args.audio], None, notes)
    model = _model(args)
    skipped: dict[str, int] = {}
    if args.data:
        corpus = embed_utterances(
            model,
            utterances,
            args.store_dir or default_store_dir(args.data, utterances, model.features),
            workers=args.workers,
            progress=not args.no_progress,
        )
        order = kaldi_order(corpus.ids)  # Kaldi's sort, whatever order the store keeps
        utt_ids, utt_vectors, speakers = (
            corpus.ids[order],
            corpus.vectors[order],
            corpus.speakers[order],
        )
        skipped = corpus.skipped
    else:
        utt_ids = [utt_id_from_relpath(a) for a in args.audio]
        utt_vectors, speakers = model.embed_files(args.audio), None
    from gru_jax.infer.distributed import is_main

    if not is_main():  # every process has the vectors; one writes them
        return EXIT_OK
    ids, vectors = utt_ids, utt_vectors
    extra = {} if speakers is None else {"speakers": speakers}
    level = "utterance"
    if args.speaker_level:
        ids, vectors, counts = speaker_vectors(utt_vectors, speakers)
        extra, level = {"counts": counts}, "speaker"
    lines, written = [], []
    if args.out:
        save_npz(args.out, ids, vectors, **extra)
        written.append(args.out)
    if args.ark:
        written += [args.ark, str(save_kaldi(args.ark, ids, vectors))]
    if written:
        lines.append(
            f"wrote {len(ids)} {level} embeddings (dim {vectors.shape[1]}) to {', '.join(written)}"
        )
    if tables_dir is not None:
        tables = save_speaker_tables(tables_dir, utt_ids, speakers, num_utts=args.speaker_level)
        lines.append(f"wrote {', '.join(p.name for p in tables)} to {tables_dir}")
    if args.xvector_dir:
        files = save_xvector_dir(args.xvector_dir, utt_ids, utt_vectors, speakers)
        n_speakers = len(set(speakers.tolist()))
        lines.append(
            f"wrote {len(utt_ids)} utterance and {n_speakers} speaker embeddings "
            f"(dim {utt_vectors.shape[1]}) to {args.xvector_dir}: "
            f"{', '.join(p.name for p in files)}"
        )
    if skipped:
        lines.append(f"skipped {sum(skipped.values())} utterances ({skipped})")
    if speakers is not None and (tables_dir is not None or args.xvector_dir):
        problem = speaker_order_problem(utt_ids, speakers)
        if problem:
            notes.append(problem)
    print("\n".join([*lines, *(f"note: {n}" for n in notes)]))
    return EXIT_OK


def _embed_checks(
    args: argparse.Namespace, utt_ids: list[str], speakers: list[str] | None, notes: list[str]
) -> Path | None:
    """Refuse what would fail or destroy something before the slow part (embedding) starts.

    Returns where utt2spk/spk2utt go beside --ark/--out, or None: no corpus, or they cannot be
    written there (the reason goes to `notes`; they are extras of --ark/--out, which still run).
    """
    from gru_jax.infer.export import XVECTOR_DIR_FILES, check_kaldi_keys

    def key_problem(*tables: tuple[list[str], str]) -> str | None:
        for keys, what in tables:
            try:
                check_kaldi_keys(keys, what)
            except ValueError as e:
                return str(e)
        return None

    utts = (utt_ids, "utterance ids")
    if args.ark and not args.speaker_level and (problem := key_problem(utts)):
        raise ConfigError(f"--ark: {problem}")
    if speakers is None:
        return None
    spks = (speakers, "speaker ids")
    if args.ark and args.speaker_level and (problem := key_problem(spks)):
        raise ConfigError(f"--ark: {problem}")
    tables_problem = key_problem(utts, spks)
    if args.xvector_dir:
        directory = Path(args.xvector_dir)
        if tables_problem:
            raise ConfigError(f"--xvector-dir: {tables_problem}")
        if _kaldi_data_dir(directory):
            raise ConfigError(
                f"--xvector-dir {directory} is a Kaldi data dir (it has wav.scp or feats.scp): "
                "its utt2spk and spk2utt would be replaced; choose another directory"
            )
        ours = {(directory / name).resolve() for name in XVECTOR_DIR_FILES}
        others = [args.out, args.ark, args.ark and str(Path(args.ark).with_suffix(".scp"))]
        clash = [path for path in others if path and Path(path).resolve() in ours]
        if clash:
            raise ConfigError(f"--xvector-dir writes {', '.join(clash)} itself; name another file")
    if not (args.ark or args.out):
        return None
    beside = Path(args.ark or args.out).parent
    if tables_problem:
        notes.append(f"utt2spk/spk2utt not written beside the vectors: {tables_problem}")
        return None
    if _kaldi_data_dir(beside):
        notes.append(
            f"utt2spk/spk2utt not written: {beside} is a Kaldi data dir (it has wav.scp or "
            "feats.scp), whose own would be replaced"
        )
        return None
    return beside


def _kaldi_data_dir(directory: Path) -> bool:
    return (directory / "wav.scp").is_file() or (directory / "feats.scp").is_file()
