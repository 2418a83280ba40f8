"""How fast the cheap answers come: refusals and lookups a person (or a trial) waits on.

The tests check what these return (the key a refusal names, ``None`` while a lock is held); how
long they take is measured here, on this machine, instead of asserted in a test:

- ``validate_spec`` on a stage list one longer than ``MAX_STAGES``: refused at the first stage
  past the cap, without building the Kornia stages before it;
- ``parse_yaml`` on a 10,000-stage YAML file: refused while the text is read;
- ``cached_mi(..., wait=False)`` while another process holds the key's lock: returns at once so
  the trial trains first;
- the command line in a fresh interpreter: ``--help``, and a spec error (exit 2), which import
  only what they need (``search/session.py`` keeps Ray and MLflow inside its methods).

    python benchmarks/refusals.py                 # table printed, JSON in benchmarks/results/
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from search.micache import cached_mi, key_name, mi_key
from search.spec import SpecError, validate_spec
from trainers.config import TrainConfig
from trainers.specfile import parse_yaml
from trainers.stages import MAX_STAGES

BASE = {"experiment": "refusals", "dataset": {"name": "synthetic", "subset": 256}}


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def refused(fn: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        try:
            fn()
        except SpecError:
            return
        raise AssertionError("not refused")
    return call


def cases(folder: Path) -> dict[str, Callable[[], object]]:
    too_many = {**BASE, "views": {"stages": [{"RandomHorizontalFlip": None}] * (MAX_STAGES + 1)}}
    huge = "experiment: x\nviews:\n  stages:\n" + "  - RandomErasing: {p: 0.5}\n" * 10_000
    cache = folder / "cache"
    cache.mkdir()
    key = mi_key(TrainConfig.model_validate({"dataset": {"name": "synthetic"}}))
    held = open(cache / f"{key_name(key)}.lock", "a+")  # noqa: SIM115 -- held for the whole run
    fcntl.flock(held, fcntl.LOCK_EX)
    bad = folder / "bad.yaml"
    bad.write_text("experiment: x\ntrainer: {epochs: 0}\n")
    cli = [sys.executable, "-m", "search.run"]
    return {
        f"validate_spec, {MAX_STAGES + 1} stages (refused)": refused(lambda: validate_spec(too_many)),
        "parse_yaml, 10,000 stages (refused)": refused(lambda: parse_yaml(huge)),
        "cached_mi wait=False, lock held (None)": lambda: cached_mi(cache, key, lambda: {"mi_nats": 1.0}, wait=False),
        "python -m search.run --help": lambda: subprocess.run([*cli, "--help"], cwd=REPO, capture_output=True,
                                                              check=True),
        "python -m search.run bad.yaml (exit 2)": lambda: subprocess.run([*cli, str(bad)], cwd=REPO,
                                                                         capture_output=True, check=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/refusals.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in cases(Path(tmp)).items():
            fn()  # warm: imports and caches are not what is measured
            seconds = timed(fn, args.repeats)
            rows.append({"case": name, "median_s": statistics.median(seconds), "max_s": max(seconds)})
    print(f"{'case':<48} {'median s':>9} {'max s':>8}")
    for row in rows:
        print(f"{row['case']:<48} {row['median_s']:>9.3f} {row['max_s']:>8.3f}")
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
