"""The package boundary: what gru_jax.synth offers, and what it must not pull in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gru_jax import synth

REPO = Path(__file__).resolve().parents[2]

PUBLIC = (
    "make_corpus",
    "CorpusInfo",
    "Voice",
    "Channel",
    "draw_voice",
    "draw_channel",
    "draw_session_ids",
    "synthesize_utterance",
    "main",
    "WAV_DIR",
    "TRAIN_LIST",
    "TRIALS",
    "ENROLL_LIST",
    "TEST_LIST",
    "META_NAME",
    "MARKER_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
)


def test_public_names_are_importable_from_the_package() -> None:
    assert sorted(synth.__all__) == sorted(PUBLIC)
    assert all(hasattr(synth, name) for name in PUBLIC)


def test_imports_no_jax_and_nothing_of_gru_jax_but_core() -> None:
    code = "import sys, gru_jax.synth; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split()
    ours = [m for m in modules if m.startswith("gru_jax.")]
    assert ours and all(m.startswith(("gru_jax.core", "gru_jax.synth")) for m in ours), ours
    assert not [m for m in modules if m.split(".")[0] in ("jax", "jaxlib", "flax", "optax")]
