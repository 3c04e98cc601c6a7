"""`gru-jax stream` and `gru-jax export`: live embeddings from audio as it arrives, and a model
file that serves embeddings without gru_jax."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gru_jax.core.config import ConfigError

PCM_SCALE = 32768.0  # int16 full scale


def add_parsers(subs: argparse._SubParsersAction, common) -> None:
    st = subs.add_parser(
        "stream",
        help="running verification / identification as audio arrives",
        description="Embed audio as it arrives, a chunk at a time, and print after every chunk the "
        "running score against an enrolled speaker (--speaker) or the running top speakers "
        "(--top), with the processing time of the chunk. SOURCE is an audio file (read in "
        "chunks) or '-' for raw 16-bit little-endian mono PCM on standard input at --rate.",
    )
    common(st)
    st.add_argument("source", help="audio file, or - for raw s16le PCM on stdin")
    st.add_argument("--db", type=Path, help="speaker database (.npz) to score against")
    st.add_argument("--speaker", help="claimed speaker: print the running verification score")
    st.add_argument("--top", type=int, default=3, metavar="K", help="running top-K (default 3)")
    st.add_argument("--chunk-ms", type=float, default=100.0, help="chunk length (default 100)")
    st.add_argument("--rate", type=int, default=16000, help="stdin PCM sample rate")
    st.add_argument("--out", type=Path, help="write the final embedding here (.npy)")

    ex = subs.add_parser(
        "export",
        help="write a model file that serves embeddings without gru_jax",
        description="Export the checkpoint's embedding function (features -> embedding, any "
        "batch and length) and its streaming step (audio chunks -> running embedding) with "
        "jax.export, weights included, to one file that loads with jax alone.",
    )
    common(ex)
    ex.add_argument("--out", required=True, type=Path, help="output file (e.g. model.jaxexport)")
    ex.add_argument(
        "--platforms", default="cpu", help="comma list of cpu, cuda, tpu (default: cpu)"
    )
    ex.add_argument("--max-chunk-ms", type=float, default=500.0, help="streaming chunk limit")


def _file_chunks(path: str, rate: int, chunk: int) -> Iterator[np.ndarray]:
    from gru_jax.data.audio import load_audio

    wave = load_audio(path, rate)  # checked, mono, resampled: a stream of this file
    for start in range(0, len(wave), chunk):
        yield wave[start : start + chunk]


def _stdin_chunks(chunk: int) -> Iterator[np.ndarray]:
    stream = sys.stdin.buffer
    while True:
        data = stream.read(2 * chunk)
        if not data:
            return
        usable = len(data) - len(data) % 2
        yield np.frombuffer(data[:usable], "<i2").astype(np.float32) / PCM_SCALE


def _scorer(args: argparse.Namespace, model):
    """A function embedding -> text for the running line, and the final verdict's threshold."""
    if args.db is None:
        if args.speaker:
            raise ConfigError("--speaker needs --db (the speaker database to score against)")
        return lambda emb: f"|e| {np.linalg.norm(emb):.3f}", None
    from gru_jax.eval.database import open_database
    from gru_jax.nn.functional import l2_normalize

    db = open_database(args.db, model)
    if not db.speakers:
        raise ConfigError(f"{args.db} has no enrolled speakers")
    means = np.asarray(l2_normalize(db.means()))
    if args.speaker:
        index = db.index_of(args.speaker)

        def verify(emb: np.ndarray) -> str:
            score = float(means[index] @ np.asarray(l2_normalize(emb)))
            if db.threshold is None:
                return f"{args.speaker} {score:.4f}"
            verdict = "ACCEPT" if score >= db.threshold else "reject"
            return f"{args.speaker} {score:.4f} {verdict}"

        return verify, db.threshold

    def identify(emb: np.ndarray) -> str:
        scores = means @ np.asarray(l2_normalize(emb))
        best = np.argsort(-scores, kind="stable")[: args.top]
        return "  ".join(f"{db.speakers[i]} {scores[i]:.3f}" for i in best)

    return identify, None


def run_stream(args: argparse.Namespace, model) -> int:
    from gru_jax.infer.streaming import StreamingEmbedder

    embedder = StreamingEmbedder(model, n_streams=1, max_chunk_s=max(0.5, args.chunk_ms / 1e3))
    rate = embedder.sample_rate
    chunk = max(1, round(args.chunk_ms / 1e3 * rate))
    if args.source == "-":
        if args.rate != rate:
            raise ConfigError(f"--rate {args.rate}: the model takes {rate} Hz PCM")
        chunks = _stdin_chunks(chunk)
    else:
        chunks = _file_chunks(args.source, rate, chunk)
    describe, _ = _scorer(args, model)
    embedder.open("live")
    latencies = []
    update = None
    for samples in chunks:
        start = time.perf_counter()
        update = embedder.push({"live": samples}, rate)["live"]
        latencies.append(time.perf_counter() - start)
        text = describe(update.embedding) if update.embedding is not None else "(no speech yet)"
        print(
            f"{update.seconds:7.2f} s  {update.n_frames:5d} frames  {text}  "
            f"[{1e3 * latencies[-1]:.1f} ms]",
            flush=True,
        )
    final = embedder.close("live")
    if update is None or final is None:
        raise ConfigError(f"{args.source}: no audio with speech was received")
    if args.out:
        np.save(args.out, final)
    steady = latencies[1:] or latencies  # the first chunk includes compiling the step
    print(
        f"final after {update.seconds:.2f} s: {describe(final)}; per chunk "
        f"{1e3 * float(np.median(steady)):.1f} ms median ({args.chunk_ms:g} ms of audio each)"
    )
    return 0


def run_export(args: argparse.Namespace, model) -> int:
    from gru_jax.infer.artifact import write_artifact

    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    meta = write_artifact(model, args.out, platforms, args.max_chunk_ms / 1e3)
    print(
        f"wrote {args.out}: embed (features [b, t, {meta['n_features']}] -> [b, "
        f"{meta['embedding_dim']}]) and the streaming step (audio chunks of up to "
        f"{meta['max_chunk_samples']} samples at {meta['sample_rate']} Hz) for "
        f"{', '.join(meta['platforms'])}"
    )
    return 0
