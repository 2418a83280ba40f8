"""The Ray Tune search (issue 3): space construction, the trial loop, the end-of-search table,
and -- integration -- a 4-trial search, resume after SIGKILL, and an existing cluster."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from search import space
from search.spec import validate_spec
from search.summary import TrialRow, table, verdict_block
from search.trial import CHECKPOINT, CONFIG, EXTRA, VIEWS, run_trial
from tests.conftest import TINY_SPEC, cli_env, free_port, kill_group, mlflow_runs, run_search, search_cmd
from trainers.validation import point_config

GOOD = yaml.safe_load(TINY_SPEC)


def spec_of(**sections):
    return validate_spec({**GOOD, **sections})


# ----------------------------------------------------------------------------- space


def test_domains_map_to_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform

    uni = space.tune_domain({"uniform": [0.1, 0.9]})
    assert isinstance(uni, Float) and (uni.lower, uni.upper) == (0.1, 0.9)
    log = space.tune_domain({"loguniform": [1e-4, 1e-1]})
    assert isinstance(log.get_sampler(), LogUniform)
    choice = space.tune_domain({"choice": [0.0, 0.05]})
    assert isinstance(choice, Categorical) and choice.categories == [0.0, 0.05]
    assert space.tune_domain({"grid": [1, 2]}) == {"grid_search": [1, 2]}
    assert isinstance(space.tune_domain({"int": [2, 5]}), Integer)


def test_int_domain_includes_its_upper_bound():
    from ray.tune.search.optuna import OptunaSearch

    dom = space.tune_domain({"int": [2, 5]})
    samples = set(dom.sample(size=400, random_state=0))
    assert samples == {2, 3, 4, 5}
    dist = OptunaSearch.convert_search_space({"k": dom})["k"]
    assert (dist.low, dist.high) == (2, 5)


def test_param_space_holds_only_the_searched_knobs():
    spec = spec_of()
    ps = space.param_space(spec)
    assert set(ps) == {"views.strength", "negatives.lower", "negatives.upper"}


def test_grid_algorithm_enumerates_choices():
    spec = spec_of(views={"strength": {"grid": [0.2, 0.8]}}, negatives={"lower": {"choice": [0.0, 0.05]}},
                   search={"algorithm": "grid"})
    ps = space.param_space(spec)
    assert ps == {"views.strength": {"grid_search": [0.2, 0.8]}, "negatives.lower": {"grid_search": [0.0, 0.05]}}


def first_points(seed: int) -> list[dict]:
    """The first three points Optuna suggests for the search space of a spec with this seed."""
    spec = spec_of(search={"algorithm": "optuna", "max_concurrent": 3, "seed": seed})
    searcher = space.search_algorithm(spec).searcher
    searcher.set_search_properties(spec.search.metric, spec.search.mode, space.param_space(spec))
    return [searcher.suggest(f"t{i}") for i in range(3)]


def test_search_algorithms():
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchGenerator
    from ray.tune.search.optuna import OptunaSearch

    optuna = space.search_algorithm(spec_of(search={"algorithm": "optuna", "max_concurrent": 3, "seed": 5}))
    assert isinstance(optuna, SearchGenerator) and isinstance(optuna.searcher, ConcurrencyLimiter)
    assert optuna.searcher.max_concurrent == 3
    assert isinstance(optuna.searcher.searcher, OptunaSearch)
    assert first_points(5) == first_points(5) != first_points(6)  # TPE is seeded with search.seed
    assert isinstance(space.search_algorithm(spec_of(search={"algorithm": "random"})), BasicVariantGenerator)
    nothing = spec_of(views={"strength": 0.5}, negatives={"lower": 0.0, "upper": 1.0})
    assert isinstance(space.search_algorithm(nothing), BasicVariantGenerator)


def test_schedulers():
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    spec = spec_of(trainer={"epochs": 6}, search={"scheduler": "asha", "grace_period": 2})
    asha = space.scheduler(spec)
    assert isinstance(asha, ASHAScheduler)
    assert isinstance(space.scheduler(spec_of(search={"scheduler": "none"})), FIFOScheduler)
    # its decisions, through Tune's public scheduler interface: rungs at epochs 2 and 4 (grace period
    # 2, reduction factor 2), every trial stopped at max_t = 6 epochs, time counted in "epoch"
    asha.set_search_properties(spec.search.metric, spec.search.mode)
    trials = {name: SimpleNamespace(trial_id=name) for name in "abcd"}
    for trial in trials.values():
        asha.on_trial_add(None, trial)

    def decide(name: str, epoch: int, value: float) -> str:
        return asha.on_trial_result(None, trials[name], {"epoch": epoch, spec.search.metric: value,
                                                         "training_iteration": 1})

    good = 1.0 if spec.search.mode == "max" else -1.0  # a better value in the search's direction
    assert decide("a", 1, -good) == "CONTINUE"  # before the first rung, nothing is stopped
    assert decide("a", 2, good) == "CONTINUE"  # the first at a rung continues
    assert decide("b", 2, -good) == "STOP"  # below the rung's cutoff
    assert decide("c", 2, 2 * good) == "CONTINUE" and decide("c", 3, -good) == "CONTINUE"  # no rung at 3
    assert decide("a", 4, good) == "CONTINUE" and decide("c", 4, -good) == "STOP"  # the rung at 4
    assert decide("d", 6, good) == "STOP"  # max_t


# ----------------------------------------------------------------------------- the trial loop


class FakeTrainer:
    """Trainer's driving interface, with scripted losses (NaN = divergence)."""

    def __init__(self, cfg, data, losses=(1.0, 0.9, 0.8)):
        self.cfg, self.epoch, self.losses = cfg, 0, list(losses)
        self.pairs = None
        self.data = SimpleNamespace(sizes=lambda: {"n_train_images": 10, "n_val_images": 2, "n_test_images": 5})

    def train_epoch(self):
        loss = self.losses[self.epoch]
        self.epoch += 1
        m = {"epoch": float(self.epoch), "train_loss": loss, "imgs_per_s": 1.0, "ring_lower": 0.0,
             "ring_upper": 1.0, "diverged": 0.0 if math.isfinite(loss) else 1.0}
        if math.isfinite(loss):
            m["val_knn_acc"] = 0.5
        return m

    def evaluate(self):
        return {"val_knn_acc": 0.6, "val_linear_acc": 0.65, "knn_acc": 0.6, "linear_acc": 0.7}

    def save_checkpoint(self, path):
        Path(path).write_text(json.dumps({"epoch": self.epoch}))

    def load_checkpoint(self, path):
        self.epoch = json.loads(Path(path).read_text())["epoch"]


