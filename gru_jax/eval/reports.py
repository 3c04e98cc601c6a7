"""PNG plots and plain-text tables for evaluation and training reports.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no display and no global
backend switch) at a fixed size, and written atomically: a crashed or parallel run never leaves a
half-written PNG behind under the final name.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.stats import norm

from gru_jax.core.files import atomic_write

DPI = 100
DET_FIGSIZE = (6.0, 6.0)
HISTOGRAM_FIGSIZE = (7.0, 4.5)
CURVES_WIDTH = 8.0
CURVES_HEIGHT_PER_METRIC = 2.5
# Metrics that fall by decades over a run: on a linear axis their late values sit flat on zero.
LOG_SCALE_METRICS = ("lr", "val_eer")

# DET axis ticks, as probabilities (labelled in percent), spaced so that labels do not collide.
_DET_TICKS = (1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
_DET_LIMITS = (1e-4, 0.99)  # widest range shown; the axes crop the curve beyond it


def plot_det(
    p_fa: Sequence[float],
    p_miss: Sequence[float],
    out_png: str | os.PathLike,
    eer: float | None = None,
    label: str | None = None,
) -> None:
    """DET curve on normal-deviate axes (ticks in %), optionally marking the EER point."""
    plot_dets({label or "DET": DetCurve(p_fa, p_miss, eer)}, out_png)


class DetCurve(NamedTuple):
    p_fa: Sequence[float]
    p_miss: Sequence[float]
    eer: float | None = None  # marked on the curve when given


def plot_dets(curves: Mapping[str, DetCurve], out_png: str | os.PathLike) -> None:
    """Several systems' DET curves on one pair of normal-deviate axes, so they compare at a
    glance; the range covers every curve."""
    if not curves:
        raise ValueError("plot_dets: no curves")
    arrays = {}
    for name, curve in curves.items():
        p_fa, p_miss = np.asarray(curve.p_fa, np.float64), np.asarray(curve.p_miss, np.float64)
        if p_fa.ndim != 1 or p_fa.shape != p_miss.shape or p_fa.size == 0:
            raise ValueError(
                f"plot_det: {name}: p_fa {p_fa.shape} and p_miss {p_miss.shape} must be 1-D, "
                "same length"
            )
        arrays[name] = (p_fa, p_miss)
    ranges = [_det_range(p_fa, p_miss) for p_fa, p_miss in arrays.values()]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    fig = Figure(figsize=DET_FIGSIZE, dpi=DPI)
    ax = fig.add_subplot()
    for name, (p_fa, p_miss) in arrays.items():
        eer = curves[name].eer
        label = name if eer is None else f"{name} (EER {100 * eer:.2f}%)"
        (line,) = ax.plot(_deviate(p_fa), _deviate(p_miss), label=label)
        if eer is not None:
            point = _deviate(np.array([eer]))
            ax.plot(point, point, "o", color=line.get_color())
    ticks = [t for t in _DET_TICKS if lo <= t <= hi]
    for set_ticks, set_labels, set_lim in (
        (ax.set_xticks, ax.set_xticklabels, ax.set_xlim),
        (ax.set_yticks, ax.set_yticklabels, ax.set_ylim),
    ):
        set_ticks(norm.ppf(ticks))
        set_labels([f"{100 * t:g}" for t in ticks])
        set_lim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("False accept rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, alpha=0.4)
    # Curves run from the top left to the bottom right: the lower left corner is the emptiest.
    ax.legend(loc="lower left", fontsize="small" if len(arrays) <= 3 else "x-small")
    _save(fig, out_png)


def _det_range(p_fa: np.ndarray, p_miss: np.ndarray) -> tuple[float, float]:
    """Probability range for both axes: down to the finest rate measured, up to twice the EER.

    The upper end keeps the interesting part of the curve large: beyond twice the EER one rate is
    already small, and few DET plots show more than 40%.
    """
    rates = np.concatenate([p_fa, p_miss])
    measured = rates[rates > 0]
    near_eer = float(np.min(np.maximum(p_fa, p_miss)))
    hi = min(_DET_LIMITS[1], max(0.4, 2 * near_eer))
    lo = max(_DET_LIMITS[0], measured.min() / 2) if measured.size else _DET_LIMITS[0]
    return min(lo, hi / 10), hi


def _deviate(p: np.ndarray) -> np.ndarray:
    # Rates of exactly 0 or 1 become far-off finite points, so the curve leaves the axes there.
    return norm.ppf(np.clip(p, 1e-12, 1 - 1e-12))


def plot_score_histograms(
    scores: Sequence[float],
    labels: Sequence[int],
    out_png: str | os.PathLike,
    threshold: float | None = None,
) -> None:
    """Genuine (target) and impostor (non-target) score densities on shared bins."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape or scores.size == 0:
        raise ValueError(
            f"plot_score_histograms: scores {scores.shape} and labels {labels.shape} must be "
            "1-D, same length, not empty"
        )
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError("plot_score_histograms: labels must be binary 0/1 or bool")
    is_target = labels.astype(bool)
    bins = np.histogram_bin_edges(scores, bins="auto")
    fig = Figure(figsize=HISTOGRAM_FIGSIZE, dpi=DPI)
    ax = fig.add_subplot()
    for mask, name in ((~is_target, "impostor"), (is_target, "genuine")):
        if mask.any():
            ax.hist(
                scores[mask], bins=bins, density=True, alpha=0.5, label=f"{name} ({mask.sum()})"
            )
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("Score")
    ax.set_ylabel("Density")
    ax.legend(loc="upper left")
    _save(fig, out_png)


