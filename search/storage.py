"""Where a search's trials write: ``runs/<experiment>/`` by default, or an S3-compatible bucket.

Why: since Ray 2.7 Tune no longer copies trial results to the head node, so on a cluster every
node must reach the experiment's storage. Many rented clusters have no shared filesystem, but all
reach an object store. With ``storage.uri: s3://bucket/prefix`` (and ``storage.endpoint`` for
an S3-compatible server) everything a trial writes goes to ``<prefix>/<experiment>/`` in the
bucket: Tune's experiment state and checkpoints (which hold ``views.png`` and ``config.yaml``)
under ``ray/``, the view-MI cache under ``mi_cache/`` (``search/objcache.py``) and the
one-search-per-experiment lock ``search.lock`` (``search/lease.py``). The driver's own files
(``search.json``, the report, a SQLite MLflow store) stay under ``output.root``.

Credentials come from the environment every node already has for S3 (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, or the SDK's other usual sources), never from
the spec: the spec is logged to MLflow and fingerprinted, and a key that looks like a secret is
refused. The filesystem handed to Ray is built without explicit keys, so Ray's pickled state
(``tuner.pkl`` in the bucket) carries none.

``check_storage`` runs before Ray starts: a missing library, an unreachable endpoint, refused
credentials, a missing bucket, or a server that ignores conditional writes (which the lock and
the cache rely on) exit 2 with nothing created.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from trainers.config import _Section
from trainers.errors import KeyedError

SCHEMES = ("s3",)
SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PREFIX_PART = re.compile(r"^[A-Za-z0-9_.=-]{1,100}$")
REGION = re.compile(r"^[a-z0-9-]{1,40}$")
DEFAULT_REGION = "us-east-1"  # what S3-compatible servers accept when none is configured
CREDENTIAL_ENV = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)"


class StorageError(Exception):
    """The object store cannot serve this search (unreachable, refused, missing); exit 2."""


class StorageConfig(_Section):
    """Where trials write. None: ``<output.root>/<experiment>/`` on a filesystem every node shares."""

    uri: str | None = Field(None, description="s3://bucket[/prefix]: checkpoints, Tune state, MI cache, lock")
    endpoint: str | None = Field(None, description="http(s)://host:port of an S3-compatible server (default AWS)")
    region: str | None = Field(None, description="default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1")
    lease_seconds: int = Field(60, ge=10, le=3600, description="a lock or MI claim without a heartbeat for this "
                                                               "long belongs to a dead process and is taken over")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, raw: Any) -> Any:
        for key in raw if isinstance(raw, dict) else ():
            if any(word in str(key).lower() for word in SECRET_WORDS):
                raise KeyedError(f"storage.{key}", "credentials never go in the spec (it is logged to MLflow); "
                                                   f"set {CREDENTIAL_ENV} in the environment of the driver and "
                                                   "of every Ray node")
        return raw

    @field_validator("uri")
    @classmethod
    def _uri(cls, uri: str | None) -> str | None:
        if uri is not None:
            parse_uri(uri)
        return uri

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str | None) -> str | None:
        if endpoint is None:
            return None
        parts = urlsplit(endpoint)
        if "@" in parts.netloc:
            raise KeyedError("storage.endpoint", f"credentials never go in the spec; set {CREDENTIAL_ENV}")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment:
            raise KeyedError("storage.endpoint", f"must be http(s)://host[:port] of an S3 API, got {endpoint!r}")
        try:
            parts.port  # noqa: B018 -- raises on a malformed port
        except ValueError:
            raise KeyedError("storage.endpoint", f"has an invalid port: {endpoint!r}") from None
        return endpoint.rstrip("/")

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and not REGION.match(region):
            raise ValueError("must be an S3 region name such as us-east-1 (lower-case letters, digits, -)")
        return region

    @model_validator(mode="after")
    def _needs_uri(self) -> StorageConfig:
        for key in ("endpoint", "region"):
            if getattr(self, key) is not None and self.uri is None:
                raise KeyedError(f"storage.{key}", "only applies with storage.uri (s3://bucket/prefix)")
        return self


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; KeyedError (on ``storage.uri``) otherwise."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        hint = " (for a shared filesystem, set output.root instead)" if scheme in ("", "file") else ""
        raise KeyedError("storage.uri", f"scheme {scheme + '://' if scheme else '(none)'} is not supported{hint}: "
                                        "the lock and the MI cache need an S3 API with conditional writes; "
                                        f"use s3://bucket/prefix, got {uri!r}")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise KeyedError("storage.uri", "must be s3://bucket[/prefix], without credentials or a query; set "
                                        f"{CREDENTIAL_ENV} and storage.endpoint instead")
    if not BUCKET.match(parts.netloc) or ".." in parts.netloc:
        raise KeyedError("storage.uri", f"bucket {parts.netloc!r} is not a valid S3 bucket name (3-63 lower-case "
                                        "letters, digits, '.' and '-')")
    prefix = [p for p in parts.path.split("/") if p]
    for part in prefix:
        if not PREFIX_PART.match(part) or part in (".", ".."):
            raise KeyedError("storage.uri", f"prefix part {part!r} must be letters, digits and _ . = - (not . or ..)")
    return parts.netloc, "/".join(prefix)


# --------------------------------------------------------------------------- the location


@dataclass(frozen=True)
class Location:
    """A search's place in the bucket: ``s3://bucket/<prefix>/<experiment>/``; plain data, sent to trials."""

    bucket: str
    root: str  # key prefix of the experiment, e.g. "sweeps/tiny"
    endpoint: str | None
    region: str
    lease_seconds: int = 60

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.root, *parts) if p)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def as_dict(self) -> dict:
        return asdict(self)


