"""A resume checks what it resumes before Ray starts: the store, the folder, Tune's own state.

Why: ``Tuner.restore`` trusts its files. A truncated ``experiment_state-*.json`` (a full disk, a
crash mid-write) makes Tune log "Failed to restore the run state" and start again with what its
searcher remembers: a trial with an empty config, grid points that never run, and MLflow runs
with logged epochs that the end-of-search reconciliation would remove. And a ``runs/`` folder
copied elsewhere records absolute paths of its old place (``search.json``'s store, the MLflow
artifact locations), so a resume there would write into the original.

So, on resume, in order:

1. ``settle_store``: the store this command resolves (from the spec and the current place) must
   be the one ``search.json`` recorded. The one exception is the default SQLite store under
   ``runs/``, which moves with the folder: the copy's database is told its new artifact folder and
   ``search.json`` its new store, so every later write lands in the new place. Any other
   difference is refused (exit 2).
2. ``check_not_lost``: the store still holds the parent run and every finished trial.
3. ``check_tune_state``: Tune's newest state file and its searcher's files can be read, and the
   trials they restore match ``search.json`` and the store: every trial is a point of this spec
   (no empty config), every finished trial is there, no more trials than the search runs, and no
   MLflow run holding results belongs to a trial Tune forgot. Otherwise the resume stops (exit 2)
   naming the damaged file and the remedy; the store is left as it is.

Every check runs before the one write (relocating a moved store), so a refused resume changes
nothing at all.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from analysis.state import SearchState
from analysis.store import TAG_TRIAL_ID, sqlite_uri
from search.mlflow_store import Store
from search.paths import Paths
from search.spec import Spec
from trainers.domains import domain_values


class ResumeRefused(Exception):
    """The earlier search cannot be resumed safely as it stands; the message names why and the remedy."""


FRESH = "rerun with --fresh to start the search over (its MLflow runs are soft-deleted, `mlflow gc` purges them)"


# --------------------------------------------------------------------------- 1. the store


def _sqlite_path(uri: str | None) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri and uri.startswith("sqlite:///") else None


def recorded_default(state: SearchState) -> bool:
    """Did the earlier search use the default store (SQLite ``mlflow.db`` + ``mlartifacts/`` side by side)?"""
    if state.default_store is not None:
        return state.default_store
    db = _sqlite_path(state.tracking_uri)  # a search.json written before the flag existed
    return db is not None and db.name == "mlflow.db" and \
        state.artifact_location == (db.parent / "mlartifacts").as_uri()


def settle_store(state: SearchState, store: Store, paths: Paths, default: bool, write: bool = True) -> str | None:
    """Make the resumed search write to ``store``; returns a note when the store moved with runs/.

    ``default``: this command resolved the default store under ``runs/`` (no tracking.uri, no
    MLFLOW_TRACKING_URI). ``write=False`` only decides (ResumeRefused, or the note) and changes nothing.
    """
    recorded = state.tracking_uri
    if recorded in (None, store.uri):
        return None
    if not (default and recorded_default(state)):
        raise ResumeRefused(
            f"{paths.state_file} records the MLflow store {recorded}, but this command resolves {store.uri} "
            "(from tracking.uri, MLFLOW_TRACKING_URI or the default under output.root); a resume writes where the "
            f"search began: use that store again, or {FRESH}"
        )
    if write:
        old_artifacts = state.artifact_location or (_sqlite_path(recorded).parent / "mlartifacts").as_uri()
        relocate_sqlite(_sqlite_path(store.uri), old_artifacts, store.artifact_location)
        state.with_store(store.uri, store.artifact_location, default_store=True).save(paths.state_file)
    return f"runs/ moved from {_sqlite_path(recorded).parent} to {paths.root}: resuming with the store in its new place"


def relocate_sqlite(db: Path, old_artifacts: str, new_artifacts: str) -> int:
    """Point a moved SQLite store's artifact locations at its new ``mlartifacts/`` (all experiments:
    the folder moved as a whole). Returns the rows changed; running it again changes none."""
    old, new = old_artifacts.rstrip("/"), new_artifacts.rstrip("/")
    changed = 0
    with sqlite3.connect(db, timeout=30) as con:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            cur = con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                (new, len(old) + 1, old, len(old) + 1, old + "/"),
            )
            changed += cur.rowcount
    return changed


# --------------------------------------------------------------------------- 2. the store still holds it


def check_not_lost(state: SearchState, store: Store, paths: Paths) -> list:
    """A resume must find its parent run and every trial it recorded as finished in the store;
    returns the search's trial runs (the Tune-state check reads them next: one query, not two)."""
    from search.tracking import Tracker

    tracker = Tracker(store)
    lost, runs = None, []
    if not tracker.run_exists(state.parent_run_id):
        lost = f"its parent run {state.parent_run_id}"
    else:
        finished = set(state.finished_trials)
        runs = tracker.children(state.experiment_id, state.parent_run_id)
        have = {r.data.tags.get(TAG_TRIAL_ID) for r in runs}
        if finished - have:
            lost = f"{len(finished - have)} of its {len(finished)} finished trials"
    if lost:
        raise ResumeRefused(
            f"the MLflow store {store.uri} no longer holds this search's results ({lost}); nothing was changed and "
            f"the report in {paths.report_dir} is left as it is. Restore the store from a backup, or rerun with "
            "--fresh to start the search over"
        )
    return runs


