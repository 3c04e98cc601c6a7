"""The step profiler joins trace events to compiled HLO correctly (benchmarks/profile_step.py)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks.profile_step import breakdown, index_hlo, main


def _compiled_hlo() -> str:
    """A scan of matmul + tanh, summed over devices: every category the profiler knows."""
    mesh = jax.make_mesh((jax.device_count(),), ("data",))

    def local(w, x):
        def step(h, x_t):
            h = jnp.tanh(x_t @ w + h @ w)
            return h, h

        _, ys = lax.scan(step, jnp.zeros_like(x[0]), x)  # varies over devices, as x
        return lax.psum(ys.sum(), "data")

    f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(None, "data")), out_specs=P())
    w = jax.device_put(jnp.ones((8, 8)), NamedSharding(mesh, P()))
    x = jax.device_put(
        jnp.ones((5, 2 * jax.device_count(), 8)), NamedSharding(mesh, P(None, "data"))
    )
    return jax.jit(f).lower(w, x).compile().as_text()


def test_index_hlo_sorts_instructions_into_categories():
    ops = index_hlo(_compiled_hlo())
    by_category = {}
    for name, op in ops.items():
        by_category.setdefault(op.category, []).append(name)
    assert set(by_category) >= {"matmul", "other", "container", "collective"}
    loops = {ops[name].computation for name in by_category["matmul"]}
    assert all(not c.startswith("main") for c in loops)  # the dots run inside the loop body
    assert any("dot_general" in ops[name].source for name in by_category["matmul"])
    assert any("psum" in ops[name].source for name in by_category["collective"])


def test_breakdown_divides_by_runs_and_skips_containers_and_unknown_events():
    ops = index_hlo(_compiled_hlo())
    matmul = next(n for n, op in ops.items() if op.category == "matmul")
    other = next(n for n, op in ops.items() if op.category == "other")
    loop = next(n for n, op in ops.items() if op.category == "container")
    events = [
        {"name": matmul, "dur": 3000.0},
        {"name": matmul, "dur": 1000.0},
        {"name": other, "dur": 2000.0},
        {"name": loop, "dur": 50_000.0},  # contains the others: not counted again
        {"name": "ThunkExecutor::Execute", "dur": 90_000.0},
    ]
    result = breakdown(events, ops, runs=2, top=5)
    shares = {row["category"]: row for row in result["categories"]}
    assert result["busy_ms"] == 3.0
    assert shares["matmul"]["ms"] == 2.0 and shares["matmul"]["ops"] == 1.0
    assert shares["other"]["ms"] == 1.0 and abs(shares["other"]["share"] - 1 / 3) < 1e-12
    assert result["ops"][0] == {
        "op": matmul,
        "category": "matmul",
        "computation": ops[matmul].computation,
        "ms": 2.0,
        "calls": 1.0,
        "us_per_call": 2000.0,
        "source": ops[matmul].source[-80:],
    }


def test_profiler_traces_a_real_train_step(capsys, tmp_path):
    main(["--config", "small", "--steps", "1", "--warmup", "1", "--trace-dir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    categories = {row["category"]: row for row in result["categories"]}
    assert categories["matmul"]["ms"] > 0 and categories["other"]["ms"] > 0
    assert categories["collective"]["ops"] == 1.0  # one gradient all-reduce per step
    assert 0 < result["busy_ms"] < result["wall_ms_per_step"] * result["devices"]
    assert list(tmp_path.rglob("perfetto_trace.json.gz"))
