"""An exported model serves embeddings in a fresh process that cannot import gru_jax."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gru_jax.data.audio import load_audio
from gru_jax.data.features import extract_features
from gru_jax.infer.artifact import read_artifact, write_artifact
from gru_jax.infer.model import EmbeddingModel
from gru_jax.infer.streaming import StreamingEmbedder

# What the README's serving example does, with gru_jax made unimportable.
SERVE = textwrap.dedent(
    """
    import json, sys, zipfile
    sys.modules["gru_jax"] = None  # the artefact must not need it
    import jax, numpy as np

    path, inputs, out = sys.argv[1:]
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
        fn = {n: jax.export.deserialize(bytearray(z.read(n + ".bin")))
              for n in ("embed", "stream_init", "stream_step")}
    data = np.load(inputs)
    emb = fn["embed"].call(data["feats"], data["lengths"])
    state = fn["stream_init"].call(np.zeros(1, np.int32))
    audio, chunk = data["audio"], meta["max_chunk_samples"]
    for start in range(0, len(audio), chunk):
        piece = np.zeros((1, chunk), np.float32)
        n = min(chunk, len(audio) - start)
        piece[0, :n] = audio[start:start + n]
        *state, streamed, n_frames = fn["stream_step"].call(*state, piece, np.array([n], np.int32))
    np.savez(out, embed=np.asarray(emb), stream=np.asarray(streamed), frames=np.asarray(n_frames))
    """
)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    encoder = run.model.encoder
    features = dataclasses.replace(encoder.features, cmn="running")  # streams exactly
    model = EmbeddingModel(dataclasses.replace(encoder, features=features))
    path = tmp_path_factory.mktemp("export") / "model.jaxexport"
    meta = write_artifact(model, path, platforms=("cpu",), max_chunk_s=0.2)
    return model, path, meta


def test_exported_model_runs_without_gru_jax_and_matches(exported, run, tmp_path):
    model, path, meta = exported
    files = sorted(run.corpus.wav_dir.rglob("*.wav"))[:3]
    feats = [extract_features(f, model.features) for f in files]
    padded = np.zeros((3, max(map(len, feats)), meta["n_features"]), np.float32)
    for i, f in enumerate(feats):
        padded[i, : len(f)] = f
    audio = load_audio(files[0], meta["sample_rate"])
    np.savez(
        tmp_path / "in.npz",
        feats=padded,
        lengths=np.array([len(f) for f in feats], np.int32),
        audio=audio,
    )
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(path),
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    want = model.embed_features(feats)
    np.testing.assert_allclose(out["embed"], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    streamer = StreamingEmbedder(model, n_streams=1, max_chunk_s=0.2)
    streamer.open(0)
    streamer.push({0: audio}, meta["sample_rate"])
    live = streamer.close(0)
    np.testing.assert_allclose(out["stream"][0], live, rtol=1e-5, atol=1e-5 * np.abs(live).max())
    np.testing.assert_allclose(out["stream"][0], want[0], rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_artifact_describes_itself(exported):
    model, path, meta = exported
    read_meta, functions = read_artifact(path)
    assert read_meta == meta and set(functions) == {"embed", "stream_init", "stream_step"}
    assert meta["embedding_dim"] == model.embedding_dim and meta["checkpoint"]["weights"]


def test_export_for_accelerators_lowers_here(run, tmp_path):
    meta = write_artifact(run.model, tmp_path / "all.jaxexport", platforms=("cpu", "cuda", "tpu"))
    assert meta["platforms"] == ["cpu", "cuda", "tpu"]
    with pytest.raises(ValueError, match="unknown platform"):
        write_artifact(run.model, tmp_path / "bad.jaxexport", platforms=("gpu",))