# --------------------------------------------------------------------------- 3. Tune's state


def newest_state_file(folder: Path) -> Path | None:
    """The file ``Tuner.restore`` reads: the newest ``experiment_state-<timestamp>.json``."""
    files = sorted(folder.glob("experiment_state-*.json"))
    return files[-1] if files else None


def tune_trial_entries(path: Path) -> list[tuple[dict, str]]:
    """Each trial of a Tune ``experiment_state-*.json``: its parsed state and its metadata, still
    JSON text (only the generator's catch-up needs its ``last_result``)."""
    return [(json.loads(state), metadata) for state, metadata in json.loads(path.read_text())["trial_data"]]


def read_tune_trials(folder: Path, shown: str | None = None) -> tuple[Path, list[dict]]:
    """``(state file, [{trial_id, config, status}])`` from Tune's newest state; ResumeRefused if unreadable.
    ``shown``: where the files really are (a bucket), for the messages."""
    path = newest_state_file(folder)
    if path is None:
        raise ResumeRefused(f"{shown or folder} holds no experiment_state-*.json; {FRESH}")
    if shown:
        try:
            return read_tune_trials(folder)
        except ResumeRefused as err:
            raise ResumeRefused(str(err).replace(str(folder), shown)) from None
    try:
        trials = [{"trial_id": t["trial_id"], "config": t["config"], "status": t["status"]}
                  for t, _ in tune_trial_entries(path)]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise _damaged(path, f"it cannot be read ({type(err).__name__}: {err})") from None
    for searcher in sorted(folder.glob("*-state-*")):  # the searcher's memory (a pickle whatever its name)
        if searcher.name.startswith("experiment_state-"):
            continue
        try:
            with open(searcher, "rb") as f:
                pickle.load(f)
        except Exception as err:  # noqa: BLE001 -- any failure here is a failure of Tune's restore too
            raise _damaged(searcher, f"it cannot be read ({type(err).__name__}: {err})") from None
    return path, trials


def _damaged(path: Path | str, why: str) -> ResumeRefused:
    return ResumeRefused(
        f"Tune's state {path} is damaged: {why}. Resuming from it would lose or re-run trials, so nothing was "
        f"started; the trials logged so far are untouched in MLflow. To start over, {FRESH}"
    )


def in_domain(value: Any, dom: dict) -> bool:
    """Could the spec's domain have produced ``value``?"""
    kind, args = next(iter(dom.items()))
    if kind in ("grid", "choice"):
        return any(value == v for v in domain_values(dom))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return args[0] <= value <= args[1]


def point_problem(config: dict, spec: Spec) -> str | None:
    """Why ``config`` is not a point of this spec's space, or None."""
    from search.replicates import SEED_KEY  # imports Ray: not at the CLI's start, which must stay fast

    expected = set(spec.domains) | ({SEED_KEY} if spec.search.repeats > 1 else set())
    if set(config) != expected:
        missing, extra = sorted(expected - set(config)), sorted(set(config) - expected)
        return ("it has no values for " + ", ".join(missing) if missing else "") + \
               ("; " if missing and extra else "") + ("it has unknown keys " + ", ".join(extra) if extra else "")
    for key, dom in spec.domains.items():
        if not in_domain(config[key], dom):
            return f"{key}={config[key]!r} is not in the spec's domain {dom}"
    return None


