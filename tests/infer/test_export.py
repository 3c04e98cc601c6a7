"""Extraction that does not depend on batching, and export formats that read back exactly."""

import kaldiio
import numpy as np
import pytest

from gru_jax.data.store import open_store
from gru_jax.infer.export import load_kaldi, load_npz, save_kaldi, save_npz, speaker_vectors


@pytest.fixture(scope="module")
def store(run):
    return open_store(run.store_dir, run.model.features)


def test_embedding_does_not_depend_on_batch_or_padding(run, store):
    together = run.model.embed_source(store)
    order = np.argsort(store.lengths)
    shortest, longest = int(order[0]), int(order[-1])
    assert store.lengths[longest] > store.lengths[shortest] + 50  # really different padding
    for i in (shortest, longest):
        alone = run.model.embed_source(store, np.array([i]))[0]
        np.testing.assert_allclose(alone, together[i], rtol=1e-5, atol=1e-6)
    # a subset in another order lands in other batches with other padding
    subset = order[::-3]
    np.testing.assert_allclose(
        run.model.embed_source(store, subset), together[subset], rtol=1e-5, atol=1e-6
    )
    # straight from the audio file (the enrolment path) gives the evaluated vector
    from_file = run.model.embed_files([store.paths[shortest]])[0]
    np.testing.assert_allclose(from_file, together[shortest], rtol=1e-5, atol=1e-6)
    ids, saved = load_npz(run.eval_dir / "embeddings.npz")
    assert ids.tolist() == store.ids.tolist()
    np.testing.assert_allclose(saved, together, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[shortest], together[longest])


def test_npz_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["id10001/a/00001", "id10001/b/00002", "ünïcode"]
    vectors = rng.normal(size=(3, 7)).astype(np.float32)
    save_npz(tmp_path / "emb.npz", ids, vectors, speakers=np.array(["x", "x", "y"]))
    loaded_ids, loaded = load_npz(tmp_path / "emb.npz")
    assert loaded_ids.tolist() == ids and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, vectors)
    with np.load(tmp_path / "emb.npz", allow_pickle=False) as data:
        assert data["speakers"].tolist() == ["x", "x", "y"]
    with pytest.raises(ValueError, match="unique"):
        save_npz(tmp_path / "dup.npz", ["a", "a"], vectors[:2])
    with pytest.raises(ValueError, match="NaN"):
        save_npz(tmp_path / "nan.npz", ["a"], np.full((1, 3), np.nan))


def test_kaldi_ark_scp_round_trip_matches_kaldiio_writer(run, tmp_path, monkeypatch):
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    ark = tmp_path / "xvector.ark"
    scp = save_kaldi(ark, ids, vectors)
    assert scp == tmp_path / "xvector.scp"
    by_key = kaldiio.load_scp(str(scp))
    for key, vector in zip(ids.tolist(), vectors, strict=True):
        np.testing.assert_array_equal(by_key[key], vector)
    loaded_ids, loaded = load_kaldi(scp)
    assert loaded_ids.tolist() == ids.tolist()
    np.testing.assert_array_equal(loaded, vectors)
    # byte for byte what kaldiio's own writer produces, scp included
    monkeypatch.chdir(tmp_path)
    with kaldiio.WriteHelper("ark,scp:ref.ark,ref.scp") as writer:
        for key, vector in zip(ids.tolist(), vectors, strict=True):
            writer(key, vector)
    save_kaldi("mine.ark", ids, vectors)
    assert (tmp_path / "mine.ark").read_bytes() == (tmp_path / "ref.ark").read_bytes()
    mine_scp = (tmp_path / "mine.scp").read_text().replace("mine.ark", "ref.ark")
    assert mine_scp == (tmp_path / "ref.scp").read_text()
    with pytest.raises(ValueError, match="whitespace"):
        save_kaldi(tmp_path / "bad.ark", ["has space"], vectors[:1])


def test_speaker_vectors_are_means_of_normalised_utterance_vectors(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(7, 5)).astype(np.float32) * rng.uniform(0.1, 10, size=(7, 1))
    speakers = ["b", "a", "b", "c", "a", "b", "a"]
    names, means, counts = speaker_vectors(vectors, speakers)
    assert names.tolist() == ["a", "b", "c"] and counts.tolist() == [3, 3, 1]
    for name, mean in zip(names, means, strict=True):
        own = vectors[[s == name for s in speakers]]
        reference = np.mean(own / np.linalg.norm(own, axis=1, keepdims=True), axis=0)
        np.testing.assert_allclose(mean, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(means[2]), 1.0, rtol=1e-6)  # one utterance
    assert np.linalg.norm(means[0]) < 1.0  # a mean of distinct unit vectors is shorter
    save_kaldi(tmp_path / "spk.ark", names, means)
    np.testing.assert_array_equal(load_kaldi(tmp_path / "spk.scp")[1], means)
