"""The speaker encoder: a stack of GRU layers, utterance pooling and an embedding layer.

The encoder takes its input width from the features it is given (the feature config decides it,
once); its architecture is `ModelConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from gru_jax.core.config import Config
from gru_jax.nn.augment import row_dropout
from gru_jax.nn.gru import (
    BACKWARDS,
    COMPUTE_DTYPES,
    DIRECTIONS,
    KERNELS,
    PROJECTIONS,
    gru_layer,
    resolve_compute_dtype,
    resolve_kernel,
)
from gru_jax.nn.pooling import AttentiveStatsPooling, masked_mean_std

POOLINGS = ("mean", "stats", "attentive")


@dataclass(frozen=True)
class ModelConfig(Config):
    hidden: int = 256
    layers: int = 3
    bidirectional: bool = False
    kernel: str = "auto"  # "scan" | "pallas" (GPU/TPU kernels) | "auto" (pallas where it won)
    projection: str = "step"  # scan: where x @ w_ih runs: "step" | "chunk" | "hoisted"
    chunk: int = 16
    unroll: int = 2
    backward: str = "custom"  # GRU gradient: "custom" (hand-written VJP) | "autodiff"
    grad_chunk: int = 4  # custom backward: steps per weight- and input-gradient matmul
    remat: bool = False  # custom backward: recompute gate activations instead of storing them
    pooling: str = "stats"  # "mean" | "stats" (mean + std) | "attentive" (Okabe et al. 2018)
    attention_dim: int = 128
    embedding_dim: int = 256
    residual: bool = False  # identity skip where widths match, a bias-free projection otherwise
    layer_norm: bool = False  # LayerNorm on each layer's output
    dropout: float = 0.0  # between GRU layers, training only
    compute_dtype: str = "auto"  # matmul inputs ("auto": bf16 on GPU/TPU, f32 on CPU); state f32

    def validate(self) -> None:
        positive = (
            "hidden",
            "layers",
            "chunk",
            "unroll",
            "grad_chunk",
            "attention_dim",
            "embedding_dim",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        choices = {
            "kernel": KERNELS,
            "projection": PROJECTIONS,
            "backward": BACKWARDS,
            "pooling": POOLINGS,
            "compute_dtype": COMPUTE_DTYPES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.remat and self.backward != "custom":
            raise ValueError("ModelConfig.remat needs backward='custom'")

    @property
    def dtype(self) -> jnp.dtype:
        """The compute dtype on the default backend (resolving "auto")."""
        return resolve_compute_dtype(self.compute_dtype)

    @property
    def resolved_kernel(self) -> str:
        return resolve_kernel(self.kernel, self.dtype)


def _torch_uniform(hidden: int) -> Callable:
    """torch.nn.GRU's init, U(-1/sqrt(H), 1/sqrt(H)), for weights and biases alike."""
    bound = 1.0 / math.sqrt(hidden)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class GRUWeights(nn.Module):
    """Declares one direction's torch-compatible parameters and hands them to `gru_layer`."""

    in_features: int
    hidden: int

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        gates = 3 * self.hidden
        shapes = {
            "w_ih": (self.in_features, gates),
            "w_hh": (self.hidden, gates),
            "b_ih": (gates,),
            "b_hh": (gates,),
        }
        init = _torch_uniform(self.hidden)
        return {name: self.param(name, init, shape) for name, shape in shapes.items()}


class GRULayer(nn.Module):
    """One (bi)directional GRU layer on time-major frames, with optional residual and LayerNorm.

    With `initial_state` (unidirectional layers only: a stream's state, see `nn.streaming`) the
    layer continues from it and also returns its final state.
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self, x: jax.Array, lengths: jax.Array, initial_state: jax.Array | None = None
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        cfg = self.config
        if initial_state is not None and cfg.bidirectional:
            raise ValueError("a bidirectional layer cannot continue a stream (it reads ahead)")
        outputs = []
        for name, reverse in DIRECTIONS[: 2 if cfg.bidirectional else 1]:
            params = GRUWeights(x.shape[-1], cfg.hidden, name=name)()
            ys, h_last = gru_layer(
                params,
                x,
                lengths,
                reverse=reverse,
                initial_state=initial_state,
                kernel="scan" if initial_state is not None else cfg.resolved_kernel,
                projection=cfg.projection,
                chunk=cfg.chunk,
                unroll=cfg.unroll,
                compute_dtype=cfg.dtype,
                backward=cfg.backward,
                grad_chunk=cfg.grad_chunk,
                remat=cfg.remat,
            )
            outputs.append(ys)
        y = jnp.concatenate(outputs, axis=-1)
        if cfg.residual:
            same_width = x.shape[-1] == y.shape[-1]
            y = y + (x if same_width else nn.Dense(y.shape[-1], use_bias=False, name="skip")(x))
        if cfg.layer_norm:
            y = nn.LayerNorm(name="norm")(y)
        return y if initial_state is None else (y, h_last)


class SpeakerEncoder(nn.Module):
    """feats [B, T, F], lengths [B] -> embeddings [B, E].

    Lengths of 0 count as 1 (the first, padding, frame) so that pooling always has a frame to
    average and attention never normalises over nothing. In training mode with dropout, `keys`
    holds one PRNG key per row (see `augment.row_keys`). The last GRU layer's time-major output
    is sown as `intermediates/frames` ([T, B, D], zero past each length without residual/norm).
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        feats: jax.Array,
        lengths: jax.Array,
        train: bool = False,
        keys: jax.Array | None = None,
    ) -> jax.Array:
        cfg = self.config
        if feats.ndim != 3:
            raise ValueError(f"SpeakerEncoder expects feats [B, T, F], got shape {feats.shape}")
        dropout = cfg.dropout if train else 0.0
        if dropout and keys is None:
            raise ValueError("training with dropout needs one PRNG key per row (keys=...)")
        n_frames = feats.shape[1]
        lengths = jnp.maximum(lengths.astype(jnp.int32), 1)
        x = jnp.swapaxes(feats.astype(jnp.float32), 0, 1)
        for layer in range(cfg.layers):
            if layer and dropout:
                x = row_dropout(keys, x, dropout, salt=layer)
            x = GRULayer(cfg, name=f"layer_{layer}")(x, lengths)
        self.sow("intermediates", "frames", x)

        valid = jnp.arange(n_frames)[:, None] < lengths[None, :]
        # GRU outputs are already zero past each length; a skip or LayerNorm output is not
        frames = jnp.where(valid[..., None], x, 0.0) if cfg.residual or cfg.layer_norm else x
        if cfg.pooling == "attentive":
            pooled = AttentiveStatsPooling(cfg.attention_dim, name="pooling")(frames, valid)
        else:
            mean, std = masked_mean_std(frames, lengths)
            pooled = mean if cfg.pooling == "mean" else jnp.concatenate([mean, std], axis=-1)
        return nn.Dense(cfg.embedding_dim, name="embedding")(pooled)


def init_params(config: ModelConfig, n_features: int, rng: jax.Array, n_frames: int = 2) -> dict:
    """Fresh encoder parameters for `n_features`-wide input (shapes do not depend on n_frames)."""
    feats = jnp.zeros((1, n_frames, n_features), jnp.float32)
    lengths = jnp.full((1,), n_frames, jnp.int32)
    return SpeakerEncoder(config).init(rng, feats, lengths)["params"]


def input_width(params: dict) -> int:
    """The feature width an encoder's parameters were made for."""
    return int(params["layer_0"]["fwd"]["w_ih"].shape[0])
