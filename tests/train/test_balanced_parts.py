"""Speaker-balanced batches (GE2E) over data parts, one per process: the corpus is split by
speaker, each part fills its rows with its own speakers, and the global batch is what GE2E
needs (speaker-major, distinct speakers). Two processes training on such parts:
tests/train/test_distributed.py."""

from __future__ import annotations

import numpy as np
import pytest

from gru_jax.core.config import ConfigError
from gru_jax.data.corpora import read_corpus
from gru_jax.data.features import FeatureConfig
from gru_jax.data.prepare import corpus_part, prepare_parts
from gru_jax.synth import make_corpus
from gru_jax.train.loop import train_stream
from tests.train._tiny import N_MELS, tiny_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("balanced")
    return make_corpus(root / "c", n_speakers=14, n_utterances=4, seed=4, progress=False)


def parts(corpus, tmp_path, by_speaker):
    return prepare_parts(
        corpus.wav_dir, FeatureConfig(n_mels=N_MELS), [0, 1], 2, 2, 0,
        list_file=str(corpus.train_list), store_dir=tmp_path / "store", workers=1,
        progress=False, by_speaker=by_speaker,
    )  # fmt: skip


def test_a_split_by_speaker_gives_each_speaker_to_one_part_whole(corpus):
    utterances = read_corpus(str(corpus.wav_dir), str(corpus.train_list))
    split = [corpus_part(utterances, k, 3, by_speaker=True) for k in range(3)]
    speakers = [{u.speaker for u in part} for part in split]
    assert all(not (a & b) for i, a in enumerate(speakers) for b in speakers[i + 1 :])
    assert sorted(u.utt_id for part in split for u in part) == sorted(u.utt_id for u in utterances)
    everyone = sorted({u.speaker for u in utterances})
    assert [sorted(s) for s in speakers] == [everyone[k::3] for k in range(3)]


def test_each_part_fills_its_block_with_its_own_speakers(corpus, tmp_path):
    data = parts(corpus, tmp_path, by_speaker=True)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [
        "speakers0of2",
        "speakers1of2",
    ]
    cfg = tiny_config(data={"speakers_per_batch": 4}, loss={"kind": "ge2e"})
    stream = train_stream(cfg, data)
    for step in range(3):
        labels = stream.batch(step).labels.reshape(4, 4)  # 4 speakers x 4 utterances, in order
        assert np.all(labels == labels[:, :1]) and len(set(labels[:, 0])) == 4
        for k, part in enumerate(data.parts):
            assert set(labels[2 * k : 2 * k + 2, 0]) <= set(part.train_labels)


def test_parts_that_share_speakers_or_split_unevenly_are_refused(corpus, tmp_path):
    cfg = tiny_config(data={"speakers_per_batch": 4}, loss={"kind": "ge2e"})
    with pytest.raises(ConfigError, match="split by speaker"):
        train_stream(cfg, parts(corpus, tmp_path / "a", by_speaker=False))
    uneven = tiny_config(
        data={"speakers_per_batch": 3}, loss={"kind": "ge2e"}, trainer={"batch_size": 12}
    )
    data = parts(corpus, tmp_path / "b", by_speaker=True)
    with pytest.raises(ConfigError, match="speakers_per_batch=3 does not split"):
        train_stream(uneven, data)
