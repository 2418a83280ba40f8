"""The logic behind the fault behaviour, in process: what resume checks, how a moved store is
relocated, how an unreadable cache entry is a miss, which line a failure or an interruption ends
with, and the errors that must survive Ray's pickling. The full-disk case runs a real search."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from analysis.state import SearchState
from search import failure, resume
from search.micache import cached_mi
from search.mlflow_store import Store
from search.paths import Paths, paths_for
from search.spec import validate_spec
from tests.conftest import REPO, TINY_SPEC, cli_env, kill_group, mlflow_runs, search_cmd
from trainers.errors import KeyedError, SpecError
from trainers.stages import MAX_STAGES, StageError, check_kwargs, resolve_stage_class

SPEC = validate_spec(yaml.safe_load(TINY_SPEC))


# ----------------------------------------------------------------------------- errors cross Ray intact


@pytest.mark.parametrize("err", [SpecError("views.stages.0.RandomCrop.size", "changes a batch", file="s.yaml"),
                                 SpecError("a", "b"), StageError("RandomCrop.size", "too big", index=2),
                                 KeyedError("search.mode", "must be max")], ids=["spec", "spec-nofile", "stage", "keyed"])
def test_spec_errors_survive_pickling_with_their_own_message(err):
    again = pickle.loads(pickle.dumps(err))  # what Ray does to a trial's exception
    assert type(again) is type(err) and str(again) == str(err) and again.__dict__ == err.__dict__


# ----------------------------------------------------------------------------- MI cache


@pytest.mark.parametrize("content", [b"not json {", b"", b'{"values": [1, 2]}', b'{"key": {}}'],
                         ids=["garbage", "empty", "values-not-a-mapping", "no-values"])
def test_an_unreadable_cache_entry_is_a_miss_named_and_measured_again(tmp_path, capsys, content):
    key = {"version": 1, "views": {"strength": 0.5}}
    assert cached_mi(tmp_path, key, lambda: {"mi_nats": 1.0}) == ({"mi_nats": 1.0}, False)
    entry = next(tmp_path.glob("*.json"))
    entry.write_bytes(content)
    calls = []
    got = cached_mi(tmp_path, key, lambda: calls.append(1) or {"mi_nats": 2.0})
    assert got == ({"mi_nats": 2.0}, False) and calls == [1]
    assert str(entry) in capsys.readouterr().err
    assert json.loads(entry.read_text())["values"] == {"mi_nats": 2.0}  # replaced by a whole entry
    assert cached_mi(tmp_path, key, lambda: {"mi_nats": 3.0}) == ({"mi_nats": 2.0}, True)


# ----------------------------------------------------------------------------- resume checks


def tune_state(folder: Path, trials: list[tuple[str, dict, str]]) -> Path:
    """An ``experiment_state-*.json`` in Tune's format (each trial a JSON string) with ``trials``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment_state-2026-12-03_10-00-00.json"
    data = [[json.dumps({"trial_id": t, "config": c, "status": s}), "{}"] for t, c, s in trials]
    path.write_text(json.dumps({"trial_data": data, "runner_data": {}, "stats": {}}))
    return path


POINT = {"views.strength": 0.5, "negatives.lower": 0.0, "negatives.upper": 0.5}


def test_point_problem_names_an_empty_or_foreign_config():
    assert resume.point_problem(POINT, SPEC) is None
    assert "no values for negatives.lower, negatives.upper, views.strength" in resume.point_problem({}, SPEC)
    assert "views.strength=1.5 is not in" in resume.point_problem({**POINT, "views.strength": 1.5}, SPEC)
    assert "negatives.lower=0.01 is not in" in resume.point_problem({**POINT, "negatives.lower": 0.01}, SPEC)
    assert "unknown keys trainer.lr" in resume.point_problem({**POINT, "trainer.lr": 0.1}, SPEC)


def check(tmp_path: Path, trials, finished=(), logged=frozenset(), total=4) -> None:
    paths = Paths(tmp_path, "tiny")
    if trials is not None:
        tune_state(paths.ray_experiment, trials)
    resume.check_tune_state(SPEC, SearchState("p", finished_trials=tuple(finished)), paths, total, set(logged))


def test_tune_state_that_matches_is_accepted(tmp_path):
    check(tmp_path, [("a", POINT, "TERMINATED"), ("b", POINT, "RUNNING")], finished=["a"], logged={"a", "b"})
    # a driver killed between a trial's end and Tune's next snapshot: the trial resumes, nothing is lost
    check(tmp_path, [("a", POINT, "RUNNING")], finished=["a"], logged={"a"})


