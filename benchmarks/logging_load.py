"""The driver's logging load: how many trial results per second can one driver log to MLflow?

The driver is MLflow's only writer (``search/tracking.py``): Tune calls its callback
(``search/callback.py``, the real ``MlflowTrials`` class, built as ``search/session.py`` builds it)
once per trial result, in one thread. If results arrive faster than the callback logs them, they
queue, and the MLflow runs (and the console) fall behind the trials. This benchmark feeds that
callback synthetic trials, with no Ray and no training, so the only cost measured is logging:

- ``--trials`` N trials in flight, each reporting an epoch every ``--every`` R seconds (their
  starts staggered over R), ``--epochs`` E reports per trial; a finished trial's slot starts a
  new trial at once, as Tune does. Each trial is opened (its child run, its ~100 params), each
  epoch logs its metrics, each end logs ``config.yaml``, ``views.png`` and ``checkpoint.pt`` and
  ends the run: the callback's own calls, in Tune's order.
- Every report comes with a checkpoint folder like a trial's (``checkpoint.pt`` of
  ``--checkpoint-mb``, ``extra.json``, ``config.yaml``, ``views.png``); the folders are written
  before the clock starts (writing them is the trial's cost, not the driver's).
- ``--every 0`` offers results as fast as the driver takes them: the rate it sustains is its
  capacity. With R > 0 the lag of each result (logged minus produced) and the backlog at the
  end (results produced but not logged yet) say whether it keeps up.

Stores: the default SQLite file with local artifacts (what a search uses without
``tracking.uri``), and an ``mlflow server`` on PostgreSQL 15 with proxied artifacts, started from
``tests/pg_mlflow.py`` (the test fixture's code) with the server's defaults (4 workers, fsync on).

    python benchmarks/logging_load.py                       # both stores, saturated then paced
    python benchmarks/logging_load.py --stores sqlite --seconds 30 --trials 8 --every 2
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray.tune import Checkpoint

from analysis.state import SearchState
from analysis.store import sqlite_uri
from search.mlflow_store import Store
from search.spec import load_spec
from search.tracking import Tracker
from search.trial import CHECKPOINT, CONFIG, EXTRA, VIEWS
from trainers.results import MI_CACHED, MI_CAP_NATS, MI_NATS, VAL_KNN_ACC

SPEC = Path(__file__).resolve().parents[1] / "spaces" / "augment_strength.yaml"


class FakeTrial(SimpleNamespace):
    """What the callback reads of a Tune trial."""

    def __str__(self) -> str:
        return f"trainable_{self.trial_id}"


@dataclass
class Slot:
    """One place for a trial in flight; a finished trial hands it to the next one."""

    index: int
    folder: Path
    trial: FakeTrial | None = None
    epoch: int = 0
    started: int = 0


@dataclass
class Outcome:
    logged: int = 0
    trials_started: int = 0
    trials_finished: int = 0
    lags: list[float] = field(default_factory=list)


def checkpoint_folders(root: Path, n: int, megabytes: float) -> list[Path]:
    """A trial's checkpoint folder for each slot: random (incompressible) bytes of a checkpoint's size."""
    folders = []
    for i in range(n):
        folder = root / f"checkpoint_{i:03d}"
        folder.mkdir(parents=True)
        (folder / CHECKPOINT).write_bytes(os.urandom(int(megabytes * 2**20)))
        (folder / EXTRA).write_text(json.dumps({MI_NATS: 2.1, MI_CAP_NATS: 4.85, MI_CACHED: 0.0}))
        (folder / CONFIG).write_text(SPEC.read_text())
        (folder / VIEWS).write_bytes(os.urandom(32_000))  # the flagship's view grid PNG is about this size
        folders.append(folder)
    return folders


def epoch_result(epoch: int, epochs: int) -> dict:
    """A real trial's epoch result: the per-epoch metrics, the once-per-trial values, and at the end
    the final evaluation."""
    result = {"epoch": float(epoch), "training_iteration": epoch, "train_loss": 5.0 / epoch,
              VAL_KNN_ACC: 0.7 + 0.01 * epoch, "ring_lower": 0.0, "ring_upper": 1.0, "imgs_per_s": 900.0,
              "diverged": 0.0, "start_epoch": 0.0, MI_NATS: 2.1, MI_CAP_NATS: 4.85, MI_CACHED: 0.0,
              "n_train_images": 7000, "n_val_images": 2000, "n_test_images": 10000}
    if epoch == epochs:
        result.update(val_linear_acc=0.8, linear_acc=0.79, knn_acc=0.78)
    return result


def new_search(store: Store, folder: Path, spec) -> Path:
    """The parent run and ``search.json`` the driver writes before the Tuner starts."""
    tracker = Tracker(store)
    exp = tracker.experiment_id(f"logging_load_{int(time.time() * 1000)}")
    parent = tracker.start_parent(exp, "bench", "search bench", spec.to_yaml(), {"host": platform.node()})
    state = folder / "search.json"
    SearchState(parent, experiment_id=exp, tracking_uri=store.uri, artifact_location=store.artifact_location).save(state)
    return state


def fake_point(spec, seq: int) -> dict:
    """A point of the spec's search, as Tune would hand it out (its replicate seed included)."""
    from search.replicates import SEED_KEY, replicate_seeds
    from trainers.domains import domain_values

    point = {key: (values := domain_values(dom))[seq % len(values)] for key, dom in spec.domains.items()}
    if spec.search.repeats > 1:
        point[SEED_KEY] = replicate_seeds(spec.train.trainer.seed, spec.search.repeats)[seq % spec.search.repeats]
    return point


