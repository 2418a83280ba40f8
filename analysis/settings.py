"""The spec's ``analysis`` section: which probe the InfoMin analysis fits and the decision rule's
thresholds, declared before a search runs so no run can tune them to its data.

The section belongs to the spec (``search/spec.py`` validates it with the others, so a bad value
exits 2 naming ``analysis.<key>``) and is part of its fingerprint: changing ``min_effect`` on a
finished search is refused unless the search starts over, because a threshold chosen after
seeing the data is no threshold. The search logs the section as params of its MLflow parent run
(``analysis.probe``, ...); ``python -m analysis.report`` reads them back from there
(:func:`from_params`), so a rebuilt report applies the same rule. A parent run without them (a
search from before the section existed) gets the defaults, which are the old meaning: the
linear probe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationError

from trainers.config import _Section
from trainers.errors import SpecError
from trainers.results import probe_metric
from trainers.validation import error_key

PARAM_PREFIX = "analysis."


class AnalysisConfig(_Section):
    """How the InfoMin analysis reads a search. Defaults keep older specs' meaning."""

    probe: Literal["linear", "knn"] = Field(
        "linear", description="the test probe the fit reads (<probe>_acc); points and the peak are ranked by "
        "the same probe on validation (val_<probe>_acc)",
    )
    min_effect: float = Field(0.01, gt=0.0, lt=1.0, description="delta, the smallest accuracy difference that "
                              "matters (a fraction): the plateau's equivalence margin")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="test level; CIs are 1 - alpha")
    stability_resamples: int = Field(200, ge=10, le=100_000, description="seed resamples the verdict is rerun "
                                     "on (drawn from a fixed seed: the report is deterministic)")

    def fit_metric(self) -> str:
        """The test-split metric the fit reads: a measurement, it selects nothing."""
        return probe_metric(self.probe, "test")

    def select_metric(self) -> str:
        """The validation metric that ranks points (the best point, the peak point)."""
        return probe_metric(self.probe, "val")

    def as_params(self) -> dict[str, str]:
        """The parent run's params that record the section."""
        return {f"{PARAM_PREFIX}{k}": str(v) for k, v in self.model_dump().items()}


def from_params(params: Mapping[str, str]) -> AnalysisConfig:
    """The section as a parent run recorded it (``as_params``); defaults for keys it lacks."""
    raw: dict[str, object] = {}
    for key, field in AnalysisConfig.model_fields.items():
        text = params.get(f"{PARAM_PREFIX}{key}")
        if text is None:
            continue
        kind = field.annotation
        raw[key] = int(text) if kind is int else float(text) if kind is float else text
    try:
        return AnalysisConfig.model_validate(raw)
    except ValidationError as err:
        key, reason = error_key(err)
        raise SpecError(f"analysis.{key}", f"{reason} (recorded on the search's parent run)") from None
