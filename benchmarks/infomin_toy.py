"""The controlled InfoMin testbed without Ray: one training per shared-factor subset, probe each factor.

For every subset of factors the spec's ``views.pairs.shared`` grid lists, trains the spec's model on
``infomin_toy`` with views sharing exactly those factors, then reads each factor out of the
frozen features with a linear probe. A random-init encoder is the reference row: it shows what
the architecture exposes before any training. InfoMin predicts each column peaks in the rows
that share its factor. Prints a markdown table, writes JSON.

    python benchmarks/infomin_toy.py                          # the spec's size (the README's numbers)
    python benchmarks/infomin_toy.py --subset 2000 --epochs 1  # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.data import load_data
from trainers.data.toy import FACTORS, n_values
from trainers.domains import get_path, is_domain
from trainers.results import factor_probe
from trainers.specfile import load_train_config, load_yaml
from trainers.train import Trainer

RANDOM_INIT = "random init"
COLUMNS = [factor_probe(f, "test") for f in FACTORS]


def spec_subsets(spec: str) -> list[list[str]]:
    """The shared-factor subsets the spec searches (its ``views.pairs.shared`` grid or single value)."""
    value = get_path(load_yaml(spec), "views.pairs.shared")
    return [list(v) for v in next(iter(value.values()))] if is_domain(value) else [list(value)]


def row_name(shared: list[str]) -> str:
    return "+".join(shared) if set(shared) != set(FACTORS) else "all"


def run_row(spec: str, overrides: list[str], data, train: bool) -> dict:
    """One training (or none, for the random-init row) and its per-factor probes."""
    cfg = load_train_config(spec, overrides)
    start = time.perf_counter()
    trainer = Trainer(cfg, data)
    result = trainer.fit() if train else {**trainer.evaluate(), "epochs": 0}
    result["seconds"] = time.perf_counter() - start
    return result


def claim_holds(rows: dict[str, dict], subsets: dict[str, list[str]]) -> dict[str, bool]:
    """Per factor: does a row whose views share it beat every trained row whose views do not?"""
    out = {}
    for f in FACTORS:
        shares = [rows[n][factor_probe(f, "test")] for n, s in subsets.items() if f in s]
        others = [rows[n][factor_probe(f, "test")] for n, s in subsets.items() if f not in s]
        out[f] = bool(shares) and (not others or max(shares) > max(others))
    return out


def markdown(rows: dict[str, dict], chance: dict[str, float]) -> str:
    """Rows = shared subset; the best trained row of each column in bold."""
    trained = [name for name in rows if name != RANDOM_INIT]
    best = {c: max(trained, key=lambda n: rows[n][c]) for c in COLUMNS}
    head = "| views share | " + " | ".join(f"{c} (chance {chance[c.removeprefix('linear_acc_')]:.3f})" for c in COLUMNS)
    lines = [head + " | wall s |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, r in rows.items():
        cells = [f"**{r[c]:.3f}**" if best[c] == name else f"{r[c]:.3f}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="spaces/infomin_toy.yaml")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-baseline", action="store_true", help="skip the random-init row")
    parser.add_argument("--out", default="benchmarks/results/infomin_toy.json")
    args = parser.parse_args()

    common = list(args.overrides)
    common += [f"trainer.epochs={args.epochs}"] if args.epochs else []
    common += [f"dataset.subset={args.subset}"] if args.subset else []
    wall = time.perf_counter()
    subsets = spec_subsets(args.spec)
    base = load_train_config(args.spec, common + [f"views.pairs.shared={json.dumps(subsets[0])}"])
    data = load_data(base.dataset)
    print(f"infomin_toy: {data.train_x.shape[0]} train / {data.test_x.shape[0]} test images, "
          f"{base.trainer.epochs} epochs, threads {base.trainer.threads or torch.get_num_threads()}", file=sys.stderr)
    rows: dict[str, dict] = {}
    if not args.no_baseline:
        rows[RANDOM_INIT] = run_row(args.spec, common + [f"views.pairs.shared={json.dumps(subsets[0])}"], data, False)
    names = {row_name(shared): shared for shared in subsets}
    for name, shared in names.items():
        rows[name] = run_row(args.spec, common + [f"views.pairs.shared={json.dumps(shared)}"], data, True)
        print(f"== {name}: " + ", ".join(f"{c} {rows[name][c]:.3f}" for c in COLUMNS), file=sys.stderr)
    wall = time.perf_counter() - wall

    chance = {f: 1 / n_values(data, f) for f in FACTORS}
    claim = claim_holds(rows, names)
    print("\n" + markdown(rows, chance))
    print("\nshared factor read out best: " + ", ".join(f"{f} {'yes' if ok else 'NO'}" for f, ok in claim.items()))
    print(f"\ntotal wall time {wall:.0f} s (data rendering included)", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
            "threads": base.trainer.threads or torch.get_num_threads(), "torch": torch.__version__,
            "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
            "spec": args.spec, "overrides": common, "train_images": int(data.train_x.shape[0]),
            "test_images": int(data.test_x.shape[0]), "epochs": base.trainer.epochs, "wall_s": wall,
            "chance": chance}
    out.write_text(json.dumps({"meta": meta, "results": rows, "shared_factor_best": claim}, indent=2))


if __name__ == "__main__":
    main()