@pytest.mark.parametrize("trials,finished,logged,needle", [
    ([("a", {}, "PENDING")], [], set(), "trial a is not a point of this search (it has no values for"),
    ([("a", POINT, "TERMINATED")], ["a", "b"], set(), "1 trial(s) that search.json records as finished are missing there (b)"),
    ([("a", POINT, "TERMINATED")], ["a"], {"a", "b"}, "forgotten 1 trial(s) whose MLflow runs hold results (b)"),
    ([(str(i), POINT, "PENDING") for i in range(5)], [], set(), "it holds 5 trials, but this search runs 4"),
], ids=["empty-config", "finished-missing", "logged-forgotten", "too-many"])
def test_tune_state_that_does_not_match_is_refused_naming_the_file(tmp_path, trials, finished, logged, needle):
    with pytest.raises(resume.ResumeRefused) as err:
        check(tmp_path, trials, finished, logged)
    assert needle in str(err.value) and "experiment_state-2026-12-03_10-00-00.json" in str(err.value)
    assert "--fresh" in str(err.value)


def test_an_unreadable_tune_or_searcher_state_is_refused_naming_it(tmp_path):
    paths = Paths(tmp_path, "tiny")
    path = tune_state(paths.ray_experiment, [("a", POINT, "TERMINATED")])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(resume.ResumeRefused, match=r"experiment_state-2026-12-03_10-00-00\.json is damaged"):
        check(tmp_path, None)
    tune_state(paths.ray_experiment, [("a", POINT, "TERMINATED")])
    (paths.ray_experiment / "basic-variant-state-2026-12-03_10-00-00.json").write_bytes(b"\x80\x05garbage")
    with pytest.raises(resume.ResumeRefused, match=r"basic-variant-state-2026-12-03_10-00-00\.json is damaged"):
        check(tmp_path, None)


def mlflow_like_db(path: Path, artifacts: str) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE experiments (experiment_id INTEGER, artifact_location TEXT)")
        con.execute("CREATE TABLE runs (run_uuid TEXT, artifact_uri TEXT)")
        con.executemany("INSERT INTO experiments VALUES (?, ?)", [(0, "/elsewhere/mlruns/0"), (1, artifacts)])
        con.executemany("INSERT INTO runs VALUES (?, ?)", [("r1", f"{artifacts}/r1/artifacts"),
                                                           ("r2", f"{artifacts}x/r2/artifacts")])


def test_a_moved_default_store_is_relocated_and_a_different_store_refused(tmp_path):
    old_root, new_root = tmp_path / "A" / "runs", tmp_path / "B" / "runs"
    new_root.joinpath("tiny").mkdir(parents=True)
    old_art, new_art = (old_root / "mlartifacts").as_uri(), (new_root / "mlartifacts").as_uri()
    mlflow_like_db(new_root / "mlflow.db", old_art)  # the copy's database still names the old folder
    paths = Paths(new_root, "tiny")
    paths.state_file.write_text(json.dumps({"parent_run_id": "p", "tracking_uri": f"sqlite:///{old_root / 'mlflow.db'}",
                                            "artifact_location": old_art}))  # written before default_store existed
    state = SearchState.load(paths.state_file)
    store = Store(f"sqlite:///{new_root / 'mlflow.db'}", new_art)
    assert resume.recorded_default(state)
    with pytest.raises(resume.ResumeRefused, match="records the MLflow store"):
        resume.settle_store(state, store, paths, default=False)  # this command names another store
    assert "moved from" in resume.settle_store(state, store, paths, default=True)
    with sqlite3.connect(new_root / "mlflow.db") as con:
        assert con.execute("SELECT artifact_location FROM experiments ORDER BY 1").fetchall() == \
            [("/elsewhere/mlruns/0",), (new_art,)]
        assert con.execute("SELECT artifact_uri FROM runs ORDER BY run_uuid").fetchall() == \
            [(f"{new_art}/r1/artifacts",), (f"{old_art}x/r2/artifacts",)]  # a sibling folder is not ours
    saved = json.loads(paths.state_file.read_text())
    assert saved["tracking_uri"] == store.uri and saved["artifact_location"] == new_art and saved["default_store"]
    assert resume.settle_store(SearchState.load(paths.state_file), store, paths, default=True) is None  # settled
    elsewhere = SearchState("p", tracking_uri="sqlite:////data/other.db")
    with pytest.raises(resume.ResumeRefused):
        resume.settle_store(elsewhere, store, paths, default=True)  # not the default store: never moved along


# ----------------------------------------------------------------------------- the last line


def test_a_full_disk_is_named_as_one_plain_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = paths_for(SPEC, tmp_path)
    full = OSError(errno.ENOSPC, "No space left on device", str(paths.ray_experiment / "experiment_state.json"))
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("Tune failed") from inner
    except RuntimeError as outer:
        line = failure.describe(outer, paths)
    assert line == ("error: no space left on device writing runs/tiny/ray/tiny/experiment_state.json; "
                    "free space or move runs/ (it resumes in its new place)")
    db = tmp_path / "runs" / "mlflow.db"
    assert failure.describe(Exception("(sqlite3.OperationalError) database or disk is full"), paths, db) == \
        failure.no_space(db, paths)
    trial_text = "Traceback ...\nOSError: [Errno 28] No space left on device: '/x/runs/tiny/ray/ckpt.pt'\n"
    assert "writing /x/runs/tiny/ray/ckpt.pt;" in failure.describe_text(trial_text, paths)
    assert failure.describe(ValueError("boom"), paths) is None


# ----------------------------------------------------------------------------- item 7


