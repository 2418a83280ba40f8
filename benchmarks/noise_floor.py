"""Noise floor of one training configuration: how much does accuracy move from seed to seed?

Trains the spec's training at a few values of one knob (default ``views.strength``), each with
several seeds, two trainings at a time with one thread each (the search's own layout on the
2-core machine), and reports per point the validation and test linear-probe accuracy of every
seed, their mean and SD, and for the pooled SD the 95% CI half-width a point would get with k
replicates. This is the measurement a flagship design is chosen from (``docs/results.md``):
points x replicates x epochs against half-width and time. No Ray, no MLflow.

    python benchmarks/noise_floor.py --spec spaces/augment_strength.yaml --seeds 4 --values 0.2 0.8
    python benchmarks/noise_floor.py --set trainer.epochs=5 --out benchmarks/results/noise_floor_e5.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.noise import noise_floor, pooled_sd, t95
from trainers.results import KNN_ACC, LINEAR_ACC, VAL_KNN_ACC, VAL_LINEAR_ACC


def train_one(job: tuple[str, list[str]]) -> dict:
    """One training in a fresh process with one thread: its final evaluation and wall time."""
    spec, overrides = job
    import torch

    from trainers.specfile import load_train_config
    from trainers.train import Trainer

    torch.set_num_threads(1)
    start = time.perf_counter()
    cfg = load_train_config(spec, [*overrides, "trainer.threads=1", "evaluation.knn_every_epoch=false"])
    result = Trainer(cfg).fit()
    return {"overrides": overrides, "seconds": time.perf_counter() - start,
            **{k: result.get(k) for k in (VAL_LINEAR_ACC, LINEAR_ACC, VAL_KNN_ACC, KNN_ACC, "train_loss")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="spaces/augment_strength.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--knob", default="views.strength")
    parser.add_argument("--values", nargs="+", default=["0.5"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (one thread each)")
    parser.add_argument("--out", default="benchmarks/results/noise_floor.json")
    args = parser.parse_args()

    jobs = [(args.spec, [*args.overrides, f"{args.knob}={v}", f"trainer.seed={s}"])
            for v in args.values for s in range(args.seeds)]
    wall = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        runs = []
        for run in pool.imap(train_one, jobs):
            runs.append(run)
            print(f"  {' '.join(run['overrides'][-2:])}: val {run[VAL_LINEAR_ACC]:.4f} test {run[LINEAR_ACC]:.4f} "
                  f"({run['seconds']:.0f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - wall
    out = {"meta": {"spec": args.spec, "overrides": args.overrides, "knob": args.knob, "seeds": args.seeds,
                    "jobs": args.jobs, "machine": platform.node(), "processor": platform.processor(),
                    "wall_seconds": wall}, "runs": runs, "metrics": {}}
    print(f"\n{args.knob} x {args.seeds} seeds, {' '.join(args.overrides) or 'spec as is'}; {wall:.0f} s wall")
    for metric in (VAL_LINEAR_ACC, LINEAR_ACC):
        groups = {v: [r[metric] for r in runs if f"{args.knob}={v}" in r["overrides"]] for v in args.values}
        s, df = pooled_sd(groups)
        floor = noise_floor(groups)
        projected = {k: t95(max(df, 1)) * s / math.sqrt(k) for k in (2, 3, 4, 5, 6, 8)} if s else {}
        out["metrics"][metric] = {"points": {v: {"values": g, "mean": sum(g) / len(g)} for v, g in groups.items()},
                                  "pooled_sd": s, "df": df, "noise_floor": floor,
                                  "half_width_by_replicates": projected}
        print(f"| {metric} | " + " | ".join(f"{v}: {sum(g) / len(g):.4f}" for v, g in groups.items())
              + f" | pooled SD {s:.4f} ({df} df) | " + ", ".join(f"k={k}: ±{h:.4f}" for k, h in projected.items()) + " |")
    print(f"mean trial time {sum(r['seconds'] for r in runs) / len(runs):.0f} s ({args.jobs} at a time)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
