"""Resume checks what it resumes: a damaged Tune state stops the resume (exit 2) without losing a
run, a copied ``runs/`` resumes in its new place and writes nothing into the original, an
unreadable MI-cache entry is measured again. One killed search is the starting point of all three."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import TINY_SPEC, kill_group, mlflow_runs, run_search
from tests.test_reliability import start, wait_for

# Two grid points with the same views (so they share one MI-cache entry), one at a time, six
# epochs: killed during the second trial, the first one is finished and its MI is cached.
GRID_SPEC = (TINY_SPEC.replace("views: {strength: {uniform: [0.2, 1.0]}}", "views: {strength: 0.5}")
             .replace("negatives: {lower: {choice: [0.0, 0.05]}, upper: {choice: [0.5, 1.0]}}",
                      "negatives: {lower: {grid: [0.0, 0.05]}, upper: 0.5}")
             .replace("epochs: 2,", "epochs: 6,")
             .replace("search: {num_samples: 4, max_concurrent: 2, scheduler: none}",
                      "search: {algorithm: grid, num_samples: 1, max_concurrent: 1, scheduler: none}"))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes: what "nothing written there" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "search.lock"}


def store_runs(cwd: Path) -> dict[str, tuple[str, str, frozenset]]:
    """run id -> (lifecycle, status, metric names) of every run of experiment tiny, deleted ones too."""
    _, parents, children = mlflow_runs(cwd / "runs" / "mlflow.db", "tiny", deleted=True)
    return {r.info.run_id: (r.info.lifecycle_stage, r.info.status, frozenset(r.data.metrics))
            for r in parents + children}


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A search SIGKILLed (driver and Ray, the whole group) after its first trial ended and while the
    second trains; its folder is copied by each test, never used in place."""
    cwd = tmp_path_factory.mktemp("killed")
    spec = cwd / "tiny.yaml"
    spec.write_text(GRID_SPEC)
    proc, lines = start(spec, cwd)
    try:
        wait_for(lines, r"progress: 1/2 trials done", proc, timeout=400)
        wait_for(lines, r"epoch 2/6", proc, timeout=200)  # the second trial has logged epochs
        proc.send_signal(signal.SIGKILL)
        kill_group(proc.pid)
        proc.wait(timeout=60)
    finally:
        kill_group(proc.pid)
    assert list((cwd / "runs" / "tiny" / "mi_cache").glob("*.json")), "".join(lines)[-2000:]
    kill_orphaned_ray_workers()
    settle(cwd)
    return cwd


def generator_files(cwd: Path) -> list[Path]:
    """The generator's saved state: Tune's ``*-state-*`` files other than its experiment state."""
    return [p for p in (cwd / "runs" / "tiny" / "ray" / "tiny").glob("*-state-*")
            if not p.name.startswith("experiment_state-")]


def rewind_generator(cwd: Path) -> None:
    """Put back the grid generator's state as Tune saved it before it created its first trial."""
    import pickle

    from ray import cloudpickle

    (path,) = generator_files(cwd)
    state = pickle.loads(path.read_bytes())
    (iterator,) = state["_iterators"]
    iterator.counter, iterator.num_samples_left, iterator.variants = 0, iterator.num_samples, None
    state["_live_trials"] = set()
    path.write_bytes(cloudpickle.dumps(state))


