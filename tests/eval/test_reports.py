"""reports: PNGs are written whole at the documented size; tables line up."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from gru_jax.eval import reports


def read_png(path):
    assert path.stat().st_size > 1000
    image = matplotlib.image.imread(path)
    assert image.std() > 0.01  # something was drawn, not a blank canvas
    return image


def expected_shape(figsize):
    return (round(figsize[1] * reports.DPI), round(figsize[0] * reports.DPI))


def assert_no_leftovers(directory, keep):
    assert sorted(p.name for p in directory.iterdir()) == sorted(keep)


def test_plot_det(tmp_path):
    p_fa = np.array([1.0, 0.6, 0.3, 0.1, 0.03, 0.01, 0.0])
    p_miss = np.array([0.0, 0.002, 0.01, 0.05, 0.15, 0.4, 1.0])
    out = tmp_path / "plots" / "det.png"  # the folder is created
    reports.plot_det(p_fa, p_miss, out, eer=0.08, label="system A")
    assert read_png(out).shape[:2] == expected_shape(reports.DET_FIGSIZE)
    assert_no_leftovers(out.parent, ["det.png"])


def test_plot_dets_writes_one_det_figure_and_refuses_malformed_curves(tmp_path):
    out = tmp_path / "dets.png"
    reports.plot_dets(
        {
            "good": reports.DetCurve([1.0, 0.01, 0.0], [0.0, 0.02, 1.0], eer=0.015),
            "poor": reports.DetCurve([1.0, 0.3, 0.0], [0.0, 0.3, 1.0]),
        },
        out,
    )
    assert read_png(out).shape[:2] == expected_shape(reports.DET_FIGSIZE)
    with pytest.raises(ValueError, match="poor: p_fa"):
        reports.plot_dets({"poor": reports.DetCurve([0.1], [0.1, 0.2])}, out)
    with pytest.raises(ValueError, match="no curves"):
        reports.plot_dets({}, out)


def test_plot_det_overwrites_atomically(tmp_path):
    out = tmp_path / "det.png"
    out.write_bytes(b"stale")
    reports.plot_det([1.0, 0.0], [0.0, 1.0], out)  # no rate strictly inside (0, 1): default range
    assert read_png(out).shape[:2] == expected_shape(reports.DET_FIGSIZE)
    assert_no_leftovers(tmp_path, ["det.png"])


def test_failed_plot_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        reports.plot_det([0.1, 0.2], [0.1], tmp_path / "det.png")
    assert_no_leftovers(tmp_path, [])


def test_plot_score_histograms(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.3
    scores = rng.normal(size=400) + 2 * labels
    out = tmp_path / "hist.png"
    reports.plot_score_histograms(scores, labels.astype(int), out, threshold=1.0)
    assert read_png(out).shape[:2] == expected_shape(reports.HISTOGRAM_FIGSIZE)
    with pytest.raises(ValueError, match="binary"):
        reports.plot_score_histograms([0.1, 0.2], [0, 2], tmp_path / "bad.png")
    assert_no_leftovers(tmp_path, ["hist.png"])


def test_plot_training_curves_one_subplot_per_metric(tmp_path):
    rows = [
        {"step": 0, "loss": 5.0, "lr": 1e-4},
        {"step": 100, "loss": 3.2, "lr": 1e-3, "phase": "train"},  # text values are ignored
        {"step": 200, "loss": 2.1, "lr": 1e-3, "val_eer": 0.2},
        {"step": 300, "loss": 1.7, "lr": 5e-4, "val_eer": None},
        {"step": 400, "loss": 1.5, "lr": 2e-4, "val_eer": 0.12},
    ]
    assert reports._metric_names(rows) == ["loss", "lr", "val_eer"]
    out = tmp_path / "curves.png"
    reports.plot_training_curves(rows, out)
    three = (reports.CURVES_WIDTH, 3 * reports.CURVES_HEIGHT_PER_METRIC)
    assert read_png(out).shape[:2] == expected_shape(three)

    reports.plot_training_curves([{"loss": 2.0}, {"loss": 1.0}], out)  # no "step": row numbers
    one = (reports.CURVES_WIDTH, reports.CURVES_HEIGHT_PER_METRIC)
    assert read_png(out).shape[:2] == expected_shape(one)
    with pytest.raises(ValueError, match="no numeric metrics"):
        reports.plot_training_curves([{"step": 1}], out)


def test_rates_and_error_rates_are_drawn_on_log_axes_when_positive():
    axes = Figure().subplots(4, 1)
    rows = [
        {"step": 0, "lr": 1e-3, "loss": 5.0, "val_eer": 0.4},
        {"step": 1, "lr": 1e-4, "loss": 2.0},
    ]
    reports._plot_metric(axes[0], rows, "lr")
    reports._plot_metric(axes[1], rows, "loss")
    reports._plot_metric(axes[2], [*rows, {"step": 2, "val_eer": 0.01}], "val_eer")
    reports._plot_metric(axes[3], [*rows, {"step": 2, "val_eer": 0.0}], "val_eer")  # no log of 0
    assert [ax.get_yscale() for ax in axes] == ["log", "linear", "log", "linear"]


def test_format_table_alignment():
    rows = [
        {"set": "vox1-O", "eer": 0.0123456, "n": 37720, "note": None},
        {"set": "librispeech-test-clean", "eer": 0.00012, "n": 512},
        {"set": "x", "eer": 12.5, "n": 7, "note": "ok"},
    ]
    table = reports.format_table(rows, ["set", "eer", "n", "note"])
    lines = table.split("\n")
    assert lines[0].split() == ["set", "eer", "n", "note"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["vox1-O", "0.0123", "37720", "-"]
    assert lines[3].split() == ["librispeech-test-clean", "1.200e-04", "512", "-"]
    assert lines[4].split() == ["x", "12.5000", "7", "ok"]
    assert all(line == line.rstrip() for line in lines)
    # Text columns start together, numeric columns end together, two spaces apart at the widest.
    width = len("librispeech-test-clean")
    assert {_field_start(line, 0) for line in lines} == {0}
    assert {_field_end(line, 1) for line in lines} == {width + 2 + len("1.200e-04")}
    assert {_field_end(line, 2) for line in lines} == {width + 2 + 9 + 2 + len("37720")}
    assert {_field_start(line, 3) for line in lines} == {width + 2 + 9 + 2 + 5 + 2}


def test_format_table_empty_rows():
    assert reports.format_table([], ["a", "bb"]) == "a  bb\n-  --"


def _field_start(line: str, column: int) -> int:
    position = 0
    for index, field in enumerate(line.split()):
        position = line.index(field, position)
        if index == column:
            return position
        position += len(field)
    raise AssertionError(line)


def _field_end(line: str, column: int) -> int:
    field = line.split()[column]
    return _field_start(line, column) + len(field)
