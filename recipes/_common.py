"""What every recipe shares: its command line, the two stages, and the results table.

Training and evaluation run as ``train.py`` and ``eval.py`` in subprocesses rather than through
the library, because:

- the command lines are the interface the README documents and keeps stable, while the library
  under them is being reworked (multi-host training); the CLIs also choose the devices (one per
  core on a CPU, as many as divide the batch), resume a killed run, and will carry whatever
  multi-host handling they gain, none of which a recipe should copy;
- the recipe process never imports JAX: it holds no accelerator memory while a stage runs, and
  each stage's XLA memory is freed when it ends;
- every stage is a command the recipe logs, so a run can be finished or evaluated again by hand.

The cost is one interpreter and JAX start-up per stage (a few seconds), and results are read back
from the files the CLIs write anyway (``config.json``, ``results.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gru_jax.core.files import atomic_write, atomic_write_json
from gru_jax.data.corpora import CorpusError, Utterance, write_csv_manifest
from gru_jax.data.prepare import default_cache_dir

log = logging.getLogger("recipes")

ASNORM_TOP_N = 300  # cohort size of AS-norm, as WeSpeaker's recipes use


class RecipeError(RuntimeError):
    """A stage failed or the corpus is not what the recipe needs; the message says which."""


@dataclass(frozen=True)
class TestSet:
    """One evaluation: lists relative to `data` (`eval.py --data`)."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str  # e.g. "VoxCeleb1-O (cleaned)"
    list_name: str  # the published list it is, e.g. "veri_test2.txt", or how it was made
    data: Path
    trials: Path | None = None
    enroll_list: Path | None = None
    test_list: Path | None = None


@dataclass(frozen=True)
class Plan:
    """What a recipe trains on and tests with, once its lists are prepared."""

    recipe: str
    dataset: str  # the training data, in words
    train_data: Path  # `train.py --data`
    test_sets: Sequence[TestSet]
    train_list: Path | None = None


def parser(recipe: str, description: str, preset: str) -> argparse.ArgumentParser:
    """The options every recipe has; each adds where its corpus is."""
    p = argparse.ArgumentParser(
        prog=f"python -m recipes.{recipe}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default=preset, help=f"training preset (default: {preset})")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--out", help=f"run directory (default: runs/{recipe})")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="passed to train.py: override a config field (repeatable)",
    )
    p.add_argument(
        "--asnorm",
        type=int,
        default=ASNORM_TOP_N,
        metavar="N",
        help=f"AS-norm cohort size (default {ASNORM_TOP_N}; 0: cosine scores only)",
    )
    p.add_argument("--workers", type=int, help="feature-extraction processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_dir(args: argparse.Namespace, recipe: str) -> Path:
    return Path(args.out or f"runs/{recipe}")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )


def cached_manifest(utterances: Sequence[Utterance], name: str) -> Path:
    """A CSV manifest of `utterances` in the feature cache, named by its content.

    Training's feature store is keyed by the corpus path, so a manifest at a fixed place per
    content lets every run on the same corpus reuse one store (extracting LibriSpeech's 960 h
    again for each run directory would repeat minutes to hours of work), and a changed corpus gets
    a new one.
    """
    content = hashlib.sha256()
    for u in utterances:
        row = (
            f"{u.utt_id}\t{u.speaker}\t{os.path.abspath(u.path)}\t{u.session}\t{u.start}\t{u.end}\n"
        )
        content.update(row.encode())
    path = default_cache_dir() / "manifests" / f"{name}-{content.hexdigest()[:12]}.csv"
    if not path.is_file():
        write_csv_manifest(utterances, path)
    return path


# --- stages ----------------------------------------------------------------------------------------

_CLI = "import sys; from gru_jax.cli.{} import main; sys.exit(main(sys.argv[1:]))"
_PROBE = (
    "import json, jax; d = jax.devices(); print(json.dumps({'platform': d[0].platform, "
    "'device_kind': d[0].device_kind, 'devices': len(d), 'processes': jax.process_count()}))"
)


