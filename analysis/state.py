"""``runs/<experiment>/search.json``: which MLflow parent run, store and spec an experiment's
search belongs to, as one typed object with ``load`` and ``save``.

The driver writes it before the Tuner starts; the Tune callback reads it to find its store and
parent run and adds each finished trial; a resume checks the spec's fingerprint and the store
against it; the report reads the parent run from it. The JSON keys are the field names, the same
as before the object existed, so a ``search.json`` of an older search loads: every field but
``parent_run_id`` has a default (``default_store`` None: written before the flag existed), and
keys this version does not know are kept and written back unchanged.

Imports nothing heavy, so spec validation can use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from analysis.store import state_file


class StateError(ValueError):
    """A ``search.json`` that cannot be read or does not name a parent run."""


@dataclass(frozen=True)
class SearchState:
    parent_run_id: str
    experiment_id: str = ""
    tracking_uri: str | None = None
    artifact_location: str | None = None
    search_id: str = ""
    default_store: bool | None = None  # the store is the default SQLite one under output.root
    fingerprint: str | None = None  # the spec's (search/spec.py): a resume must match it
    spec_file: str | None = None
    overrides: tuple[str, ...] = ()
    total_trials: int | None = None
    finished_trials: tuple[str, ...] = ()  # so a later run can tell a store that lost them
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # keys of a newer version

    @classmethod
    def from_json(cls, raw: Any) -> SearchState:
        if not isinstance(raw, dict) or not isinstance(raw.get("parent_run_id"), str) or not raw["parent_run_id"]:
            raise StateError("it names no parent_run_id")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known}
        for key in ("overrides", "finished_trials"):
            if key in values:
                if not isinstance(values[key], list):
                    raise StateError(f"{key} is not a list")
                values[key] = tuple(str(v) for v in values[key])
        return cls(**values, extra={k: v for k, v in raw.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        out = {**self.extra, **asdict(self)}
        out.pop("extra")
        out.update(overrides=list(self.overrides), finished_trials=list(self.finished_trials))
        return out

    @classmethod
    def load(cls, path: Path) -> SearchState:
        """Raises ``StateError`` naming the file when it cannot be read or names no parent run."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise StateError(f"{path} cannot be read ({err})") from None
        try:
            return cls.from_json(raw)
        except (StateError, TypeError) as err:
            raise StateError(f"{path}: {err}") from None

    @classmethod
    def find(cls, root: Path, experiment: str) -> SearchState | None:
        """The experiment's state under ``root``, or None when there is none or it cannot be read."""
        try:
            return cls.load(state_file(root, experiment))
        except StateError:
            return None

    def save(self, path: Path) -> None:
        """Replace the file atomically: a driver killed mid-write leaves the old one whole."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        os.replace(tmp, path)

    def with_finished(self, trial_id: str) -> SearchState:
        return replace(self, finished_trials=tuple(sorted({*self.finished_trials, trial_id})))

    def with_store(self, tracking_uri: str, artifact_location: str | None, default_store: bool) -> SearchState:
        return replace(self, tracking_uri=tracking_uri, artifact_location=artifact_location,
                       default_store=default_store)
