"""Checks of a search that need the machine, the servers or the data, before anything is created or started.

``check`` runs them in the order that makes a wrong command fail soonest and leave nothing behind:
the device and GPU share on this machine, the tracking server, the bucket, the dataset files and
views, the cluster address, and last the store's write access (which may create the experiment).
Each failure is one of ``USAGE_ERRORS``: exit code 2, a message naming the file and key (or the
file, server or address), and no ``runs/`` entry.

``search/spec.py`` validates a spec as text: every key, every value a domain can take, against the
schema. What it cannot know needs this machine and the dataset: whether the device a trial asks
for exists, whether the batch fits the training images, and whether every view a domain can
produce runs on these images -- a Kornia stage that crops 28-px images to 64 px is only found by
running it. So each searched views value (every grid value and choice, both bounds of a range)
is built and run on a few images here, in seconds, instead of failing its trials after Ray has
started.
"""

from __future__ import annotations

import os
from typing import Any

from search import storage
from search.cluster import Unreachable, check_cluster_reachable, prepare_auth
from search.lock import ExperimentBusy
from search.mlflow_store import Store, StoreUnreachable, check_store, check_writable, resolve_store
from search.paths import Paths
from search.resume import ResumeRefused
from search.spec import Spec, SpecError
from trainers.domains import domain_values, span

PROBE_IMAGES = 4


class UsageError(Exception):
    """Not a spec error, but the command cannot run as given (a missing dataset, a busy experiment...)."""


USAGE_ERRORS = (SpecError, UsageError, StoreUnreachable, Unreachable, ExperimentBusy, ResumeRefused,
                storage.StorageError)  # the command cannot run as given: exit 2, nothing started


def check(spec: Spec, paths: Paths, address: str | None) -> tuple[Store, Any]:
    """Every pre-flight check of the search; returns its store and the dataset, loaded once."""
    check_device(spec, address)
    store = resolve_store(spec, paths)
    check_store(store)
    storage.check_storage(spec)  # storage.uri: the bucket answers, with these credentials
    data = load_checked_data(spec)
    if address:
        check_cluster_reachable(address)
    check_writable(store, spec.experiment)  # after the checks that need no server: it may create the experiment
    prepare_auth(address)  # before anything imports Ray
    return store, data


def check_device(spec: Spec, address: str | None) -> None:
    """On a local Ray, what a trial asks of the device must exist on this machine."""
    if address:
        return  # the cluster's nodes are checked once connected (``cluster.impossible_resources``)
    import torch

    has_cuda = torch.cuda.is_available()
    if spec.train.trainer.device == "cuda" and not has_cuda:
        raise SpecError("trainer.device", "'cuda' was asked for, but this machine has no CUDA device; "
                                          "use auto or cpu (or --address a cluster with GPUs)", file=spec.file)
    gpus = torch.cuda.device_count() if has_cuda else 0
    if spec.resources.gpu > gpus:
        raise SpecError("resources.gpu", f"a trial asks for {spec.resources.gpu:g} GPU, but this machine has "
                                         f"{gpus}; no trial could ever start (set resources.gpu: 0)", file=spec.file)
    cpus = os.cpu_count() or 1
    if spec.resources.cpu > cpus:
        raise SpecError("resources.cpu", f"a trial asks for {spec.resources.cpu:g} CPUs, but this machine has "
                                         f"{cpus}", file=spec.file)


def load_checked_data(spec: Spec):
    """Load the dataset once in the driver (trials get it through Ray's object store)."""
    from trainers.data import DatasetError, load_data

    try:
        data = load_data(spec.train.dataset)
    except DatasetError as err:
        raise UsageError(f"{spec.file}: {err}") from None
    n = int(data.train_x.shape[0])
    batch = spec.train_raw.get("trainer", {}).get("batch_size", spec.train.trainer.batch_size)
    largest = span(batch)[1]
    if largest > n:
        raise SpecError("trainer.batch_size", f"{largest} exceeds the {n} training images (validation images "
                                              "excluded)", file=spec.file)
    import torch

    from trainers.pairs import build_pairs

    try:  # the views of the spec's default point, on a few images: Kornia stages are probed here
        build_pairs(spec.train, data)(torch.arange(min(n, PROBE_IMAGES)), True)
    except SpecError as err:
        raise SpecError(err.key, err.reason, file=spec.file) from None
    check_view_values(spec, data)
    return data


def check_view_values(spec: Spec, data) -> None:
    """Build and run the views of every value a searched ``views`` knob can take, one by one (the
    other knobs at their defaults); SpecError naming the key and the value that fails."""
    import torch

    from trainers.pairs import build_pairs
    from trainers.validation import point_config

    index = torch.arange(min(int(data.train_x.shape[0]), PROBE_IMAGES))
    for key, dom in spec.domains.items():
        if not key.startswith("views."):
            continue  # the pair source is built from the views section (and the dataset) alone
        kind = next(iter(dom))
        what = "bound" if kind in ("uniform", "loguniform", "int") else "value"
        for value in domain_values(dom):
            try:
                build_pairs(point_config(spec.train_raw, {key: value}), data)(index, True)
            except SpecError as err:
                where = err.key if err.key.startswith(key) else key if key.startswith(err.key) else f"{key} ({err.key})"
                raise SpecError(where, f"the {kind} {what} {value!r} fails: {err.reason}", file=spec.file) from None