def test_stage_lists_and_std_are_checked():
    from trainers.specfile import parse_yaml

    with pytest.raises(StageError, match="a standard deviation must be >= 0"):
        check_kwargs(resolve_stage_class("RandomGaussianNoise"), {"std": -0.2})
    check_kwargs(resolve_stage_class("RandomGaussianNoise"), {"std": 0.2})
    too_many = {**yaml.safe_load(TINY_SPEC), "views": {"stages": [{"RandomHorizontalFlip": None}] * (MAX_STAGES + 1)}}
    with pytest.raises(SpecError) as err:  # how fast: benchmarks/refusals.py
        validate_spec(too_many)
    assert err.value.key == f"views.stages.{MAX_STAGES}"
    huge = "experiment: x\nviews:\n  stages:\n" + "  - RandomErasing: {p: 0.5}\n" * 10_000
    with pytest.raises(SpecError) as err:
        parse_yaml(huge)
    assert err.value.key == "views.stages" and "a list that long" in err.value.reason


# ----------------------------------------------------------------------------- interrupts, in process


@pytest.fixture
def stubbed_search(tmp_path, monkeypatch):
    """``search.run.main`` on the tiny spec with Ray and the trials replaced by stubs: each phase
    can be interrupted on cue. Returns (spec path, the hooks a test sets)."""
    from search import cluster, session

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    hooks: dict = {}
    events: list[str] = []

    def phase(name):
        def hook(*args, **kwargs):
            events.append(name)
            for sig in hooks.get(name, ()):
                os.kill(os.getpid(), sig)
                time.sleep(0.2)
            events.append(f"{name} done")
            return hooks.get(f"{name}_returns")
        return hook

    monkeypatch.setattr(cluster, "connect", lambda address, verbose=False: cluster.RayInfo("127.0.0.1:1", True, None, False))
    monkeypatch.setattr(cluster, "impossible_resources", lambda cpu, gpu: None)
    monkeypatch.setattr(cluster, "disconnect", phase("disconnect"))
    monkeypatch.setattr(session, "run_tags", lambda info: {"host": "h"})
    monkeypatch.setattr(session.SearchSession, "fit", phase("fit"))
    monkeypatch.setattr(session, "search_status", lambda results: "FINISHED")
    monkeypatch.setattr(session.SearchSession, "print_summary", lambda *a: None)
    monkeypatch.setattr(session.SearchSession, "report", phase("report"))
    hooks["report_returns"] = 0
    return spec, hooks, events


@pytest.mark.parametrize("where,sig,code,says", [
    ("disconnect", signal.SIGINT, 130, "while the search shut down"),
    ("disconnect", signal.SIGTERM, 143, "while the search shut down"),
    ("report", signal.SIGINT, 130, "while the report was built"),
    ("report", signal.SIGTERM, 143, "while the report was built"),
], ids=["shutdown-int", "shutdown-term", "report-int", "report-term"])
def test_an_interrupt_in_any_phase_is_one_line_and_its_exit_code(stubbed_search, capsys, where, sig, code, says):
    from search import run

    spec, hooks, events = stubbed_search
    hooks[where] = [sig]
    assert run.main([str(spec)]) == code
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted ({signal.Signals(sig).name}) {says}") and \
        last.endswith("; rerun the same command to resume"), err
    assert "Traceback" not in err
    if where == "disconnect":
        assert "disconnect done" in events  # the first signal let Ray be left cleanly


def test_a_second_interrupt_during_shutdown_stops_at_once(stubbed_search, capsys):
    from search import run

    spec, hooks, events = stubbed_search
    hooks["disconnect"] = [signal.SIGINT, signal.SIGINT]
    assert run.main([str(spec)]) == 130
    assert "disconnect done" not in events and "report" not in events
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- a full disk, for real


@pytest.mark.integration
@pytest.mark.slow
def test_a_disk_that_fills_mid_search_ends_with_one_line_naming_the_path(tmp_path):
    """The driver's writes of ``search.json`` fail with ENOSPC once the first epoch is in (a
    ``sitecustomize`` on PYTHONPATH, test-only): exit 1, the last line says what and where."""
    from tests.test_reliability import wait_for

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    trigger = tmp_path / "disk_full"
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests" / "faults"), env["PYTHONPATH"]])
    env["VIEWSEARCH_TEST_ENOSPC"] = f"search.tmp|{trigger}"
    args = ["--set", "search.num_samples=2", "--set", "search.max_concurrent=1"]
    proc = subprocess.Popen(search_cmd(spec, *args), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    import threading

    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        wait_for(lines, r"epoch 1/2", proc)
        trigger.touch()
        assert proc.wait(timeout=300) == 1, "".join(lines)[-3000:]
    finally:
        kill_group(proc.pid)
    time.sleep(0.5)
    last = "".join(lines).strip().splitlines()[-1]
    assert last == ("error: no space left on device writing runs/tiny/search.tmp; free space or move runs/ "
                    "(it resumes in its new place)"), "".join(lines)[-3000:]
    _, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert all(r.info.status != "RUNNING" for r in parents + children)  # every run ended
