"""A real PostgreSQL 15 and an ``mlflow server`` on it with proxied artifacts, on 127.0.0.1.

What a team's tracking server looks like (the MLflow docs' PostgreSQL + ``--serve-artifacts``
set-up), started and stopped by the tests and by ``benchmarks/logging_load.py`` from this one
module. PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` system user (``subprocess``'s ``user=``: no ``sudo``/``runuser`` in between, so the
pid we hold is the server's own); its data and socket folders live in a fresh temporary folder
that user owns. Everything listens on 127.0.0.1 on a free port and is removed on exit, failure
included.

A machine without PostgreSQL 15 is an error here, not a skip: CI (``.ci/run``) installs the
Debian ``postgresql-15`` package when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("VIEWSEARCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # the superuser initdb creates; also the system user the server runs as under root
DATABASE = ROLE = "mlflow"  # mlflow server logs in as this role, the database's owner (not a superuser)


class ServerError(RuntimeError):
    """A server could not be started; the message says which and why (its log's tail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres() -> dict:
    """``Popen`` arguments that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    user = pwd.getpwnam(PG_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
            "env": {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "LC_ALL": "C.UTF-8"}}


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 30) -> None:
    """Stop a server we started in its own session: ``sig``, then SIGKILL to its whole group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


@dataclass(frozen=True)
class Postgres:
    port: int
    folder: Path

    def uri(self, user: str = ROLE, database: str = DATABASE) -> str:
        return f"postgresql+psycopg2://{user}@127.0.0.1:{self.port}/{database}"

    def sql(self, *statements: str, database: str = DATABASE) -> None:
        """Run statements as the superuser (autocommit: CREATE DATABASE cannot run in a transaction)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname=database)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()


def require_postgres() -> None:
    if not (PG_BIN / "postgres").is_file():
        raise ServerError(f"PostgreSQL 15 is not installed ({PG_BIN / 'postgres'} is missing): install the Debian "
                          "package postgresql-15 (.ci/run does), or set VIEWSEARCH_PG_BIN to its bin folder")


@contextlib.contextmanager
def postgres(durable: bool = True, timeout: float = 60) -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster with an empty ``mlflow`` database owned by the ``mlflow`` role;
    trust auth on 127.0.0.1 only.

    ``durable=False`` turns fsync off (tests: nothing here must survive a power cut);
    the benchmark keeps the defaults a real server has.
    """
    require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="viewsearch-pg-"))
    as_pg = _as_postgres()
    if as_pg:
        os.chown(folder, as_pg["user"], as_pg["group"])
    data, log = folder / "data", folder / "postgres.log"
    proc = None
    try:
        init = subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                               "-E", "UTF8", "--no-sync"], check=False, capture_output=True, text=True, timeout=120, **as_pg)
        if init.returncode:
            raise ServerError(f"initdb failed: {init.stderr[-2000:]}")
        port = free_port()
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}", "-p", str(port)]
        if not durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log, "wb") as out:  # the folder is the postgres user's; root may write its log
            proc = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(data), *options], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, **as_pg)
        server = Postgres(port, folder)
        _wait(lambda: _pg_ready(server), proc, timeout, f"PostgreSQL on 127.0.0.1:{port}", log)
        server.sql(f"CREATE ROLE {ROLE} LOGIN", f"CREATE DATABASE {DATABASE} OWNER {ROLE}", database="postgres")
        yield server
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        shutil.rmtree(folder, ignore_errors=True)


def _pg_ready(server: Postgres) -> bool:
    import psycopg2

    try:
        psycopg2.connect(host="127.0.0.1", port=server.port, user=PG_USER, dbname="postgres", connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


def _wait(ready, proc: subprocess.Popen, timeout: float, what: str, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode}: {_tail(log)}")
        if ready():
            return
        time.sleep(0.3)
    raise ServerError(f"{what} did not answer within {timeout:.0f} s: {_tail(log)}")


@dataclass(frozen=True)
class MlflowServer:
    uri: str  # http://127.0.0.1:PORT
    artifacts: Path  # --artifacts-destination: where proxied artifacts land
    log: Path


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_server(backend_uri: str, folder: Path, workers: int = 1, timeout: float = 300) -> Iterator[MlflowServer]:
    """``mlflow server`` on ``backend_uri`` with proxied artifacts under ``folder/artifacts``."""
    folder.mkdir(parents=True, exist_ok=True)
    artifacts, log = folder / "artifacts", folder / "mlflow-server.log"
    artifacts.mkdir(exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_uri,
           "--serve-artifacts", "--artifacts-destination", artifacts.as_uri(),
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait(lambda: _healthy(uri), proc, timeout, f"mlflow server on {uri}", log)
        yield MlflowServer(uri, artifacts, log)
    finally:
        _stop(proc, wait=5)  # it holds no state of its own; its graceful stop takes ~20 s


@contextlib.contextmanager
def postgres_mlflow(folder: Path, durable: bool = True, workers: int = 1,
                    timeout: float = 300) -> Iterator[tuple[Postgres, MlflowServer]]:
    """PostgreSQL 15 and an ``mlflow server`` on it (proxied artifacts), stopped in reverse order.
    ``timeout``: for the server's first start, which creates MLflow's tables."""
    with postgres(durable=durable) as pg, mlflow_server(pg.uri(), folder, workers=workers, timeout=timeout) as server:
        yield pg, server
