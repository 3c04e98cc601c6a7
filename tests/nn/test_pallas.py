"""The Pallas GRU kernels, proved on a CPU: numerics in Pallas' interpreter against the scan, and
the real Triton (CUDA) and Mosaic (TPU) lowering of the train step and the embedding function."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from gru_jax.nn.encoder import ModelConfig
from gru_jax.nn.gru import gru_layer, resolve_compute_dtype, resolve_kernel
from gru_jax.nn.mesh import data_mesh
from gru_jax.nn.pallas import gpu, recurrence, tpu
from gru_jax.nn.pallas.recurrence import Kernels
from gru_jax.train.config import DataConfig, TrainConfig, TrainerConfig
from gru_jax.train.step import initial_state, make_train_step

T, B, H = 6, 20, 32  # B is not a multiple of the batch tiles: padding is exercised
TOLERANCE = {"float32": 1e-5, "bfloat16": 3e-2}  # relative to the largest value compared
INTERPRETED = {
    "gpu": Kernels(interpret="gpu", gpu_tiles=gpu.GpuTiles(bt=16, hn=H, hk=16, resident=True)),
    "tpu": Kernels(interpret="tpu", tpu_tiles=tpu.TpuTiles(bt=16, tb=4)),
}


def _close(got, want, dtype: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=TOLERANCE[dtype] * scale, rtol=0)


def _inputs(seed: int, n_in: int = 8):
    keys = jax.random.split(jax.random.key(seed), 7)
    bound = 1 / np.sqrt(H)
    uniform = lambda k, shape: jax.random.uniform(k, shape, jnp.float32, -bound, bound)
    params = {
        "w_ih": uniform(keys[0], (n_in, 3 * H)),
        "w_hh": uniform(keys[1], (H, 3 * H)),
        "b_ih": uniform(keys[2], (3 * H,)),
        "b_hh": uniform(keys[3], (3 * H,)),
    }
    x = jax.random.normal(keys[4], (T, B, n_in))
    lengths = jax.random.randint(keys[5], (B,), 0, T + 3).at[:3].set(jnp.array([0, 1, T]))
    h0 = 0.5 * jax.random.normal(keys[6], (B, H))
    return params, x, lengths, h0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_recurrence_kernels_match_the_scan(backend, dtype):
    keys = jax.random.split(jax.random.key(1), 8)
    gi = jax.random.normal(keys[0], (T, B, 3 * H))
    w = (jax.random.normal(keys[1], (H, 3 * H)) / np.sqrt(H)).astype(dtype)
    b = jax.random.normal(keys[2], (3 * H,)) / 4
    h0 = jax.random.normal(keys[3], (B, H))
    lengths = jax.random.randint(keys[4], (B,), 0, T + 2).at[0].set(0)
    d = jax.random.normal(keys[5], (T, B, H))
    c_hid = jax.random.normal(keys[6], (T, B, 3 * H)) / 3
    keep = jax.random.uniform(keys[7], (T, B, H))
    kernels = INTERPRETED[backend]
    hs = recurrence.forward(gi, w, b, h0, lengths, kernels)
    _close(hs, recurrence.forward_reference(gi, w, b, h0, lengths), dtype)
    held = np.asarray(hs)[:, 0]  # a length-0 sequence keeps its initial state throughout
    np.testing.assert_array_equal(held, np.broadcast_to(np.asarray(h0[0]), held.shape))
    u, dh0 = recurrence.backward(d, c_hid, keep, w.T, h0, kernels)
    u_ref, dh0_ref = recurrence.backward_reference(d, c_hid, keep, w.T, h0)
    _close(u, u_ref, dtype)
    _close(dh0, dh0_ref, dtype)


def _layer(params, x, lengths, h0, *, kernel, kernels=None, reverse=False, dtype="float32"):
    ys, h_last = gru_layer(
        params,
        x,
        lengths,
        reverse=reverse,
        kernel=kernel,
        pallas=kernels,
        initial_state=h0,
        compute_dtype=jnp.dtype(dtype),
        backward="autodiff" if kernel == "scan" else "custom",
    )
    return ys, h_last


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_pallas_layer_values_and_gradients_match_the_scan(backend, reverse, dtype):
    params, x, lengths, h0 = _inputs(2)
    probe_ys = jax.random.normal(jax.random.key(3), (T, B, H))
    probe_h = jax.random.normal(jax.random.key(4), (B, H))

    def loss(params, x, h0, **kw):
        ys, h_last = _layer(params, x, lengths, h0, reverse=reverse, dtype=dtype, **kw)
        return jnp.sum(ys * probe_ys) + jnp.sum(h_last * probe_h), (ys, h_last)

    grad = lambda **kw: jax.grad(partial(loss, **kw), argnums=(0, 1, 2), has_aux=True)
    (g_ref, (ys_ref, h_ref)) = grad(kernel="scan")(params, x, h0)
    (g_pal, (ys, h_last)) = grad(kernel="pallas", kernels=INTERPRETED[backend])(params, x, h0)
    _close(ys, ys_ref, dtype)
    _close(h_last, h_ref, dtype)
    assert np.all(np.asarray(ys)[:, 0] == 0)  # the length-0 sequence has no outputs
    for got, want in zip(jax.tree.leaves(g_pal), jax.tree.leaves(g_ref), strict=True):
        _close(got, want, dtype)


def test_pallas_layer_on_a_cpu_runs_the_same_computation_with_scans():
    """Off GPU and TPU the kernels' places are taken by `lax.scan` recurrences."""
    params, x, lengths, h0 = _inputs(5)
    want = _layer(params, x, lengths, h0, kernel="scan")
    got = jax.jit(partial(_layer, kernel="pallas"))(params, x, lengths, h0)
    for a, b in zip(got, want, strict=True):
        _close(a, b, "float32")


