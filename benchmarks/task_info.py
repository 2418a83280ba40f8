"""What the views of a search keep: view MI I(v1; v2) and task information I(v; y) along its knob.

Measures, for every value of the spec's searched view knob (its grid, or ``--values``), the view
MI and the lower bound I(v; y) >= H(y) - CE with the spec's own ``mi`` protocol -- the same
measurement a search logs as ``mi_nats`` / ``label_mi_nats`` -- and prints them next to H(y).
No training: this is how a view axis is checked against a criterion written before any search
runs ("the strongest point keeps at most half of H(y)"). It reads training and validation
labels only. No Ray, no MLflow.

    python benchmarks/task_info.py --spec spaces/augment_strength.yaml
    python benchmarks/task_info.py --spec spaces/infomin_patches.yaml --out benchmarks/results/task_info_patches.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from analysis.mi import view_mi
from analysis.taskinfo import task_information
from trainers.data import load_data
from trainers.domains import domain_values, find_domains
from trainers.pairs import build_pairs
from trainers.results import LABEL_ENTROPY_NATS, LABEL_MI_NATS, MI_CAP_NATS, MI_NATS
from trainers.specfile import load_train_config, load_yaml


def view_knob(spec: str) -> tuple[str, list]:
    """The spec's one searched ``views.*`` knob and its values."""
    knobs = {k: d for k, d in find_domains(load_yaml(spec)).items() if k.startswith("views.")}
    if len(knobs) != 1:
        raise SystemExit(f"error: {spec} searches {len(knobs)} views.* knobs; name one with --knob and --values")
    (key, dom), = knobs.items()
    return key, list(domain_values(dom))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="spaces/augment_strength.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--knob", help="default: the spec's searched views.* knob")
    parser.add_argument("--values", nargs="+", help="default: the knob's grid in the spec")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON output (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    knob, values = (args.knob, args.values) if args.knob and args.values else view_knob(args.spec)
    cfg = load_train_config(args.spec, args.overrides)
    data = load_data(cfg.dataset)
    rows, wall = [], time.perf_counter()
    print(f"{args.spec} {' '.join(args.overrides)}: {knob}, mi protocol {cfg.mi.model_dump(exclude={'enabled'})}")
    print(f"| {knob} | view MI [nats] | I(v;y) >= [nats] | H(y) [nats] | share of H(y) | probe acc | seconds |")
    print("|---|---|---|---|---|---|---|")
    for value in values:
        point = load_train_config(args.spec, [*args.overrides, f"{knob}={value}"])
        start = time.perf_counter()
        with torch.no_grad():
            pairs = build_pairs(point, data)
        mi = view_mi(pairs, protocol=point.mi)
        ti = task_information(pairs, data.train_y, data.val_x, data.val_y, data.num_classes, point.mi)
        row = {"value": value, MI_NATS: mi.nats, MI_CAP_NATS: mi.cap_nats, LABEL_MI_NATS: ti.nats,
               LABEL_ENTROPY_NATS: ti.entropy_nats, "label_ce_nats": ti.ce_nats, "label_probe_acc": ti.accuracy,
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"| {value} | {mi.nats:.2f} | {ti.nats:.2f} | {ti.entropy_nats:.2f} | {ti.nats / ti.entropy_nats:.0%} "
              f"| {ti.accuracy:.3f} | {row['seconds']:.0f} |", flush=True)
    wall = time.perf_counter() - wall
    print(f"{wall:.0f} s wall, {args.threads} thread(s)")
    if args.out:
        out = {"meta": {"spec": args.spec, "overrides": args.overrides, "knob": knob, "threads": args.threads,
                        "machine": platform.node(), "processor": platform.machine(), "wall_seconds": wall,
                        "protocol": cfg.mi.model_dump()}, "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
