import itertools
import math
import threading
import time

import numpy as np
import pytest

from gru_jax.data.batching import (
    Batch,
    CropBatches,
    PartitionedBatches,
    Prefetcher,
    bucket_batches,
    pad_batch,
    padded_length,
    padding_fraction,
)

N_FEATURES = 4


class FakeStore:
    """In-memory FeatureSource whose frames say where they came from: column 0 is the utterance
    index, column 1 the frame number, the rest random."""

    def __init__(self, lengths, speakers, seed=0):
        self.lengths = np.asarray(lengths, np.int64)
        self.speakers = np.asarray(speakers, dtype=str)
        self.n_features = N_FEATURES
        rng = np.random.default_rng(seed)
        self._feats = []
        for i, n in enumerate(self.lengths):
            f = rng.standard_normal((n, N_FEATURES)).astype(np.float32) + 1.0
            f[:, 0] = i
            f[:, 1] = np.arange(n)
            self._feats.append(f)

    def __len__(self):
        return len(self.lengths)

    def read(self, i, start=0, n=None):
        end = self.lengths[i] if n is None else start + n
        if not 0 <= start <= end <= self.lengths[i]:
            raise IndexError(f"frames [{start}, {end}) outside utterance {i}")
        return self._feats[i][start:end].copy()


def make_store(n=60, n_speakers=6, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 80, n)
    speakers = [f"spk{i % n_speakers}" for i in range(n)]
    return FakeStore(lengths, speakers, seed)


def speaker_labels(store):
    _, labels = np.unique(store.speakers, return_inverse=True)
    return labels


def plain_stream(store, **kw):
    args = dict(batch_size=8, crop_frames=30, seed=3) | kw
    return CropBatches(store, np.arange(len(store)), speaker_labels(store), **args)


