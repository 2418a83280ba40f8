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

The view MI and the task information I(v; y) are measured before training: they are properties
of the views alone (the trained model plays no part), so measuring them first gives trials that
ASHA stops early these values too. Learned views (``views.pairs: learned``) are the exception:
they exist only after training, so they are measured then, with the generator frozen. They are measured once per view configuration and shared through a file cache
(``search/micache.py``); a replicate that finds another one measuring it trains first and reads
the cached value before its final evaluation. Before the first step the trial also probes its
untrained encoder (``init_*``): the floor every accuracy of the report is a gain over.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trainers.config import TrainConfig
from trainers.results import (
    FLOOR_METRICS,
    LABEL_ENTROPY_NATS,
    LABEL_MI_NATS,
    MI_CACHED,
    MI_CAP_NATS,
    MI_NATS,
    VAL_KNN_ACC,
    floor_metric,
)
from trainers.validation import point_config

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
    cfg = point_config(train_raw, values)
    if cfg.trainer.threads is None:
        cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"threads": max(1, int(cpu))})})
    return cfg


def measure_views(trainer: Any, cfg: TrainConfig, cache: Path | None = None, wait: bool = True) -> dict[str, float]:
    """MI between the trial's two views with the spec's fixed MI protocol, once per view configuration.

    ``wait=False``: {} while another trial is measuring the same views (ask again later)."""
    if not cfg.mi.enabled:
        return {}
    from analysis.mi import view_mi

    def measure() -> dict[str, float]:
        est = view_mi(trainer.pairs, protocol=cfg.mi, device=trainer.device)
        values = {MI_NATS: float(est.nats), MI_CAP_NATS: float(est.cap_nats)}
        if cfg.mi.label_info:
            values.update(measure_task_information(trainer, cfg))
        return values

    if cache is None:
        return {**measure(), MI_CACHED: 0.0}
    from search.micache import cached_mi, mi_key

    got = cached_mi(cache, mi_key(cfg), measure, wait=wait)
    if got is None:
        return {}
    values, hit = got
    return {**values, MI_CACHED: float(hit)}


def measure_learned_views(trainer: Any, cfg: TrainConfig, staging: Path, caption: str) -> dict[str, float]:
    """A learned family's view MI and task information, with its trained generator frozen, and
    its ``views.png`` drawn again: this trial's own views, never cached (each replicate learns
    its own)."""
    trainer.adversary.freeze()
    write_trial_files(trainer, cfg, staging, f"{caption} (after training)".strip())
    return measure_views(trainer, cfg, cache=None)


def measure_task_information(trainer: Any, cfg: TrainConfig) -> dict[str, float]:
    """I(v; y) >= H(y) - CE of the trial's first view, and H(y) (``analysis/taskinfo.py``)."""
    from analysis.taskinfo import task_information

    d = trainer.data
    est = task_information(trainer.pairs, d.train_y, d.val_x, d.val_y, d.num_classes, cfg.mi, trainer.device)
    return {LABEL_MI_NATS: est.nats, LABEL_ENTROPY_NATS: est.entropy_nats}


def measure_floor(trainer: Any, cfg: TrainConfig, cache: Path | None = None) -> dict[str, float]:
    """The untrained encoder's probes (``init_*``): the floor every accuracy is a gain over.

    A fresh encoder from the trial's seed (``Trainer.untrained_encoder``), probed with the
    trial's own protocol before the first step; the trainer's RNG is untouched. Once per
    (data, architecture, seed, probes) through the MI cache, so the points of a search that share
    a seed share it, and in the trial's ``extra.json``, so a resume does not ask again.
    """
    def measure() -> dict[str, float]:
        probes = trainer.evaluate(trainer.untrained_encoder())
        return {floor_metric(k): float(v) for k, v in probes.items() if floor_metric(k) in FLOOR_METRICS}

    if cache is None:
        return measure()
    from search.micache import cached_mi, floor_key

    got = cached_mi(cache, floor_key(cfg), measure)
    return got[0] if got is not None else {}


def write_trial_files(trainer: Any, cfg: TrainConfig, folder: Path, caption: str = "") -> None:
    """``config.yaml`` (the exact training) and ``views.png`` (labelled view pairs) for the trial's run."""
    from analysis.viewgrid import save_view_grid

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    source = cfg.views.source(cfg.dataset.name)
    title = f"views.pairs: {source}, views.strength {cfg.views.strength:.3g}" + (f"\n{caption}" if caption else "")
    save_view_grid(trainer.pairs, folder / VIEWS, title, n=6)


