"""Shared fixtures: run the search CLI in a clean environment, and a tiny search spec."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A search that trains in seconds on 2 CPU cores: synthetic data, a small convnet, two steps an
# epoch, a 5-step MI critic. Tests add their own keys with ``--set`` or by appending YAML.
TINY_SPEC = """\
experiment: tiny
dataset: {name: synthetic, subset: 256, test_subset: 128}
model: {width: 8, proj_dim: 16, proj_hidden: 32}
views: {strength: {uniform: [0.2, 1.0]}}
negatives: {lower: {choice: [0.0, 0.05]}, upper: {choice: [0.5, 1.0]}}
trainer: {epochs: 2, batch_size: 32, max_steps: 2}
evaluation: {knn_k: 10, linear_epochs: 1, monitor_train: 256, monitor_test: 128}
mi: {steps: 5, batch_size: 32, pairs: 128}
search: {num_samples: 4, max_concurrent: 2, scheduler: none}
"""


def cli_env() -> dict[str, str]:
    """The environment of a user who set nothing: no inherited Ray address or MLflow store."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def search_cmd(spec: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "search.run", str(spec), *args]


def run_search(cwd: Path, spec: Path, *args: str, timeout: float = 420, env: dict | None = None):
    return subprocess.run(search_cmd(spec, *args), cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path