def assert_batches_equal(a: Batch, b: Batch):
    for name in ("feats", "lengths", "labels", "index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def assert_valid_crops(store, batch: Batch, crop_frames):
    assert batch.feats.shape == (len(batch.index), crop_frames, N_FEATURES)
    assert batch.feats.dtype == np.float32
    assert batch.lengths.dtype == np.int32 and batch.labels.dtype == np.int32
    assert batch.index.dtype == np.int64
    for row, i in enumerate(batch.index):
        n = batch.lengths[row]
        assert n == min(store.lengths[i], crop_frames)
        start = int(batch.feats[row, 0, 1])
        assert 0 <= start <= store.lengths[i] - n
        np.testing.assert_array_equal(batch.feats[row, :n], store.read(i, start, n))
        assert not batch.feats[row, n:].any()


def test_crop_batches_are_a_pure_function_of_seed_and_step():
    store = make_store()
    a, b = plain_stream(store), plain_stream(store)
    for step in (0, 5, 17, 6):  # out of order and across epochs (7 steps per epoch)
        assert_batches_equal(a.batch(step), b.batch(step))
    assert not np.array_equal(a.batch(0).index, a.batch(1).index)
    assert not np.array_equal(a.batch(0).index, plain_stream(store, seed=4).batch(0).index)
    assert not np.array_equal(a.batch(2).feats, a.batch(2 + a.steps_per_epoch).feats)


def test_data_parts_fill_their_blocks_of_the_global_batch():
    store = make_store()
    rows = np.arange(len(store))
    labels = np.zeros(len(store), np.int32)
    part = lambda k: CropBatches(store, rows[k::2], labels[k::2], 4, crop_frames=10, part=k)
    both = PartitionedBatches([part(0), part(1)])
    for step in (0, 5):
        batch = both.batch(step)
        for k, block in enumerate((slice(0, 4), slice(4, 8))):
            alone = part(k).batch(step)  # what the process holding part k reads
            for field in ("feats", "lengths", "labels", "index"):
                np.testing.assert_array_equal(getattr(batch, field)[block], getattr(alone, field))
        assert set(batch.index[:4]) <= set(rows[0::2]) and set(batch.index[4:]) <= set(rows[1::2])
    same_rows = CropBatches(store, rows[0::2], labels[0::2], 4, crop_frames=10, part=1)
    assert not np.array_equal(same_rows.batch(0).index, part(0).batch(0).index)  # own streams
    assert PartitionedBatches([part(0)]).batch(2) is not None
    with pytest.raises(ValueError, match="no data parts"):
        PartitionedBatches([])


def test_resumed_iterator_matches_fresh_one():
    stream = plain_stream(make_store())
    k = 9
    fresh = list(itertools.islice(iter(stream), k, k + 4))
    resumed = list(itertools.islice(stream.iterate(k), 4))
    for a, b in zip(fresh, resumed, strict=True):
        assert_batches_equal(a, b)


def test_crops_lie_inside_utterances_and_equal_source_rows():
    store = make_store()
    stream = plain_stream(store)
    assert (store.lengths < 30).any() and (store.lengths > 30).any()  # both paths exercised
    labels = speaker_labels(store)
    relative_starts = []  # start / latest possible start, for utterances longer than the crop
    for step in range(3 * stream.steps_per_epoch):
        batch = stream.batch(step)
        assert_valid_crops(store, batch, 30)
        np.testing.assert_array_equal(batch.labels, labels[batch.index])
        slack = store.lengths[batch.index] - 30
        long = slack > 0
        relative_starts += list(batch.feats[long, 0, 1] / slack[long])
    assert len(relative_starts) > 60
    assert 0.4 < np.mean(relative_starts) < 0.6  # uniform starts: mean 0.5, std of mean ~0.035


def test_normalise_sees_each_crop_alone():
    store = make_store()
    batch = plain_stream(store, normalise=lambda frames: frames - frames.mean(axis=0)).batch(0)
    raw = plain_stream(store).batch(0)
    np.testing.assert_array_equal(batch.index, raw.index)
    for row, n in enumerate(batch.lengths):
        crop = raw.feats[row, :n]
        np.testing.assert_allclose(batch.feats[row, :n], crop - crop.mean(axis=0), atol=1e-6)
        assert not batch.feats[row, n:].any()
    assert not np.allclose(batch.feats, raw.feats)


def test_each_epoch_visits_every_utterance_once():
    store = make_store(n=60)
    stream = plain_stream(store, batch_size=8)
    assert stream.steps_per_epoch == 7  # 60 // 8, the remainder of 4 is dropped
    spe = stream.steps_per_epoch
    for epoch in (0, 1):
        seen = np.concatenate([stream.batch(epoch * spe + k).index for k in range(spe)])
        assert len(seen) == 56 == len(np.unique(seen))
        assert np.isin(seen, np.arange(60)).all()
    epoch0 = np.concatenate([stream.batch(k).index for k in range(spe)])
    epoch1 = np.concatenate([stream.batch(spe + k).index for k in range(spe)])
    assert not np.array_equal(epoch0, epoch1)


def test_labels_follow_indices_subset():
    store = make_store()
    indices = np.arange(10, 50, 2)
    labels = np.arange(len(indices)) + 100
    stream = CropBatches(store, indices, labels, batch_size=4, crop_frames=20)
    batch = stream.batch(3)
    position = {int(i): j for j, i in enumerate(indices)}
    np.testing.assert_array_equal(batch.labels, [labels[position[int(i)]] for i in batch.index])
    assert np.isin(batch.index, indices).all()


def test_short_utterances_are_excluded_and_counted():
    store = make_store()
    min_frames = 25
    n_short = int((store.lengths < min_frames).sum())
    assert 0 < n_short < len(store)
    stream = plain_stream(store, min_frames=min_frames)
    assert stream.n_excluded == n_short
    assert stream.steps_per_epoch == (len(store) - n_short) // 8
    seen = np.concatenate([stream.batch(k).index for k in range(stream.steps_per_epoch)])
    assert (store.lengths[seen] >= min_frames).all()
    assert plain_stream(store).n_excluded == 0
    with pytest.raises(ValueError, match="cannot fill one batch"):
        plain_stream(store, min_frames=1000)


def test_speaker_balanced_batches():
    # 7 speakers; spk6 has only 2 utterances, fewer than M=3, so it is drawn with replacement.
    speakers = [f"spk{i % 6}" for i in range(48)] + ["spk6", "spk6"]
    store = FakeStore(np.random.default_rng(1).integers(10, 60, 50), speakers)
    n_spk, per_spk = 4, 3
    make = lambda seed: CropBatches(
        store,
        np.arange(50),
        speaker_labels(store),
        batch_size=n_spk * per_spk,
        crop_frames=16,
        seed=seed,
        speakers_per_batch=n_spk,
    )
    stream = make(0)
    drawn = set()
    for step in range(40):
        batch = stream.batch(step)
        assert_valid_crops(store, batch, 16)
        by_speaker = store.speakers[batch.index].reshape(n_spk, per_spk)
        assert (by_speaker == by_speaker[:, :1]).all()  # speaker-major
        assert len(set(by_speaker[:, 0])) == n_spk
        np.testing.assert_array_equal(batch.labels, speaker_labels(store)[batch.index])
        for spk, rows in zip(by_speaker[:, 0], batch.index.reshape(n_spk, per_spk), strict=True):
            if spk != "spk6":
                assert len(set(rows)) == per_spk  # without replacement when there are enough
        drawn |= set(by_speaker[:, 0])
    assert drawn == {f"spk{i}" for i in range(7)}
    assert_batches_equal(stream.batch(11), make(0).batch(11))
    assert not np.array_equal(stream.batch(11).index, make(1).batch(11).index)
    with pytest.raises(ValueError, match="multiple of speakers_per_batch"):
        CropBatches(store, np.arange(50), speaker_labels(store), 10, speakers_per_batch=4)
    with pytest.raises(ValueError, match="only 7 speakers"):
        CropBatches(store, np.arange(50), speaker_labels(store), 16, speakers_per_batch=8)


def test_padded_length_grid():
    sizes = [padded_length(n) for n in range(0, 5000)]
    assert all(s >= max(n, 1) for n, s in enumerate(sizes))
    assert all(s % 16 == 0 for s in sizes)
    assert sizes == sorted(sizes)
    # Geometric grid, 8 steps per octave: at most 2^(1/8) - 1 (9%) padding past 16 frames.
    assert max(s / n for n, s in enumerate(sizes) if n >= 128) <= 2 ** (1 / 8) + 16 / 128
    assert max(s / n for n, s in enumerate(sizes) if n >= 512) < 1.125
    assert len(set(sizes[400:2001])) <= math.ceil(8 * math.log2(2000 / 400)) + 1


def voxceleb_like_lengths(n, seed=0):
    """Log-normal durations around 8 s, 4-20 s, at 100 frames/s."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(np.exp(rng.normal(np.log(800), 0.45, n))), 400, 2000).astype(int)


@pytest.mark.parametrize(
    ("max_frames", "max_batch", "multiple_of"), [(60_000, None, 2), (30_000, 48, 4), (20_000, 7, 1)]
)
def test_bucket_batches_on_voxceleb_like_lengths(max_frames, max_batch, multiple_of):
    lengths = voxceleb_like_lengths(5000)
    batches = bucket_batches(lengths, max_frames, max_batch, multiple_of)
    real = np.concatenate([b[b >= 0] for b in batches])
    np.testing.assert_array_equal(np.sort(real), np.arange(len(lengths)))
    shapes = set()
    for b in batches:
        pad_to = padded_length(int(lengths[b[b >= 0]].max()))
        assert len(b) * pad_to <= max_frames
        assert len(b) % multiple_of == 0
        assert max_batch is None or len(b) <= max_batch
        shapes.add((len(b), pad_to))
    assert (batches[-1] == -1).sum() < multiple_of
    assert all((b >= 0).all() for b in batches[:-1])  # fillers only in the last batch
    assert len(shapes) <= 20 + 1  # one shape per grid length (19 cover 4-20 s) + the last batch
    assert padding_fraction(batches, lengths) < 0.10


def test_bucket_batches_edge_cases():
    assert bucket_batches(np.array([], int), 100) == []
    (only,) = bucket_batches(np.array([3]), 100, multiple_of=4)
    np.testing.assert_array_equal(only, [0, -1, -1, -1])
    assert padding_fraction([only], np.array([3])) == pytest.approx(1 - 3 / (4 * 16))
    with pytest.raises(ValueError, match="utterance 1 has 500 frames"):
        bucket_batches(np.array([10, 500]), max_frames=400)
    with pytest.raises(ValueError, match="multiple_of"):
        bucket_batches(np.array([10]), max_frames=400, max_batch=2, multiple_of=4)


def test_pad_batch_zero_pads_whole_utterances():
    store = make_store()
    indices = np.array([3, -1, 7, 0])
    batch = pad_batch(store, indices, pad_to=96, labels=np.array([5, 9, 6, 4]))
    assert batch.feats.shape == (4, 96, N_FEATURES)
    np.testing.assert_array_equal(
        batch.lengths, [store.lengths[3], 0, store.lengths[7], store.lengths[0]]
    )
    np.testing.assert_array_equal(batch.labels, [5, -1, 6, 4])
    np.testing.assert_array_equal(batch.index, indices)
    for row, i in enumerate(indices):
        n = batch.lengths[row]
        if i >= 0:
            np.testing.assert_array_equal(batch.feats[row, :n], store.read(i))
        assert not batch.feats[row, n:].any()
    assert (pad_batch(store, indices, 96).labels == -1).all()
    with pytest.raises(ValueError, match=f"utterance 3 has {store.lengths[3]} frames"):
        pad_batch(store, indices, pad_to=4)


def test_prefetcher_yields_in_order_with_transform_in_worker():
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.01, 40)
    worker_threads = set()

    def make(k):
        time.sleep(delays[k])  # workers finish out of order
        return k * k

    def transform(x):
        worker_threads.add(threading.current_thread().name)
        return -x

    with Prefetcher(make, start=5, stop=40, depth=3, workers=3, transform=transform) as p:
        assert list(p) == [-k * k for k in range(5, 40)]
    assert worker_threads and threading.current_thread().name not in worker_threads


def test_prefetcher_reraises_worker_exception_at_its_step():
    def make(k):
        if k == 4:
            raise KeyError("step 4 failed")
        return k

    got = []
    p = Prefetcher(make, start=0, stop=None, depth=2, workers=2)
    with pytest.raises(KeyError, match="step 4 failed"):
        for item in p:
            got.append(item)
    assert got == [0, 1, 2, 3]
    assert not any(t.is_alive() for t in p._threads)  # closed after the failure


def test_prefetcher_stays_within_depth_and_closes_without_hanging():
    made = []

    def make(k):
        made.append(k)
        return k

    p = Prefetcher(make, start=0, stop=None, depth=4, workers=2)
    assert [next(p) for _ in range(3)] == [0, 1, 2]
    time.sleep(0.1)
    assert max(made) <= 2 + 4  # never more than `depth` steps ahead of the consumer
    t0 = time.perf_counter()
    p.close()
    assert time.perf_counter() - t0 < 2
    assert not any(t.is_alive() for t in p._threads)
    with pytest.raises(StopIteration):
        next(p)
