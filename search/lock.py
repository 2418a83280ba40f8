"""One search per experiment at a time: an OS file lock on ``runs/<experiment>/search.lock``.

Two drivers of one experiment in one ``runs/`` would share the Ray directory, the MLflow parent
run and the report, and corrupt each other's trials. The lock is ``flock`` on an open file, so
the kernel releases it when its process ends, however it ends (a SIGKILL, a crash): a marker
file could be left behind, this cannot. The holder writes who it is into the file, so the one
refused can name it; the refused run writes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class ExperimentBusy(Exception):
    """Another search holds the experiment; the message names it (host, PID, start time)."""


class ExperimentLock:
    def __init__(self, path: Path):
        self.path = path
        self._file = None

    def acquire(self) -> ExperimentLock:
        """Take the lock or raise ExperimentBusy; nothing is written unless the lock is ours."""
        existed = self.path.is_file()
        if not existed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 -- held open for the whole search
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise ExperimentBusy(
                f"experiment '{self.path.parent.name}' is being searched by another run ({holder}); "
                f"wait for it to end or stop it, then rerun (lock: {self.path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}))
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"host {holder['host']}, PID {holder['pid']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