@pytest.fixture
def fake_trial(monkeypatch):
    """run_trial with a FakeTrainer; returns (reports, MI measurements) after each call."""
    measured = []
    monkeypatch.setattr("search.trial.measure_views", lambda t, c, cache=None, wait=True: measured.append(1) or
                        {"mi_nats": 1.5, "mi_cap_nats": 3.0})
    monkeypatch.setattr("search.trial.measure_floor", lambda t, c, cache=None: measured.append("floor") or
                        {"init_linear_acc": 0.55})

    def files(trainer, cfg, folder, caption=""):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG).write_text("x: 1\n")
        (folder / VIEWS).write_bytes(b"png")

    monkeypatch.setattr("search.trial.write_trial_files", files)

    def run(losses=(1.0, 0.9, 0.8), epochs=3, restore=None):
        reports, keep = [], []
        cfg = point_config(spec_of(trainer={"epochs": epochs, "batch_size": 32}).train_raw, {})

        def report(result, folder):
            reports.append(result)
            keep.append({p.name: p.read_bytes() for p in folder.iterdir()})

        run_trial(cfg, None, report, restore=[restore] if restore else None,
                  trainer_cls=lambda c, d: FakeTrainer(c, d, losses))
        return reports, keep, measured

    return run


def test_trial_reports_every_epoch_with_a_checkpoint(fake_trial):
    reports, kept, measured = fake_trial()
    assert [r["epoch"] for r in reports] == [1.0, 2.0, 3.0]
    assert "linear_acc" in reports[-1] and "linear_acc" not in reports[0]
    assert all(r["mi_nats"] == 1.5 and r["start_epoch"] == 0 and r["n_test_images"] == 5 for r in reports)
    assert all(r["init_linear_acc"] == 0.55 for r in reports)  # the untrained floor, measured before the first step
    assert all(set(k) == {CHECKPOINT, EXTRA, CONFIG, VIEWS} for k in kept)
    assert measured == ["floor", 1]


