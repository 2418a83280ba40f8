"""Every view source through the trainer's own step: views alone, the model-only step and the full
step, eager and compiled, with the compiled views with and without CUDA graphs.

The model-only step is ``Trainer.step(idx, views=...)`` on views made beforehand, the full step
``Trainer.step(idx)``: the same code, so their ratio (``share_of_model_step``) is what the views
cost. Compiled variants follow ``trainer.compile: true`` and ``trainer.compile_views: true``
(views in ``reduce-overhead`` mode: CUDA graphs); the variant without CUDA graphs replaces the
trainer's ``make_pairs`` with the views compiled in the default mode, on the same compiled model.

Compilation can take minutes (a policy like RandAugment recompiles for its random choices), so
each source's compiled part runs in a child process that is stopped at its share of the budget;
it writes each figure as soon as it has it, so what it measured before it was stopped is kept.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
from pathlib import Path

import torch

from benchmarks.gpucheck.common import (
    Clock,
    Sizes,
    first_call,
    measured,
    median_time,
    not_measured,
    read_bundle,
    sync,
)
from trainers.config import TrainConfig
from trainers.data import DataBundle
from trainers.train import Trainer
from trainers.validation import validate_train

# name -> (data: "gray" Fashion-MNIST, "rgb" 3-channel, "toy" the rendered testbed; its views section)
SOURCES: dict[str, tuple[str, dict]] = {
    "augment": ("gray", {}),
    "augment_random_erasing": ("gray", {"stages": [{"RandomErasing": {"p": 0.5}}]}),
    "patches": ("gray", {"pairs": "patches"}),
    "channels": ("rgb", {"pairs": "channels"}),
    "frequency": ("gray", {"pairs": "frequency"}),
    "toy": ("toy", {"pairs": "toy"}),
    "learned": ("gray", {"strength": 0.0, "pairs": {"kind": "learned"}}),  # the generator trains in the step
    # last: its random policy recompiles, so it may use up whatever the others left
    "augment_randaugment": ("rgb", {"stages": [{"auto.RandAugment": {"n": 2, "m": 10}}]}),  # colour ops: RGB
}
KEEP_PER_SOURCE_S = 25.0  # kept for each source still to compile: an early child may take the rest
EAGER = ("views_eager", "model_step_eager", "full_step_eager")
COMPILED = ("views_compiled_graphs", "views_compiled_no_graphs", "model_step_compiled",
            "full_step_compiled_graphs", "full_step_compiled_no_graphs")
MEASUREMENTS = EAGER + COMPILED
DATASET_NAME = {"gray": "fashion_mnist", "rgb": "synthetic", "toy": "infomin_toy"}


def source_config(name: str, sizes: Sizes, device: str, **trainer) -> TrainConfig:
    kind, views = SOURCES[name]
    return validate_train({
        "dataset": {"name": DATASET_NAME[kind], "channels": 3 if kind == "rgb" else 1, "image_size": sizes.image_size},
        "model": {"backbone": sizes.backbone, "width": sizes.width},
        "views": views,
        "trainer": {"batch_size": sizes.batch, "device": device, **trainer},
        "evaluation": {"knn_every_epoch": False},
    })


def _batches(trainer: Trainer, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch for the views and model step, and a random one for the full step."""
    n = trainer.data.train_x.shape[0]
    return torch.arange(batch, device=trainer.device), torch.randperm(n, device=trainer.device)[:batch]


