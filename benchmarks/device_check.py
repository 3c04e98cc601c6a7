"""One-shot accelerator check: kernel numerics on the device, tile tuning, then train and
embedding throughput of the Pallas kernels against the scan, Flax nn.RNN(GRUCell) and
torch.nn.GRU (cuDNN on a GPU).

    python -m benchmarks.device_check --out DIR [--budget-s 480]
    python -m benchmarks.device_check --dry-run     # on a CPU: tiny sizes, kernels interpreted

Needs only jax, flax, optax, orbax, numpy (+ torch for the cuDNN baseline). Results go to
DIR/device_check.json (everything), DIR/device_check.jsonl (one line per measurement, written as
it happens, so a run cut short still leaves its data) and DIR/device_check.md (the tables,
also printed last). On a CPU the dry run checks that the script works before a device is lent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import gru_throughput
from gru_jax.nn.gru import gru_layer
from gru_jax.nn.pallas import gpu, recurrence
from gru_jax.nn.pallas.recurrence import Kernels

DTYPES = ("bfloat16", "float32")
PASS_TOLERANCE = {"bfloat16": 2e-2, "float32": 1e-4}  # relative (Frobenius) error vs float32
THROUGHPUT_RUNS = (
    ("h512-b256", "bfloat16"),
    ("h1024-b256", "bfloat16"),
    ("h512-b256", "float32"),
    ("h1024-b256", "float32"),
)
SECONDS_PER_THROUGHPUT_RUN = 80  # compile-dominated; a run is skipped when less time is left


@dataclasses.dataclass
class Check:
    """One run's rows and its time budget, both counted from the run's `start` (not the module's
    import, which a test session may do long before)."""

    out: Path
    start: float
    budget_s: float
    dry_run: bool
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def emit(self, **row: Any) -> dict[str, Any]:
        row = {"t": round(time.time() - self.start, 1), **row}
        self.rows.append(row)
        with open(self.out / "device_check.jsonl", "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(json.dumps(row, default=str), file=sys.stderr, flush=True)
        return row

    def left(self) -> float:
        return self.start + self.budget_s - time.time()


def timed(fn: Callable, *args: Any, reps: int = 10) -> tuple[Any, float]:
    """(result, median ms) after two untimed calls."""
    out = jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return out, 1e3 * float(np.median(times))


def relative_error(got: Any, want: Any) -> float:
    """Frobenius error of all leaves together (inf if anything is not finite)."""
    flat = lambda tree: np.concatenate(
        [np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)]
    )
    got, want = flat(got), flat(want)
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def recurrence_inputs(n_steps: int, batch: int, hidden: int, dtype: str, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 9)
    scale = 1 / np.sqrt(hidden)
    w = (jax.random.uniform(keys[0], (hidden, 3 * hidden), minval=-1, maxval=1) * scale).astype(
        dtype
    )
    forward = (
        jax.random.normal(keys[1], (n_steps, batch, 3 * hidden)),
        w,
        jax.random.uniform(keys[2], (3 * hidden,), minval=-scale, maxval=scale),
        0.5 * jax.random.normal(keys[3], (batch, hidden)),
        jax.random.randint(keys[4], (batch,), n_steps // 2, n_steps + 1).astype(jnp.int32),
    )
    backward = (
        jax.random.normal(keys[5], (n_steps, batch, hidden)),
        jax.random.normal(keys[6], (n_steps, batch, 3 * hidden)) / 3,
        jax.random.uniform(keys[7], (n_steps, batch, hidden)),
        w.T,
        jax.random.normal(keys[8], (batch, hidden)),
    )
    return forward, backward


def candidates(hidden: int, dtype: str, dry_run: bool) -> list[gpu.GpuTiles]:
    """Tilings worth timing for one problem, most promising first: the planned or tuned ones
    and variations, keeping only those `gpu.fits` admits (the others fail to compile or wait
    on programs that cannot be resident)."""
    if dry_run:  # one column tile: interpreted programs run one at a time
        return [gpu.GpuTiles(bt=16, hn=hidden, hk=16)]
    sms = gpu._sm_count()
    start = [t for p in ("forward", "backward") if (t := gpu.plan(256, hidden, "bfloat16", sms, p))]
    variants = [{}, {"num_warps": 8}, {"bt": 32}, {"bt": 64}, {"hk": hidden}, {"resident": True}]
    variants += [{"hn": hn} for hn in (16, 32, 64, 128)]
    out: list[gpu.GpuTiles] = []
    for base in start or [gpu.GpuTiles()]:
        for change in variants:
            tiles = dataclasses.replace(base, **change)
            if tiles not in out and gpu.fits(tiles, 256, hidden, dtype, sms):
                out.append(tiles)
    return out[:4] if dtype == "float32" else out[:8]


def tune_and_check(check: Check, hidden: int, dtype: str, n_steps: int, batch: int) -> None:
    """Time every candidate tiling of both recurrences against the scan reference; keep the
    fastest correct one in `gpu.TUNED` (so `gpu.plan`, and the throughput runs, use it)."""
    forward_args, backward_args = recurrence_inputs(n_steps, batch, hidden, dtype)
    interpret = check.dry_run
    # references in true float32: XLA's default on GPUs rounds float32 matmul inputs to TF32
    highest = lambda fn: jax.jit(jax.default_matmul_precision("highest")(fn))
    reference = {
        "forward": highest(recurrence.forward_reference),
        "backward": highest(recurrence.backward_reference),
    }
    kernel = {
        "forward": lambda tiles: jax.jit(lambda *a: gpu.forward(*a, tiles, interpret)),
        "backward": lambda tiles: jax.jit(lambda *a: gpu.backward(*a, tiles, interpret)),
    }
    for pass_, args in (("forward", forward_args), ("backward", backward_args)):
        want, ref_ms = timed(reference[pass_], *args, reps=1 if interpret else 10)
        check.emit(kind="scan_recurrence", hidden=hidden, dtype=dtype, pass_=pass_, ms=ref_ms)
        best = None
        for tiles in candidates(hidden, dtype, check.dry_run):
            if check.left() < 60:
                check.emit(kind="skipped", what=f"tuning {pass_} H={hidden} {dtype}: no time")
                break
            try:
                t0 = time.perf_counter()
                got, ms = timed(kernel[pass_](tiles), *args, reps=1 if interpret else 10)
                error = relative_error(got, want)
                ok = error <= PASS_TOLERANCE[dtype]
                row = check.emit(
                    kind="kernel",
                    pass_=pass_,
                    hidden=hidden,
                    dtype=dtype,
                    tiles=dataclasses.asdict(tiles),
                    ms=ms,
                    vs_scan=ref_ms / ms,
                    rel_error=error,
                    ok=ok,
                    first_call_s=time.perf_counter() - t0,
                )
                if ok and (best is None or ms < best["ms"]):
                    best = row | {"tiles_obj": tiles}
            except Exception as e:  # a tiling the compiler refuses is a result, not a crash
                check.emit(kind="kernel", pass_=pass_, hidden=hidden, dtype=dtype,
                           tiles=dataclasses.asdict(tiles), error=f"{type(e).__name__}: {e}"[:800])  # fmt: skip
        if best is not None:
            gpu.TUNED[(hidden, dtype, pass_)] = best["tiles_obj"]
            check.emit(kind="tuned", pass_=pass_, hidden=hidden, dtype=dtype, tiles=best["tiles"],
                       ms=best["ms"], vs_scan=best["vs_scan"], rel_error=best["rel_error"])  # fmt: skip


def layer_gradients(check: Check, hidden: int, dtype: str, n_steps: int, batch: int) -> None:
    """The whole Pallas layer (forward and gradients) against autodiff of the scan."""
    keys = jax.random.split(jax.random.key(7), 6)
    bound = 1 / np.sqrt(hidden)
    params = {
        name: jax.random.uniform(k, shape, minval=-bound, maxval=bound)
        for (name, shape), k in zip(
            {
                "w_ih": (80, 3 * hidden),
                "w_hh": (hidden, 3 * hidden),
                "b_ih": (3 * hidden,),
                "b_hh": (3 * hidden,),
            }.items(),
            keys,
            strict=False,
        )
    }
    x = jax.random.normal(keys[4], (n_steps, batch, 80))
    lengths = jax.random.randint(keys[5], (batch,), 1, n_steps + 1)
    kernels = Kernels(interpret="gpu", gpu_tiles=candidates(hidden, dtype, True)[0])
    if not check.dry_run:
        kernels = Kernels()

    def loss(params, x, kernel):
        ys, h_last = gru_layer(
            params,
            x,
            lengths,
            kernel=kernel,
            pallas=kernels,
            compute_dtype=jnp.dtype(dtype),
            backward="autodiff" if kernel == "scan" else "custom",
        )
        return jnp.sum(jnp.sin(ys)) + jnp.sum(h_last)

    grads = {  # all XLA matmuls in true float32 (see tune_and_check)
        k: jax.jit(
            jax.default_matmul_precision("highest")(
                jax.grad(lambda p, x, k=k: loss(p, x, k), argnums=(0, 1))
            )
        )
        for k in ("scan", "pallas")
    }
    want = jax.tree.leaves(grads["scan"](params, x))
    got = jax.tree.leaves(grads["pallas"](params, x))
    errors = [relative_error(g, w) for g, w in zip(got, want, strict=True)]
    check.emit(
        kind="layer_gradients",
        hidden=hidden,
        dtype=dtype,
        max_rel_error=max(errors),
        ok=max(errors) <= 5 * PASS_TOLERANCE[dtype],
    )


def throughput(check: Check, config: str, dtype: str) -> None:
    """Pallas kernels vs the scan, Flax and torch; without the kernels if they fail to build."""
    specs = ["gru_jax:kernel=pallas", "gru_jax:kernel=scan", "flax", "torch"]
    steps, warmup = (2, 1) if check.dry_run else (5, 1)
    try:
        result = gru_throughput.run(config, specs, ["train", "embed"], steps, warmup, dtype)
    except Exception as e:
        check.emit(kind="error", where=f"throughput {config} {dtype}", error=repr(e)[:1500])
        traceback.print_exc()
        result = gru_throughput.run(config, specs[1:], ["train", "embed"], steps, warmup, dtype)
    for row in result["results"]:
        check.emit(kind="throughput", config=config, dtype=dtype, **row)
    for mode, summary in result["summary"].items():
        for pair, ratio in summary["ratios"].items():
            check.emit(kind="ratio", config=config, dtype=dtype, mode=mode, pair=pair,
                       paired=ratio["paired"]["median"])  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["## Kernels (recurrence only, ms)", "", "| pass | H | dtype | tiles | ms | vs scan | rel error |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if r["kind"] == "tuned":
            t = r["tiles"]
            tiles = f"bt{t['bt']} hn{t['hn']} hk{t['hk']} w{t['num_warps']}" + (
                " resident" if t["resident"] else ""
            )
            lines.append(
                f"| {r['pass_']} | {r['hidden']} | {r['dtype']} | {tiles} | {r['ms']:.2f} "
                f"| x{r['vs_scan']:.2f} | {r['rel_error']:.1e} |"
            )
    lines += ["", "## Throughput (frames/s; ratios are pallas over each, paired medians)", ""]
    lines += ["| config | dtype | mode | pallas | scan | flax | torch | x scan | x torch |"]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    table: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r.get("config"), r.get("dtype"), r.get("mode"))
        if r["kind"] == "throughput":
            name = r["impl"].split(":")[-1].replace("kernel=", "")
            table.setdefault(key, {})[name] = r["frames_per_s"]
        if r["kind"] == "ratio":
            table.setdefault(key, {})["x " + r["pair"].split(" vs ")[-1].split(":")[-1]] = r[
                "paired"
            ]
    for (config, dtype, mode), v in table.items():
        cells = [f"{v[k]:,.0f}" if k in v else "-" for k in ("pallas", "scan", "flax", "torch")]
        ratios = [f"x{v[k]:.2f}" if k in v else "-" for k in ("x kernel=scan", "x torch")]
        lines.append(f"| {config} | {dtype} | {mode} | " + " | ".join(cells + ratios) + " |")
    checks = [r for r in rows if r["kind"] in ("kernel", "layer_gradients")]
    failed = [r for r in checks if not r.get("ok")]
    lines += ["", f"numerics: {len(checks) - len(failed)} of {len(checks)} checks passed"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    start = time.time()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "device_check_out"))
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="stop starting new work after"
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, interpreted kernels")
    args = parser.parse_args(argv)
    dry_run = args.dry_run or jax.default_backend() == "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, start, args.budget_s, dry_run)
    check.emit(
        kind="env",
        backend=jax.default_backend(),
        devices=[d.device_kind for d in jax.devices()],
        jax=jax.__version__,
        dry_run=dry_run,
        sms=gpu._sm_count() if jax.default_backend() == "gpu" else None,
    )
    if dry_run:
        problems, n_steps, batch = [(32, "bfloat16"), (32, "float32")], 6, 16
        runs = [("small", "bfloat16")]
    else:
        problems, n_steps, batch = [(h, d) for d in DTYPES for h in (512, 1024)], 200, 256
        runs = list(THROUGHPUT_RUNS)
    # bfloat16 first, kernels then models: the measurements that decide `auto` come first
    for dtype in DTYPES:
        for hidden, problem_dtype in problems:
            if problem_dtype != dtype:
                continue
            try:
                tune_and_check(check, hidden, dtype, n_steps, batch)
                layer_gradients(check, min(hidden, 512), dtype, *((5, 16) if dry_run else (64, 64)))
            except Exception as e:
                check.emit(kind="error", where=f"kernels H={hidden} {dtype}", error=repr(e)[:1500])
                traceback.print_exc()
        for config, run_dtype in runs:
            if run_dtype != dtype:
                continue
            if check.left() < SECONDS_PER_THROUGHPUT_RUN:
                check.emit(kind="skipped", what=f"throughput {config} {dtype}: no time left")
                continue
            try:
                throughput(check, config, dtype)
            except Exception as e:
                check.emit(kind="error", where=f"throughput {config} {dtype}", error=repr(e)[:1500])
                traceback.print_exc()
    report = markdown(check.rows)
    (out / "device_check.md").write_text(report)
    (out / "device_check.json").write_text(json.dumps(check.rows, indent=1, default=str))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
