"""Throughput benchmark: where does the time of a contrastive step go?

Measures, in one run, on CUDA when present (else on the CPU, and says so):
  (a) the stock ``kornia.augmentation.AugmentationSequential`` SimCLR pipeline, two views;
  (b) the project's pair source at the same settings (eager; compiled on CUDA), and the same
      with a Kornia stage (RandomErasing) on top, to show what a Kornia stage costs;
  (c) the model step (SimCLR loss, backward, optimiser) on pre-made views;
  (d) the project's full training step (index gather + views + model step); (c) and (d) are
      measured again with NCHW activations (``_nchw``) to show what channels_last buys;
  (e) the IR memory-bank ring selection (bank 50,000, band 1%-10%) as a share of the step;
  (f) 1, 2 and 4 trainings as separate processes on the one device: total images/s.
Timing: warm-up, then the median of repeated timed blocks, synchronising the device around each.

    python benchmarks/throughput.py            # GPU: ResNet-18 CIFAR stem, batch 512, 32 px
    python benchmarks/throughput.py --cpu      # the CPU default: small ConvNet, batch 256, 28 px
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpucheck.common import median_time, sync
from benchmarks.stock_views import stock_kornia_pipeline
from trainers.config import TrainConfig
from trainers.data import DataBundle
from trainers.objectives import ring_sample
from trainers.pairs import build_pairs
from trainers.train import Trainer
from trainers.validation import validate_train

# The stock pipeline's settings: RandomResizedCrop, flip, ColorJitter p=0.8, grayscale p=0.2, blur p=0.5.
STOCK_VIEWS = {"strength": 1.0, "solarize_p": 0.0, "rotation_degrees": 0.0}


def synthetic_bundle(n: int, channels: int, size: int, device: torch.device) -> DataBundle:
    """Random uint8 images: throughput does not depend on content, and the GPU box has no datasets."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataBundle(x, y, x[:1024], y[:1024], x[:1024], y[:1024], "synthetic", 10).to(device)


KORNIA_STAGE = [{"RandomErasing": {"p": 0.5}}]


def config(args, stages: list | None = None, **trainer) -> TrainConfig:
    raw = {
        "dataset": {"name": "synthetic", "channels": args.channels, "image_size": args.size},
        "model": {"backbone": args.backbone, "width": args.width},
        "views": {**STOCK_VIEWS, **({"stages": stages} if stages else {})},
        "trainer": {"batch_size": args.batch, "device": args.device, **trainer},
        "evaluation": {"knn_every_epoch": False},
    }
    return validate_train(raw)


def measure_views(args, device, out: dict) -> None:
    cfg = config(args)
    data = synthetic_bundle(args.batch, args.channels, args.size, device)
    idx = torch.arange(args.batch, device=device)
    stock = stock_kornia_pipeline(cfg.views, args.channels, args.size).to(device)
    xf = data.train_x.float().div(255)
    t_stock = median_time(lambda: (stock(xf), stock(xf)), device, args.warmup, args.reps)
    out["a_stock_kornia_views"] = {"seconds": t_stock, "imgs_per_s": args.batch / t_stock}
    pairs = build_pairs(cfg, data)
    t_ours = median_time(lambda: pairs(idx), device, args.warmup, args.reps)
    out["b_views_eager"] = {"seconds": t_ours, "imgs_per_s": args.batch / t_ours}
    staged = build_pairs(config(args, stages=KORNIA_STAGE), data)
    t_staged = median_time(lambda: staged(idx), device, args.warmup, args.reps)
    out["b_views_eager_plus_kornia_random_erasing"] = {"seconds": t_staged, "imgs_per_s": args.batch / t_staged,
                                                        "stage_ms": 1000 * (t_staged - t_ours)}
    if args.compile:
        compiled = torch.compile(pairs.__call__, mode="reduce-overhead" if device.type == "cuda" else None)
        start = time.perf_counter()
        compiled(idx)
        sync(device)
        out["b_views_compile_seconds"] = time.perf_counter() - start
        t_c = median_time(lambda: compiled(idx), device, args.warmup, args.reps, inner=10)
        out["b_views_compiled"] = {"seconds": t_c, "imgs_per_s": args.batch / t_c}


