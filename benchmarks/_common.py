"""Shared by the benchmarks: interleaved timing, summaries, machine facts, JSON and table output.

Measurements on a shared machine drift by 15-20% between runs, so whatever is compared is timed
in one process, interleaved round by round (A B C, B C A, ...), and compared by medians and by
the median of per-round (paired) ratios. This module imports only the standard library and NumPy.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def interleaved_times(tasks: Mapping[str, Callable[[], None]], rounds: int) -> dict[str, list]:
    """Seconds per call of each task, one call of every task per round, order rotated per round.

    Each task must block until its work is done (`block_until_ready` for JAX).
    """
    names = list(tasks)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            tasks[name]()
            times[name].append(time.perf_counter() - start)
    return times


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median and spread of per-call times, in milliseconds."""
    ms = 1e3 * np.asarray(seconds, np.float64)
    q25, median, q75 = np.percentile(ms, [25, 50, 75])
    return {
        "ms_median": float(median),
        "ms_min": float(ms.min()),
        "ms_max": float(ms.max()),
        "ms_q25": float(q25),
        "ms_q75": float(q75),
        "n": len(ms),
    }


def paired_ratio(slow: Sequence[float], fast: Sequence[float]) -> dict[str, float]:
    """Speed-up of `fast` over `slow` from per-round pairs: median and quartiles of slow/fast."""
    ratios = np.asarray(slow, np.float64) / np.asarray(fast, np.float64)
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What produced the numbers; the load average says how busy the shared machine was."""
    return {
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def emit(result: Mapping[str, Any], json_path: str | None) -> None:
    """The result as JSON on stdout, and in `json_path` too when given."""
    text = json.dumps(result, indent=2, sort_keys=False)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n")


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """A fixed-width table of `columns` on stderr (floats to 3 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return "-" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
    print(line(columns), file=sys.stderr)
    for r in cells:
        print(line(r), file=sys.stderr)
