"""Trials per GPU: 1, 2 and 4 training processes sharing the one device, images/s in total.

Each process trains the ``augment`` source at the ring runs' batch size (eager), so the
per-process rate at 4 processes is also what sizes the ring runs' epochs. Processes start
together (a barrier after their warm-up) and each counts its steps for the same wall time.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.gpucheck.common import Clock, Sizes, read_bundle, sync
from benchmarks.gpucheck.sources import source_config
from trainers.train import Trainer


def worker(bundle_path: str, sizes: Sizes, device_name: str, threads: int, barrier, results) -> None:
    device = torch.device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    trainer = Trainer(source_config("augment", replace(sizes, batch=sizes.ring_batch), device.type),
                      read_bundle(Path(bundle_path)))
    n = trainer.data.train_x.shape[0]
    batch = lambda: torch.randint(0, n, (sizes.ring_batch,), device=device)
    for _ in range(max(2, sizes.warmup)):
        trainer.step(batch())
    sync(device)
    barrier.wait(timeout=300)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < sizes.share_seconds:
        trainer.step(batch())
        steps += 1
        if steps % 5 == 0:
            sync(device)
    sync(device)
    results.put(steps * sizes.ring_batch / (time.perf_counter() - start))


def measure(bundle_path: Path, sizes: Sizes, device: torch.device, clock: Clock, deadline: float, log=print) -> dict:
    """``{"processes": {"1": {...}, ...}}``; a count that does not fit before ``deadline`` is skipped."""
    ctx = mp.get_context("spawn")
    out: dict = {}
    for procs in sizes.share_procs:
        left = deadline - clock.elapsed()
        if left < sizes.share_seconds + 5:
            out[str(procs)] = {"status": "skipped", "reason": "the time budget was spent",
                               "total_imgs_per_s": None, "per_process": None}
            continue
        barrier, results = ctx.Barrier(procs), ctx.Queue()
        threads = max(1, torch.get_num_threads() // procs)
        workers = [ctx.Process(target=worker, args=(str(bundle_path), sizes, device.type, threads, barrier, results))
                   for _ in range(procs)]
        for w in workers:
            w.start()
        rates = []
        try:
            for _ in workers:
                rates.append(results.get(timeout=max(5.0, min(deadline - clock.elapsed(), sizes.share_seconds + 300))))
        except queue_mod.Empty:
            pass
        for w in workers:
            w.join(10)
            if w.is_alive():  # one of ours that did not finish in time
                w.kill()
                w.join()
        if len(rates) == procs:
            out[str(procs)] = {"status": "ok", "reason": None, "total_imgs_per_s": sum(rates), "per_process": rates}
            log(f"  {procs} process(es): {sum(rates):,.0f} img/s in total")
        else:
            late = clock.elapsed() >= deadline
            why = "stopped at the time budget" if late else f"exit codes {[w.exitcode for w in workers]}; see the console"
            out[str(procs)] = {"status": "skipped" if late else "error",
                               "reason": f"{len(rates)} of {procs} processes reported ({why})",
                               "total_imgs_per_s": None, "per_process": None}
    return {"source": "augment", "batch": sizes.ring_batch, "backbone": sizes.backbone,
            "seconds_each": sizes.share_seconds, "processes": out}
