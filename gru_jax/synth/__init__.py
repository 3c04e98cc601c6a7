"""Synthetic speaker corpus: the demo's data generator, a tool beside the pipeline, not inside it.

The demo and the tests need speakers without downloading anything, and the data must be hard enough
that a trained model beats a trivial spectral statistic. The generator writes files in VoxCeleb
layout, which the pipeline then reads like any real corpus: only the train command's demo (no
`--data`) calls `make_corpus`, and this package imports nothing of gru_jax but `gru_jax.core` (no
JAX), so it stays a stand-alone tool that works while the pipeline changes around it.

Modules: `voices` (who speaks, on which channel), `dsp` (the audio of one utterance), `corpus`
(files, lists and re-use on disk), `cli` (the `gru-jax-synth` command); `espeak` and `devcorpus`
(the `gru-jax-devcorpus` command) make a corpus of espeak-ng speech with the same layout.
"""

from gru_jax.synth.cli import main
from gru_jax.synth.corpus import (
    ENROLL_LIST,
    FORMAT_NAME,
    FORMAT_VERSION,
    MARKER_NAME,
    META_NAME,
    TEST_LIST,
    TRAIN_LIST,
    TRIALS,
    WAV_DIR,
    CorpusInfo,
    make_corpus,
)
from gru_jax.synth.dsp import synthesize_utterance
from gru_jax.synth.voices import Channel, Voice, draw_channel, draw_session_ids, draw_voice

__all__ = [
    "ENROLL_LIST",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MARKER_NAME",
    "META_NAME",
    "TEST_LIST",
    "TRAIN_LIST",
    "TRIALS",
    "WAV_DIR",
    "Channel",
    "CorpusInfo",
    "Voice",
    "draw_channel",
    "draw_session_ids",
    "draw_voice",
    "main",
    "make_corpus",
    "synthesize_utterance",
]
