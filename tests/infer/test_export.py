"""Extraction that does not depend on batching, and export formats that read back exactly
(with the Kaldi tables an ASR recipe expects beside them)."""

import os
import shutil
import subprocess

import kaldiio
import numpy as np
import pytest

from gru_jax.data.store import open_store
from gru_jax.infer.export import (
    XVECTOR_DIR_FILES,
    kaldi_order,
    load_kaldi,
    load_npz,
    save_kaldi,
    save_npz,
    save_speaker_tables,
    save_xvector_dir,
    speaker_order_problem,
    speaker_tables,
    speaker_vectors,
)


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


def test_kaldi_order_is_the_c_locale_byte_order():
    keys = ["b", "é", "a_b", "Z9", "a/b", "a", "ab", "B", "z", "a-b", "id10001/x/00001"]
    expected = ["B", "Z9", "a", "a-b", "a/b", "a_b", "ab", "b", "id10001/x/00001", "z", "é"]
    assert [keys[i] for i in kaldi_order(keys)] == expected
    if shutil.which("sort"):  # the very tool Kaldi's scripts check with
        done = subprocess.run(
            ["sort"], input="\n".join(keys) + "\n", capture_output=True, check=True,
            env={**os.environ, "LC_ALL": "C"}, encoding="utf-8",
        )  # fmt: skip
        assert done.stdout.splitlines() == expected
    names, _, _ = speaker_vectors(np.eye(len(keys), dtype=np.float32), keys)
    assert names.tolist() == expected  # speaker vectors come out in the same order


def _validates_like_kaldi(utt2spk: str, spk2utt: str) -> None:
    """The checks of Kaldi's utils/validate_data_dir.sh on utt2spk/spk2utt, in Python."""
    lines = utt2spk.splitlines()
    assert utt2spk.endswith("\n") and spk2utt.endswith("\n")
    assert all(len(line.split(" ")) == 2 for line in lines)
    keys = [line.split()[0].encode() for line in lines]
    assert keys == sorted(set(keys))  # sorted and unique in byte order
    by_speaker = sorted(lines, key=lambda line: (line.split()[1].encode(), line.encode()))
    assert by_speaker == lines  # `sort -k2` leaves it alone
    speakers = [line.split()[0].encode() for line in spk2utt.splitlines()]
    assert speakers == sorted(set(speakers))
    expanded = [f"{u} {s}" for s, *us in map(str.split, spk2utt.splitlines()) for u in us]
    assert expanded == lines  # utils/spk2utt_to_utt2spk.pl gives utt2spk back


def test_speaker_tables_follow_kaldi_conventions(tmp_path):
    ids = ["id10002/b/00001", "id10001/z/00002", "id10001/a/00003", "1272-128104-0000",
           "id10001/a/00001", "1272-135031-0001"]  # fmt: skip
    speakers = ["id10002", "id10001", "id10001", "1272", "id10001", "1272"]
    texts = speaker_tables(ids, speakers)
    assert texts["utt2spk"] == (
        "1272-128104-0000 1272\n1272-135031-0001 1272\nid10001/a/00001 id10001\n"
        "id10001/a/00003 id10001\nid10001/z/00002 id10001\nid10002/b/00001 id10002\n"
    )
    assert texts["spk2utt"] == (
        "1272 1272-128104-0000 1272-135031-0001\n"
        "id10001 id10001/a/00001 id10001/a/00003 id10001/z/00002\nid10002 id10002/b/00001\n"
    )
    assert texts["num_utts.ark"] == "1272 2 \nid10001 3 \nid10002 1 \n"  # as ivector-mean's
    _validates_like_kaldi(texts["utt2spk"], texts["spk2utt"])
    assert speaker_order_problem(ids, speakers) is None

    written = save_speaker_tables(tmp_path, ids, speakers, num_utts=True)
    assert [p.name for p in written] == ["utt2spk", "spk2utt", "num_utts.ark"]
    for path in written:
        assert path.read_text() == texts[path.name]
    assert [p.name for p in save_speaker_tables(tmp_path / "u", ids, speakers)] == [
        "utt2spk", "spk2utt"
    ]  # fmt: skip

    # speakers that are not prefixes of their utterances: written, but reported
    problem = speaker_order_problem(["a-1", "b-1", "c-1"], ["zoe", "amy", "zoe"])
    assert problem and "'b-1' (speaker 'amy') sorts after 'a-1'" in problem
    assert "validate_data_dir.sh" in problem
    for bad_ids, bad_speakers, what in (
        (["a 1"], ["s"], "utterance ids"), (["a"], [""], "speaker ids"), (["a"], ["s\t"], "speaker")
    ):  # fmt: skip
        with pytest.raises(ValueError, match=what):
            speaker_tables(bad_ids, bad_speakers)
    with pytest.raises(ValueError, match="unique"):
        speaker_tables(["a", "a"], ["s", "s"])


def test_xvector_dir_matches_kaldi_layout_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    ids = ["id10002/b/00001", "id10001/z/00002", "id10001/a/00003", "id10001/a/00001"]
    speakers = ["id10002", "id10001", "id10001", "id10001"]
    vectors = rng.normal(size=(4, 6)).astype(np.float32)
    out = tmp_path / "xvectors"
    paths = save_xvector_dir(out, ids, vectors, speakers)
    assert [p.name for p in paths] == list(XVECTOR_DIR_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(XVECTOR_DIR_FILES)  # no temp files
    utt_ids, _ = load_kaldi(out / "xvector.scp")
    assert utt_ids.tolist() == [ids[i] for i in kaldi_order(ids)]
    by_key = kaldiio.load_scp(str(out / "xvector.scp"))
    for key, vector in zip(ids, vectors, strict=True):
        np.testing.assert_array_equal(by_key[key], vector)
    # spk_xvector is `ivector-normalize-length --scaleup=false | ivector-mean ark:spk2utt`
    spk2utt = {
        line.split()[0]: line.split()[1:] for line in (out / "spk2utt").read_text().splitlines()
    }
    spk_ids, spk_vectors = load_kaldi(out / "spk_xvector.scp")
    assert spk_ids.tolist() == list(spk2utt) == ["id10001", "id10002"]
    for speaker, mean in zip(spk_ids.tolist(), spk_vectors, strict=True):
        own = np.stack([by_key[u] / np.linalg.norm(by_key[u]) for u in spk2utt[speaker]])
        np.testing.assert_allclose(mean, own.mean(axis=0), rtol=1e-6, atol=1e-7)
    # (kaldiio misreads Kaldi's text integer tables, so this one is parsed here)
    num_utts = {k: int(n) for k, n in map(str.split, (out / "num_utts.ark").open())}
    assert num_utts == {s: len(us) for s, us in spk2utt.items()} == {"id10001": 3, "id10002": 1}
    _validates_like_kaldi((out / "utt2spk").read_text(), (out / "spk2utt").read_text())
    # a bad key is refused before anything is written
    with pytest.raises(ValueError, match="speaker ids"):
        save_xvector_dir(tmp_path / "bad", ids, vectors, ["a b", *speakers[1:]])
    assert not (tmp_path / "bad").exists()
