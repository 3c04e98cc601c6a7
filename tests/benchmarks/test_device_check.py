"""The one-shot device check runs end to end on a CPU (kernels interpreted, tiny sizes), so it is
known to work before a GPU is lent."""

import json
import re

from benchmarks import device_check


def test_device_check_dry_run(tmp_path):
    assert device_check.main(["--dry-run", "--out", str(tmp_path), "--budget-s", "600"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "device_check.jsonl").read_text().splitlines()]
    assert not [r for r in rows if r["kind"] == "error"], rows
    kinds = {r["kind"] for r in rows}
    assert {"env", "kernel", "tuned", "layer_gradients", "throughput", "ratio"} <= kinds
    report = (tmp_path / "device_check.md").read_text()
    passed, total = map(int, re.search(r"numerics: (\d+) of (\d+) checks passed", report).groups())
    assert passed == total >= 6
    assert "| small | bfloat16 | train |" in report and "| small | bfloat16 | embed |" in report
    assert json.loads((tmp_path / "device_check.json").read_text()) == rows
