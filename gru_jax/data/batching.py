"""Host-side batches: random training crops, length-bucketed whole utterances, background prefetch.

Everything here is NumPy and threads; the trainer turns a `Batch` into sharded device arrays in one
place. Two rules shape the design:

- A training batch is a pure function of `(seed, step)`, so the stream position saved in a
  checkpoint is just the step number: `CropBatches.iterate(k)` after a restore yields exactly the
  batches an uninterrupted run would have seen from step k on.
- Jitted code compiles once per input shape, so crops have one fixed length and whole-utterance
  batches are padded to a small fixed set of lengths (`padded_length`).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

T = TypeVar("T")
U = TypeVar("U")

# Independent random streams of one seed: an epoch's permutation and a step's own draws.
_PERMUTATION_STREAM = 0
_STEP_STREAM = 1

# Padded lengths are multiples of BUCKET_QUANTUM frames on a geometric grid with
# BUCKET_STEPS_PER_OCTAVE sizes per doubling: at most ~8% padding per row, ~19 shapes for 4-20 s.
BUCKET_QUANTUM = 16
BUCKET_STEPS_PER_OCTAVE = 8


class FeatureSource(Protocol):
    """What batching needs from a feature store (`gru_jax.store.Store` is one)."""

    @property
    def lengths(self) -> np.ndarray: ...  # [N] int64 frames per utterance

    @property
    def speakers(self) -> np.ndarray: ...  # [N] str

    @property
    def n_features(self) -> int: ...

    def __len__(self) -> int: ...

    def read(self, i: int, start: int = 0, n: int | None = None) -> np.ndarray: ...


@dataclass
class Batch:
    feats: np.ndarray  # [B, T, F] float32, zero past each row's length
    lengths: np.ndarray  # [B] int32 valid frames
    labels: np.ndarray  # [B] int32 class index, -1 where unknown
    index: np.ndarray  # [B] int64 store index, -1 for filler rows


def _empty_batch(n_rows: int, n_frames: int, n_features: int) -> Batch:
    return Batch(
        feats=np.zeros((n_rows, n_frames, n_features), np.float32),
        lengths=np.zeros(n_rows, np.int32),
        labels=np.full(n_rows, -1, np.int32),
        index=np.full(n_rows, -1, np.int64),
    )


class CropBatches:
    """Training stream of random fixed-length crops; batch k is a pure function of (seed, k).

    Plain mode: epoch e visits a permutation of the usable utterances (the remainder that does not
    fill a batch is dropped). Speaker-balanced mode (`speakers_per_batch=N`): every batch holds N
    distinct speakers with M = batch_size / N utterances each, speaker-major (rows [s*M, (s+1)*M)
    are speaker s), as GE2E needs; an epoch is then nominal (as many rows as utterances).

    Crops are `crop_frames` long; a shorter utterance is used whole, zero padded, and `lengths` says
    so. `normalise` (e.g. `utterance_cmvn`) is applied to each crop's frames, so that a crop is
    normalised with its own statistics, as a test utterance of its length will be. Utterances
    shorter than `min_frames` (default 1) are dropped up front and counted in `n_excluded`.
    `labels[j]` is the class of `indices[j]`. `part` (a corpus split over processes, see
    `PartitionedBatches`) gives each part its own random streams.
    """

    def __init__(
        self,
        source: FeatureSource,
        indices: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        crop_frames: int = 200,
        min_frames: int | None = None,
        seed: int = 0,
        speakers_per_batch: int | None = None,
        part: int | None = None,
        normalise: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        indices = np.asarray(indices, np.int64)
        labels = np.asarray(labels, np.int32)
        if indices.shape != labels.shape or indices.ndim != 1:
            raise ValueError(f"indices {indices.shape} and labels {labels.shape} must be equal 1-D")
        if batch_size < 1 or crop_frames < 1:
            raise ValueError(
                f"batch_size ({batch_size}) and crop_frames ({crop_frames}) must be >= 1"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, not {seed}")
        min_frames = 1 if min_frames is None else min_frames
        keep = source.lengths[indices] >= min_frames
        self.source = source
        self.indices = indices[keep]
        self.labels = labels[keep]
        self.n_excluded = int(np.count_nonzero(~keep))
        self.batch_size = batch_size
        self.crop_frames = crop_frames
        self.seed = seed
        self._keys = (seed,) if part is None else (seed, part)
        self.speakers_per_batch = speakers_per_batch
        self.normalise = normalise
        self._lengths = source.lengths[self.indices]
        self._permutation_cache: tuple[int, np.ndarray] | None = None
        if len(self.indices) < batch_size:
            raise ValueError(
                f"{len(self.indices)} usable utterances ({self.n_excluded} shorter than "
                f"min_frames={min_frames} excluded) cannot fill one batch of {batch_size}"
            )
        if speakers_per_batch is not None:
            self._init_speakers(np.asarray(source.speakers)[self.indices], speakers_per_batch)

    def _init_speakers(self, speakers: np.ndarray, n_speakers: int) -> None:
        if n_speakers < 1 or self.batch_size % n_speakers:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of speakers_per_batch {n_speakers}"
            )
        _, speaker_of = np.unique(speakers, return_inverse=True)
        counts = np.bincount(speaker_of)
        if len(counts) < n_speakers:
            raise ValueError(
                f"speakers_per_batch={n_speakers} but only {len(counts)} speakers have usable "
                "utterances"
            )
        # Positions into self.indices grouped by speaker: speaker s owns
        # _by_speaker[_speaker_start[s] : _speaker_start[s] + counts[s]].
        self._by_speaker = np.argsort(speaker_of, kind="stable")
        self._speaker_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._speaker_count = counts

    @property
    def steps_per_epoch(self) -> int:
        return len(self.indices) // self.batch_size

    def _permutation(self, epoch: int) -> np.ndarray:
        cached = self._permutation_cache  # one read: safe with several prefetch threads
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng([*self._keys, _PERMUTATION_STREAM, epoch])
            cached = (epoch, rng.permutation(len(self.indices)))
            self._permutation_cache = cached
        return cached[1]

    def _plain_rows(self, step: int) -> np.ndarray:
        epoch, offset = divmod(step, self.steps_per_epoch)
        return self._permutation(epoch)[offset * self.batch_size : (offset + 1) * self.batch_size]

    def _balanced_rows(self, n_speakers: int, rng: np.random.Generator) -> np.ndarray:
        per_speaker = self.batch_size // n_speakers
        chosen = rng.choice(len(self._speaker_count), n_speakers, replace=False)
        rows = []
        for s in chosen:
            count = self._speaker_count[s]
            picks = rng.choice(count, per_speaker, replace=bool(count < per_speaker))
            rows.append(self._by_speaker[self._speaker_start[s] + picks])
        return np.concatenate(rows)

    def batch(self, step: int) -> Batch:
        """Batch `step` (a pure function of the seed, the part and `step`)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, not {step}")
        rng = np.random.default_rng([*self._keys, _STEP_STREAM, step])
        if self.speakers_per_batch is None:
            rows = self._plain_rows(step)
        else:
            rows = self._balanced_rows(self.speakers_per_batch, rng)
        lengths = self._lengths[rows]
        crop = np.minimum(lengths, self.crop_frames)
        starts = rng.integers(0, lengths - crop + 1)
        out = _empty_batch(len(rows), self.crop_frames, self.source.n_features)
        out.lengths[:] = crop
        out.labels[:] = self.labels[rows]
        out.index[:] = self.indices[rows]
        for r, (i, start, n) in enumerate(zip(out.index, starts, crop, strict=True)):
            frames = self.source.read(int(i), int(start), int(n))
            out.feats[r, :n] = frames if self.normalise is None else self.normalise(frames)
        return out

    def iterate(self, start_step: int = 0) -> Iterator[Batch]:
        """Endless stream from `start_step`: resuming at a checkpoint's step continues exactly."""
        return map(self.batch, itertools.count(start_step))

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate(0)


