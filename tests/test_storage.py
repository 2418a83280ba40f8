"""``storage.uri`` on a real S3-compatible server (SeaweedFS): the spec keys, the checks before
Ray starts, the lease behind the lock and the MI cache, and searches whose trials write only to
the bucket (a local Ray with a SIGKILL and a resume, and a two-node cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_SPEC, cli_env, free_port, search_cmd
from tests.seaweed import BUCKET, SECRET_KEY, serving


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("seaweed"), free_port)


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