def _run_cli(name: str, module: str, arguments: list[str], commands: list[str]) -> float:
    """Run ``<name> <arguments>`` (train.py or eval.py) in a subprocess; its wall time."""
    shown = f"{name} {shlex.join(arguments)}"
    commands.append(shown)
    log.info("running: %s", shown)
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", _CLI.format(module), *arguments])
    if completed.returncode != 0:
        raise RecipeError(f"{name} failed (exit code {completed.returncode}): {shown}")
    return time.perf_counter() - started


def probe_hardware() -> dict[str, Any]:
    """What the stages run on: JAX's devices as a fresh process sees them, and the host CPU."""
    found: dict[str, Any] = {"host_cpus": os.cpu_count(), "cpu_model": _cpu_model()}
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300
        )
        found.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
        log.warning("could not ask JAX for its devices: %s", e)
        found["platform"] = "unknown"
    found["description"] = describe_hardware(found)
    return found


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def describe_hardware(found: dict[str, Any]) -> str:
    cpu = f"{found.get('cpu_model')}, {found.get('host_cpus')} cores"
    if found.get("platform") == "cpu":
        return f"CPU ({cpu})"
    devices = f"{found.get('devices', '?')} x {found.get('device_kind', found.get('platform'))}"
    return f"{devices} (host: {cpu})"


def _train_arguments(plan: Plan, args: argparse.Namespace, out: Path) -> list[str]:
    arguments = ["--data", str(plan.train_data), "--preset", args.preset, "--out", str(out)]
    if plan.train_list is not None:
        arguments += ["--list", str(plan.train_list)]
    if args.steps is not None:
        arguments += ["--steps", str(args.steps)]
    for override in args.set:
        arguments += ["--set", override]
    return arguments + _shared_arguments(args)


def _eval_arguments(
    test: TestSet, args: argparse.Namespace, out: Path, eval_dir: Path
) -> list[str]:
    arguments = ["--checkpoint", str(out), "--data", str(test.data), "--out", str(eval_dir)]
    for option, path in (
        ("--trials", test.trials),
        ("--enroll-list", test.enroll_list),
        ("--test-list", test.test_list),
    ):
        if path is not None:
            arguments += [option, str(path)]
    if args.asnorm and test.trials is not None:
        arguments += ["--asnorm", str(args.asnorm)]
    return arguments + _shared_arguments(args)


def _shared_arguments(args: argparse.Namespace) -> list[str]:
    extra = ["--workers", str(args.workers)] if args.workers is not None else []
    return extra + (["--no-progress"] if args.no_progress else [])


def eval_dir_of(out: Path, position: int, test: TestSet) -> Path:
    """The first test set is evaluated into ``RUN/eval``, where `eval.py verify` and `stream`
    find their calibrated threshold; the others beside it."""
    if position == 0:
        return out / "eval"
    return out / f"eval-{re.sub(r'[^A-Za-z0-9]+', '-', test.name).strip('-').lower()}"