def measure_steps(
    args,
    device,
    out: dict,
    compile_model: bool,
    compile_views: bool = False,
    view_graphs: bool = True,
    channels_last: bool = True,
) -> None:
    suffix = ("_compiled_model" if compile_model else "") + ("_compiled_views" if compile_views else "")
    suffix += ("" if view_graphs else "_no_view_graphs") + ("" if channels_last else "_nchw")
    cfg = config(args, compile=compile_model, compile_views=compile_views, channels_last=channels_last)
    data = synthetic_bundle(max(4 * args.batch, 2048), args.channels, args.size, device)
    trainer = Trainer(cfg, data)
    if compile_views and not view_graphs:
        # Hypothesis for the compiled-model gap (86% of model-only): the views' CUDA-graph tree and
        # the compiled model's graphs may contend; fused view kernels without CUDA graphs avoid that.
        trainer.compile_views()
    idx = torch.arange(args.batch, device=device)
    v1, v2 = trainer.pairs(idx)
    if cfg.trainer.channels_last:  # the layout the trainer's own step uses
        v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))

    def model_step():  # the trainer's own step on views made beforehand
        trainer.step(idx, views=(v1, v2))

    if compile_model or compile_views:
        start = time.perf_counter()
        model_step()
        trainer.step(idx)
        sync(device)
        out[f"compile_seconds{suffix}"] = time.perf_counter() - start
    t_model = median_time(model_step, device, args.warmup, args.reps)
    out[f"c_model_step{suffix}"] = {"seconds": t_model, "imgs_per_s": args.batch / t_model}
    perm = torch.randperm(data.train_x.shape[0], device=device)[: args.batch]
    t_full = median_time(lambda: trainer.step(perm), device, args.warmup, args.reps)
    out[f"d_full_step{suffix}"] = {
        "seconds": t_full,
        "imgs_per_s": args.batch / t_full,
        "share_of_model_step": t_model / t_full,
    }


def measure_ring(args, device, out: dict) -> None:
    z = torch.nn.functional.normalize(torch.randn(args.batch, 128, device=device), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(args.bank, 128, device=device), dim=1)
    idx = torch.arange(args.batch, device=device)
    t_ring = median_time(lambda: ring_sample(z @ bank.T, 0.01, 0.10, 4096, exclude=idx), device, args.warmup, args.reps)
    step = out.get("d_full_step", {}).get("seconds")
    out["e_ring_selection"] = {
        "seconds": t_ring,
        "bank": args.bank,
        "batch": args.batch,
        "share_of_step": t_ring / step if step else None,
    }


def _worker(args_dict, seconds, barrier, queue) -> None:
    args = argparse.Namespace(**args_dict)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads // args.procs))
    trainer = Trainer(config(args), synthetic_bundle(max(4 * args.batch, 2048), args.channels, args.size, device))
    perm = torch.randperm(trainer.data.train_x.shape[0], device=device)[: args.batch]
    for _ in range(args.warmup):
        trainer.step(perm)
    sync(device)
    barrier.wait()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        trainer.step(perm)
        steps += 1
        if steps % 5 == 0:
            sync(device)
    sync(device)
    queue.put(steps * args.batch / (time.perf_counter() - start))


