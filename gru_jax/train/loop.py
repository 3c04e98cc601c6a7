"""The training loop: batches in, steps dispatched, and each cadence (log, validate, checkpoint,
non-finite stop) at its own interval.

A `Trainer` owns a run directory (`core.rundir.RunDir`). Creating one on a directory with
checkpoints resumes from the latest: the batch stream is a pure function of the step and the
random masks a function of the global row, so the run continues exactly as it would have, on any
number of devices (the global batch is part of the config). Raising ``trainer.steps`` continues a
finished run (`config.resumed_config` says what else may change).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import numpy as np
from etils import epath
from tqdm.auto import tqdm

from gru_jax.core import config as configs
from gru_jax.core.files import atomic_write, atomic_write_jsonl
from gru_jax.core.rundir import RunDir
from gru_jax.data.batching import CropBatches, PartitionedBatches, Prefetcher
from gru_jax.data.features import utterance_cmvn
from gru_jax.data.prepare import TrainingData
from gru_jax.infer.checkpoint import checkpoint_manager, read_meta
from gru_jax.infer.distributed import local_copy
from gru_jax.infer.embedding import Embedder
from gru_jax.nn.mesh import data_mesh, put_rows, replicated
from gru_jax.train import checkpoint
from gru_jax.train.config import DataConfig, TrainConfig, from_saved, resumed_config
from gru_jax.train.finetune import source_encoder
from gru_jax.train.step import initial_state, make_train_step
from gru_jax.train.validation import validation_eer

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


@dataclass
class RunResult:
    step: int
    best_val_eer: float | None
    last_val_eer: float | None
    skipped_steps: int
    frames_per_s: float
    wall_s: float
    run: RunDir


def train_stream(cfg: TrainConfig, data: TrainingData) -> PartitionedBatches:
    """This process's rows of the run's batch stream: batch k is a pure function of (seed, k),
    each data part filling its own block of every global batch."""
    rows, remainder = divmod(cfg.trainer.batch_size, data.n_parts)
    if remainder:
        raise configs.ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size} does not split into {data.n_parts} "
            "data parts (one per process)"
        )
    speakers, remainder = divmod(cfg.data.speakers_per_batch, data.n_parts)
    if cfg.data.speakers_per_batch and data.n_parts > 1:
        # Each part fills its block with its own speakers, speaker-major: the global batch is
        # then speaker-major too, and its speakers distinct only if no two parts share one.
        if not data.by_speaker:
            raise configs.ConfigError(
                "speaker-balanced batches (data.speakers_per_batch, GE2E) over several data "
                "parts need the corpus split by speaker (prepare_parts(by_speaker=True))"
            )
        if remainder:
            raise configs.ConfigError(
                f"data.speakers_per_batch={cfg.data.speakers_per_batch} does not split into "
                f"{data.n_parts} data parts (one per process)"
            )
    normalise = _crop_normaliser(cfg.data)
    return PartitionedBatches(
        [
            CropBatches(
                part.store,
                part.train_indices,
                part.train_labels,
                rows,
                crop_frames=cfg.data.crop_frames,
                min_frames=cfg.data.min_frames,
                seed=cfg.trainer.seed,
                speakers_per_batch=speakers or None,
                part=None if data.n_parts == 1 else part.index,
                normalise=normalise,
            )
            for part in data.parts
        ]
    )


def _crop_normaliser(data: DataConfig) -> Callable[[np.ndarray], np.ndarray] | None:
    """Utterance CMN re-applied over each crop (exact: a crop's statistics shift and scale with
    the utterance's). Running CMN stays as stored: it cannot be re-applied to its own output, and
    a stored crop differs from a stream of the same frames only within its first window (where the
    stream has heard less). "none" has nothing to normalise."""
    if not data.crop_cmn or data.features.cmn != "utterance":
        return None
    return partial(utterance_cmvn, cvn=data.features.cvn)


def _read_metrics(path: epath.Path, up_to_step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= up_to_step]


def _check_parts(data: TrainingData) -> None:
    """On several processes, each holds exactly its own part (its rows of the global batch)."""
    n_processes = jax.process_count()
    if n_processes == 1:
        return
    held = [p.index for p in data.parts]
    if data.n_parts != n_processes or held != [jax.process_index()]:
        raise configs.ConfigError(
            f"process {jax.process_index()} of {n_processes} holds data part(s) {held} of "
            f"{data.n_parts}; each process must hold its own part (prepare_parts)"
        )


class Trainer:
    """Trains `cfg` on `data` in `run_dir` (config.json, metrics.jsonl, training_curves.png,
    checkpoints/). `devices` defaults to every device of every process. A new run with
    ``trainer.init_from`` starts from that encoder (`finetune`); a resumed one from its own
    checkpoint."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: TrainingData,
        run_dir: str | os.PathLike[str],
        progress: bool = True,
        devices: list[jax.Device] | None = None,
    ):
        self.data = data
        self.run = RunDir(run_dir)
        self.is_main = jax.process_index() == 0
        _check_parts(data)
        self.progress = progress and self.is_main
        self.mesh = data_mesh(devices)
        self.manager = checkpoint_manager(self.run, keep=cfg.trainer.keep_checkpoints, create=True)
        latest = self.manager.latest_step()
        saved_meta = None if latest is None else read_meta(self.manager, latest)
        if saved_meta is not None:
            cfg = resumed_config(from_saved(saved_meta["config"]), cfg)
            if saved_meta["class_names"] != list(data.class_names):
                raise configs.ConfigError(
                    f"{self.run}: the training speakers differ from the checkpoint's"
                )
            saved_parts = saved_meta.get("data_position", {}).get("parts", 1)
            if saved_parts != data.n_parts:
                raise configs.ConfigError(
                    f"{self.run} was trained with its data in {saved_parts} part(s), one per "
                    f"process; resume it with {saved_parts} process(es), not {data.n_parts}"
                )
        if cfg.trainer.batch_size % self.mesh.size:
            raise configs.ConfigError(
                f"trainer.batch_size={cfg.trainer.batch_size} does not divide over "
                f"{self.mesh.size} devices; use a multiple of {self.mesh.size}"
            )
        self.cfg = cfg
        self.parts, self.step_fn = make_train_step(cfg, data.n_classes, self.mesh)
        encoder = None
        self.init_from: dict[str, Any] | None = (
            None if saved_meta is None else saved_meta.get("init_from")
        )
        if saved_meta is None and cfg.trainer.init_from:
            encoder, source = source_encoder(cfg, replicated(self.mesh))
            self.init_from = source.record()
            frozen = cfg.trainer.freeze_encoder_steps
            log.info(
                "%s: encoder from %s, a new head for %d speakers%s",
                self.run,
                source,
                data.n_classes,
                f", the encoder frozen for {frozen} steps" if frozen else "",
            )
        state = initial_state(self.parts, self.mesh, cfg.trainer.seed, encoder)
        self.best_val_eer: float | None = None
        if saved_meta is not None:
            abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state
            )
            state, saved_meta = checkpoint.restore(self.manager, abstract, latest)
            self.best_val_eer = saved_meta.get("best_val_eer")
            before = saved_meta.get("n_devices")
            moved = (
                f" (saved on {before} devices, now {self.mesh.size})"
                if before != self.mesh.size
                else ""
            )
            log.info("%s: resumed from step %d%s", self.run, int(state.step), moved)
        self.state = state
        self.stream = train_stream(cfg, data)
        # validation embeds each process's own utterances on its own devices, then gathers
        local = [d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]
        self.embedder = Embedder(
            cfg.model, data_mesh(local), max_frames=cfg.trainer.eval_max_frames
        )
        self.history: list[dict[str, Any]] = []

    @property
    def validates(self) -> bool:
        return self.cfg.data.val_speakers > 0

    def meta(self, step: int, val_eer: float | None) -> dict[str, Any]:
        return {
            "config": configs.to_dict(self.cfg),
            "class_names": list(self.data.class_names),
            "data_position": {
                "step": step,
                "seed": self.cfg.trainer.seed,
                "parts": self.data.n_parts,
            },
            "store": str(self.data.parts[0].store.path),
            "feature_hash": self.cfg.data.features.hash(),
            "val_eer": val_eer,
            "best_val_eer": self.best_val_eer,
            "n_devices": self.mesh.size,
            "init_from": self.init_from,
        }

    def _batches(self, start: int, stop: int) -> Iterator[dict[str, jax.Array]]:
        workers = self.cfg.trainer.prefetch_workers

        def to_device(batch: Any) -> dict[str, jax.Array]:
            arrays = {
                "feats": batch.feats,
                "lengths": batch.lengths.astype(np.int32),
                "labels": batch.labels.astype(np.int32),
            }
            return put_rows(self.mesh, arrays)

        with Prefetcher(
            self.stream.batch,
            start,
            stop,
            depth=2 * workers,
            workers=workers,
            transform=to_device,
        ) as batches:
            yield from batches

    def fit(self, until: int | None = None) -> RunResult:
        """Train to ``trainer.steps``, or stop after step `until` (a run can be continued later)."""
        cfg = self.cfg.trainer
        start = int(self.state.step)
        end = cfg.steps if until is None else min(until, cfg.steps)
        self.history = _read_metrics(self.run.metrics, start)
        if self.is_main:
            atomic_write(self.run.config, configs.to_json(self.cfg) + "\n")
            atomic_write_jsonl(self.run.metrics, self.history)  # drop rows past the resume point
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            desc="train",
        )
        last_val: float | None = None
        fps = 0.0
        t_run = t_window = time.perf_counter()
        pending: list[dict[str, jax.Array]] = []
        try:
            for step, batch in zip(range(start, end), self._batches(start, end), strict=False):
                self.state, metrics = self.step_fn(self.state, batch)
                pending.append(metrics)
                done = step + 1
                bar.update(1)
                log_due = done % cfg.log_every == 0 or done == end
                val_due = self.validates and (done % cfg.eval_every == 0 or done == cfg.steps)
                save_due = done % cfg.checkpoint_every == 0 or val_due or done == end
                if not (log_due or val_due or save_due):
                    continue
                if log_due:
                    elapsed = time.perf_counter() - t_window
                    frames = len(pending) * cfg.batch_size * self.cfg.data.crop_frames
                    fps = frames / elapsed
                    row = self._log(done, jax.device_get(pending), fps)
                    pending = []
                    bar.set_postfix(loss=f"{row['loss']:.3f}", fps=f"{fps:,.0f}")
                    t_window = time.perf_counter()
                self._stop_if_diverged(done)  # each cadence waits for the device anyway
                if val_due:
                    last_val = self._validate(done)
                if val_due and self.is_main:
                    bar.write(
                        f"step {done}: validation EER {100 * last_val:.2f}% "
                        f"(best {100 * self.best_val_eer:.2f}%)"
                    )
                # inside a run of non-finite steps the state has not moved: keep the last good
                # checkpoint as the one a restart resumes from
                if save_due and int(self.state.bad_steps) == 0:
                    checkpoint.save(
                        self.manager,
                        done,
                        self.state,
                        self.meta(done, last_val if val_due else None),
                        last_val if val_due else None,
                    )
                if val_due:
                    t_window = time.perf_counter()
        finally:
            bar.close()
            self.manager.wait_until_finished()
        if self.is_main and self.history:
            self._plot()
        return RunResult(
            step=int(self.state.step),
            best_val_eer=self.best_val_eer,
            last_val_eer=last_val,
            skipped_steps=int(self.state.skipped_steps),
            frames_per_s=fps,
            wall_s=time.perf_counter() - t_run,
            run=self.run,
        )

    def _append_row(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.is_main:  # rewritten whole: bucket paths cannot be appended to
            atomic_write_jsonl(self.run.metrics, self.history)

    def _log(self, step: int, host: list[dict[str, Any]], fps: float) -> dict[str, Any]:
        """Metrics of the steps since the last log line -> one averaged metrics.jsonl row."""
        row: dict[str, Any] = {"step": step}
        for key in host[0]:
            values = np.array([float(h[key]) for h in host])
            finite = values[np.isfinite(values)]
            row[key] = float(finite.mean()) if len(finite) else math.nan
        row["frames_per_s"] = fps
        row["skipped_steps"] = int(self.state.skipped_steps)
        self._append_row(row)
        return row

    def _stop_if_diverged(self, step: int) -> None:
        worst = int(self.state.worst_bad_run)
        if worst >= self.cfg.trainer.max_bad_steps:
            raise NonFiniteError(
                f"{worst} consecutive steps had a non-finite loss or gradient (seen by step "
                f"{step}; the limit is trainer.max_bad_steps={self.cfg.trainer.max_bad_steps}); "
                f"stopping. The last good checkpoint is step {self.manager.latest_step()} in "
                f"{self.run.checkpoints}. Lower the learning rate or check the data."
            )

    def _validate(self, step: int) -> float:
        params = self.state.params["encoder"]
        val = validation_eer(
            self.embedder,
            local_copy(params) if jax.process_count() > 1 else params,
            self.data,
            self.cfg.trainer.val_trials,
            self.cfg.trainer.seed,
        )
        if self.best_val_eer is None or val < self.best_val_eer:
            self.best_val_eer = val
        self._append_row({"step": step, "val_eer": val})
        if self.is_main:
            self._plot()
        return val

    def _plot(self) -> None:
        from gru_jax.eval import reports  # matplotlib only where curves are drawn

        reports.plot_training_curves(self.history, self.run.curves)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