def detached(views: tuple[torch.Tensor, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Views made beforehand for the model-only step: a learned source's views carry its
    generator's graph, which one backward would free for the next repetition."""
    return tuple(v.detach() if v is not None else None for v in views)  # type: ignore[return-value]


def measure_eager(name: str, data: DataBundle, sizes: Sizes, device: torch.device) -> dict:
    trainer = Trainer(source_config(name, sizes, device.type), data)
    b = sizes.batch
    idx, perm = _batches(trainer, b)
    views = detached(trainer.pairs(idx, True))
    out = {"views_eager": measured(median_time(lambda: trainer.pairs(idx, True), device, sizes.warmup, sizes.reps), b)}
    t_model = median_time(lambda: trainer.step(idx, views=views), device, sizes.warmup, sizes.reps)
    out["model_step_eager"] = measured(t_model, b)
    t_full = median_time(lambda: trainer.step(perm), device, sizes.warmup, sizes.reps)
    out["full_step_eager"] = measured(t_full, b, model_seconds=t_model)
    return out


def compiled_child(name: str, bundle_path: str, sizes: Sizes, device_name: str, backend: str, compile_model: bool,
                   out_path: str) -> None:
    """In a child process: the compiled variants of one source, each written to ``out_path`` when measured."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    results: dict = {}

    def put(key: str, value: dict) -> None:
        results[key] = value
        tmp = Path(out_path + ".tmp")
        tmp.write_text(json.dumps(results))
        tmp.replace(out_path)

    data = read_bundle(Path(bundle_path)).to(device)
    trainer = Trainer(source_config(name, sizes, device.type, compile=compile_model, compile_views=cuda), data)
    b, inner = sizes.batch, 10 if cuda else 1
    idx, perm = _batches(trainer, b)
    views = detached(trainer.pairs(idx, True))
    t_model = None
    if compile_model:
        compile_s = first_call(lambda: trainer.step(idx, views=views), device)
        t_model = median_time(lambda: trainer.step(idx, views=views), device, sizes.warmup, sizes.reps)
        put("model_step_compiled", measured(t_model, b, compile_s))
    def views_variant(suffix: str) -> None:
        """The views as ``trainer.make_pairs`` compiles them now, alone and in the full step."""
        compile_s = first_call(lambda: trainer.make_pairs(idx, True), device)
        put(f"views_compiled_{suffix}", measured(
            median_time(lambda: trainer.make_pairs(idx, True), device, sizes.warmup, sizes.reps, inner), b, compile_s))
        if compile_model:
            trainer.step(perm)
            sync(device)
            t_full = median_time(lambda: trainer.step(perm), device, sizes.warmup, sizes.reps)
            put(f"full_step_compiled_{suffix}", measured(t_full, b, model_seconds=t_model))

    if cuda:  # the trainer's own compile_views: reduce-overhead mode, CUDA graphs
        views_variant("graphs")
    trainer.compile_views(backend=backend)  # default mode: no CUDA graphs
    views_variant("no_graphs")


def measure_compiled(name: str, bundle_path: Path, sizes: Sizes, device: torch.device, backend: str,
                     compile_model: bool, timeout: float) -> tuple[dict, str | None]:
    """Run ``compiled_child`` with a time limit: (what it measured, why it stopped early or None)."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = str(Path(tmp) / "compiled.json")
        proc = ctx.Process(target=compiled_child,
                           args=(name, str(bundle_path), sizes, device.type, backend, compile_model, out_path))
        proc.start()
        proc.join(timeout)
        stopped = None
        if proc.is_alive():
            proc.kill()
            proc.join()
            stopped = f"stopped at its budget of {timeout:.0f} s (compilation still running)"
        elif proc.exitcode != 0:
            stopped = f"the child process failed (exit code {proc.exitcode}); see the console for its traceback"
        path = Path(out_path)
        return (json.loads(path.read_text()) if path.exists() else {}), stopped


def not_applicable(key: str, device: torch.device, compile_model: bool) -> str | None:
    """Why a compiled measurement cannot exist on this run, or None."""
    if "graphs" in key and "no_graphs" not in key and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if not compile_model and key in ("model_step_compiled", "full_step_compiled_graphs", "full_step_compiled_no_graphs"):
        return "the model is not compiled in --tiny on the CPU (torch.compile of the model takes minutes here)"
    return None


def measure_all(bundles: dict[str, tuple[DataBundle, Path, str]], sizes: Sizes, device: torch.device, clock: Clock,
                deadline: float, compile_sources: tuple[str, ...], backend: str, compile_model: bool,
                log=print) -> dict:
    """Every source: eager first (seconds each), then the compiled part of ``compile_sources`` in
    order, each child stopped when the time left before ``deadline`` (seconds since the start of
    the run) falls to ``KEEP_PER_SOURCE_S`` for each source after it: the first compiles cold, the
    later ones find the compiled kernels cached and need less."""
    out: dict = {}
    for name, (kind, views) in SOURCES.items():
        data, _, described = bundles[kind]
        cfg = source_config(name, sizes, device.type)
        out[name] = {"pairs": cfg.views.source(cfg.dataset.name), "data": described, "channels": data.channels,
                     "image_size": data.image_size, "batch": sizes.batch, "backbone": sizes.backbone,
                     "views": views, "measurements": {}}
        try:
            res = measure_eager(name, data, sizes, device)
        except Exception as err:  # noqa: BLE001 - one failed source is recorded, the others still run
            res = {k: not_measured("error", f"{type(err).__name__}: {err}") for k in EAGER}
        out[name]["measurements"].update(res)
        log(f"  {name}: views {_fmt(res['views_eager'])}, full step {_fmt(res['full_step_eager'])} "
            f"of model step {_fmt(res['model_step_eager'])} (eager)")
    for i, name in enumerate(SOURCES):
        reasons = {k: not_applicable(k, device, compile_model) for k in COMPILED}
        todo = [k for k in COMPILED if reasons[k] is None]
        res: dict = {}
        stopped = None
        if name not in compile_sources:
            stopped = "--tiny compiles one source only (the CPU compiles slowly)"
        elif todo:
            remaining = [n for n in list(SOURCES)[i:] if n in compile_sources]
            timeout = deadline - clock.elapsed() - KEEP_PER_SOURCE_S * (len(remaining) - 1)
            if timeout < 5:
                stopped = "skipped: the sources' time budget was spent"
            else:
                res, stopped = measure_compiled(name, bundles[SOURCES[name][0]][1], sizes, device, backend,
                                                compile_model, timeout)
        for k in COMPILED:
            if k in res:
                out[name]["measurements"][k] = res[k]
            elif reasons[k] is not None:
                out[name]["measurements"][k] = not_measured("not_applicable", reasons[k])
            else:
                out[name]["measurements"][k] = not_measured("error" if stopped and "failed" in stopped else "skipped",
                                                            stopped or "not measured")
        m = out[name]["measurements"]
        log(f"  {name}: compiled views {_fmt(m['views_compiled_no_graphs'])} (no graphs), "
            f"full step {_fmt(m['full_step_compiled_graphs'])} (graphs) / {_fmt(m['full_step_compiled_no_graphs'])} "
            f"(no graphs) of model step {_fmt(m['model_step_compiled'])}")
    return out


def _fmt(rec: dict) -> str:
    if rec["status"] != "ok":
        return rec["status"]
    share = rec["share_of_model_step"]
    return f"{rec['imgs_per_s']:,.0f} img/s" + (f" ({100 * share:.1f}%)" if share is not None else "")
