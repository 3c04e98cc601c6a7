"""The one place that names what a training run directory holds."""

from __future__ import annotations

import os
from dataclasses import dataclass

from etils import epath


def is_remote(path: str | os.PathLike[str]) -> bool:
    """A cloud-bucket path (gs://, s3://, ...), as orbax and `etils.epath` take them."""
    return "://" in os.fspath(path)


@dataclass(frozen=True)
class RunDir:
    """A training run: its config, metrics, curves, orbax checkpoints and evaluation outputs.

    A local path is made absolute (orbax requires it, and messages then agree on one spelling);
    a bucket path (gs://...) is kept as it is, so a multi-host run can write to one place.
    """

    path: epath.Path

    def __init__(self, path: str | os.PathLike[str]):
        spelled = os.fspath(path)
        absolute = spelled if is_remote(spelled) else os.path.abspath(spelled)
        object.__setattr__(self, "path", epath.Path(absolute))

    @property
    def config(self) -> epath.Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> epath.Path:
        return self.path / "metrics.jsonl"

    @property
    def curves(self) -> epath.Path:
        return self.path / "training_curves.png"

    @property
    def checkpoints(self) -> epath.Path:
        return self.path / "checkpoints"

    @property
    def eval(self) -> epath.Path:
        return self.path / "eval"

    @property
    def results(self) -> epath.Path:
        """The evaluation results `verify` reads its calibrated threshold from."""
        return self.eval / "results.json"

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

    def __str__(self) -> str:
        return str(self.path)
