"""One trial: train a point of the space epoch by epoch, measure its views' MI, report to Tune.

The loop is ``run_trial``; it knows Tune only through two plain callables (``report`` and the
checkpoint folder it may ``restore`` from), so it can be tested without a cluster. ``trainable``
is the Tune entry point: it turns the sampled ``config`` into a validated training, finds the
trial's checkpoint and calls ``run_trial``. Data arrive through ``tune.with_parameters`` (put in
Ray's object store once per search, not pickled into every trial's closure).

Every epoch's result carries a checkpoint folder holding everything the driver needs to log the
trial and to resume it: ``checkpoint.pt`` (the trainer's full state), ``extra.json`` (values
measured once, so a resume does not measure them again), ``config.yaml`` and ``views.png``. The
trial never writes to MLflow: see ``search/tracking.py`` for why the driver is the one writer.

The view MI is measured before training, not after: it is a property of the view pipeline
alone (the trained model plays no part), so measuring it first gives every trial an MI value,
including trials ASHA stops early, which the InfoMin analysis needs.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trainers.config import TrainConfig, resolve

CHECKPOINT = "checkpoint.pt"
EXTRA = "extra.json"
CONFIG = "config.yaml"
VIEWS = "views.png"

Report = Callable[[dict, Path], None]


def trial_config(train_raw: dict, values: dict[str, Any], cpu: float = 1.0) -> TrainConfig:
    """Spec constants + sampled values -> the trial's validated training config.

    Without an explicit ``trainer.threads`` a trial uses as many torch threads as CPUs it
    reserved, so parallel trials do not oversubscribe the machine.
    """
    cfg = TrainConfig.model_validate(resolve(train_raw, values))
    if cfg.trainer.threads is None:
        cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"threads": max(1, int(cpu))})})
    return cfg


def measure_views(trainer: Any, cfg: TrainConfig) -> dict[str, float]:
    """MI between the trial's two views, with the spec's fixed MI protocol (``mi`` section)."""
    if not cfg.mi.enabled:
        return {}
    from analysis.mi import MIProtocol, view_mi

    protocol = MIProtocol.from_config(cfg.mi)
    est = view_mi(trainer.data.train_x, cfg.views, trainer.data.channels, protocol=protocol, device=trainer.device)
    return {"mi_nats": float(est.nats), "mi_cap_nats": float(est.cap_nats)}


def write_trial_files(trainer: Any, cfg: TrainConfig, folder: Path) -> None:
    """``config.yaml`` (the exact training) and ``views.png`` (view pairs) for the trial's run."""
    from trainers.views import save_view_grid

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    save_view_grid(trainer.data.train_x[:8], trainer.views, folder / VIEWS, n=8)


def _restore(trainer: Any, folder: Path | None) -> dict:
    if folder is None or not (folder / CHECKPOINT).is_file():
        return {}
    trainer.load_checkpoint(folder / CHECKPOINT)
    extra = folder / EXTRA
    return json.loads(extra.read_text()) if extra.is_file() else {}


def epoch_result(metrics: dict, extra: dict, metric: str, start_epoch: int) -> dict:
    """What Tune sees for one epoch. The search metric is always present (NaN if the trainer
    could not compute it, e.g. after divergence): Tune rejects results that lack it."""
    result = {**metrics, **extra, "start_epoch": float(start_epoch)}
    value = result.get(metric)
    if value is None or not math.isfinite(float(value)):
        result[metric] = float("nan")
    return result


def run_trial(
    cfg: TrainConfig,
    data: Any,
    report: Report,
    restore: Path | None = None,
    metric: str = "knn_acc",
    trainer_cls: Any = None,
) -> dict:
    """Train the remaining epochs, reporting each with a checkpoint; stop on divergence.

    The last epoch's result also carries the final evaluation (``knn_acc`` on the full test set,
    ``linear_acc``). A diverged epoch is reported with ``diverged=1`` and the trial returns
    normally: divergence is a result of the point, not a crash to retry.
    """
    if trainer_cls is None:
        from trainers.train import Trainer as trainer_cls
    trainer = trainer_cls(cfg, data)
    extra = _restore(trainer, restore)
    start = trainer.epoch  # reported as ``start_epoch``: shows whether a trial was resumed, and from where
    if not extra:
        extra = measure_views(trainer, cfg)
    staging = Path(tempfile.mkdtemp(prefix="trial-files-"))
    try:
        write_trial_files(trainer, cfg, staging)
        result: dict = {}
        while trainer.epoch < cfg.trainer.epochs:
            metrics = trainer.train_epoch()
            diverged = bool(metrics.get("diverged"))
            if not diverged and trainer.epoch >= cfg.trainer.epochs:
                metrics.update(trainer.evaluate())
            result = epoch_result(metrics, extra, metric, start)
            _report_with_checkpoint(trainer, result, extra, staging, report)
            if diverged:
                break
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _report_with_checkpoint(trainer: Any, result: dict, extra: dict, staging: Path, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="trial-ckpt-") as tmp:
        folder = Path(tmp)
        trainer.save_checkpoint(folder / CHECKPOINT)
        (folder / EXTRA).write_text(json.dumps(extra))
        for name in (CONFIG, VIEWS):
            if (staging / name).is_file():
                shutil.copy2(staging / name, folder / name)
        report(result, folder)


def trainable(config: dict, *, data: Any, train_raw: dict, metric: str, cpu: float) -> None:
    """Tune's function trainable (wrapped with ``tune.with_parameters`` by the driver)."""
    from ray import tune

    cfg = trial_config(train_raw, config, cpu)

    def report(result: dict, folder: Path) -> None:
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(cfg, data, report, None, metric)
        return
    with checkpoint.as_directory() as folder:
        restore = Path(tempfile.mkdtemp(prefix="trial-restore-"))
        shutil.copytree(folder, restore, dirs_exist_ok=True)
    try:
        run_trial(cfg, data, report, restore, metric)
    finally:
        shutil.rmtree(restore, ignore_errors=True)
