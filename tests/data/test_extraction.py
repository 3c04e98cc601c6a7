"""Parallel extraction: skips counted by reason, workers equal to one process, no orphans."""

import collections
import logging
import os

import numpy as np
import pytest
import soundfile as sf

from gru_jax.data.extraction import ExtractionReport, extract_many
from gru_jax.data.features import FeatureConfig, extract_features
from tests.data._audio import SR, speechlike


def test_extraction_report_numbers():
    report = ExtractionReport(n_ok=3, audio_seconds=7200.0, wall_seconds=36.0)
    report.skipped.update(["silent", "silent", "missing"])
    assert report.hours == 2.0 and report.realtime_factor == 200.0 and report.n_skipped == 3
    assert "200.0x real time" in report.summary()
    assert "  silent: 2" in report.summary() and "  missing: 1" in report.summary()
    assert ExtractionReport().realtime_factor == 0.0


@pytest.fixture(scope="module")
def mixed_items(tmp_path_factory):
    """Good files interleaved with one of each kind of bad file; expected skip reasons by index."""
    root = tmp_path_factory.mktemp("mixed")
    items, bad = [], {}
    for i in range(10):
        path = root / f"good{i}.wav"
        sf.write(path, speechlike(0.6 + 0.1 * i, seed=10 + i), SR)
        items.append((str(path), None, None))
    (root / "corrupt.wav").write_bytes(os.urandom(4000))
    sf.write(root / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(root / "short.wav", speechlike(0.2), SR)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), SR)
    for position, name, reason in [
        (2, "missing.wav", "missing"),
        (5, "corrupt.wav", "unreadable"),
        (7, "silent.wav", "silent"),
        (8, "short.wav", "too_short"),
        (11, "empty.wav", "empty"),
    ]:
        items.insert(position, (str(root / name), None, None))  # positions ascend: none move
        bad[position] = reason
    items.append((str(root / "good0.wav"), 0.1, 0.6))  # a segment
    return items, bad


def test_extract_many_in_process_reports_skips(mixed_items, caplog, capsys):
    items, bad = mixed_items
    cfg = FeatureConfig()
    report = ExtractionReport()
    with caplog.at_level(logging.WARNING, logger="gru_jax.data.extraction"):
        results = list(extract_many(items, cfg, workers=1, progress=True, report=report))
    assert f"{len(items)}/{len(items)}" in capsys.readouterr().err  # the tqdm bar finished
    assert [i for i, _ in results] == list(range(len(items)))
    for i, feats in results:
        if i in bad:
            assert feats is None
        else:
            path, start, end = items[i]
            np.testing.assert_array_equal(feats, extract_features(path, cfg, start, end))
    assert report.skipped == collections.Counter(bad.values())
    assert report.n_ok == len(items) - len(bad) == 11
    assert report.audio_seconds == pytest.approx(sum(0.6 + 0.1 * i for i in range(10)) + 0.5)
    assert report.wall_seconds > 0
    assert sorted(r for _, r, _ in report.skipped_items) == sorted(bad.values())
    skip_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skip_lines) == len(bad)
    assert any("silent.wav: silent:" in line for line in skip_lines)


def test_extract_many_two_workers_equals_one(mixed_items):
    items, bad = mixed_items
    cfg = FeatureConfig(kind="mfcc", vad="utterance")
    one, two = ExtractionReport(), ExtractionReport()
    serial = list(extract_many(items, cfg, workers=1, progress=False, report=one))
    parallel = list(extract_many(items, cfg, workers=2, progress=False, report=two))
    assert [i for i, _ in parallel] == [i for i, _ in serial] == list(range(len(items)))
    for (_, a), (_, b) in zip(serial, parallel, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert two.skipped == one.skipped == collections.Counter(bad.values())
    assert (two.n_ok, two.audio_seconds) == (one.n_ok, one.audio_seconds)


def test_extract_many_lets_bugs_propagate(mixed_items):
    items, _ = mixed_items
    broken = [items[0], (items[1][0], 0.5, 0.1)]  # end before start: a caller bug
    with pytest.raises(ValueError, match="end must be > start"):
        list(extract_many(broken, FeatureConfig(), workers=1, progress=False))


def test_extract_many_empty_input():
    report = ExtractionReport()
    assert list(extract_many([], FeatureConfig(), workers=2, progress=False, report=report)) == []
    assert report.n_ok == 0 and report.n_skipped == 0