def measure_sharing(args, out: dict) -> None:
    ctx = mp.get_context("spawn")
    res = {}
    for procs in args.share:
        barrier, queue = ctx.Barrier(procs), ctx.Queue()
        payload = {**vars(args), "procs": procs}
        workers = [ctx.Process(target=_worker, args=(payload, args.share_seconds, barrier, queue)) for _ in range(procs)]
        for w in workers:
            w.start()
        rates = [queue.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
        res[str(procs)] = {"total_imgs_per_s": sum(rates), "per_process": rates}
        print(f"  (f) {procs} process(es): {sum(rates):,.0f} img/s in total", file=sys.stderr)
    out["f_sharing"] = res


def guarded(out: dict, name: str, fn) -> None:
    """One failed measurement is recorded, not fatal: the others still run and are written."""
    try:
        fn()
    except Exception as err:  # noqa: BLE001
        out[f"error_{name}"] = f"{type(err).__name__}: {err}"
        print(f"  {name} failed: {out[f'error_{name}']}", file=sys.stderr)


def print_table(out: dict, meta: dict) -> None:
    print(f"\n{meta['device_name']} | {meta['model']} | batch {meta['batch']} | {meta['size']} px x{meta['channels']}")
    print("| measurement | ms | images/s | note |\n|---|---|---|---|")
    for key, val in out.items():
        if isinstance(val, dict) and "seconds" in val:
            note = ""
            if "share_of_model_step" in val:
                note = f"{100 * val['share_of_model_step']:.1f}% of model-only speed"
            if val.get("share_of_step") is not None:
                note = f"{100 * val['share_of_step']:.1f}% of the full step"
            ips = f"{val['imgs_per_s']:,.0f}" if "imgs_per_s" in val else "—"
            print(f"| {key} | {1000 * val['seconds']:.2f} | {ips} | {note} |")
    if "d_full_step" in out and "b_views_eager" in out:
        share = out["b_views_eager"]["seconds"] / out["d_full_step"]["seconds"]
        print(f"| views share of full step (eager) | | | {100 * share:.1f}% |")
    for procs, val in out.get("f_sharing", {}).items():
        print(f"| f_{procs}_process(es) | | {val['total_imgs_per_s']:,.0f} | total over processes |")
    for key, val in out.items():
        if "compile_seconds" in key:
            print(f"| {key} | | | {val:.1f} s |")
        if key.startswith("error_"):
            print(f"| {key} | | | {val[:80]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="force the CPU at the CPU default sizes")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/throughput_<device>.json)")
    parser.add_argument("--share", type=int, nargs="*", default=None, help="process counts for (f)")
    parser.add_argument("--share-seconds", type=float, default=None)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    defaults = (
        {"backbone": "resnet18_cifar", "width": 64, "batch": 512, "size": 32, "channels": 3, "bank": 50_000,
         "warmup": 10, "reps": 20, "share": [1, 2, 4], "share_seconds": 15.0, "compile": not args.no_compile}
        if cuda
        else {"backbone": "convnet", "width": 16, "batch": 256, "size": 28, "channels": 1, "bank": 50_000,
              "warmup": 3, "reps": 15, "share": [1, 2], "share_seconds": 8.0, "compile": False}
    )
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.device, args.threads = device.type, torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()}, {args.threads} threads)"
    if not cuda:
        print("no CUDA device: measuring on the CPU at reduced sizes", file=sys.stderr)
    meta = {"device_name": name, "torch": torch.__version__, "model": args.backbone, "width": args.width, "batch": args.batch,
            "size": args.size, "channels": args.channels, "bf16": cuda,
            "channels_last": True, "nchw_rows": "keys ending _nchw ran with trainer.channels_last: false"}
    out: dict = {}
    print("(a, b) views ...", file=sys.stderr)
    guarded(out, "views", lambda: measure_views(args, device, out))
    print("(c, d) steps ...", file=sys.stderr)
    guarded(out, "steps", lambda: measure_steps(args, device, out, compile_model=False))
    # the layout's own effect: the same step with NCHW activations (trainer.channels_last: false)
    guarded(out, "steps_nchw", lambda: measure_steps(args, device, out, compile_model=False, channels_last=False))
    if cuda and args.compile:
        guarded(out, "steps_cv", lambda: measure_steps(args, device, out, compile_model=False, compile_views=True))
        guarded(out, "steps_cmv", lambda: measure_steps(args, device, out, compile_model=True, compile_views=True))
        guarded(out, "steps_cmv_ng", lambda: measure_steps(args, device, out, True, compile_views=True, view_graphs=False))
    print("(e) ring ...", file=sys.stderr)
    guarded(out, "ring", lambda: measure_ring(args, device, out))
    print("(f) sharing ...", file=sys.stderr)
    guarded(out, "sharing", lambda: measure_sharing(args, out))
    print_table(out, meta)
    path = Path(args.out or f"benchmarks/results/throughput_{'cuda' if cuda else 'cpu'}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": out}, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
