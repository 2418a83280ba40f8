"""Faults a hostile but fair user can cause: every bad input refused in seconds with exit 2 and
nothing created; one search per experiment at a time; Ctrl-C and SIGTERM stop a search cleanly
and the same command resumes it; unreadable checkpoints restart a trial instead of failing it."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY_SPEC, cli_env, kill_group, mlflow_runs, run_search, search_cmd

REPO = Path(__file__).resolve().parents[1]


def bomb(levels: int = 9, as_list: bool = True) -> str:
    """A few hundred bytes of YAML whose aliases expand to 9**levels values."""
    lines = ["experiment: bomb", "views:"]
    lines.append("  l0: &l0 [x, x, x, x, x, x, x, x, x]" if as_list else "  l0: &l0 {a: x, b: x, c: x}")
    for i in range(1, levels):
        prev = f"*l{i - 1}"
        lines.append(f"  l{i}: &l{i} [{', '.join([prev] * 9)}]" if as_list
                     else f"  l{i}: &l{i} {{a: {prev}, b: {prev}, c: {prev}}}")
    return "\n".join(lines) + "\n"


def write_idx(path: Path, arr: np.ndarray, truncate: int = 0) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[: len(data) - truncate])


def truncated_fmnist(root: Path) -> Path:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), truncate=100 if split == "train" else 0)
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return raw / "train-images-idx3-ubyte.gz"


def folder_with_a_non_image(root: Path) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / split / cls / f"{i}.png")
    bad = root / "train" / "b" / "broken.png"
    bad.write_bytes(b"this is not a png")
    return bad


# (id, spec text or a builder taking tmp_path, extra CLI args, what the message must name)
BAD_INPUTS = [
    ("alias-bomb-list", bomb(9, True), [], "expands to more than"),
    ("alias-bomb-mapping", bomb(12, False), [], "expands to more than"),
    ("not-utf8", b"experiment: caf\xe9\n", [], "not UTF-8"),
    ("duplicate-key", TINY_SPEC + "trainer: {epochs: 1}\n", [], "duplicate key 'trainer'"),
    ("bool-for-int", TINY_SPEC, ["--set", "trainer.epochs=true"], "trainer.epochs"),
    ("string-for-float", TINY_SPEC, ["--set", "trainer.lr='0.1'"], "trainer.lr"),
    ("long-experiment-name", TINY_SPEC, ["--set", "experiment=" + "x" * 300], "experiment"),
    ("mi-pairs-below-batch", TINY_SPEC, ["--set", "mi.pairs=16"], "mi.pairs"),
    ("mi-seed-too-large", TINY_SPEC, ["--set", "mi.seed=99999999999999999999"], "mi.seed"),
    ("cuda-without-cuda", TINY_SPEC, ["--set", "trainer.device=cuda", "--set", "resources.gpu=1"], "trainer.device"),
    ("gpu-share-without-gpu", TINY_SPEC, ["--set", "resources.gpu=1"], "resources.gpu"),
    ("cuda-without-gpu-share", TINY_SPEC, ["--set", "trainer.device=cuda"], "resources.gpu"),
    ("unreachable-address", TINY_SPEC, ["--address", "127.0.0.1:1"], "--address 127.0.0.1:1"),
    ("unreachable-tracking-server", TINY_SPEC, ["--set", "tracking.uri=http://127.0.0.1:1"], "tracking.uri"),
    ("test-metric", TINY_SPEC, ["--set", "search.metric=knn_acc"], "val_knn_acc"),
    ("renamed-monitor-key", TINY_SPEC, ["--set", "evaluation.monitor_test=5"], "evaluation.monitor_val"),
    ("unknown-kornia-stage", TINY_SPEC, ["--set", "views.stages=[{RandomErasin: {p: 0.5}}]"], "views.stages.0"),
    ("kornia-bad-argument", TINY_SPEC, ["--set", "views.stages=[{RandomErasing: {scal: 0.5}}]"], "views.stages.0"),
    ("searched-kornia-value-that-breaks-the-batch", TINY_SPEC,
     ["--set", "search.algorithm=random", "--set", "views.strength=0.5",
      "--set", "views.stages=[{RandomCrop: {size: {grid: [[16, 16], [64, 64]]}}}]"],
     "views.stages.0.RandomCrop.size: the grid value [64, 64] fails: changes a (4, 1, 16, 16) batch to (4, 1, 64, 64)"),
    ("searched-negative-noise-std", TINY_SPEC,
     ["--set", "views.stages=[{RandomGaussianNoise: {std: {uniform: [-0.2, 0.2]}}}]"], "views.stages.0.RandomGaussianNoise.std"),
    ("channels-on-grayscale", TINY_SPEC, ["--set", "views.pairs=channels"], "views.pairs"),
    ("truncated-idx", "fmnist", [], "train-images-idx3-ubyte.gz"),
    ("non-image-in-folder", "folder", [], "broken.png"),
]


def _spec_for(case: str | bytes, tmp_path: Path) -> bytes:
    if case == "fmnist":
        truncated_fmnist(tmp_path / "data")
        return TINY_SPEC.replace("{name: synthetic, subset: 256, test_subset: 128}",
                                 f"{{name: fashion_mnist, root: {tmp_path / 'data'}}}").encode()
    if case == "folder":
        folder_with_a_non_image(tmp_path / "imgs")
        return TINY_SPEC.replace("{name: synthetic, subset: 256, test_subset: 128}",
                                 f"{{name: image_folder, root: {tmp_path / 'imgs'}, image_size: 8}}").encode()
    return case if isinstance(case, bytes) else case.encode()


SUBPROCESS = ("not-utf8", "unreachable-address", "truncated-idx")  # the real command's exit 2, end to end


@pytest.mark.parametrize("text,args,needle", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_exits_2_naming_it_and_creating_nothing(request, tmp_path, search_main, text, args, needle):
    """How fast these refusals come is measured by benchmarks/refusals.py, not asserted here."""
    spec = tmp_path / "bad.yaml"
    spec.write_bytes(_spec_for(text, tmp_path))
    if request.node.callspec.id in SUBPROCESS:
        proc = run_search(tmp_path, spec, *args, timeout=60)
        code, err = proc.returncode, proc.stdout[-2000:] + proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        code, err = search_main(tmp_path, spec, *args)  # a traceback here would be an exception, failing the test
    assert code == 2, err
    assert needle in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case,needle", [(b"trainer: {epochs: 1}\nx: \xff\n", "not UTF-8"), ("fmnist", "truncated")])
def test_train_cli_refuses_the_same_inputs(tmp_path, case, needle):
    spec = tmp_path / "bad.yaml"
    text = _spec_for(case, tmp_path)
    if case == "fmnist":
        text = f"dataset: {{name: fashion_mnist, root: {tmp_path / 'data'}}}\n".encode()
    spec.write_bytes(text)
    proc = subprocess.run([sys.executable, "-m", "trainers.train", str(spec), "--quiet"], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoints_load_weights_only_and_unreadable_ones_restart_the_trial(tmp_path):
    from search.trial import CHECKPOINT, _restore
    from tests.conftest import tiny_train_config
    from trainers.train import Trainer

    trainer = Trainer(tiny_train_config())
    trainer.train_epoch()
    good = tmp_path / "good"
    good.mkdir()
    trainer.save_checkpoint(good / CHECKPOINT)
    fresh = Trainer(tiny_train_config())
    assert _restore(fresh, [good]) == {} and fresh.epoch == 1  # the project's own checkpoint: weights_only works

    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"x": Path("/")}, evil / CHECKPOINT)  # an object weights_only refuses to unpickle
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / CHECKPOINT).write_bytes((good / CHECKPOINT).read_bytes()[:200])
    other = Trainer(tiny_train_config())
    assert _restore(other, [evil, truncated]) == {} and other.epoch == 0  # all unreadable: from epoch 0
    assert _restore(other, [truncated, good]) == {} and other.epoch == 1  # falls back to an older one


# ----------------------------------------------------------------------------- live faults


def start(spec: Path, cwd: Path, *args: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(search_cmd(spec, *args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    return proc, lines


def wait_for(lines: list[str], pattern: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(re.search(pattern, line) for line in list(lines)):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"never saw {pattern!r}:\n" + "".join(lines)[-3000:])


FAULT_ARGS = ["--set", "trainer.epochs=4", "--set", "search.num_samples=3", "--set", "trainer.max_steps=3"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_search_of_the_same_experiment_is_refused(tmp_path, tiny_spec):
    first, lines = start(tiny_spec, tmp_path, *FAULT_ARGS)
    try:
        wait_for(lines, r"epoch 1/4", first)
        second = run_search(tmp_path, tiny_spec, *FAULT_ARGS, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert "being searched by another run" in second.stderr and f"PID {first.pid}" in second.stderr
        assert first.wait(timeout=400) == 0, "".join(lines)[-3000:]
    finally:
        kill_group(first.pid)
    _, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    summary = json.loads((tmp_path / "runs" / "tiny" / "report" / "summary.json").read_text())
    assert summary["n_trials"] == 3 and summary["n_used"] == 3


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
def test_an_interrupt_stops_cleanly_and_the_rerun_resumes(tmp_path, tiny_spec, sig, code):
    proc, lines = start(tiny_spec, tmp_path, *FAULT_ARGS)
    try:
        wait_for(lines, r"epoch 1/4", proc)
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=180) == code, "".join(lines)[-3000:]
    finally:
        kill_group(proc.pid)
    out = "".join(lines)
    assert "rerun the same command to resume" in out
    assert "Traceback" not in out and "core dumped" not in out
    _, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert [p.info.status for p in parents] == ["KILLED"]
    for run in children:  # a run is FINISHED only if its trial trained to the end
        assert run.info.status != "FINISHED" or "linear_acc" in run.data.metrics, run.data.tags
    assert any(run.info.status == "KILLED" for run in children)
    assert not (tmp_path / "runs" / "tiny" / "report").exists()  # no report from stopped trials

    rerun = run_search(tmp_path, tiny_spec, *FAULT_ARGS)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "(resume)" in rerun.stdout
    _, parents, children = mlflow_runs(tmp_path / "runs" / "mlflow.db", "tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3 and all(r.info.status == "FINISHED" and "linear_acc" in r.data.metrics for r in children)


@pytest.mark.integration
@pytest.mark.slow
def test_a_store_that_lost_the_search_leaves_the_report_alone(tmp_path, tiny_spec):
    args = ["--set", "search.num_samples=2", "--set", "trainer.epochs=1"]
    assert run_search(tmp_path, tiny_spec, *args).returncode == 0
    report = tmp_path / "runs" / "tiny" / "report" / "summary.json"
    before = report.read_bytes()
    (tmp_path / "runs" / "mlflow.db").write_bytes(b"")  # `truncate -s 0 runs/mlflow.db`
    again = run_search(tmp_path, tiny_spec, *args)
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    assert "no longer holds this search's results" in again.stderr
    assert report.read_bytes() == before


def test_a_failed_trials_console_line_is_the_exceptions_own_line():
    from search.callback import error_line

    text = ("Failure # 1 (occurred at 2026-12-02_10-00-00)\nray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
            "  File \"/x/trial.py\", line 3, in run\n    raise ValueError('boom')\nValueError: boom\n\n")
    assert error_line(text) == "ValueError: boom"
    assert error_line("") == "unknown error"
