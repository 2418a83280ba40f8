"""The whole search spec: the training sections of ``trainers/config.py`` plus what a search adds.

A spec file is one experiment. Its training sections (dataset, model, method, views, negatives,
trainer, evaluation, mi) are validated by ``trainers.validation.validate_train`` -- the only place
that knows the knobs' ranges -- and this module adds the sections only a search has:
``experiment``, ``search``, ``resources``, ``tracking``, ``output`` and ``analysis`` (the InfoMin
analysis's probe and decision thresholds, ``analysis/settings.py``), plus the cross-checks
between a search algorithm and the domains it has to sample.

Every failure is a ``SpecError`` naming the file and the dotted key, raised before anything is
started or written, so the CLI can exit 2 with nothing to clean up. This module imports neither
Ray, MLflow nor torch: validating a spec must stay fast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from analysis.settings import AnalysisConfig
from analysis.store import EXPERIMENT_NAME_RULE, valid_experiment
from search.storage import StorageConfig
from trainers.config import TRAIN_SECTIONS, TrainConfig, _Section, training_sections
from trainers.domains import domain_values, find_domains, is_domain, span, walk
from trainers.errors import KeyedError, SpecError
from trainers.results import KNN_ACC, LINEAR_ACC, TRAIN_LOSS, VAL_KNN_ACC
from trainers.specfile import apply_overrides, load_yaml, parse_override
from trainers.validation import error_key, probe, validate_train

# Metrics a trial reports every epoch, with the direction that makes them better. The search
# metric must be one of them: ASHA and the searchers read it from every intermediate result.
# Both come from the training and validation images only: the test split never steers a search.
SEARCH_METRICS = {VAL_KNN_ACC: "max", TRAIN_LOSS: "min"}
TEST_METRICS = (KNN_ACC, LINEAR_ACC)


class SearchConfig(_Section):
    """How points are chosen and stopped. Defaults suit a small CPU search."""

    algorithm: Literal["optuna", "random", "grid"] = "optuna"
    num_samples: int = Field(8, ge=1, le=100_000, description="points; for grid, passes over the whole grid")
    repeats: int = Field(
        1, ge=1, le=100, description="trainings of every point, replicate r with seed trainer.seed * repeats + r "
        "(so different base seeds never share a replicate); the searcher sees the replicates' mean",
    )
    metric: Literal["val_knn_acc", "train_loss"] = "val_knn_acc"
    mode: Literal["max", "min"] | None = Field(None, description="default: the metric's natural direction")
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1, le=10_000, description="ASHA: epochs every trial gets before it may stop")
    reduction_factor: float = Field(2.0, gt=1.0, le=100.0, description="ASHA: keep 1/reduction_factor per rung")
    max_concurrent: int = Field(2, ge=1, le=4096, description="trials running at once")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seeds the searcher (TPE / random sampling)")
    max_failures: int = Field(2, ge=0, le=100, description="retries of a crashed trial from its last checkpoint")

    @field_validator("metric", mode="before")
    @classmethod
    def _not_test(cls, metric: object) -> object:
        if metric in TEST_METRICS:
            raise ValueError(f"{metric} is scored on the test split, which must never steer a search; "
                             f"write search.metric: val_{metric}" if metric == KNN_ACC else
                             f"{metric} is the test split's final probe; write search.metric: val_knn_acc")
        return metric

    @model_validator(mode="after")
    def _mode(self) -> SearchConfig:
        natural = SEARCH_METRICS[self.metric]
        if self.mode is None:
            self.mode = natural
        elif self.mode != natural:
            word = "maximised" if natural == "max" else "minimised"
            raise KeyedError("search.mode", f"{self.metric} is {word}, so mode must be {natural}, got {self.mode}")
        return self


class ResourcesConfig(_Section):
    """What one trial reserves from Ray; fractional GPUs pack several trials on one device."""

    cpu: float = Field(1.0, gt=0.0, le=1024.0)
    gpu: float = Field(0.0, ge=0.0, le=64.0)


class TrackingConfig(_Section):
    """MLflow store. None: ``MLFLOW_TRACKING_URI`` if set, else SQLite ``<output.root>/mlflow.db``."""

    uri: str | None = None
    artifact_root: str | None = Field(None, description="default <output.root>/mlartifacts (SQLite store only)")


class OutputConfig(_Section):
    root: str = Field("runs", min_length=1, description="relative to the working directory")


class _SearchSections(_Section):
    experiment: str
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    output: OutputConfig = OutputConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    storage: StorageConfig = StorageConfig()  # search/storage.py

    @field_validator("experiment")
    @classmethod
    def _name(cls, name: str) -> str:
        if not valid_experiment(name):
            raise ValueError(f"must be {EXPERIMENT_NAME_RULE}")
        return name


class SpecSchema(TrainConfig, _SearchSections):
    """Every key a spec may hold; ``--set`` keys are checked against it."""


SEARCH_SECTIONS = tuple(_SearchSections.model_fields)


@dataclass(frozen=True)
class Spec:
    """A validated spec: the training sections as written (domains kept) and the search sections."""

    experiment: str
    train_raw: dict
    train: TrainConfig
    search: SearchConfig
    resources: ResourcesConfig
    tracking: TrackingConfig
    output: OutputConfig
    raw: dict
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    file: str | None = None
    overrides: tuple[str, ...] = field(default=())

    @property
    def domains(self) -> dict[str, dict]:
        """Dotted key -> domain, for every searched knob."""
        return find_domains(self.train_raw)

    def max_epochs(self) -> int:
        epochs = self.train_raw.get("trainer", {}).get("epochs", self.train.trainer.epochs)
        return int(span(epochs)[1])

    def fingerprint(self) -> str:
        """Identity of the search, to refuse resuming an experiment with a different spec."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.raw, sort_keys=False)