def test_diverged_trial_reports_and_stops(fake_trial):
    reports, _, _ = fake_trial(losses=(1.0, float("nan"), 0.5))
    assert [r["diverged"] for r in reports] == [0.0, 1.0]
    assert math.isnan(reports[-1]["val_knn_acc"])  # the search metric is always present
    assert "linear_acc" not in reports[-1]


def test_resumed_trial_continues_from_its_checkpoint(fake_trial, tmp_path):
    (tmp_path / CHECKPOINT).write_text(json.dumps({"epoch": 2}))
    (tmp_path / EXTRA).write_text(json.dumps({"mi_nats": 1.25, "mi_cap_nats": 3.0}))
    reports, _, measured = fake_trial(restore=tmp_path)
    assert [r["epoch"] for r in reports] == [3.0]
    assert reports[0]["start_epoch"] == 2 and reports[0]["mi_nats"] == 1.25
    assert measured == []  # neither the MI nor the floor is measured again


# ----------------------------------------------------------------------------- summary


def test_table_and_best():
    rows = [
        TrialRow("a", {"views.strength": 0.25}, 2, 0.5, 0.6, 0.61, 1.2, "completed"),
        TrialRow("b", {"views.strength": 0.75}, 2, 0.7, 0.65, 0.6, 0.8, "completed"),
        TrialRow("c", {"views.strength": 0.9}, 1, float("nan"), float("nan"), float("nan"), 0.3, "diverged"),
    ]
    text = table(rows)
    assert text.splitlines()[0].split() == ["trial", "views.strength", "epochs", "val_knn_acc", "val_linear_acc",
                                            "linear_acc", "mi_nats", "status"]
    assert "diverged" in text


def test_verdict_block_names_the_best_point_first_then_its_replicates_then_the_verdict():
    summary = {
        "select_metric": "val_linear_acc", "fit_metric": "linear_acc", "probe": "linear", "verdict": "plateau",
        "stability": {"share": 0.96, "n_resamples": 200}, "min_effect": 0.01, "alpha": 0.05,
        "rise": {"mean": 0.042, "ci": [0.038, 0.046]}, "fall": {"mean": 0.002, "ci": [-0.003, 0.007]},
        "reasons": ["plateau: accuracy rises significantly ..."],
        "best_point": {"name": "strength=0.4", "n": 2, "mi_nats": 2.1, "val_linear_acc_mean": 0.8,
                       "val_linear_acc_half_width": 0.01, "linear_acc_mean": 0.79, "linear_acc_half_width": 0.01,
                       "replicates": [{"run_id": "a" * 32, "seed": "6", "val_linear_acc": 0.81, "linear_acc": 0.8},
                                      {"run_id": "b" * 32, "seed": "7", "val_linear_acc": 0.79, "linear_acc": 0.78}]},
    }
    lines = verdict_block(summary, "runs/x/report/report.md").splitlines()
    assert lines[0].startswith("best point (highest mean val_linear_acc of its replicates): strength=0.4: ")
    assert lines[1].startswith("  seed 6: val_linear_acc 0.81") and lines[2].startswith("  seed 7:")
    assert lines[3] == ("InfoMin verdict: plateau, 96% of 200 seed resamples agree; rise +0.0420 [+0.0380, +0.0460], "
                        "fall +0.0020 [-0.0030, +0.0070] (95% CIs, linear probe, test split); δ = 0.01")