class PartitionedBatches:
    """The training stream of a corpus split into parts, one per process of a multi-host run.

    Each part is read from its own feature store (a process extracts only its part, so no shared
    filesystem is needed) and fills its own block of rows of every global batch, in part order,
    which is the order of the processes' rows in the global batch. This object holds the parts
    local to one process (or all of them, on one process with several devices: the same global
    batches) and `batch(step)` returns their rows, concatenated.
    """

    def __init__(self, parts: list[CropBatches]):
        if not parts:
            raise ValueError("no data parts")
        self.parts = parts

    def batch(self, step: int) -> Batch:
        batches = [part.batch(step) for part in self.parts]
        if len(batches) == 1:
            return batches[0]
        return Batch(
            feats=np.concatenate([b.feats for b in batches]),
            lengths=np.concatenate([b.lengths for b in batches]),
            labels=np.concatenate([b.labels for b in batches]),
            index=np.concatenate([b.index for b in batches]),
        )


def padded_length(n_frames: int) -> int:
    """Smallest bucket length >= n_frames: a fixed grid, so jitted code sees few distinct shapes."""
    q = BUCKET_QUANTUM
    k = max(0, math.ceil(BUCKET_STEPS_PER_OCTAVE * math.log2(max(n_frames, 1) / q)))
    while True:  # the loop only guards against log2 rounding at grid points
        size = q * math.ceil(2 ** (k / BUCKET_STEPS_PER_OCTAVE))
        if size >= n_frames:
            return size
        k += 1


