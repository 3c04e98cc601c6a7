"""The one place that names what a training run directory holds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """A training run: its config, metrics, curves, orbax checkpoints and evaluation outputs.

    Paths are absolute so that orbax (which requires them) and messages agree on one spelling.
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]):
        object.__setattr__(self, "path", Path(path).absolute())

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def curves(self) -> Path:
        return self.path / "training_curves.png"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def eval(self) -> Path:
        return self.path / "eval"

    @property
    def results(self) -> Path:
        """The evaluation results `verify` reads its calibrated threshold from."""
        return self.eval / "results.json"

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

    def __str__(self) -> str:
        return str(self.path)
