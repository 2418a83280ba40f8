"""Ray: start a private local instance, or join an existing cluster; and how to reach its dashboard.

Local mode uses ``address="local"`` so a search never silently joins some other Ray instance
that happens to run on the machine, and binds every listener to 127.0.0.1: the GCS, the raylet,
the workers, the dashboard, its agent and the Prometheus metrics ports. Ray derives each bind
address from the node address, but it replaces a loopback node address with the machine's own
IP unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` ("no cluster") was set when Ray was imported;
``_local_only`` sets both. Joining a cluster must not do that (the node address would match no
node), so it is only done for a local Ray. Ray 2.60 turns token
authentication on for clusters that ``ray.init`` starts and writes the token to
``~/.ray/auth_token``; we leave that on, and print how to use the token.

Cluster mode (``--address`` or ``RAY_ADDRESS``) joins a cluster started with ``ray start``.
Ray enables token auth when joining an explicit address only if ``RAY_AUTH_MODE=token`` is
set; if it is unset and a token is available on this machine we set it, because a cluster
started with a token (``ray start`` enables auth whenever a token exists) refuses drivers
without one. Workers import this project from the driver's source tree (``PYTHONPATH``), so
every node must see the same files (one machine or a shared filesystem) -- as it must for the
``runs/`` storage path anyway.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"


@dataclass(frozen=True)
class RayInfo:
    address: str  # the GCS address the driver is connected to
    started_local: bool  # True: this driver started (and will stop) its own Ray
    dashboard_url: str | None
    token_auth: bool


def token_path() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN_PATH)


def token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or token_path().is_file()


def read_token() -> str | None:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = token_path()
    return path.read_text().strip() if path.is_file() else None


def target_address(cli_address: str | None) -> str | None:
    """``--address`` wins over ``RAY_ADDRESS``; None means "start a local Ray"."""
    return cli_address or os.environ.get("RAY_ADDRESS") or None


def prepare_auth(address: str | None) -> None:
    """Joining an existing cluster: bring this machine's token unless the user chose a mode.

    Called before Ray is imported, because Ray caches its configuration (the auth mode with it);
    if it was imported already, its cached configuration is refreshed the way Ray does itself.
    """
    if not address or "RAY_AUTH_MODE" in os.environ or not token_available():
        return
    _auth_mode("token")


def _auth_mode(mode: str, *, keep_users: bool = False) -> None:
    """Set RAY_AUTH_MODE, refreshing Ray's cached configuration if Ray was imported already (a
    resume imports it before connecting): a stale 'disabled' in the driver against a token-checking
    GCS is a failed start."""
    if keep_users and "RAY_AUTH_MODE" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = mode
    if "ray" in sys.modules:
        from ray._raylet import Config

        Config.initialize("")


def _local_only() -> None:
    """Make a local Ray bind to loopback (see the module docstring): before or after ``import ray``."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # imported already: the flag was read at import time
        constants.ENABLE_RAY_CLUSTER = False


def connect(address: str | None, verbose: bool = False) -> RayInfo:
    """Join ``address`` or start a private local Ray; ``verbose`` lets Ray print its own logs."""
    import logging

    if not address:
        _local_only()
        _auth_mode("token", keep_users=True)  # what a local Ray 2.60 does anyway, said explicitly
    import ray

    runtime_env = {"env_vars": {"PYTHONPATH": _pythonpath()}}
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING}
    if address:
        prepare_auth(address)
        ctx = ray.init(address=address, runtime_env=runtime_env, **quiet)
        started = False
    else:
        ctx = ray.init(
            address="local",
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            runtime_env=runtime_env,
            **quiet,
        )
        started = True
    url = ctx.dashboard_url
    if url and not url.startswith("http"):
        url = "http://" + url
    return RayInfo(
        address=address or ctx.address_info.get("gcs_address") or "",  # as the user wrote it, when joining
        started_local=started,
        dashboard_url=url,
        token_auth=os.environ.get("RAY_AUTH_MODE", "").lower() == "token",
    )


def _pythonpath() -> str:
    parts = [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def dashboard_help(info: RayInfo) -> str:
    """The start-up message: where the dashboard is and how to get past its token check."""
    if not info.dashboard_url:
        return "Ray dashboard: not available on this cluster"
    lines = [f"Ray dashboard: {info.dashboard_url}"]
    if info.token_auth:
        lines += [
            f"  token authentication is on; the token is in {token_path()} (print it: `ray get-auth-token`).",
            "  Browser: paste the token when the dashboard asks for it.",
            f"  API/curl: curl -H \"Authorization: Bearer $(cat {token_path()})\" {info.dashboard_url}/api/version",
        ]
    else:
        lines.append("  token authentication is OFF on this cluster (anyone who can reach it can run code)")
    return "\n".join(lines)


def disconnect(info: RayInfo | None) -> None:
    """Leave the cluster; a local Ray started here is stopped with the driver."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


class Unreachable(Exception):
    """Nothing answers at the cluster address: fail in seconds, not after Ray's minutes of retries."""


def check_cluster_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connect to the GCS (``HOST:PORT``, ``ray://HOST:PORT``); ``auto`` is left to Ray."""
    import socket

    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise Unreachable(f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise Unreachable(f"--address {address}: no Ray cluster answers there ({err.strerror or err}); "
                          "start it with `ray start --head`, or drop --address to run locally") from None


def impossible_resources(cpu: float, gpu: float) -> str | None:
    """Why no node of the connected cluster can ever run one trial, or None if some node can."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpu and r.get("GPU", 0) >= gpu for r in nodes):
        return None
    most_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
    most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
    if gpu > most_gpu:
        return (f"resources.gpu: a trial asks for {gpu:g} GPU but no node has more than {most_gpu:g}; "
                "set resources.gpu: 0 (and trainer.device: cpu or auto)")
    return f"resources.cpu: a trial asks for {cpu:g} CPUs but no node has more than {most_cpu:g}"
