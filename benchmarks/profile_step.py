"""Where a compiled train or embedding step spends its time, from a `jax.profiler` trace.

Runs one implementation of `gru_throughput` (same configs and `--impl` specs), traces a few
steps after warm-up, and joins the trace's per-op events with the compiled HLO to sort the time
into matmuls (dots, and fusions around a dot), collectives (all-reduce & co., including the wait
for the other devices) and everything else (elementwise fusions, copies, slices), per device per
step, with the number of ops executed ("thunks" on CPU, whose per-op overhead matters when a
recurrent step is a handful of small ops). The slowest loop bodies and ops are listed with the
JAX source operation they come from.

    python -m benchmarks.profile_step [--config default] [--impl gru_jax] [--mode train]

JSON on stdout (and in --json PATH), tables on stderr. `--trace-dir DIR` keeps the trace
(open `perfetto_trace.json.gz` in ui.perfetto.dev, or the directory in TensorBoard/XProf).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from benchmarks._common import emit, machine_info, print_table
from benchmarks.gru_throughput import MODES, PRESETS, make_data, parse_impl

COLLECTIVES = {
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "all-reduce-start",
    "all-gather-start",
    "collective-permute-start",
}
CONTAINERS = {"while", "call", "conditional"}  # their bodies' ops are traced on their own
MATMUL_OPS = {"dot", "convolution"}

_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")
# the result shape may be a tuple "(f32[..], ..)": the opcode is the first word before "("
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?\s([a-z][\w\-]*)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


@dataclass(frozen=True)
class HloOp:
    category: str  # "matmul" | "collective" | "other" | "container"
    computation: str  # the computation (loop body, entry) it runs in
    source: str  # JAX's op_name metadata: where in the program it comes from


def index_hlo(hlo_text: str) -> dict[str, HloOp]:
    """Instruction name -> category, enclosing computation and JAX source, from HLO text."""
    instructions: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    current = None
    for line in hlo_text.splitlines():
        if not line.startswith(" ") and (match := _COMPUTATION.match(line)):
            current = match.group(1)
        elif current is not None and (match := _INSTRUCTION.match(line)):
            instructions[current].append((*match.groups(), line))
    opcodes = {c: {opcode for _, opcode, _ in rows} for c, rows in instructions.items()}

    ops = {}
    for computation, rows in instructions.items():
        for name, opcode, line in rows:
            called = _CALLS.search(line)
            inner = opcodes.get(called.group(1), set()) if called else set()
            if opcode in CONTAINERS:
                category = "container"
            elif opcode in COLLECTIVES:
                category = "collective"
            elif opcode in MATMUL_OPS or inner & MATMUL_OPS:
                category = "matmul"
            else:
                category = "other"
            source = _OP_NAME.search(line)
            ops[name] = HloOp(category, computation, source.group(1) if source else "")
    return ops


def trace_events(trace_dir: Path) -> list[dict[str, Any]]:
    """Complete ("X") events of the Perfetto trace that `jax.profiler` wrote under trace_dir."""
    files = sorted(trace_dir.rglob("perfetto_trace.json.gz"))
    if not files:
        raise SystemExit(f"no perfetto_trace.json.gz under {trace_dir}: did the trace run?")
    with gzip.open(files[-1], "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def breakdown(
    events: list[dict[str, Any]], ops: dict[str, HloOp], runs: int, top: int
) -> dict[str, Any]:
    """Per device-step milliseconds by category, computation and op."""
    by_category: Counter[str] = Counter()
    op_count: Counter[str] = Counter()
    by_computation: Counter[str] = Counter()
    computation_ops: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for event in events:
        op = ops.get(event["name"])
        if op is None or op.category == "container":
            continue
        us = float(event["dur"])
        by_category[op.category] += us
        op_count[op.category] += 1
        by_computation[op.computation] += us
        computation_ops[op.computation] += 1
        by_op[event["name"]] += us
        calls[event["name"]] += 1
    ms = lambda us: us / runs / 1e3
    busy = sum(by_category.values())
    return {
        "busy_ms": ms(busy),
        "categories": [
            {
                "category": category,
                "ms": ms(us),
                "share": us / busy if busy else 0.0,
                "ops": op_count[category] / runs,
                "us_per_op": us / op_count[category],
            }
            for category, us in by_category.most_common()
        ],
        "computations": [
            {"computation": name, "ms": ms(us), "ops": computation_ops[name] / runs}
            for name, us in by_computation.most_common(top)
        ],
        "ops": [
            {
                "op": name,
                "category": ops[name].category,
                "computation": ops[name].computation,
                "ms": ms(us),
                "calls": calls[name] / runs,
                "us_per_call": us / calls[name],
                "source": ops[name].source[-80:],
            }
            for name, us in by_op.most_common(top)
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(PRESETS), default="default")
    parser.add_argument("--impl", default="gru_jax", help="a gru_throughput --impl (not torch)")
    parser.add_argument("--mode", choices=MODES, default="train")
    parser.add_argument("--steps", type=int, default=3, help="traced steps")
    parser.add_argument("--warmup", type=int, default=2, help="untraced steps after compiling")
    parser.add_argument("--top", type=int, default=15, help="rows of the op and loop tables")
    parser.add_argument("--trace-dir", type=Path, help="keep the trace here (default: temporary)")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.impl.startswith("torch"):
        parser.error("--impl: torch is not traced by jax.profiler; use gru_jax or flax")
    if args.steps < 1:
        parser.error("--steps must be >= 1")

    cfg = PRESETS[args.config]
    impl = parse_impl(args.impl, cfg, make_data(cfg))
    prepared = impl.prepare(args.mode)
    for _ in range(args.warmup):
        impl.run(args.mode)
    ops = index_hlo(impl.compiled[args.mode].as_text())

    with tempfile.TemporaryDirectory() as scratch:
        trace_dir = args.trace_dir or Path(scratch)
        print(f"[{args.mode}] tracing {args.steps} steps of {args.impl} ...", file=sys.stderr)
        jax.profiler.start_trace(str(trace_dir), create_perfetto_trace=True)
        start = time.perf_counter()
        for _ in range(args.steps):
            impl.run(args.mode)
        wall_ms = (time.perf_counter() - start) / args.steps * 1e3
        jax.profiler.stop_trace()
        events = trace_events(trace_dir)

    devices = jax.local_device_count()
    result = breakdown(events, ops, args.steps * devices, args.top)
    result["unaccounted_ms"] = wall_ms - result["busy_ms"]
    print_table(result["categories"], ["category", "ms", "share", "ops", "us_per_op"])
    print_table(result["computations"], ["computation", "ms", "ops"])
    print_table(result["ops"], ["op", "category", "ms", "calls", "us_per_call", "source"])
    print(
        f"[{args.mode}] per device and step: {wall_ms:.1f} ms wall (traced), "
        f"{result['busy_ms']:.1f} ms in ops, {result['unaccounted_ms']:.1f} ms between them "
        f"(dispatch, per-op overhead, idle); {devices} device(s)",
        file=sys.stderr,
    )
    emit(
        {
            "benchmark": "profile_step",
            "config_name": args.config,
            "impl": args.impl,
            "mode": args.mode,
            "backend": jax.default_backend(),
            "devices": devices,
            "steps": args.steps,
            "wall_ms_per_step": wall_ms,
            "machine": machine_info(),
            **prepared,
            **result,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