def bucket_batches(
    lengths: np.ndarray, max_frames: int, max_batch: int | None = None, multiple_of: int = 1
) -> list[np.ndarray]:
    """Whole-utterance batches of indices into `lengths`, longest first, each utterance once.

    Each batch is padded to `padded_length(longest)` = T and holds as many rows as fit in
    `max_frames` (and `max_batch`), a multiple of `multiple_of` (the device count): every batch but
    the last has shape (rows(T), T), so the number of compiled shapes is the number of grid lengths
    used plus one. The last batch is filled up to a multiple of `multiple_of` with index -1.
    """
    lengths = np.asarray(lengths)
    cap = max_frames if max_batch is None else max_batch
    if multiple_of < 1 or cap < multiple_of:
        raise ValueError(
            f"max_batch ({max_batch}) and max_frames ({max_frames}) must be >= multiple_of "
            f"({multiple_of}) >= 1"
        )
    order = np.argsort(lengths, kind="stable")[::-1]
    batches = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        pad_to = padded_length(longest)
        rows = min(cap, max_frames // pad_to) // multiple_of * multiple_of
        if rows == 0:
            raise ValueError(
                f"utterance {order[start]} has {longest} frames (padded to {pad_to}); "
                f"{multiple_of} row(s) of it exceed max_frames={max_frames}"
            )
        members = order[start : start + rows]
        start += rows
        filler = -len(members) % multiple_of
        batches.append(np.concatenate([members, np.full(filler, -1)]).astype(np.int64))
    return batches


def pad_batch(
    source: FeatureSource, indices: np.ndarray, pad_to: int, labels: np.ndarray | None = None
) -> Batch:
    """Whole utterances zero padded to `pad_to` frames; index -1 is an empty filler row.

    `labels`, when given, is aligned with `indices` (filler rows get -1 whatever it says).
    """
    indices = np.asarray(indices, np.int64)
    if labels is not None and np.shape(labels) != indices.shape:
        raise ValueError(f"labels {np.shape(labels)} must match indices {indices.shape}")
    out = _empty_batch(len(indices), pad_to, source.n_features)
    out.index[:] = indices
    real = indices >= 0
    if labels is not None:
        out.labels[real] = np.asarray(labels)[real]
    for r in np.flatnonzero(real):
        i = int(indices[r])
        n = int(source.lengths[i])
        if n > pad_to:
            raise ValueError(f"utterance {i} has {n} frames, more than pad_to={pad_to}")
        out.feats[r, :n] = source.read(i)
        out.lengths[r] = n
    return out


def padding_fraction(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    """Share of the frames in `bucket_batches` output that are padding or filler rows."""
    lengths = np.asarray(lengths)
    total = valid = 0
    for b in batches:
        real = lengths[b[b >= 0]]
        total += len(b) * padded_length(int(real.max()))
        valid += int(real.sum())
    return 1.0 - valid / total if total else 0.0


class Prefetcher(Generic[T, U]):
    """Background threads that keep `depth` batches ready so devices never wait on the host.

    Yields `transform(make(k))` for k = start, start + 1, ... (< stop) in order, whichever worker
    finishes first. `transform` (e.g. `jax.device_put` with shardings) runs in the worker, off the
    training loop. An exception in a worker is re-raised by the consumer at that step. Use as a
    context manager or call `close()`; threads are daemons, so a forgotten one never blocks exit.
    """

    def __init__(
        self,
        make: Callable[[int], T],
        start: int,
        stop: int | None,
        depth: int = 4,
        workers: int = 2,
        transform: Callable[[T], U] | None = None,
    ):
        if depth < 1 or workers < 1:
            raise ValueError(f"depth ({depth}) and workers ({workers}) must be >= 1")
        self._make = make
        self._transform = transform
        self._stop = stop
        self._depth = depth
        self._next_claim = start  # next step a worker will produce
        self._next_yield = start  # next step the consumer receives
        self._ready: dict[int, tuple[bool, Any]] = {}  # step -> (ok, item or exception)
        self._closed = False
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"prefetch-{w}", daemon=True)
            for w in range(workers)
        ]
        for t in self._threads:
            t.start()

    def _exhausted(self, step: int) -> bool:
        return self._stop is not None and step >= self._stop

    def _claim(self) -> int | None:
        """Next step to produce, waiting while `depth` are ahead; None when nothing is left."""
        with self._cond:
            while not self._closed and not self._exhausted(self._next_claim):
                if self._next_claim < self._next_yield + self._depth:
                    self._next_claim += 1
                    return self._next_claim - 1
                self._cond.wait()
            return None

    def _work(self) -> None:
        while (step := self._claim()) is not None:
            try:
                item: Any = self._make(step)
                if self._transform is not None:
                    item = self._transform(item)
                result = (True, item)
            except BaseException as err:  # handed to the consumer, which re-raises it
                result = (False, err)
            with self._cond:
                if not self._closed:
                    self._ready[step] = result
                    self._cond.notify_all()

    def __iter__(self) -> Prefetcher[T, U]:
        return self

    def __next__(self) -> U:
        with self._cond:
            if self._exhausted(self._next_yield):
                raise StopIteration
            while self._next_yield not in self._ready and not self._closed:
                self._cond.wait()
            if self._closed:
                raise StopIteration
            ok, item = self._ready.pop(self._next_yield)
            self._next_yield += 1
            self._cond.notify_all()
        if not ok:
            self.close()
            raise item
        return item

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers; one busy in `make` finishes that call (waited for up to timeout)."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def __enter__(self) -> Prefetcher[T, U]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
