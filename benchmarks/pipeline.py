"""Host input pipeline: feature extraction speed, store reads, training batches vs the train step,
and the padding that length bucketing saves.

    python -m benchmarks.pipeline [--speakers 40 --utterances 10] [--config default]

Everything runs on a synthetic corpus (`gru_jax.synth.make_corpus`) in a temporary directory:
1. feature extraction realtime factor (audio seconds per wall second), 1 process and all cores;
2. feature-store reads: random `frames`-long crops per second and MB/s delivered (float32);
3. training input pipeline (`CropBatches` + `Prefetcher`, as the trainer uses them) batches/s,
   against the train step's own steps/s for the same config, and the steps/s of the step fed by
   the pipeline (what `train.py` gets) against the bare step (fed the same batch again);
4. padded frames with and without `bucket_batches` on VoxCeleb-like durations: log-normal,
   median 7 s, sigma 0.45, clipped to 4-20 s.
JSON on stdout (and in --json PATH), a table on stderr. Needs the audio stack (librosa).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks._common import emit, machine_info, print_table
from benchmarks.gru_throughput import PRESETS, BenchConfig, JaxImpl, make_data
from gru_jax.data.batching import CropBatches, Prefetcher, bucket_batches, padded_length
from gru_jax.data.corpora import Utterance, read_corpus
from gru_jax.data.extraction import ExtractionReport, extract_many
from gru_jax.data.features import FeatureConfig
from gru_jax.data.store import Store, build_store
from gru_jax.synth import make_corpus

FRAMES_PER_S = 100  # 10 ms hop
DURATION_MEDIAN_S, DURATION_SIGMA, DURATION_RANGE_S = 7.0, 0.45, (4.0, 20.0)
PREFETCH_DEPTH, PREFETCH_WORKERS = 4, 2  # as the trainer


def measure_extraction(utterances: list[Utterance], cfg: FeatureConfig, workers: int) -> dict:
    """Realtime factor of `extract_many` over the corpus (worker start-up included)."""
    report = ExtractionReport()
    items = [(u.path, u.start, u.end) for u in utterances]
    for _ in extract_many(items, cfg, workers=workers, progress=False, report=report):
        pass
    return {
        "workers": workers,
        "utterances": report.n_ok,
        "audio_s": report.audio_seconds,
        "wall_s": report.wall_seconds,
        "realtime_factor": report.realtime_factor,
    }


def measure_store_reads(store: Store, frames: int, n_reads: int, seed: int) -> dict:
    """Random crops from the memory-mapped store (the page cache is warm: it was just written)."""
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(store.lengths >= frames)
    picks = rng.choice(eligible, n_reads)
    starts = rng.integers(0, store.lengths[picks] - frames + 1)
    start = time.perf_counter()
    for i, s in zip(picks, starts, strict=True):
        store.read(int(i), int(s), frames)
    seconds = time.perf_counter() - start
    delivered = n_reads * frames * store.n_features * 4
    return {
        "crop_frames": frames,
        "crops_per_s": n_reads / seconds,
        "mb_per_s": delivered / seconds / 1e6,
        "stored_dtype": str(store.manifest.get("dtype")),
    }


def rate(items: Iterable[Any], consume: Callable[[Any], None] = lambda _: None) -> float:
    """Items per second while iterating `items` and calling `consume` on each."""
    start = time.perf_counter()
    count = 0
    for item in items:
        consume(item)
        count += 1
    return count / (time.perf_counter() - start)


def measure_input_pipeline(
    store: Store, bench: BenchConfig, n_batches: int, repeats: int
) -> dict[str, Any]:
    """Batches/s of the pipeline alone, the bare train step, and the step fed by the pipeline.

    The three are timed in turn, `repeats` times (A B C A B C ...); rates are medians and the
    ratios medians of per-round ratios, which cancels most of a shared machine's drift.
    """
    _, labels = np.unique(store.speakers, return_inverse=True)
    stream = CropBatches(
        store, np.arange(len(store)), labels, bench.batch, crop_frames=bench.frames, seed=0
    )
    impl = JaxImpl("gru_jax", bench, make_data(bench))
    compile_s = impl.prepare("train")["compile_s"]
    impl.run("train")

    def prefetched(first: int, transform: Callable | None = None) -> Prefetcher:
        return Prefetcher(
            stream.batch,
            first,
            first + n_batches,
            depth=PREFETCH_DEPTH,
            workers=PREFETCH_WORKERS,
            transform=transform,
        )

    rates: dict[str, list[float]] = {"pipeline": [], "bare_step": [], "fed_step": []}
    for r in range(repeats):
        first = r * n_batches
        with prefetched(first) as batches:
            rates["pipeline"].append(rate(batches))
        rates["bare_step"].append(rate(range(n_batches), lambda _: impl.run("train")))
        with prefetched(first, impl.put_batch) as batches:
            rates["fed_step"].append(rate(batches, impl.train_on))
    medians = {f"{name}_per_s": float(np.median(v)) for name, v in rates.items()}
    paired = lambda a, b: float(np.median(np.divide(rates[a], rates[b])))
    return {
        "batch": bench.batch,
        "crop_frames": bench.frames,
        "n_batches": n_batches,
        "repeats": repeats,
        "step_compile_s": compile_s,
        **medians,
        "pipeline_over_step": paired("pipeline", "bare_step"),
        "fed_over_bare_step": paired("fed_step", "bare_step"),
        "all_rates_per_s": rates,
    }


def voxceleb_like_frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seconds = rng.lognormal(np.log(DURATION_MEDIAN_S), DURATION_SIGMA, n)
    return np.round(np.clip(seconds, *DURATION_RANGE_S) * FRAMES_PER_S).astype(np.int64)


def padding_of(batches: list[np.ndarray], frames: np.ndarray, pad: Callable[[int], int]) -> float:
    """Share of the computed frames that are padding, each batch padded to pad(its longest)."""
    total = sum(len(b) * pad(int(frames[b].max())) for b in batches)
    return 1.0 - float(frames.sum()) / total


def measure_padding(n: int, max_frames: int, batch: int, seed: int) -> dict[str, Any]:
    """Whole-utterance batching: random batches of `batch` rows vs `bucket_batches`."""
    frames = voxceleb_like_frames(n, seed)
    order = np.random.default_rng(seed + 1).permutation(n)
    unsorted = np.array_split(order, -(-n // batch))
    buckets = bucket_batches(frames, max_frames)
    return {
        "utterances": n,
        "duration_s": {
            "median": float(np.median(frames)) / FRAMES_PER_S,
            "mean": float(frames.mean()) / FRAMES_PER_S,
            "p5_p95": [float(np.percentile(frames, q)) / FRAMES_PER_S for q in (5, 95)],
        },
        "random_batches": {
            "rows": batch,
            "padding_fraction": padding_of(unsorted, frames, lambda t: t),
        },
        "bucketed": {
            "max_frames": max_frames,
            "batches": len(buckets),
            "shapes": len({padded_length(int(frames[b].max())) for b in buckets}),
            "padding_fraction": padding_of(buckets, frames, padded_length),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        choices=sorted(PRESETS),
        default="default",
        help="gru_throughput preset for the train step (and n_mels)",
    )
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--utterances", type=int, default=10, help="per speaker")
    parser.add_argument(
        "--seconds",
        type=float,
        nargs=2,
        default=(4.0, 8.0),
        metavar=("MIN", "MAX"),
        help="synthetic utterance durations",
    )
    parser.add_argument("--reads", type=int, default=5000, help="random crops read from the store")
    parser.add_argument("--batches", type=int, default=5, help="batches per pipeline timing")
    parser.add_argument("--repeats", type=int, default=8, help="rounds of the pipeline timings")
    parser.add_argument("--workdir", help="where to put the corpus and store (default: a temp dir)")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON result here")
    args = parser.parse_args(argv)
    bench = PRESETS[args.config]
    features = FeatureConfig(n_mels=bench.n_features)
    machine_before = machine_info()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        print("[pipeline] writing the synthetic corpus ...", file=sys.stderr)
        info = make_corpus(
            root / "corpus",
            args.speakers,
            args.utterances,
            seed=0,
            duration_s=tuple(args.seconds),
            progress=False,
        )
        utterances = read_corpus(info.wav_dir)
        print(
            f"[pipeline] extracting features of {len(utterances)} utterances ...", file=sys.stderr
        )
        extraction = [
            measure_extraction(utterances, features, workers)
            for workers in sorted({1, os.cpu_count() or 1})
        ]
        store = build_store(utterances, root / "store", features, workers=None, progress=False)
        print("[pipeline] store reads, input pipeline, train step ...", file=sys.stderr)
        reads = measure_store_reads(store, bench.frames, args.reads, seed=0)
        pipeline = measure_input_pipeline(store, bench, args.batches, args.repeats)
    padding = measure_padding(20_000, max_frames=32_000, batch=32, seed=0)

    rows = [
        {
            "what": f"extraction, {e['workers']} process(es)",
            "value": e["realtime_factor"],
            "unit": "x real time",
        }
        for e in extraction
    ]
    rows += [
        {"what": "store reads", "value": reads["crops_per_s"], "unit": f"crops/s ({bench.frames})"},
        {"what": "store reads", "value": reads["mb_per_s"], "unit": "MB/s float32"},
        {"what": "input pipeline", "value": pipeline["pipeline_per_s"], "unit": "batches/s"},
        {"what": "bare train step", "value": pipeline["bare_step_per_s"], "unit": "steps/s"},
        {
            "what": "train step fed by pipeline",
            "value": pipeline["fed_step_per_s"],
            "unit": "steps/s",
        },
        {"what": "pipeline / step", "value": pipeline["pipeline_over_step"], "unit": "ratio"},
        {"what": "fed / bare step", "value": pipeline["fed_over_bare_step"], "unit": "ratio"},
        {
            "what": "padding, random batches",
            "value": padding["random_batches"]["padding_fraction"],
            "unit": "fraction",
        },
        {
            "what": "padding, bucketed",
            "value": padding["bucketed"]["padding_fraction"],
            "unit": "fraction",
        },
    ]
    print_table(rows, ["what", "value", "unit"])
    result = {
        "benchmark": "pipeline",
        "config_name": args.config,
        "train_config": {"batch": bench.batch, "frames": bench.frames, "n_mels": bench.n_features},
        "corpus": {
            "speakers": args.speakers,
            "utterances_per_speaker": args.utterances,
            "seconds": list(args.seconds),
            "files": len(utterances),
        },
        "jax_devices": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": machine_before,
        "load_avg_after": machine_info()["load_avg_1_5_15"],
        "extraction": extraction,
        "store_reads": reads,
        "input_pipeline": pipeline,
        "padding": padding,
        "targets": [
            {
                "target": "pipeline >= 3x step consumption",
                "got": pipeline["pipeline_over_step"],
                "met": pipeline["pipeline_over_step"] >= 3.0,
            },
            {
                "target": "fed step >= 0.9x bare step",
                "got": pipeline["fed_over_bare_step"],
                "met": pipeline["fed_over_bare_step"] >= 0.9,
            },
            {
                "target": "bucketed padding < 10%",
                "got": padding["bucketed"]["padding_fraction"],
                "met": padding["bucketed"]["padding_fraction"] < 0.10,
            },
        ],
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
