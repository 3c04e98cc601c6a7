"""Named training configurations: `demo` (the synthetic corpus on a laptop CPU) and full recipes."""

from __future__ import annotations

import dataclasses

from gru_jax.data.augmentation import AugmentConfig
from gru_jax.data.features import FeatureConfig
from gru_jax.nn.augment import SpecAugmentConfig
from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.heads import LossConfig
from gru_jax.train.config import DataConfig, OptimConfig, TrainConfig, TrainerConfig


def demo() -> TrainConfig:
    """The synthetic demo corpus's 1,440 training voices on a 2-core CPU within 10 minutes.

    Measured on the demo's unseen voices (benchmarks/README.md, "The demo"): more voices and the
    steps to fit them were the gain, and a 20 ms frame hop halves the cost of a step (the GRU
    runs once per frame) at the same accuracy, so it buys them; 80 log-mel, 3 layers, a wider GRU,
    attentive pooling, GE2E, dropout with SpecAugment and noise copies were no better, or worse,
    at this budget. Crops are 1.5 s (75 frames).
    """
    return TrainConfig(
        data=DataConfig(
            features=FeatureConfig(n_mels=40, hop_ms=20.0),
            crop_frames=75,
            min_frames=25,
            val_speakers=10,
        ),
        model=ModelConfig(hidden=128, layers=2, pooling="stats", embedding_dim=128),
        loss=LossConfig(kind="aam", scale=30.0, margin=0.2, margin_warmup_steps=300),
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=50),
        trainer=TrainerConfig(
            steps=4000,
            batch_size=64,
            log_every=10,
            eval_every=500,
            checkpoint_every=250,
            val_trials=2000,
        ),
    )


def dev() -> TrainConfig:
    """Speech on a 2-core CPU: the espeak-ng development corpus (`gru_jax.synth.devcorpus`),
    a small corpus of tens of speakers, or many generated voices to fine-tune from.

    Wider than the demo (speech has more to tell apart than the source-filter voices) and 2 s
    crops of 2-6 s utterances; the margin ramps in after the classes separate. A run on a small
    corpus is best started from a model pretrained on generated voices (`--init-from`, see the
    README's "Fine-tuning on a small corpus").
    """
    return TrainConfig(
        data=DataConfig(
            features=FeatureConfig(n_mels=40), crop_frames=200, min_frames=100, val_speakers=4
        ),
        model=ModelConfig(hidden=256, layers=2, pooling="stats", embedding_dim=192),
        loss=LossConfig(
            kind="aam", scale=30.0, margin=0.2, margin_warmup_start=200, margin_warmup_steps=400
        ),
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=100, weight_decay=5e-5),
        trainer=TrainerConfig(
            steps=1200,
            batch_size=64,
            log_every=20,
            eval_every=400,
            checkpoint_every=200,
            val_trials=2000,
        ),
    )


def pretrain() -> TrainConfig:
    """The starting model for small corpora: `dev` on many generated voices (`python -m
    gru_jax.synth.devcorpus OUT --train-speakers 1000`), each utterance with two noisy copies.

    Aimed at the noisy and short tests, where the 2 s AAM model lost most: GE2E on batches of 16
    voices x 4 crops, 80 log-mel bands, 0.5 s crops (cheaper steps, 3,000 of them) and attentive
    statistics pooling (the frames that carry the voice outweigh the noisy ones). Each change is
    a row of `benchmarks/accuracy.py`'s recipe table, this config the row "that + attentive
    pooling"; a test keeps the two equal.
    """
    base = dev()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(
            base.data,
            features=dataclasses.replace(base.data.features, n_mels=80),
            crop_frames=50,
            speakers_per_batch=16,
            val_speakers=20,
            augment=AugmentConfig(noise=2),
        ),
        model=dataclasses.replace(base.model, pooling="attentive"),
        loss=dataclasses.replace(base.loss, kind="ge2e"),
        trainer=dataclasses.replace(base.trainer, steps=3000, eval_every=500),
    )


def voxceleb() -> TrainConfig:
    """A full-size VoxCeleb2-dev recipe (3 x 512 GRU, AAM-softmax, 2 s crops, SpecAugment)."""
    return TrainConfig(
        data=DataConfig(
            features=FeatureConfig(n_mels=80), crop_frames=200, min_frames=100, val_speakers=100
        ),
        model=ModelConfig(
            hidden=512,
            layers=3,
            pooling="attentive",
            embedding_dim=256,
            layer_norm=True,
            residual=True,
        ),
        loss=LossConfig(
            kind="aam",
            scale=32.0,
            margin=0.2,
            margin_warmup_start=20_000,
            margin_warmup_steps=40_000,
        ),
        optim=OptimConfig(learning_rate=2e-3, warmup_steps=5_000, weight_decay=5e-5),
        spec_augment=SpecAugmentConfig(enabled=True),
        trainer=TrainerConfig(
            steps=300_000,
            batch_size=256,
            log_every=100,
            eval_every=10_000,
            checkpoint_every=5_000,
            val_trials=20_000,
        ),
    )


def librispeech() -> TrainConfig:
    """VoxCeleb's model and loss on LibriSpeech's 2,338 training speakers (train-clean-100,
    train-clean-360, train-other-500: 960 h of read speech, 281k utterances of 12 s on average).

    A third of VoxCeleb's steps: the corpus has a quarter of its utterances and 40% of its audio,
    all of it clean read speech. Crops are 3 s, as most utterances are much longer and the
    held-out test utterances last 7 s on average; the margin schedule and warm-up shrink with
    the run.
    """
    base = voxceleb()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, crop_frames=300, min_frames=150, val_speakers=40),
        loss=dataclasses.replace(base.loss, margin_warmup_start=7_000, margin_warmup_steps=13_000),
        optim=dataclasses.replace(base.optim, warmup_steps=2_000),
        trainer=dataclasses.replace(
            base.trainer, steps=100_000, eval_every=5_000, checkpoint_every=2_500
        ),
    )


def cnceleb() -> TrainConfig:
    """VoxCeleb's model and loss on CN-Celeb1 dev + CN-Celeb2 (about 2,800 speakers and 640k
    utterances in 11 genres, from singing to drama).

    Half of VoxCeleb's steps for 60% of its utterances: about as many passes over each. Crops
    stay at 2 s although a third of the utterances are shorter: those down to 1 s are used whole,
    padded and masked, where Kaldi's and WeSpeaker's recipes concatenate them first. Fewer
    speakers are held out, as there are half as many; the margin schedule and warm-up shrink
    with the run.
    """
    base = voxceleb()
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, val_speakers=50),
        loss=dataclasses.replace(base.loss, margin_warmup_start=10_000, margin_warmup_steps=20_000),
        optim=dataclasses.replace(base.optim, warmup_steps=3_000),
        trainer=dataclasses.replace(base.trainer, steps=150_000),
    )


PRESETS = {
    "demo": demo,
    "dev": dev,
    "pretrain": pretrain,
    "voxceleb": voxceleb,
    "librispeech": librispeech,
    "cnceleb": cnceleb,
}