def test_pallas_layer_gradients_sum_over_devices_in_shard_map():
    """The kernels' outputs are typed per device (traced here; the CPU runs the scans: Pallas'
    interpreter does not run inside a checked `shard_map`)."""
    params, x, lengths, _ = _inputs(6)
    mesh = data_mesh(jax.devices()[:2])
    P = jax.sharding.PartitionSpec

    def loss(params, x, lengths):
        ys, _ = _layer(params, x, lengths, None, kernel="pallas")
        return jnp.sum(ys**2)

    def sharded(params, x, lengths):
        rows = P(None, "data")
        local = jax.shard_map(
            lambda p, x, n: jax.lax.psum(loss(p, x, n), "data"),
            mesh=mesh,
            in_specs=(P(), rows, P("data")),
            out_specs=P(),
        )
        return local(params, x, lengths)

    x, lengths = x[:, :16], lengths[:16]  # one batch tile per device
    want = jax.grad(loss)(params, x, lengths)
    got = jax.jit(jax.grad(sharded))(params, x, lengths)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        _close(a, b, "float32")


def test_gpu_tiles_are_checked_and_planned():
    with pytest.raises(ValueError, match="power of two"):
        gpu.GpuTiles(bt=24).check(512)
    with pytest.raises(ValueError, match="multiple of hn"):
        gpu.GpuTiles(hn=64).check(96)
    bf16 = jnp.bfloat16
    # the H200 run: what fit and ran, what the compiler refused, what waited on itself
    assert gpu.fits(gpu.GpuTiles(bt=16, hn=64), 256, 512, bf16, sms=132)
    assert not gpu.fits(gpu.GpuTiles(bt=16, hn=32), 256, 1024, bf16, sms=132)  # shared memory
    assert not gpu.fits(gpu.GpuTiles(bt=16, hn=32), 256, 512, bf16, sms=132)  # 256 programs
    assert (
        gpu.plan(256, 512, bf16, sms=132, pass_="forward")
        == gpu.TUNED[(512, "bfloat16", "forward")]
    )
    assert gpu.plan(256, 512, bf16, sms=132, pass_="backward").bt == 32
    assert gpu.plan(256, 512, jnp.float32, sms=132) is None  # 3xTF32 lost to the scan
    assert gpu.plan(256, 1024, bf16, sms=132) is None  # no tiling fits and keeps every program
    assert gpu.plan(256, 200, bf16, sms=132) is None  # no power-of-two tile divides it
    small = gpu.plan(64, 256, bf16, sms=132)
    assert small is not None and gpu.fits(small, 64, 256, bf16, sms=132)
    with pytest.raises(ValueError, match=r"one column tile"):
        gpu.forward(*_gpu_args(), tiles=gpu.GpuTiles(hn=16, hk=16), interpret=True)


def _gpu_args():
    gi = jnp.zeros((T, 16, 3 * H))
    return gi, jnp.zeros((H, 3 * H)), jnp.zeros(3 * H), jnp.zeros((16, H)), jnp.zeros(16, int)


def test_auto_picks_bf16_and_recorded_wins_on_accelerators():
    assert resolve_compute_dtype("auto", "cpu") == jnp.float32
    assert resolve_compute_dtype("auto", "gpu") == jnp.bfloat16
    assert resolve_compute_dtype("float32", "gpu") == jnp.float32
    assert resolve_kernel("auto", jnp.float32, "cpu") == "scan"
    assert resolve_kernel("pallas", jnp.float32, "cpu") == "pallas"


# --------------------------------------------------------------------------------------------
# Lowering for the real targets, on this CPU

DISABLED = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
MARKERS = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


def _small_train_config(dtype: str) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(crop_frames=16),
        model=ModelConfig(
            hidden=128, layers=2, embedding_dim=32, kernel="pallas", compute_dtype=dtype
        ),
        trainer=TrainerConfig(batch_size=16),
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_train_step_and_embedding_lower_for_accelerators(platform, dtype):
    cfg = _small_train_config(dtype)
    mesh = data_mesh(jax.devices()[:1])
    parts, step = make_train_step(cfg, n_classes=10, mesh=mesh)
    state = jax.eval_shape(lambda: initial_state(parts, mesh, 0))
    batch = {
        "feats": jax.ShapeDtypeStruct((16, 16, cfg.n_features), jnp.float32),
        "lengths": jax.ShapeDtypeStruct((16,), jnp.int32),
        "labels": jax.ShapeDtypeStruct((16,), jnp.int32),
    }
    lowered = export.export(step, platforms=[platform], disabled_checks=DISABLED)(state, batch)
    text = lowered.mlir_module()
    if platform == "cuda" and dtype == "float32":  # no kernel: 3xTF32 lost to the scan
        assert MARKERS[platform] not in text
        return
    assert text.count(MARKERS[platform]) >= 4  # forward and backward kernels of both layers

    from gru_jax.infer.embedding import Embedder

    embedder = Embedder(cfg.model, mesh)
    embed = export.export(embedder.embed_batch, platforms=[platform], disabled_checks=DISABLED)(
        state.params["encoder"],
        jax.ShapeDtypeStruct((16, 40, cfg.n_features), jnp.float32),
        jax.ShapeDtypeStruct((16,), jnp.int32),
    )
    assert embed.mlir_module().count(MARKERS[platform]) >= 2


def test_model_config_kernel_choices():
    assert dataclasses.replace(ModelConfig(), kernel="pallas").kernel == "pallas"
    with pytest.raises(ValueError, match=r"ModelConfig\.kernel"):
        ModelConfig(kernel="cudnn")