def drive(store: Store, spec, folder: Path, trials: int, every: float, epochs: int, seconds: float,
          checkpoint_mb: float) -> dict:
    """Feed the callback for ``seconds``; return the rate, the lags and the backlog."""
    from search.callback import MlflowTrials

    slots = [Slot(i, f) for i, f in enumerate(checkpoint_folders(folder / "ckpt", trials, checkpoint_mb))]
    callback = MlflowTrials(spec, new_search(store, folder, spec), total=None)
    callback.setup()
    load_before = os.getloadavg()[0]
    out, seq = Outcome(), 0
    start = time.monotonic()
    end = start + seconds
    queue = [(start + (every * i / trials if every else 0.0), i) for i in range(trials)]
    heapq.heapify(queue)
    live: list[FakeTrial] = []
    with contextlib.redirect_stdout(io.StringIO()) as console:  # the callback's console lines: real, unread
        while queue:
            due, i = queue[0]
            now = time.monotonic()
            if now >= end:
                break
            if due > now:
                time.sleep(min(due, end) - now)
                continue
            heapq.heappop(queue)
            slot = slots[i]
            if slot.trial is None:
                seq += 1
                slot.trial = FakeTrial(trial_id=f"{i:03d}{seq:05d}", config=fake_point(spec, seq),
                                       last_result={}, status="RUNNING", checkpoint=None,
                                       run_metadata=SimpleNamespace(num_failures=0), error_file=None)
                slot.epoch = 0
                live.append(slot.trial)
                callback.on_trial_start(0, live, slot.trial)
                out.trials_started += 1
            slot.epoch += 1
            result = epoch_result(slot.epoch, epochs)
            callback.on_trial_result(0, live, slot.trial, result)
            callback.on_checkpoint(0, live, slot.trial, Checkpoint.from_directory(str(slot.folder)))
            if slot.epoch == epochs:
                slot.trial.last_result, slot.trial.status = result, "TERMINATED"
                slot.trial.checkpoint = Checkpoint.from_directory(str(slot.folder))
                callback.on_trial_complete(0, live, slot.trial)
                live.remove(slot.trial)
                slot.trial = None
                out.trials_finished += 1
            out.logged += 1
            out.lags.append(time.monotonic() - due)
            heapq.heappush(queue, (due + every, i))
        elapsed = time.monotonic() - start
        now = time.monotonic()
    backlog = sum(int((now - due) // every) + 1 for due, _ in queue if due <= now) if every else None
    lags = sorted(out.lags) if every else []
    return {
        "trials": trials, "every_s": every, "epochs": epochs, "checkpoint_mb": checkpoint_mb,
        "offered_per_s": trials / every if every else None, "seconds": round(elapsed, 1),
        "logged": out.logged, "logged_per_s": round(out.logged / elapsed, 2),
        "trials_started": out.trials_started, "trials_finished": out.trials_finished,
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p95_s": round(lags[int(0.95 * (len(lags) - 1))], 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
        "backlog_end": backlog, "keeps_up": (backlog <= trials and lags[int(0.95 * (len(lags) - 1))] < every)
        if every else None, "console_lines": console.getvalue().count("\n"),
        "load_avg_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # the machine's other work
    }


@contextlib.contextmanager
def open_store(kind: str, folder: Path, workers: int):
    if kind == "sqlite":
        root = folder / "runs"
        root.mkdir()
        yield Store(sqlite_uri(root), (root / "mlartifacts").resolve().as_uri()), "SQLite file, local artifacts"
        return
    from tests.pg_mlflow import postgres_mlflow

    with postgres_mlflow(folder / "server", durable=True, workers=workers, timeout=600) as (_, server):
        yield Store(server.uri, None), f"mlflow server ({workers} workers) on PostgreSQL 15, proxied artifacts"


def paced(rate: float, trials: int, seconds: float) -> tuple[int, float]:
    """(trials, every) offering ``rate`` reports/s with at most ``trials`` in flight and each trial
    reporting at least 6 times in the window (else a trial's first report, the dearest, dominates)."""
    every = min(seconds / 6, trials / rate)
    n = max(1, round(rate * every))
    return n, round(n / rate, 3)


def table(rows: list[dict]) -> str:
    head = ("store", "trials", "every s", "offered/s", "logged/s", "lag p50 s", "lag p95 s", "lag max s",
            "backlog", "keeps up", "load")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        def f(v, fmt="{}"):
            return "-" if v is None else fmt.format(v)

        lines.append(" | ".join([r["store"], str(r["trials"]), f(r["every_s"] or None), f(r["offered_per_s"], "{:.1f}"),
                                 f"{r['logged_per_s']:.1f}", f(r["lag_p50_s"], "{:.2f}"), f(r["lag_p95_s"], "{:.2f}"),
                                 f(r["lag_max_s"], "{:.2f}"), f(r["backlog_end"]),
                                 f(None if r["keeps_up"] is None else ("yes" if r["keeps_up"] else "no")),
                                 "{:.0f}-{:.0f}".format(*r["load_avg_1min"])]))
    return "\n".join("| " + line + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--trials", type=int, default=16, help="trials in flight")
    parser.add_argument("--every", type=float, nargs="*", default=None,
                        help="seconds between a trial's reports; 0 = saturate (default: 0, then paced at 50%% and "
                             "150%% of the measured capacity)")
    parser.add_argument("--epochs", type=int, default=5, help="reports per trial")
    parser.add_argument("--seconds", type=float, default=60, help="length of each configuration")
    parser.add_argument("--checkpoint-mb", type=float, default=1.5, help="the flagship convnet's: 1.5 MB")
    parser.add_argument("--workers", type=int, default=4, help="mlflow server workers (its default: 4)")
    parser.add_argument("--out", default="benchmarks/results/logging_load.json")
    args = parser.parse_args()
    spec = load_spec(str(SPEC), [])
    rows = []
    for kind in args.stores:
        with tempfile.TemporaryDirectory(prefix="logging-load-") as tmp, \
                open_store(kind, Path(tmp), args.workers) as (store, label):
            plan = [(args.trials, e) for e in args.every] if args.every is not None else [(args.trials, 0.0)]
            done = 0
            while done < len(plan) or (args.every is None and len(plan) < 3):
                if done == len(plan):  # paced below and above the capacity just measured
                    plan += [paced(rows[-1]["logged_per_s"] * share, args.trials, args.seconds) for share in (0.5, 1.5)]
                trials, every = plan[done]
                folder = Path(tmp) / f"run{done}"
                row = drive(store, spec, folder, trials, every, args.epochs, args.seconds, args.checkpoint_mb)
                rows.append({"store": kind, "store_detail": label, **row})
                print(f"{kind}: {row}", file=sys.stderr, flush=True)
                save(rows, args)
                done += 1
    print(table(rows))
    print(f"wrote {save(rows, args)}")


def save(rows: list[dict], args: argparse.Namespace) -> Path:
    """The JSON, rewritten after every configuration (a store that fails to start keeps the others)."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "args": vars(args), "rows": rows}, indent=2))
    return out


if __name__ == "__main__":
    main()
