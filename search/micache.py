"""The view MI and the task information, measured once per view configuration and shared by
every trial that has it.

Why: the view MI is a property of the views alone (the dataset, the ``views`` section and the
``mi`` protocol), not of the training, so the replicates of a point, or two points that differ
only in the ring or the learning rate, all have the same MI. Measuring it once per view
configuration saves minutes per search on a CPU.

The cache is a folder of JSON files, one per configuration, named by the hash of what the MI
depends on (``mi_key``). Trials of a search run in parallel processes, possibly on several
nodes of a cluster sharing ``runs/``: the first to need a value takes an OS file lock on that
key, measures and writes the file atomically; the others wait on the lock and read it. A lock
the kernel holds cannot outlive its process, so a crashed trial never leaves one stuck. A
resumed search finds the files and measures nothing again; ``--fresh`` empties the folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.config import TrainConfig

# Bump when the measurement itself changes (critic, pair drawing, the values an entry holds):
# old files then stop matching. 3: an entry also holds the task information I(v; y).
MI_PROTOCOL_VERSION = 3


def mi_key(cfg: TrainConfig) -> dict[str, Any]:
    """Everything the view MI and the task information depend on, and nothing else (not the
    seed, model or method): the data set and its validation split, the views, the protocol."""
    return {
        "version": MI_PROTOCOL_VERSION,
        "dataset": cfg.dataset.model_dump(),
        "views": cfg.views.model_dump(),
        "mi": cfg.mi.model_dump(exclude={"enabled"}),
    }


def floor_key(cfg: TrainConfig) -> dict[str, Any]:
    """What the untrained encoder's probes depend on: the data, the architecture, its seed, the
    probes, and how the pair source presents a whole image (not the view strength or the MI)."""
    return {
        "floor": MI_PROTOCOL_VERSION,
        "dataset": cfg.dataset.model_dump(),
        "model": cfg.model.model_dump(),
        "seed": cfg.trainer.seed,
        "channels_last": cfg.trainer.channels_last,
        "evaluation": cfg.evaluation.model_dump(exclude={"knn_every_epoch", "monitor_train", "monitor_val"}),
        "eval_view": cfg.views.family(cfg.dataset.name).eval_key(),
    }


def key_name(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def _read(path: Path) -> dict | None:
    """The stored values, or None for a miss. An unreadable entry (a partial write on a full disk,
    a hand edit) is a miss too, with a warning naming the file: it is measured again and replaced,
    never a reason to fail a trial."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        _warn(f"MI cache entry {path} cannot be read ({err.strerror or err}); measuring it again")
        return None
    try:
        values = json.loads(text)["values"]
        if not isinstance(values, dict):
            raise TypeError(f"'values' is a {type(values).__name__}")
        return values
    except (ValueError, KeyError, TypeError) as err:
        _warn(f"MI cache entry {path} is unreadable ({type(err).__name__}: {err}); measuring it again")
        return None


def cached_mi(
    folder: Path, key: dict[str, Any], measure: Callable[[], dict[str, float]], wait: bool = True
) -> tuple[dict, bool] | None:
    """``(values, was_cached)``: the stored values for ``key``, or ``measure()`` stored under a lock.

    With ``wait=False`` it returns None instead of waiting while another trial measures: that
    trial trains meanwhile and asks again, waiting, once it has trained. ``folder`` may also be
    the object-store cache of ``storage.uri`` (``search/objcache.py``), which keeps this contract.
    """
    if hasattr(folder, "cached_mi"):  # storage.uri: the cache lives in the bucket
        return folder.cached_mi(key, measure, wait)
    folder.mkdir(parents=True, exist_ok=True)
    name = key_name(key)
    path = folder / f"{name}.json"
    values = _read(path)
    if values is not None:
        return values, True
    with open(folder / f"{name}.lock", "a+") as lock:
        try:  # released by the kernel if this process dies
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            values = _read(path)  # another trial measured it while we waited
            if values is not None:
                return values, True
            start = time.perf_counter()
            values = measure()
            record = {"values": values, "key": key, "seconds": time.perf_counter() - start, "pid": os.getpid()}
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(record, indent=1, default=str))
            os.replace(tmp, path)  # atomic: a reader sees the whole file or none
            return values, False
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