def _restore(trainer: Any, folders: list[Path]) -> dict:
    """Load the newest readable checkpoint of ``folders`` (newest first); {} to start from epoch 0.

    A checkpoint that cannot be read (truncated, deleted, from another version) is skipped with
    a warning, so a trial whose checkpoints are all unreadable starts again instead of failing
    on every rerun.
    """
    for folder in folders:
        try:
            trainer.load_checkpoint(folder / CHECKPOINT)
        except Exception as err:  # noqa: BLE001 -- any unreadable checkpoint: try the next one
            print(f"warning: checkpoint {folder} is unreadable ({type(err).__name__}: {err}); trying an older one",
                  file=sys.stderr, flush=True)
            continue
        extra = folder / EXTRA
        return json.loads(extra.read_text()) if extra.is_file() else {}
    if folders:
        print("warning: no readable checkpoint; this trial starts again from epoch 0", file=sys.stderr, flush=True)
    return {}


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
    restore: list[Path] | None = None,
    metric: str = VAL_KNN_ACC,
    trainer_cls: Any = None,
    mi_cache: Path | None = None,
    caption: str = "",
) -> dict:
    """Train the remaining epochs, reporting each with a checkpoint; stop on divergence.

    The last epoch's result also carries the final evaluation (``val_knn_acc``,
    ``val_linear_acc`` and, on the test split, ``knn_acc``, ``linear_acc``). A diverged epoch is
    reported with ``diverged=1`` and the trial returns normally: divergence is a result of the
    point, not a crash to retry.
    """
    if trainer_cls is None:
        from trainers.train import Trainer as trainer_cls
    trainer = trainer_cls(cfg, data)
    extra = _restore(trainer, restore or [])
    start = trainer.epoch  # reported as ``start_epoch``: shows whether a trial was resumed, and from where
    learned = cfg.views.family(cfg.dataset.name).learns  # views exist only after training: measured then
    if not extra:  # if another replicate is measuring these views' MI right now, train first
        floor = measure_floor(trainer, cfg, mi_cache)
        views = {} if learned else measure_views(trainer, cfg, mi_cache, wait=False)
        extra = {**floor, **views, **trainer.data.sizes()}
    staging = Path(tempfile.mkdtemp(prefix="trial-files-"))
    try:
        write_trial_files(trainer, cfg, staging, caption)
        result: dict = {}
        while trainer.epoch < cfg.trainer.epochs:
            metrics = trainer.train_epoch()
            diverged = bool(metrics.get("diverged"))
            if not diverged and trainer.epoch >= cfg.trainer.epochs:
                if learned:
                    extra.update(measure_learned_views(trainer, cfg, staging, caption))
                elif cfg.mi.enabled and MI_NATS not in extra:
                    extra.update(measure_views(trainer, cfg, mi_cache))  # measured by now: read from the cache
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


def _older_checkpoints(newest: Path | None) -> list[Path]:
    """The trial's other checkpoint folders, newest first (Tune keeps ``num_to_keep`` of them)."""
    from ray import tune

    try:
        trial_dir = Path(tune.get_context().get_trial_dir())
    except Exception:  # noqa: BLE001 -- outside a trial (tests): nothing older to try
        return []
    found = sorted(trial_dir.glob("checkpoint_*"), key=lambda p: p.name, reverse=True)
    return [p for p in found if newest is None or p.resolve() != newest.resolve()]


def trainable(config: dict, *, data: Any, train_raw: dict, metric: str, cpu: float,
              mi_cache: str | dict | None = None) -> None:
    """Tune's function trainable (wrapped with ``tune.with_parameters`` by the driver)."""
    from ray import tune

    from search.storage import mi_cache_for
    from search.tracking import run_name

    cfg = trial_config(train_raw, config, cpu)

    def report(result: dict, folder: Path) -> None:
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    cache = mi_cache_for(mi_cache)  # a folder, or the bucket's cache when storage.uri is set
    caption = run_name(config)
    checkpoint = tune.get_checkpoint()
    restore_dir = Path(tempfile.mkdtemp(prefix="trial-restore-"))
    try:
        folders: list[Path] = []
        if checkpoint is not None:
            try:
                with checkpoint.as_directory() as folder:
                    shutil.copytree(folder, restore_dir / "latest", dirs_exist_ok=True)
                folders.append(restore_dir / "latest")
            except Exception as err:  # noqa: BLE001 -- deleted or unreadable: fall back to older ones
                print(f"warning: the latest checkpoint cannot be read ({err})", file=sys.stderr, flush=True)
        folders += _older_checkpoints(Path(checkpoint.path) if checkpoint is not None else None)
        run_trial(cfg, data, report, folders, metric, mi_cache=cache, caption=caption)
    finally:
        shutil.rmtree(restore_dir, ignore_errors=True)