def location(spec: Any) -> Location | None:
    """The spec's bucket location, or None when trials write to the local (shared) filesystem."""
    cfg: StorageConfig = spec.storage
    if cfg.uri is None:
        return None
    bucket, prefix = parse_uri(cfg.uri)
    region = cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    root = "/".join(p for p in (prefix, spec.experiment) if p)
    return Location(bucket, root, cfg.endpoint, region, cfg.lease_seconds)


def s3_client(loc: Location, timeout: float = 30.0):
    """A boto3 client for the lock, the cache and the checks; credentials from the environment."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=timeout, retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"} if loc.endpoint else {})
    return boto3.session.Session().client("s3", endpoint_url=loc.endpoint, region_name=loc.region, config=config)


def s3_filesystem(loc: Location):
    """pyarrow's S3FileSystem for Ray Tune, without explicit keys (so pickling it carries none)."""
    from pyarrow.fs import AwsStandardS3RetryStrategy, S3FileSystem

    extra: dict[str, Any] = {}
    if loc.endpoint:
        parts = urlsplit(loc.endpoint)
        extra = {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    return S3FileSystem(region=loc.region, connect_timeout=5, request_timeout=60,
                        retry_strategy=AwsStandardS3RetryStrategy(max_attempts=5), **extra)


# --------------------------------------------------------------------------- what run.py asks


@dataclass(frozen=True)
class TuneStorage:
    """What Ray Tune is given, and how the console names it."""

    storage_path: str  # RunConfig.storage_path (prefix-stripped when ``filesystem`` is set)
    experiment_path: str  # for Tuner.restore / Tuner.can_restore
    display: str
    mi_cache: str | dict  # the trials' MI cache: a folder, or a Location as a dict
    filesystem: Any = None
    # Checkpoints kept per trial. Ray 2.60 deletes a trial's oldest checkpoint before its next
    # upload of the experiment state, which may still name it; a driver killed in between leaves
    # a state whose trial cannot resume. On a local disk that upload is a copy; to a bucket it
    # can lag by seconds, so more are kept there: the state must then miss three epochs' uploads.
    num_to_keep: int = 2

    def restorable(self) -> bool:
        from ray.tune import Tuner

        if self.filesystem is None:
            return Path(self.experiment_path).is_dir() and Tuner.can_restore(self.experiment_path)
        return Tuner.can_restore(self.experiment_path, storage_filesystem=self.filesystem)


    def state_files(self, dest: Path) -> Path:
        """Tune's own state files (the experiment state and the searcher's, not the trials' folders)
        copied into ``dest``, so a resume can check them before it trusts them; the local folder
        itself when there is no bucket."""
        if self.filesystem is None:
            return Path(self.experiment_path)
        from pyarrow import fs

        dest.mkdir(parents=True, exist_ok=True)
        for info in self.filesystem.get_file_info(fs.FileSelector(self.experiment_path, allow_not_found=True)):
            if info.type == fs.FileType.File and "state-" in info.base_name:
                with self.filesystem.open_input_stream(info.path) as src:
                    (dest / info.base_name).write_bytes(src.read())
        return dest


def tune_storage(spec: Any, paths: Any) -> TuneStorage:
    loc = location(spec)
    if loc is None:
        return TuneStorage(str(paths.ray_storage), str(paths.ray_experiment), str(paths.ray_experiment),
                           str(paths.mi_cache))
    ray_root = f"{loc.bucket}/{loc.key('ray')}"
    return TuneStorage(ray_root, f"{ray_root}/{spec.experiment}", loc.uri("ray", spec.experiment),
                       loc.as_dict(), s3_filesystem(loc), num_to_keep=4)


def refuse_unknown_search(spec: Any, paths: Any, state: dict | None) -> None:
    """A driver whose ``output.root`` lacks the experiment's ``search.json`` would start afresh and
    clear the bucket: refuse while the bucket holds a search of that experiment."""
    if location(spec) is None or state:
        return
    where = tune_storage(spec, paths)
    if where.restorable():
        raise StorageError(
            f"storage.uri {spec.storage.uri}: {where.display} holds a search of experiment '{spec.experiment}' that "
            f"{paths.state_file} does not record (started from another machine or output.root); rerun it there to "
            "resume, or rerun with --fresh to discard it")


def mi_cache_for(ref: str | dict | None):
    """A trial's MI cache from what the driver passed: a folder (``Path``), an object-store cache, or None."""
    if ref is None:
        return None
    if isinstance(ref, dict):
        from search.objcache import ObjectCache

        return ObjectCache(Location(**ref))
    return Path(ref)


def experiment_lock(spec: Any, paths: Any):
    """The one-search-per-experiment lock: an OS file lock locally, a lease object in the bucket."""
    loc = location(spec)
    if loc is None:
        from search.lock import ExperimentLock

        return ExperimentLock(paths.lock_file)
    from search.lease import ObjectLock

    return ObjectLock(loc, spec.experiment)


def clear_search(spec: Any, paths: Any) -> None:
    """Remove an earlier search's Tune state and MI cache (``--fresh`` or a new search)."""
    loc = location(spec)
    if loc is None:
        shutil.rmtree(paths.ray_storage, ignore_errors=True)
        shutil.rmtree(paths.mi_cache, ignore_errors=True)
        return
    client = s3_client(loc)
    for folder in ("ray", "mi_cache"):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key(folder) + "/")
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=loc.bucket, Delete={"Objects": keys, "Quiet": True})


