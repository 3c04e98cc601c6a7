"""Features of many files in parallel worker processes, with every skipped file counted by reason.

Workers are spawned (never forked: the parent may hold JAX and its threads) and exit when their
parent dies (`core.processes`), so a killed run leaves no extraction processes behind.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from gru_jax.core.processes import worker_pool
from gru_jax.data.audio import AudioError, load_audio
from gru_jax.data.augmentation import AugmentConfig, Copy, augment
from gru_jax.data.features import FeatureConfig, compute_features

logger = logging.getLogger(__name__)

CHUNK_SIZE = 16  # items per worker task: large enough that IPC is small next to the work

# (path, start, end), or with the augmented copy of that audio to extract instead (None: as is)
Item = tuple[str, float | None, float | None] | tuple[str, float | None, float | None, Copy | None]


@dataclasses.dataclass
class ExtractionReport:
    """What a feature-extraction run did; pass one to `extract_many` to collect it.

    `realtime_factor` is audio seconds per wall second, i.e. how many times faster than real time
    (100 means an hour of audio took 36 s). Wall time spans the whole iteration, including the
    time the consumer spends between items.
    """

    n_ok: int = 0
    skipped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    skipped_items: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def hours(self) -> float:
        return self.audio_seconds / 3600.0

    @property
    def realtime_factor(self) -> float:
        """Audio seconds / wall seconds; 0.0 before anything was timed."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"extracted {self.n_ok} utterance(s), {self.hours:.3f} h of audio "
            f"in {self.wall_seconds:.1f} s ({self.realtime_factor:.1f}x real time)",
            f"skipped {self.n_skipped} utterance(s)",
        ]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.skipped.items())]
        return "\n".join(lines)


class _Outcome(NamedTuple):
    """One item's result from a worker: features and audio seconds, or why it was skipped."""

    feats: np.ndarray | None
    audio_seconds: float = 0.0
    skip: tuple[str, str, str] | None = None  # (path, reason, detail)


def _extract_chunk(
    chunk: list[Item], cfg: FeatureConfig, augment_cfg: AugmentConfig | None
) -> list[_Outcome]:
    """Worker task. Only `AudioError` becomes a skip; anything else is a bug and propagates."""
    outcomes = []
    for path, start, end, *rest in chunk:
        copy = rest[0] if rest else None
        try:
            wave = load_audio(path, cfg.sample_rate, start, end)
            if copy is not None:
                if augment_cfg is None:
                    raise ValueError(f"{copy} is an augmented copy: pass its augment_cfg")
                wave = augment(wave, copy, augment_cfg, cfg.sample_rate)
            feats = compute_features(wave, cfg, source=os.fspath(path))
            outcomes.append(_Outcome(feats, wave.shape[0] / cfg.sample_rate))
        except AudioError as e:
            outcomes.append(_Outcome(None, skip=(e.path, e.reason, e.detail)))
    return outcomes


def extract_many(
    items: Sequence[Item],
    cfg: FeatureConfig,
    workers: int | None = None,
    progress: bool = True,
    report: ExtractionReport | None = None,
    augment_cfg: AugmentConfig | None = None,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield `(index, features)` for `items` of `(path, start, end)`, in input order.

    An item `(path, start, end, copy)` yields the features of that augmented copy of the audio,
    made as `augment_cfg` says. Unusable files yield `(index, None)` and are counted in `report`
    by reason. `workers=None` uses every CPU; `workers <= 1` runs in this process.
    """
    report = report if report is not None else ExtractionReport()
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    chunk_size = max(1, min(CHUNK_SIZE, math.ceil(len(items) / max(n_workers, 1))))
    chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
    n_workers = min(n_workers, len(chunks))
    started = time.perf_counter()
    bar = tqdm(total=len(items), unit="utt", desc="features", disable=not progress)
    try:
        if n_workers <= 1:
            results = (_extract_chunk(chunk, cfg, augment_cfg) for chunk in chunks)
        else:
            results = _pooled_results(chunks, cfg, augment_cfg, n_workers)
        index = 0
        for outcomes in results:
            for outcome in outcomes:
                _record(report, outcome)
                yield index, outcome.feats
                index += 1
            bar.update(len(outcomes))
            bar.set_postfix(skipped=report.n_skipped, refresh=False)
    finally:
        bar.close()
        report.wall_seconds += time.perf_counter() - started
    logger.info("%s", report.summary())


def _record(report: ExtractionReport, outcome: _Outcome) -> None:
    if outcome.skip is None:
        report.n_ok += 1
        report.audio_seconds += outcome.audio_seconds
        return
    path, reason, detail = outcome.skip
    report.skipped[reason] += 1
    report.skipped_items.append(outcome.skip)
    logger.warning("skipped %s: %s: %s", path, reason, detail)


def _pooled_results(
    chunks: list[list[Item]],
    cfg: FeatureConfig,
    augment_cfg: AugmentConfig | None,
    n_workers: int,
) -> Iterator[list[_Outcome]]:
    """Chunk results in order, with a bounded number of chunks in flight to cap memory."""
    max_in_flight = 4 * n_workers
    pool = worker_pool(n_workers)
    try:
        upcoming = iter(chunks)
        pending = collections.deque(
            pool.submit(_extract_chunk, chunk, cfg, augment_cfg)
            for chunk in itertools.islice(upcoming, max_in_flight)
        )
        while pending:
            outcomes = pending.popleft().result()
            next_chunk = next(upcoming, None)
            if next_chunk is not None:
                pending.append(pool.submit(_extract_chunk, next_chunk, cfg, augment_cfg))
            yield outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
