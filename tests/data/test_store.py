import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from gru_jax.data import store as store_mod
from gru_jax.data.corpora import Utterance
from gru_jax.data.features import FeatureConfig, extract_features
from gru_jax.data.store import StoreError, build_store, open_store

CFG = FeatureConfig(n_mels=24)


def _write_wav(path, seconds, seed, sr=16000):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")


@pytest.fixture
def corpus(tmp_path):
    utts = []
    for k in range(7):
        spk = f"spk{k % 3}"
        path = tmp_path / "wav" / spk / f"u{k}.wav"
        _write_wav(path, 0.6 + 0.15 * k, k)
        utts.append(Utterance(f"{spk}/u{k}", spk, str(path)))
    return utts


def _build(utts, path, **kw):
    kw.setdefault("shard_size", 3)
    return build_store(utts, path, CFG, workers=1, progress=False, **kw)


def _contents(s):
    return [(s.ids[i], s.speakers[i], s.read(i).tobytes()) for i in range(len(s))]


def test_round_trip_and_crops(corpus, tmp_path):
    s = _build(corpus, tmp_path / "store", dtype="float32")
    assert len(s) == len(corpus) and s.n_features == 24
    assert len(s.manifest["shards"]) == 3  # 7 utterances, 3 per shard
    for i, utt in enumerate(sorted(corpus, key=lambda u: u.utt_id)):
        direct = extract_features(utt.path, CFG)
        assert s.ids[i] == utt.utt_id and s.speakers[i] == utt.speaker
        assert s.lengths[i] == len(direct)
        np.testing.assert_array_equal(s.read(i), direct)
        np.testing.assert_array_equal(s.read(i, 5, 11), direct[5:16])
        np.testing.assert_array_equal(s.read(i, 7), direct[7:])
    with pytest.raises(IndexError):
        s.read(0, int(s.lengths[0]) - 2, 5)
    assert s.index_of(s.ids[4]) == 4
    np.testing.assert_allclose(s.durations_s(), s.lengths * 0.01)


def test_float16_store_is_close_and_memory_mapped(corpus, tmp_path):
    s = _build(corpus, tmp_path / "store")
    assert isinstance(s._shards[0], np.memmap) and s._shards[0].dtype == np.float16
    direct = extract_features(sorted(corpus, key=lambda u: u.utt_id)[2].path, CFG)
    np.testing.assert_allclose(s.read(2), direct, atol=2e-2, rtol=1e-3)
    assert s.read(2).dtype == np.float32


def test_reopen_reuses_without_recomputing(corpus, tmp_path, monkeypatch):
    first = _contents(_build(corpus, tmp_path / "store"))
    monkeypatch.setattr(store_mod, "extract_many", lambda *a, **k: pytest.fail("recomputed"))
    assert _contents(_build(corpus, tmp_path / "store")) == first
    assert _contents(open_store(tmp_path / "store", CFG)) == first


def test_corpus_through_a_symlink_reuses_the_same_store(corpus, tmp_path, monkeypatch):
    first = _contents(_build(corpus, tmp_path / "store"))
    link = tmp_path / "linked"
    link.symlink_to(tmp_path / "wav", target_is_directory=True)
    via_link = [
        dataclasses.replace(u, path=u.path.replace(str(tmp_path / "wav"), str(link)))
        for u in corpus
    ]
    assert via_link[0].path != corpus[0].path
    monkeypatch.setattr(store_mod, "extract_many", lambda *a, **k: pytest.fail("recomputed"))
    assert _contents(_build(via_link, tmp_path / "store")) == first


def test_interrupted_build_resumes_to_identical_store(corpus, tmp_path, monkeypatch):
    reference = _contents(_build(corpus, tmp_path / "ref"))
    real_write = store_mod._write_shard
    written = []

    def crash_on_second_shard(path, k, *args):
        if len(written) == 1:
            # a half-written data file, as a kill in the middle of np.save would leave
            (path / f"{store_mod._shard_name(k)}.npy").write_bytes(b"\x93NUMPY garbage")
            raise KeyboardInterrupt
        written.append(k)
        real_write(path, k, *args)

    monkeypatch.setattr(store_mod, "_write_shard", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        _build(corpus, tmp_path / "store")
    with pytest.raises(StoreError, match="did not finish"):
        open_store(tmp_path / "store")
    monkeypatch.setattr(store_mod, "_write_shard", real_write)

    calls = []
    real_extract = store_mod.extract_many
    monkeypatch.setattr(
        store_mod,
        "extract_many",
        lambda items, *a, **k: calls.append(len(items)) or real_extract(items, *a, **k),
    )
    resumed = _build(corpus, tmp_path / "store")
    assert calls == [len(corpus) - 3]  # the finished first shard was not recomputed
    assert _contents(resumed) == reference


def test_other_feature_config_is_refused(corpus, tmp_path):
    _build(corpus, tmp_path / "store")
    other = FeatureConfig(n_mels=32)
    with pytest.raises(StoreError, match="rebuild"):
        open_store(tmp_path / "store", other)
    with pytest.raises(StoreError, match="rebuild"):
        build_store(corpus, tmp_path / "store", other, workers=1, progress=False)
    rebuilt = build_store(
        corpus, tmp_path / "store", other, workers=1, progress=False, rebuild=True
    )
    assert rebuilt.n_features == 32 and rebuilt.feature_config == other


def test_changed_corpus_rebuilds(corpus, tmp_path):
    _build(corpus, tmp_path / "store")
    smaller = _build(corpus[:4], tmp_path / "store")
    assert len(smaller) == 4


def test_bad_audio_is_skipped_and_counted(corpus, tmp_path):
    bad = tmp_path / "wav" / "spk0" / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    silent = tmp_path / "wav" / "spk1" / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    utts = [
        *corpus,
        Utterance("spk0/broken", "spk0", str(bad)),
        Utterance("spk1/silent", "spk1", str(silent)),
    ]
    s = _build(utts, tmp_path / "store")
    assert len(s) == len(corpus)
    assert s.manifest["skipped"] == {"unreadable": 1, "silent": 1}
    index = json.loads((tmp_path / "store" / "shard-00000.index.json").read_text())
    assert [row[:2] for row in index["skipped"]] == [[str(bad), "unreadable"]]


def test_all_bad_or_empty_is_an_error(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"nope")
    with pytest.raises(StoreError, match="every utterance failed"):
        _build([Utterance("x", "s", str(bad))], tmp_path / "store")
    with pytest.raises(StoreError, match="no utterances"):
        _build([], tmp_path / "store2")
    with pytest.raises(StoreError, match="not a feature store"):
        open_store(tmp_path / "nowhere")