# ----------------------------------------------------------------------------- integration


@pytest.mark.integration
def test_four_trials_finish(tiny_search):
    assert tiny_search.rc == 0, tiny_search.out[-4000:]
    table_rows = [line for line in tiny_search.out.splitlines() if re.match(r"^[0-9a-f]{8}\s", line)]
    assert len(table_rows) == 4 and all(line.rstrip().endswith("completed") for line in table_rows)
    assert "best point (highest mean val_linear_acc of its replicates):" in tiny_search.out
    assert "InfoMin verdict: " in tiny_search.out
    assert "started a local Ray" in tiny_search.out


@pytest.mark.integration
def test_dashboard_answers_on_localhost_only_with_the_token(tiny_search):
    d = tiny_search.dashboard
    assert d, "the driver never announced the dashboard"
    assert d["url"].startswith("http://127.0.0.1:")
    assert d["with_token"] == 200
    assert d["without_token"] in (401, 403)
    assert "Authorization: Bearer" in tiny_search.out and "auth_token" in tiny_search.out


@pytest.mark.integration
def test_ring_search_logs_each_trials_band(tiny_search):
    _, _, children = mlflow_runs(tiny_search.db, "tiny")
    bands = set()
    for run in children:
        lo, hi = float(run.data.params["negatives.lower"]), float(run.data.params["negatives.upper"])
        assert run.data.metrics["ring_lower"] == pytest.approx(lo)
        assert run.data.metrics["ring_upper"] == pytest.approx(hi)
        assert "ring=[" in run.info.run_name
        bands.add((lo, hi))
    assert len(bands) >= 2, bands


