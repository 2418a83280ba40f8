"""Linear-probe accuracy against epochs for one configuration: where does a setting plateau?

Trains ``benchmarks/quality.yaml`` with the given overrides on one CPU thread and runs the full
evaluation (kNN + linear probe on the whole test split) after each of the last ``--probe-last``
epochs. One JSON line per epoch goes to stdout and to ``--out``. ``--random`` evaluates the
encoder at initialisation instead. The README's "reaching 0.86" table comes from this script,
two runs at a time on the 2-core VM.

    python benchmarks/quality_curve.py --set model.depth=4 --set trainer.lr_schedule=cosine
    python benchmarks/quality_curve.py --random --set model.depth=4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.data import load_data
from trainers.specfile import load_train_config
from trainers.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="benchmarks/quality.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--probe-last", type=int, default=3, help="evaluate after each of the last N epochs")
    parser.add_argument("--random", action="store_true", help="evaluate the encoder at initialisation only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSONL file (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_train_config(args.spec, [*args.overrides, "evaluation.knn_every_epoch=false"])
    trainer = Trainer(cfg, load_data(cfg.dataset))
    base = {"overrides": args.overrides}
    with open(args.out or os.devnull, "w") as sink:

        def emit(record: dict) -> None:
            line = json.dumps({**base, **record})
            print(line, flush=True)
            print(line, file=sink, flush=True)

        if args.random:
            emit({"epoch": 0, **trainer.evaluate()})
            return
        start, train_s = time.perf_counter(), 0.0
        epochs = cfg.trainer.epochs
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            metrics = trainer.train_epoch()
            train_s += time.perf_counter() - t0
            evaluation = trainer.evaluate() if epoch > epochs - args.probe_last else {}
            emit({"epoch": epoch, "train_loss": metrics["train_loss"], "imgs_per_s": metrics["imgs_per_s"],
                  "train_seconds": train_s, "wall_seconds": time.perf_counter() - start, **evaluation})


if __name__ == "__main__":
    main()