def run(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume), evaluate every test set, write and print the results table."""
    out = run_dir(args, plan.recipe)
    commands: list[str] = []
    hardware = probe_hardware()
    log.info("hardware: %s", hardware["description"])
    resumed = (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
    train_wall_s = _run_cli("train.py", "train", _train_arguments(plan, args, out), commands)
    config = json.loads((out / "config.json").read_text())
    tests = []
    for position, test in enumerate(plan.test_sets):
        eval_dir = eval_dir_of(out, position, test)
        wall = _run_cli("eval.py", "eval", _eval_arguments(test, args, out, eval_dir), commands)
        results = json.loads((eval_dir / "results.json").read_text())
        tests.append(_test_row(test, eval_dir, results, wall))
    summary = {
        "recipe": plan.recipe,
        "trained_on": plan.dataset,
        "preset": args.preset,
        "overrides": list(args.set),
        "steps": config["trainer"]["steps"],
        "batch_size": config["trainer"]["batch_size"],
        "crop_frames": config["data"]["crop_frames"],
        "run_dir": str(out),
        "train_data": str(plan.train_data),
        "train_wall_s": train_wall_s,
        "resumed": resumed,
        "hardware": hardware,
        "asnorm_top_n": args.asnorm,
        "tests": tests,
        "commands": commands,
    }
    table = results_table(summary)
    atomic_write_json(out / "results.json", summary)
    atomic_write(out / "results.md", table)
    print(f"\n{table}\nwritten: {out / 'results.md'}, {out / 'results.json'}")
    return summary


def _test_row(
    test: TestSet, eval_dir: Path, results: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    """The numbers of one evaluation that the table shows; results.json beside it has all."""
    verification = results["verification"]
    headline = verification.get("asnorm") or verification.get("cosine") or verification["enrolled"]
    row: dict[str, Any] = {
        "name": test.name,
        "list": test.list_name,
        "eval_dir": str(eval_dir),
        "eval_wall_s": wall_s,
        "trials": results["counts"].get("trials_scored"),
        "trials_listed": results["counts"].get("trials"),
        "eer_cosine": verification.get("cosine", {}).get("eer"),
        "eer_asnorm": verification.get("asnorm", {}).get("eer"),
        "min_dcf_0.01": headline["min_dcf_0.01"],
        "min_dcf_0.05": headline["min_dcf_0.05"],
        "min_dcf_scores": "asnorm" if "asnorm" in verification else next(iter(verification)),
        "eer_enrolled": verification.get("enrolled", {}).get("eer"),
        "top1": results.get("identification", {}).get("all", {}).get("top1"),
        "asnorm_cohort": {
            k: verification["asnorm"][k]
            for k in ("top_n", "cohort_speakers")
            if "asnorm" in verification
        },
        "skipped_utterances": results["counts"].get("skipped", {}),
    }
    return row


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


_COLUMNS = (
    "trained on",
    "test set",
    "list",
    "trials",
    "EER % (cosine)",
    "EER % (AS-norm)",
    "minDCF 0.01",
    "EER % (speaker means)",
    "top-1 %",
    "steps x batch",
    "training time",
    "hardware",
)


def results_table(summary: dict[str, Any]) -> str:
    """Markdown: one row per test set. minDCF is of the AS-norm scores when there are any;
    "speaker means" scores test utterances against enrolled speakers' mean vectors."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    if not summary["tests"]:
        lines.append(
            "| " + " | ".join([summary["trained_on"], "(no test set)"] + ["-"] * 10) + " |"
        )
    training = f"{_duration(summary['train_wall_s'])}" + (
        " (resumed)" if summary["resumed"] else ""
    )
    for test in summary["tests"]:
        dcf = test["min_dcf_0.01"]
        cells = [
            summary["trained_on"],
            test["name"],
            test["list"],
            "-" if test["trials"] is None else f"{test['trials']:,}",
            _percent(test["eer_cosine"]),
            _percent(test["eer_asnorm"]),
            "-" if dcf is None else f"{dcf:.3f}",
            _percent(test["eer_enrolled"]),
            _percent(test["top1"]),
            f"{summary['steps']:,} x {summary['batch_size']}",
            training,
            summary["hardware"]["description"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    notes = (
        f"\nPreset `{summary['preset']}`"
        + (
            f" with {', '.join(f'`{o}`' for o in summary['overrides'])}"
            if summary["overrides"]
            else ""
        )
        + f"; AS-norm over the top {summary['asnorm_top_n']} of the training speakers (fewer "
        "when there are fewer). Training time is train.py's wall time, feature extraction "
        "included.\n"
    )
    return "\n".join(lines) + "\n" + notes


def main_guard(call: Callable[[], object]) -> int:
    """Run a recipe: 0, or 2 with a one-line message for a corpus or stage problem."""
    setup_logging()
    try:
        call()
    except (RecipeError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