def check_tune_state(spec: Spec, state: SearchState, paths: Paths, total: int, logged: set[str]) -> None:
    """Tune's restore must bring back this search: ``total`` its trial count, ``logged`` the trial ids
    whose MLflow runs hold results."""
    from search.storage import tune_storage

    where = tune_storage(spec, paths)
    with tempfile.TemporaryDirectory(prefix="viewsearch-tune-state-") as tmp:
        folder = where.state_files(Path(tmp))
        path, trials = read_tune_trials(folder, None if where.filesystem is None else where.display)
    if where.filesystem is not None:
        path = f"{where.display}/{path.name}"  # the bucket's file, not the copy just checked
    ids = {t["trial_id"] for t in trials}
    for trial in trials:
        problem = point_problem(trial["config"], spec)
        if problem:
            raise _damaged(path, f"its trial {trial['trial_id']} is not a point of this search ({problem})")
    if len(trials) > total:
        raise _damaged(path, f"it holds {len(trials)} trials, but this search runs {total}")
    finished = set(state.finished_trials)
    if finished - ids:  # (a driver killed just after a trial ended may leave it RUNNING there: it resumes)
        missing = sorted(finished - ids)
        raise _damaged(path, f"{len(missing)} trial(s) that {paths.state_file.name} records as finished are "
                             f"missing there ({', '.join(missing[:4])})")
    if logged - ids:
        orphans = sorted(logged - ids)
        raise _damaged(path, f"it has forgotten {len(orphans)} trial(s) whose MLflow runs hold results "
                             f"({', '.join(orphans[:4])})")


def logged_trials(runs: list) -> set[str]:
    """Trial ids of the trial runs (``check_not_lost``'s) that hold at least one metric."""
    return {r.data.tags.get(TAG_TRIAL_ID) for r in runs if r.data.metrics}


def verify(spec: Spec, state: SearchState, paths: Paths, store: Store, default_store: bool) -> str | None:
    """Steps 1-3 of the module docstring, every check before the one write (a moved store is
    relocated last); returns a note for the console (a moved store), or None."""
    from search.space import total_trials

    settle_store(state, store, paths, default_store, write=False)
    runs = check_not_lost(state, store, paths)
    check_tune_state(spec, state, paths, total_trials(spec), logged_trials(runs))
    return settle_store(state, store, paths, default_store)


def is_default_store(spec: Spec, store: Store, paths: Paths) -> bool:
    return store.uri == sqlite_uri(paths.root) and not spec.tracking.uri


# --------------------------------------------------------------------------- 4. Tune's searcher state


def relocate_searcher_state(paths: Paths) -> int:
    """Point the searcher's saved state at this place's Ray folder; returns the files rewritten.

    Why: Tune rebases the trials of its experiment state on the folder it restores from, but the
    searcher's own pickle (``basic-variant-state-*.json``, Optuna's) keeps the absolute Ray folder of
    the place the search began, and the trials it has yet to create would checkpoint there: into the
    original of a copied ``runs/``, or onto the disk it was moved from."""
    from ray import cloudpickle

    new = str(paths.ray_storage)
    rewritten = 0
    for path in sorted(paths.ray_experiment.glob("*-state-*")):
        if path.name.startswith("experiment_state-"):
            continue
        with open(path, "rb") as f:
            obj = pickle.load(f)
        old = _old_ray_root(_strings(obj), paths)
        if old is None or old == new:
            continue
        obj = _rebase(obj, old, new)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            cloudpickle.dump(obj, f)
        tmp.replace(path)
        rewritten += 1
    return rewritten


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    return list(vars(obj).values()) if hasattr(obj, "__dict__") and not isinstance(obj, type) else []


def _strings(obj: Any, seen: set[int] | None = None, depth: int = 0) -> list[str]:
    seen = set() if seen is None else seen
    if isinstance(obj, str):
        return [obj]
    if id(obj) in seen or depth > 20:
        return []
    seen.add(id(obj))
    return [s for child in _children(obj) for s in _strings(child, seen, depth + 1)]


def _old_ray_root(strings: list[str], paths: Paths) -> str | None:
    """The absolute ``.../<experiment>/ray`` folder the state was written for, if it names one."""
    for s in strings:
        p = Path(s)
        if p.is_absolute() and p.name == paths.experiment and p.parent.name == "ray" \
                and p.parent.parent.name == paths.experiment:
            return str(p.parent)
        if p.is_absolute() and p.name == "ray" and p.parent.name == paths.experiment:
            return str(p)
    return None


def _rebase(obj: Any, old: str, new: str, seen: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """``obj`` with every string under ``old`` moved under ``new`` (objects changed in place)."""
    seen = {} if seen is None else seen
    if isinstance(obj, str):
        return new + obj[len(old):] if obj == old or obj.startswith(old + "/") else obj
    if id(obj) in seen or depth > 20:
        return seen.get(id(obj), obj)
    seen[id(obj)] = obj
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _rebase(obj[k], old, new, seen, depth + 1)
        return obj
    if isinstance(obj, list):
        obj[:] = [_rebase(v, old, new, seen, depth + 1) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return type(obj)(*(_rebase(v, old, new, seen, depth + 1) for v in obj)) if hasattr(obj, "_fields") \
            else tuple(_rebase(v, old, new, seen, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        for k, v in list(vars(obj).items()):
            try:
                setattr(obj, k, _rebase(v, old, new, seen, depth + 1))
            except AttributeError:  # a read-only property's backing field: leave it
                pass
    return obj
