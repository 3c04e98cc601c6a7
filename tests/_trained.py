"""One small trained and evaluated run, shared by the export, evaluation, enrolment and CLI tests.

Training takes most of a minute, so it happens once per test session: conftest's session fixture
`run` calls `train_and_evaluate`. The model is tiny but speaker-discriminative
on the synthetic corpus's unseen test speakers (EER well below chance), enough for tests that
assert rates rather than single decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from gru_jax.data.features import FeatureConfig
from gru_jax.data.prepare import prepare_store, split_speakers
from gru_jax.eval.evaluation import evaluate
from gru_jax.infer.model import EmbeddingModel
from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.heads import LossConfig
from gru_jax.synth import CorpusInfo, make_corpus
from gru_jax.train.config import DataConfig, OptimConfig, TrainConfig, TrainerConfig
from gru_jax.train.loop import Trainer

N_MELS = 24
STEPS = 200
ASNORM_TOP_N = 10
PLDA_DIM = 16


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    corpus: CorpusInfo
    model: EmbeddingModel  # latest checkpoint, compiled shapes shared by all tests
    results: dict[str, Any]  # of evaluate(): trials + identification lists, AS-norm and PLDA on
    eval_dir: Path  # run_dir / "eval", where verify finds the calibrated threshold
    store_dir: Path  # feature store of the evaluated utterances


def tiny_config() -> TrainConfig:
    return TrainConfig(
        data=DataConfig(
            features=FeatureConfig(n_mels=N_MELS), crop_frames=100, min_frames=40, val_speakers=3
        ),
        model=ModelConfig(hidden=48, layers=2, embedding_dim=32),
        loss=LossConfig(kind="aam", margin=0.2, margin_warmup_steps=50),
        optim=OptimConfig(learning_rate=1e-2, warmup_steps=10),
        trainer=TrainerConfig(
            steps=STEPS,
            batch_size=32,
            log_every=50,
            eval_every=STEPS,
            checkpoint_every=STEPS // 2,
            val_trials=300,
        ),
    )


def train_and_evaluate(root: Path) -> TrainedRun:
    corpus = make_corpus(
        root / "corpus", n_speakers=40, n_utterances=8, seed=5, n_test_speakers=6, progress=False
    )
    cfg = tiny_config()
    store = prepare_store(
        corpus.wav_dir,
        cfg.data.features,
        list_file=str(corpus.train_list),
        store_dir=root / "train_store",
        workers=1,
        progress=False,
    )
    # Trained on one device: 3x faster here than on the 4 test devices (test_training checks that
    # 1 and 4 devices train alike). Embedding and scoring below run on all 4.
    trainer = Trainer(
        cfg,
        split_speakers(store, cfg.data.val_speakers, cfg.trainer.seed),
        root / "run",
        progress=False,
        devices=jax.devices()[:1],
    )
    try:
        trainer.fit()
    finally:
        trainer.close()
    model = EmbeddingModel.load(root / "run")
    results = evaluate(
        model,
        corpus.root,
        trials=corpus.trials,
        enroll_list=corpus.enroll_list,
        test_list=corpus.test_list,
        asnorm_top_n=ASNORM_TOP_N,
        plda_dim=PLDA_DIM,
        store_dir=root / "eval_store",
        workers=1,
        progress=False,
    )
    return TrainedRun(
        root / "run", corpus, model, results, root / "run" / "eval", root / "eval_store"
    )