def plot_training_curves(metrics: list[dict], out_png: str | os.PathLike) -> None:
    """One stacked subplot per numeric metric found in the rows, against "step" (or row number).

    Rows may lack any key; a metric is plotted at the rows that have it. The learning rate and
    the validation EER are drawn on a log axis when all their values are positive.
    """
    names = _metric_names(metrics)
    if not names:
        raise ValueError("plot_training_curves: no numeric metrics besides 'step' in the rows")
    fig = Figure(figsize=(CURVES_WIDTH, CURVES_HEIGHT_PER_METRIC * len(names)), dpi=DPI)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        _plot_metric(ax, metrics, name)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    _save(fig, out_png)


def _metric_names(rows: list[dict]) -> list[str]:
    """Numeric keys other than "step", in order of first appearance."""
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and _is_number(value):
                names.setdefault(key)
    return list(names)


def _plot_metric(ax: Axes, rows: list[dict], name: str) -> None:
    points = [
        (row.get("step", index), row[name])
        for index, row in enumerate(rows)
        if _is_number(row.get(name))
    ]
    steps, values = zip(*points, strict=True)
    ax.plot(steps, values, marker="." if len(points) < 50 else None)
    ax.set_ylabel(name)
    ax.grid(True, alpha=0.4)
    if name in LOG_SCALE_METRICS and all(value > 0 for value in values):
        ax.set_yscale("log")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Aligned plain-text table: numeric columns right-aligned, text left-aligned.

    Floats get 4 decimals (scientific notation when tiny or huge); a missing key or None is "-".
    """
    cells = [[_format_cell(row.get(column)) for column in columns] for row in rows]
    numeric = [
        all(_is_number(row.get(column)) or row.get(column) is None for row in rows)
        for column in columns
    ]
    widths = [
        max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)
    ]

    def render(values: list[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [render(list(columns)), render(["-" * width for width in widths])]
    lines += [render(line) for line in cells]
    return "\n".join(lines)


def _format_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(value)
    if _is_number(value):
        value = float(value)
        if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}"
        return f"{value:.3e}"
    return str(value)


def _save(fig: Figure, out_png: str | os.PathLike) -> None:
    atomic_write(out_png, lambda handle: fig.savefig(handle, format="png", dpi=DPI))