def kill_orphaned_ray_workers() -> None:
    """SIGKILL the trial workers the killed driver's Ray left behind: they run in process groups of
    their own, now orphans, and would go on writing checkpoints into the original folder for a
    while. Workers of a living Ray (whose parent is its raylet) are left alone."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        try:
            parent = Path(f"/proc/{ppid}/cmdline").read_bytes()
        except OSError:
            parent = b""
        if cmdline.startswith(b"ray::") and b"raylet" not in parent:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def settle(folder: Path, quiet_s: float = 8, timeout: float = 180) -> None:
    """Wait until nothing changes under ``folder``: a killed driver's trial workers (Ray gives them
    their own process groups) may still persist a checkpoint before they notice and exit."""
    import time

    last, since, deadline = snapshot(folder), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(1)
        now = snapshot(folder)
        if now != last:
            last, since = now, time.monotonic()


def copy_of(killed: Path, tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(killed, dest, symlinks=True)  # `cp -a`
    return dest


@pytest.mark.integration
@pytest.mark.slow
def test_a_damaged_tune_state_stops_the_resume_and_loses_no_run(killed, tmp_path):
    cwd = copy_of(killed, tmp_path, "damaged")
    state = max((cwd / "runs" / "tiny" / "ray" / "tiny").glob("experiment_state-*.json"))
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # `truncate -s 50%`
    before_runs, before_files = store_runs(cwd), snapshot(cwd)
    assert any(metrics for _, _, metrics in before_runs.values())
    proc = run_search(cwd, cwd / "tiny.yaml", timeout=240)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert state.name in last and "damaged" in last and "--fresh" in last, last
    assert "Traceback" not in proc.stderr
    assert store_runs(cwd) == before_runs  # no run deleted, ended or written
    assert snapshot(cwd) == before_files  # nothing written anywhere


@pytest.mark.integration
@pytest.mark.slow
def test_a_copied_runs_folder_resumes_in_its_new_place_and_leaves_the_original_alone(killed, tmp_path):
    original = snapshot(killed)
    cwd = copy_of(killed, tmp_path, "copy")
    (cwd / "runs" / "tiny" / "mi_cache" / next((cwd / "runs" / "tiny" / "mi_cache").glob("*.json")).name) \
        .write_text("not json {")  # item 3 as well: a corrupt cache entry is measured again
    proc = run_search(cwd, cwd / "tiny.yaml", timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "runs/ moved from" in proc.stdout and "(resume)" in proc.stdout
    assert snapshot(killed) == original  # nothing written into the original folder
    runs = store_runs(cwd)
    children = [v for v in runs.values() if "linear_acc" in v[2]]
    assert len(children) == 2 and all(v[:2] == ("active", "FINISHED") for v in children), runs
    assert all(v[0] == "active" for v in runs.values())  # nothing deleted
    summary = json.loads((cwd / "runs" / "tiny" / "report" / "summary.json").read_text())
    assert summary["n_trials"] == 2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'runs' / 'mlflow.db'}")
    for run_id in runs:  # every artifact, old and new, lives in the copy
        assert client.get_run(run_id).info.artifact_uri.startswith((cwd / "runs" / "mlartifacts").as_uri())
    cache = next((cwd / "runs" / "tiny" / "mi_cache").glob("*.json"))
    assert "values" in json.loads(cache.read_text())  # measured again and replaced
    saved = json.loads((cwd / "runs" / "tiny" / "search.json").read_text())
    assert saved["tracking_uri"] == f"sqlite:///{(cwd / 'runs' / 'mlflow.db').resolve()}"


@pytest.mark.integration
@pytest.mark.slow
def test_a_generator_saved_before_tunes_last_trial_neither_runs_it_twice_nor_loses_it(killed, tmp_path):
    """A driver killed between Tune's two writes (its trials, then its generator) leaves a generator
    behind Tune's trials; here it is put back to before its first trial (Tune knows one or two)."""
    cwd = copy_of(killed, tmp_path, "behind")
    rewind_generator(cwd)
    proc = run_search(cwd, cwd / "tiny.yaml", timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = store_runs(cwd)
    children = [v for v in runs.values() if "linear_acc" in v[2]]
    assert len(children) == 2 and all(v[:2] == ("active", "FINISHED") for v in children), runs
    state = json.loads(max((cwd / "runs" / "tiny" / "ray" / "tiny").glob("experiment_state-*.json")).read_text())
    ids = [json.loads(entry[0])["trial_id"] for entry in state["trial_data"]]
    assert len(ids) == 2 == len(set(ids)), ids
    assert "caught up with Tune" in proc.stdout, proc.stdout[-3000:]
