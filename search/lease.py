"""Leases in an S3 bucket: who holds something, renewed while held, taken over once its holder is dead.

Why: without a shared filesystem there is no ``flock`` that the kernel releases when its holder
dies, so the experiment lock (``ObjectLock``) and the MI cache's claims (``search/objcache.py``)
are objects written with conditional requests:

- taking: ``PutObject`` with ``If-None-Match: *`` (only one writer can create the object);
- holding: a heartbeat thread rewrites it every ``ttl / 3`` s with ``If-Match`` on its last ETag,
  so a holder that lost its lease learns it at the next beat;
- a dead holder: a lease not rewritten for ``ttl`` s, by the server's own clock (its ``Date``
  header against the object's ``Last-Modified``, so the nodes' clocks play no part), or one whose
  holder is a process of this host that no longer runs, is taken over with ``If-Match`` on the
  ETag that was read (if two contenders try, one wins);
- releasing: ``DeleteObject`` with ``If-Match``, never deleting a lease someone else took over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from search.lock import ExperimentBusy
from search.storage import Location, s3_client


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """One lease object; ``try_acquire`` returns None once held, else the holder's record."""

    def __init__(self, client: Any, bucket: str, key: str, ttl: float, info: dict | None = None):
        self.client, self.bucket, self.key, self.ttl = client, bucket, key, float(ttl)
        self.info = {"host": socket.gethostname(), "pid": os.getpid(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **(info or {})}
        self.etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> dict | None:
        from botocore.exceptions import ClientError

        body = json.dumps({**self.info, "ttl": self.ttl}).encode()
        for _ in range(5):  # the holder may release between our two requests: try again
            try:
                self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*")["ETag"]
                return None
            except ClientError as err:
                if _code(err) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
            holder = self.holder()
            if holder is None:
                continue
            if not self._dead(holder):
                return holder
            try:  # take over a dead holder's lease; only one contender's If-Match can succeed
                self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                                   IfMatch=holder["etag"])["ETag"]
                return None
            except ClientError as err:
                if _code(err) not in ("PreconditionFailed", "NoSuchKey", "ConditionalRequestConflict"):
                    raise
        return self.holder() or {"host": "unknown", "pid": 0, "age": 0.0}

    def holder(self) -> dict | None:
        """The current record with ``etag`` and ``age`` (seconds since its last write, server time)."""
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if _code(err) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            record = json.loads(got["Body"].read())
        except ValueError:
            record = {}
        now = parsedate_to_datetime(got["ResponseMetadata"]["HTTPHeaders"]["date"])
        return {**record, "etag": got["ETag"], "age": max(0.0, (now - got["LastModified"]).total_seconds())}

    def _dead(self, holder: dict) -> bool:
        if holder["age"] > float(holder.get("ttl", self.ttl)):
            return True
        return holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", 0)))

    def start_heartbeat(self, on_lost: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=self._beat, args=(on_lost,), daemon=True, name=f"lease {self.key}")
        self._thread.start()

    def _beat(self, on_lost: Callable[[], None]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps({**self.info, "ttl": self.ttl}).encode()
        while not self._stop.wait(self.ttl / 3):
            try:
                self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                                   IfMatch=self.etag)["ETag"]
            except ClientError as err:
                if _code(err) in ("PreconditionFailed", "NoSuchKey"):
                    on_lost()
                    return
                print(f"warning: could not renew lease {self.key} ({err}); retrying", file=sys.stderr, flush=True)
            except BotoCoreError as err:  # a passing network fault: the next beat tries again
                print(f"warning: could not renew lease {self.key} ({err}); retrying", file=sys.stderr, flush=True)

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.etag is None:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as err:
            if _code(err) == "NotImplemented":  # a server without conditional deletes
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
            elif _code(err) not in ("PreconditionFailed", "NoSuchKey", "404"):
                raise
        self.etag = None


class ObjectLock:
    """``search.lock`` in the bucket: the experiment lock when ``storage.uri`` is set (same API as
    ``search.lock.ExperimentLock``). A holder that loses its lease stops its search (SIGTERM to
    itself), because another driver now owns the experiment."""

    def __init__(self, loc: Location, experiment: str):
        self.loc, self.experiment = loc, experiment
        self.lease = Lease(s3_client(loc), loc.bucket, loc.key("search.lock"), loc.lease_seconds)

    def acquire(self) -> ObjectLock:
        holder = self.lease.try_acquire()
        if holder is not None:
            raise ExperimentBusy(
                f"experiment '{self.experiment}' is being searched by another run (host {holder.get('host')}, "
                f"PID {holder.get('pid')}, started {holder.get('started')}, last heartbeat {holder['age']:.0f} s "
                f"ago; taken over {self.loc.lease_seconds} s after its last one); wait for it to end or stop it, "
                f"then rerun (lock: {self.loc.uri('search.lock')})"
            )
        self.lease.start_heartbeat(self._lost)
        return self

    def _lost(self) -> None:
        print(f"error: another run took over the lock {self.loc.uri('search.lock')} (this driver missed its "
              "heartbeats); stopping this search", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    def release(self) -> None:
        self.lease.release()