@pytest.mark.integration
def test_summary_points_at_the_mlflow_ui(tiny_search):
    db = tiny_search.cwd / "runs" / "mlflow.db"
    assert f"{sys.executable} -m mlflow ui --backend-store-uri sqlite:///{db}" in tiny_search.out
    assert "--host 127.0.0.1 --port 5000" in tiny_search.out
    assert re.search(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?workflowType=machine_learning",
                     tiny_search.out)


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_then_rerun_resumes_without_retraining(tmp_path, tiny_spec):
    """Kill the driver after the first trial finished; the same command completes the search."""
    args = ["--set", "search.num_samples=3", "--set", "trainer.max_steps=3"]
    proc = subprocess.Popen(search_cmd(tiny_spec, *args), cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not any(" completed: " in x for x in list(lines)):
        time.sleep(0.2)
    finished_before = {m.group(1) for x in list(lines) if (m := re.search(r"trial (\w+) completed: ", x))}
    try:
        assert finished_before, "".join(lines)[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        kill_group(proc.pid)
    from mlflow.tracking import MlflowClient

    rerun = run_search(tmp_path, tiny_spec, *args)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "(resume)" in rerun.stdout

    _, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(parents) == 1
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    assert len({r.data.tags["ray.trial_id"] for r in children}) == 3
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    for run in children:
        trial_id, run_id = run.data.tags["ray.trial_id"], run.info.run_id
        steps = [m.step for m in client.get_metric_history(run_id, "val_knn_acc")]
        assert sorted(steps) == [1, 2], (trial_id, steps)  # each epoch logged once, whatever was re-run
        starts = [m.value for m in sorted(client.get_metric_history(run_id, "start_epoch"), key=lambda m: m.timestamp)]
        if trial_id in finished_before:  # began once from scratch; any later start resumed a checkpoint
            assert starts[0] == 0 and all(s > 0 for s in starts[1:]), (trial_id, starts)


def start_node(args: list[str], env: dict) -> subprocess.Popen:
    """``ray start ... --block`` in its own session, so the test can stop exactly this node."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    return subprocess.Popen([ray_bin, "start", *args, "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for_nodes(address: str, n: int, env: dict, timeout: float = 180) -> None:
    ray_bin = str(Path(sys.executable).parent / "ray")
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([ray_bin, "status", f"--address={address}"], check=False, env=env, capture_output=True, text=True,
                             timeout=60)
        active = out.stdout.split("Pending:")[0] if "Pending:" in out.stdout else ""
        if out.returncode == 0 and active.count("node_") >= n:
            return
        time.sleep(2)
    raise AssertionError(f"the test cluster never had {n} nodes: {out.stdout}{out.stderr}")


def stop_node(node: subprocess.Popen) -> None:
    try:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    kill_group(node.pid)


@pytest.mark.integration
@pytest.mark.slow
def test_existing_cluster_and_a_diverged_trial(tmp_path, tiny_spec):
    """Head + worker started with ``ray start``; the driver joins with --address and starts no Ray.

    One of the two grid points diverges (temperature 1e-39 overflows the logits): it is a
    FINISHED run with diverged=1, and the search still succeeds.
    """
    from search.cluster import token_available

    port, env = free_port(), cli_env()
    address = f"127.0.0.1:{port}"
    env["RAY_AUTH_MODE"] = "token"  # both nodes require the token; the driver must bring it
    if not token_available():
        subprocess.run([str(Path(sys.executable).parent / "ray"), "get-auth-token", "--generate"], env=env,
                       capture_output=True, timeout=60, check=True)
    sessions_before = set(Path("/tmp/ray").glob("session_2*"))
    temp = tempfile.mkdtemp(prefix="vs-", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
    nodes = [start_node(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                         f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"], env)]
    try:
        wait_for_nodes(address, 1, env)
        nodes.append(start_node([f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"], env))
        wait_for_nodes(address, 2, env)
        proc = subprocess.run(
            search_cmd(tiny_spec, "--address", address, "--set", "search.algorithm=grid",
                       "--set", "search.num_samples=1", "--set", "views.strength=0.5",
                       "--set", "negatives.lower=0.0", "--set", "negatives.upper=1.0",
                       "--set", "method.temperature={grid: [0.2, 1.0e-39]}"),
            check=False, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=420)  # auth mode unset
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert f"Connected to the existing Ray cluster at {address}" in proc.stdout
        assert "started a local Ray" not in proc.stdout
        assert set(Path("/tmp/ray").glob("session_2*")) == sessions_before  # no Ray session of its own
        _, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
        assert parents[0].data.tags["ray.address"] == address
        assert parents[0].data.tags["ray.started_local"] == "false"
        assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
        diverged = {float(r.data.params["method.temperature"]): r.data.metrics["diverged"] for r in children}
        assert diverged == {0.2: 0.0, 1e-39: 1.0}
        assert next(r for r in children if r.data.metrics["diverged"] == 1.0).data.tags["ray.status"] == "diverged"
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)


# ----------------------------------------------------------------------------- resume planning


def test_plan_new_resume_fresh_and_mismatch(tmp_path, monkeypatch):
    from search import session
    from search.paths import paths_for
    from search.spec import SpecError

    spec = spec_of()
    paths = paths_for(spec, tmp_path)
    assert session.plan_run(spec, paths, fresh=False).mode == "new"
    paths.experiment_dir.mkdir(parents=True)
    paths.state_file.write_text(json.dumps({"fingerprint": spec.fingerprint(), "parent_run_id": "p"}))
    monkeypatch.setattr(session, "restorable", lambda p: True)
    assert session.plan_run(spec, paths, fresh=False).mode == "resume"
    assert session.plan_run(spec, paths, fresh=True).mode == "fresh"
    other = spec_of(search={"num_samples": 9})
    with pytest.raises(SpecError) as err:
        session.plan_run(other, paths_for(other, tmp_path), fresh=False)
    assert err.value.key == "experiment" and "--fresh" in err.value.reason
    monkeypatch.setattr(session, "restorable", lambda p: False)  # killed before Tune wrote its state
    assert session.plan_run(spec, paths, fresh=False).mode == "new"