# --------------------------------------------------------------------------- loading


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Spec file + ``--set`` overrides -> validated Spec. Raises SpecError naming file and key."""
    raw = load_yaml(path)
    try:
        raw = apply_overrides(raw, list(overrides), schema=SpecSchema)
        spec = validate_spec(raw)
    except SpecError as err:
        reason = err.reason
        if err.key and err.key in _override_keys(overrides) and "--set" not in reason:
            reason = f"{reason} (value given by --set)"
        raise SpecError(err.key, reason, file=str(path)) from None
    return _with_origin(spec, str(path), tuple(overrides))


def _override_keys(overrides) -> set[str]:
    keys = set()
    for text in overrides:
        try:
            keys.add(parse_override(text)[0])
        except SpecError:
            pass
    return keys


def _with_origin(spec: Spec, file: str, overrides: tuple[str, ...]) -> Spec:
    return Spec(**{**spec.__dict__, "file": file, "overrides": overrides})


def validate_spec(raw: Any) -> Spec:
    """Validate a whole spec mapping; the training part through ``validate_train``."""
    if not isinstance(raw, dict):
        raise SpecError("", f"the top level must be a mapping of sections, got {type(raw).__name__}")
    _check_sections(raw)
    train_raw = copy.deepcopy(training_sections(raw))
    train = validate_train(train_raw)
    sections = _validate_search_sections(raw)
    _check_domains(train_raw, sections.search)
    _check_search(train_raw, train, sections.search, sections.resources)
    return Spec(
        experiment=sections.experiment,
        train_raw=train_raw,
        train=train,
        search=sections.search,
        resources=sections.resources,
        tracking=sections.tracking,
        output=sections.output,
        raw=copy.deepcopy(raw),
        analysis=sections.analysis,
        storage=sections.storage,
    )


def _check_sections(raw: dict) -> None:
    known = set(TRAIN_SECTIONS) | set(SEARCH_SECTIONS)
    for key, value in raw.items():
        if key not in known:
            raise SpecError(str(key), f"unknown section; expected one of {sorted(known)}")
        if key in TRAIN_SECTIONS and value is not None and not isinstance(value, dict):
            raise SpecError(key, f"must be a mapping of knobs, got {type(value).__name__}")
    for key, value in walk({k: v for k, v in raw.items() if k in SEARCH_SECTIONS}):
        if is_domain(value):
            raise SpecError(key, "search domains are only allowed in the training sections")
    for name in TRAIN_SECTIONS:
        if name in raw and raw[name] is None:
            raise SpecError(name, "section is empty; remove it or give it knobs")


def _validate_search_sections(raw: dict) -> _SearchSections:
    try:
        return _SearchSections.model_validate({k: raw[k] for k in SEARCH_SECTIONS if k in raw})
    except ValidationError as err:
        raise SpecError(*error_key(err)) from None


def _check_domains(train_raw: dict, search: SearchConfig) -> None:
    """Domains a searcher can actually sample, with values the knob accepts."""
    for key, dom in find_domains(train_raw).items():
        kind = next(iter(dom))
        if key.startswith("dataset."):
            raise SpecError(key, "the dataset cannot be searched: it is loaded once and shared by all trials")
        if kind == "grid" and search.algorithm == "optuna":
            raise SpecError(key, "{grid: [...]} needs search.algorithm grid or random; use {choice: [...]} with optuna")
        if search.algorithm == "grid" and kind not in ("grid", "choice"):
            raise SpecError(key, f"search.algorithm grid enumerates values; use {{grid: [...]}} instead of {kind}")
        if kind == "choice" and search.algorithm == "optuna":
            for value in domain_values(dom):
                if value is not None and not isinstance(value, (bool, int, float, str)):
                    raise SpecError(key, f"optuna can only choose between scalars, got {value!r}; use random")
        if kind in ("uniform", "loguniform"):
            _check_continuous(train_raw, key, dom)


def _check_continuous(train_raw: dict, key: str, dom: dict) -> None:
    """A continuous domain samples non-integers: the knob must accept them (not an int knob)."""
    lo, hi = domain_values(dom)
    inside = math.exp(math.log(lo) + 0.377 * (math.log(hi) - math.log(lo))) if "loguniform" in dom else lo + 0.377 * (hi - lo)
    if float(inside).is_integer():
        inside += 1e-3 * (hi - lo)
    problem = probe(train_raw, key, inside)
    if problem is not None:
        raise SpecError(key, f"a {next(iter(dom))} domain samples values like {inside:.4g}, which is invalid: "
                             f"{problem[1]}; use {{int: [a, b]}} for an integer knob")


def _check_search(train_raw: dict, train: TrainConfig, search: SearchConfig, resources: ResourcesConfig) -> None:
    if search.metric == "val_knn_acc" and not train.evaluation.knn_every_epoch:
        raise SpecError("search.metric", "val_knn_acc is only reported every epoch when evaluation.knn_every_epoch is true")
    if search.repeats > 1 and search.algorithm == "random":
        raise SpecError("search.repeats", "not with search.algorithm random (Tune's random generator draws every "
                                          "trial afresh); use optuna or grid")
    if search.repeats > 1 and "trainer.seed" in find_domains(train_raw):
        raise SpecError("search.repeats", "trainer.seed is searched already; replicates set it themselves")
    seed = train.trainer.seed
    if seed * search.repeats + search.repeats - 1 > 2**31 - 1:
        raise SpecError("trainer.seed", f"{seed} x {search.repeats} repeats passes the largest seed 2**31-1")
    if train.trainer.device == "cuda" and resources.gpu == 0:
        raise SpecError("resources.gpu", "trainer.device is cuda, but a trial that reserves no GPU share is "
                                         "given none by Ray; set resources.gpu (e.g. 1 or 0.25)")
    epochs = train_raw.get("trainer", {}).get("epochs", train.trainer.epochs)
    min_epochs = span(epochs)[0]
    if search.scheduler == "asha" and search.grace_period > min_epochs:
        raise SpecError(
            "search.grace_period",
            f"{search.grace_period} exceeds trainer.epochs ({min_epochs}); ASHA could never stop a trial",
        )
