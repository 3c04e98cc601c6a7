"""A trained encoder as one file that serves embeddings without gru_jax or the training code.

The file is a zip of `jax.export` artefacts (StableHLO with the weights baked in) and a JSON
description. Loading needs only jax (and numpy): `jax.export.deserialize(bytes).call(...)`.

- ``embed``: features [b, t, F] float32 and lengths [b] int32 -> embeddings [b, E]; batch and
  time are symbolic, so one artefact takes any shape.
- ``stream_init`` / ``stream_step``: the streaming embedder's step (audio in, running embedding
  out, see `infer.streaming`) over b streams: ``stream_init(zeros[b] int32)`` gives the state (a
  flat list of arrays), ``stream_step(*state, audio [b, max_samples] float32, n_samples [b]
  int32)`` returns the new state's arrays followed by the embeddings [b, E] and the frames each
  stream has had [b].

The state crosses the boundary as a flat list of arrays: a reader without gru_jax could not
rebuild gru_jax's state classes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import export

from gru_jax.core.config import to_dict
from gru_jax.core.files import atomic_write
from gru_jax.infer.frontend import Frontend
from gru_jax.infer.model import EmbeddingModel
from gru_jax.infer.streaming import DEFAULT_MAX_CHUNK_S, streamable_features
from gru_jax.nn import streaming
from gru_jax.nn.encoder import SpeakerEncoder

FORMAT = "gru-jax-export"
VERSION = 1
PLATFORMS = ("cpu", "cuda", "tpu")


def _scan_model(model: EmbeddingModel):
    """The model config for export: the scan kernel (portable), no unrolling (the time axis is
    symbolic) and the compute dtype resolved now, so the artefact computes the same everywhere."""
    cfg = model.encoder.model
    return dataclasses.replace(cfg, kernel="scan", unroll=1, compute_dtype=cfg.dtype.name)


def export_embed(model: EmbeddingModel, platforms: Sequence[str]) -> export.Exported:
    cfg = _scan_model(model)
    params = model.encoder.params

    def embed(feats: jax.Array, lengths: jax.Array) -> jax.Array:
        return SpeakerEncoder(cfg).apply({"params": params}, feats, lengths)

    b, t = export.symbolic_shape("b, t")
    n_features = model.features.n_features
    return export.export(jax.jit(embed), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct((b, t, n_features), jnp.float32),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )


def export_stream(
    model: EmbeddingModel, platforms: Sequence[str], max_chunk_s: float
) -> tuple[export.Exported, export.Exported, int]:
    """(stream_init, stream_step, max samples per chunk)."""
    cfg = _scan_model(model)
    params = model.encoder.params
    features = streamable_features(model.features)
    max_samples = round(max_chunk_s * features.sample_rate)
    frontend = Frontend(features, max_samples)

    def state_of(n: int) -> Any:
        return (frontend.init(n), streaming.init_state(cfg, n))

    treedef = jax.tree.structure(jax.eval_shape(lambda: state_of(1)))

    def init(dummy: jax.Array) -> list[jax.Array]:
        state = state_of(1)
        return [jnp.broadcast_to(a, (dummy.shape[0], *a.shape[1:])) for a in jax.tree.leaves(state)]

    def step(*args: jax.Array) -> list[jax.Array]:
        *leaves, audio, n_samples = args
        front, enc = jax.tree.unflatten(treedef, leaves)
        front, frames, n_frames = frontend.step(front, audio, n_samples)
        enc, emb = streaming.step(params, cfg, enc, frames, n_frames)
        return [*jax.tree.leaves((front, enc)), emb, enc.n_frames]

    (b,) = export.symbolic_shape("b")
    exported_init = export.export(jax.jit(init), platforms=tuple(platforms))(
        jax.ShapeDtypeStruct((b,), jnp.int32)
    )
    leaves = [jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype) for a in exported_init.out_avals]
    exported_step = export.export(jax.jit(step), platforms=tuple(platforms))(
        *leaves,
        jax.ShapeDtypeStruct((b, max_samples), jnp.float32),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )
    return exported_init, exported_step, max_samples


def write_artifact(
    model: EmbeddingModel,
    path: str | os.PathLike[str],
    platforms: Sequence[str] = ("cpu",),
    max_chunk_s: float = DEFAULT_MAX_CHUNK_S,
) -> dict[str, Any]:
    """Export `model` to `path` (written atomically); returns the description stored in it."""
    unknown = set(platforms) - set(PLATFORMS)
    if unknown:
        raise ValueError(f"unknown platform(s) {sorted(unknown)}; choose from {PLATFORMS}")
    embed = export_embed(model, platforms)
    init, step, max_samples = export_stream(model, platforms, max_chunk_s)
    streamed = streamable_features(model.features)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "platforms": list(platforms),
        "checkpoint": model.identity(),
        "features": to_dict(model.features),
        "stream_features": to_dict(streamed),
        "model": to_dict(model.encoder.model),
        "n_features": model.features.n_features,
        "embedding_dim": model.embedding_dim,
        "sample_rate": model.features.sample_rate,
        "max_chunk_samples": max_samples,
        "n_state_arrays": len(init.out_avals),
    }

    def write(handle: Any) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("meta.json", json.dumps(meta, indent=2))
            for name, exported in (("embed", embed), ("stream_init", init), ("stream_step", step)):
                z.writestr(f"{name}.bin", bytes(exported.serialize()))

    atomic_write(path, write)
    return meta


def read_artifact(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(description, {"embed", "stream_init", "stream_step": Exported}); the README shows the
    same few lines without gru_jax."""
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        functions = {
            name: export.deserialize(bytearray(z.read(f"{name}.bin")))
            for name in ("embed", "stream_init", "stream_step")
        }
    return meta, functions
