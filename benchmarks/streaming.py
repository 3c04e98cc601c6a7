"""Latency and throughput of the streaming embedder: one jitted step per chunk for all streams.

    python -m benchmarks.streaming [--model demo|voxceleb] [--chunk-ms 100] [--streams 1,8,64]

For each number of concurrent streams, every stream receives a chunk per step; the step's
median wall time is the latency a live caller sees per chunk, and `streams x chunk length /
latency` is how many real-time streams one device keeps up with (`realtime_streams`). The model
has random weights of the preset's shape (speed does not depend on the weights). JSON on stdout
(and in --json), a table on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from benchmarks._common import emit, machine_info, print_table, summarize
from gru_jax.infer.model import EmbeddingModel
from gru_jax.infer.streaming import StreamingEmbedder
from gru_jax.train.presets import PRESETS


def random_model(preset: str) -> EmbeddingModel:
    cfg = PRESETS[preset]()
    features = dataclasses.replace(cfg.data.features, cmn="running")
    model = dataclasses.replace(cfg.model, bidirectional=False)
    return EmbeddingModel.untrained(features, model)


def measure(model: EmbeddingModel, n_streams: int, chunk_s: float, steps: int) -> dict:
    embedder = StreamingEmbedder(model, n_streams=n_streams, max_chunk_s=max(chunk_s, 0.5))
    rate = embedder.sample_rate
    n = round(chunk_s * rate)
    rng = np.random.default_rng(0)
    for s in range(n_streams):
        embedder.open(s)
    chunk = lambda: {s: (0.1 * rng.standard_normal(n)).astype(np.float32) for s in range(n_streams)}
    start = time.perf_counter()
    embedder.push(chunk(), rate)  # compiles the step
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        embedder.push(chunk(), rate)  # returns host embeddings: the step has finished
        times.append(time.perf_counter() - start)
    stats = summarize(times)
    latency = stats["ms_median"] / 1e3
    return {
        "streams": n_streams,
        "chunk_ms": 1e3 * chunk_s,
        **stats,
        "compile_s": compile_s,
        "realtime_streams": n_streams * chunk_s / latency,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--streams", default="1,8,64", help="comma list of stream counts")
    parser.add_argument("--steps", type=int, default=20, help="timed chunks per setting")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON result here")
    args = parser.parse_args(argv)
    model = random_model(args.model)
    rows = [
        measure(model, int(n), args.chunk_ms / 1e3, args.steps)
        for n in args.streams.split(",")
        if n.strip()
    ]
    print_table(rows, ["streams", "chunk_ms", "ms_median", "ms_q25", "ms_q75", "realtime_streams"])
    emit(
        {
            "benchmark": "streaming",
            "model": args.model,
            "model_config": dataclasses.asdict(model.encoder.model),
            "device": str(jax.devices()[0].device_kind),
            "backend": jax.default_backend(),
            "machine": machine_info(),
            "results": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
