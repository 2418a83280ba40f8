"""The view-MI cache: one measurement per view configuration, shared by processes, never by
configurations that differ in what the MI depends on."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

from search.micache import cached_mi, key_name, mi_key
from trainers.config import TrainConfig


def cfg(**sections) -> TrainConfig:
    return TrainConfig.model_validate({"dataset": {"name": "synthetic"}, **sections})


def test_key_depends_on_views_data_and_protocol_not_on_the_training():
    base = key_name(mi_key(cfg()))
    assert key_name(mi_key(cfg(trainer={"seed": 5, "lr": 0.1}, method={"name": "moco"}))) == base
    assert key_name(mi_key(cfg(negatives={"lower": 0.01, "upper": 0.1}))) == base
    assert key_name(mi_key(cfg(views={"strength": 0.5}))) != base
    assert key_name(mi_key(cfg(mi={"seed": 1}))) != base
    assert key_name(mi_key(cfg(dataset={"name": "synthetic", "subset": 100}))) != base


def test_second_call_reads_the_first_measurement(tmp_path):
    calls = []

    def measure():
        calls.append(1)
        return {"mi_nats": 1.25, "mi_cap_nats": 4.0}

    key = mi_key(cfg())
    assert cached_mi(tmp_path, key, measure) == ({"mi_nats": 1.25, "mi_cap_nats": 4.0}, False)
    assert cached_mi(tmp_path, key, measure) == ({"mi_nats": 1.25, "mi_cap_nats": 4.0}, True)
    assert calls == [1]
    record = json.loads((tmp_path / f"{key_name(key)}.json").read_text())
    assert record["key"]["views"]["strength"] == 1.0


def _measure_slowly(folder: str, log: str) -> bool:
    def measure():
        with open(log, "a") as f:
            f.write("measured\n")
        time.sleep(1.0)
        return {"mi_nats": 2.0}

    return cached_mi(Path(folder), mi_key(cfg()), measure)[1]


def test_concurrent_trials_measure_once(tmp_path):
    log = tmp_path / "log.txt"
    with mp.get_context("spawn").Pool(3) as pool:
        hits = pool.starmap(_measure_slowly, [(str(tmp_path / "cache"), str(log))] * 3)
    assert log.read_text().count("measured") == 1
    assert sorted(hits) == [False, True, True]


def test_a_trial_that_would_wait_trains_first(tmp_path):
    """While another trial holds the key's lock, ``wait=False`` returns None at once (the caller
    trains and asks again later, waiting); once the lock is free it measures."""
    import fcntl

    key = mi_key(cfg())
    with open(tmp_path / f"{key_name(key)}.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        answer: list = []  # in a thread: a call that waited for the held lock would never return
        asking = threading.Thread(target=lambda: answer.append(cached_mi(tmp_path, key, lambda: {"mi_nats": 1.0},
                                                                         wait=False)), daemon=True)
        asking.start()
        asking.join(60)  # a guard against a hang, not a speed check (that is benchmarks/refusals.py)
        assert answer == [None]
    assert cached_mi(tmp_path, key, lambda: {"mi_nats": 1.0}, wait=False) == ({"mi_nats": 1.0}, False)
