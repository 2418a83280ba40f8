"""The view-MI cache in the bucket, for trials on nodes that share no filesystem (``storage.uri``).

Same contract as the folder cache of ``search/micache.py``: one JSON object per view
configuration, ``<prefix>/<experiment>/mi_cache/<key>.json``, measured once and read by every
other trial, resumes included. Instead of a kernel file lock, the first trial to need a value
takes a claim, ``<key>.claim``, a lease (``search/lease.py``) that it renews while it measures:
others wait for the value (or, with ``wait=False``, train first), and a claim whose holder died
is taken over once its heartbeat stops, so a crashed trial never leaves one stuck.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from search.storage import Location, s3_client

POLL_S = 1.0


class ObjectCache:
    """Plain data (a ``Location``) when pickled into a trial; the client is made where it is used."""

    def __init__(self, loc: Location):
        self.loc = loc
        self._client = None

    def __getstate__(self) -> dict:
        return {"loc": self.loc}

    def __setstate__(self, state: dict) -> None:
        self.loc, self._client = state["loc"], None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.loc)
        return self._client

    def _read(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return json.loads(self.client.get_object(Bucket=self.loc.bucket, Key=key)["Body"].read())["values"]
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return None
            raise

    def cached_mi(self, key: dict[str, Any], measure: Callable[[], dict[str, float]],
                  wait: bool = True) -> tuple[dict, bool] | None:
        """``(values, was_cached)``, or None with ``wait=False`` while another trial measures."""
        from search.lease import Lease
        from search.micache import key_name

        name = key_name(key)
        value_key = self.loc.key("mi_cache", f"{name}.json")
        values = self._read(value_key)
        if values is not None:
            return values, True
        claim = Lease(self.client, self.loc.bucket, self.loc.key("mi_cache", f"{name}.claim"), self.loc.lease_seconds)
        while claim.try_acquire() is not None:
            if not wait:
                return None
            time.sleep(POLL_S)
            values = self._read(value_key)
            if values is not None:
                return values, True
        try:
            claim.start_heartbeat(on_lost=lambda: None)  # lost: another measures too; both write the same value
            values = self._read(value_key)  # measured between our read and our claim
            if values is not None:
                return values, True
            start = time.perf_counter()
            values = measure()
            record = {"values": values, "key": key, "seconds": time.perf_counter() - start, "pid": os.getpid()}
            self.client.put_object(Bucket=self.loc.bucket, Key=value_key,
                                   Body=json.dumps(record, indent=1, default=str).encode())
            return values, False
        finally:
            claim.release()