# --------------------------------------------------------------------------- checks before Ray


def check_storage(spec: Any) -> None:
    """Refuse (StorageError) an object store this search could not use; creates nothing that stays."""
    loc = location(spec)
    if loc is None:
        return
    where = f"storage.uri {spec.storage.uri}" + (f" at storage.endpoint {loc.endpoint}" if loc.endpoint else "")
    _check_libraries(where)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client = s3_client(loc, timeout=10)
    try:
        client.head_bucket(Bucket=loc.bucket)
        _check_conditional_writes(client, loc, where)
    except NoCredentialsError:
        raise StorageError(f"{where}: no S3 credentials found; set {CREDENTIAL_ENV}") from None
    except ClientError as err:
        raise StorageError(f"{where}: {_client_error(err, loc)}") from None
    except BotoCoreError as err:
        raise StorageError(f"{where}: the object store cannot be reached ({err}); check storage.endpoint") from None


def _check_libraries(where: str) -> None:
    try:
        import boto3  # noqa: F401
        from pyarrow.fs import S3FileSystem  # noqa: F401
    except ImportError as err:
        raise StorageError(f"{where}: the installed libraries cannot serve s3:// ({err}); install boto3 and a "
                           "pyarrow built with S3 support") from None


def _client_error(err: Any, loc: Location) -> str:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("404", "NoSuchBucket"):
        return f"bucket '{loc.bucket}' does not exist; create it first (the search never creates buckets)"
    if code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or status == 403:
        return (f"the object store refused these credentials ({code or status}); check {CREDENTIAL_ENV} and their "
                f"permissions on bucket '{loc.bucket}'")
    return f"the object store answered {code or status}: {err}"


def _check_conditional_writes(client: Any, loc: Location, where: str) -> None:
    """Write, re-write conditionally and delete a probe object: the lease and the MI cache rely on
    If-None-Match on PutObject, and a server that ignores it would let two searches both win."""
    from botocore.exceptions import ClientError

    key = loc.key(f".viewsearch-probe-{uuid.uuid4().hex[:12]}")
    client.put_object(Bucket=loc.bucket, Key=key, Body=b"probe", IfNoneMatch="*")
    try:
        client.put_object(Bucket=loc.bucket, Key=key, Body=b"again", IfNoneMatch="*")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "PreconditionFailed":
            raise
    else:
        raise StorageError(f"{where}: the server ignores conditional writes (If-None-Match on PutObject), which "
                           "the experiment lock and the MI cache need; use a server that supports them")
    finally:
        client.delete_object(Bucket=loc.bucket, Key=key)
