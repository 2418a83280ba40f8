"""search.json as a typed object: older files load, unknown keys survive, a bad file is named."""

import json

import pytest

from analysis.state import SearchState, StateError
from analysis.store import state_file

OLD = {  # the keys a search wrote before the object existed
    "search_id": "abc", "parent_run_id": "p1", "experiment_id": "7", "tracking_uri": "sqlite:////r/mlflow.db",
    "artifact_location": "file:///r/mlartifacts", "default_store": True, "fingerprint": "f0", "spec_file": "s.yaml",
    "overrides": ["trainer.epochs=1"], "total_trials": 4, "finished_trials": ["t2", "t1"],
}


def test_a_file_of_the_previous_version_round_trips_with_the_same_keys(tmp_path):
    path = tmp_path / "search.json"
    path.write_text(json.dumps({**OLD, "added_later": {"x": 1}}))
    state = SearchState.load(path)
    assert (state.parent_run_id, state.total_trials, state.overrides) == ("p1", 4, ("trainer.epochs=1",))
    state.with_finished("t0").with_finished("t1").save(path)
    saved = json.loads(path.read_text())
    assert saved == {**OLD, "added_later": {"x": 1}, "finished_trials": ["t0", "t1", "t2"]}
    assert [p.name for p in tmp_path.iterdir()] == ["search.json"]  # no temporary file left


def test_an_early_file_gets_defaults_and_a_bad_one_is_named(tmp_path):
    state = SearchState.from_json({"parent_run_id": "p"})
    assert state.default_store is None and state.finished_trials == () and state.tracking_uri is None
    (tmp_path / "e").mkdir()
    path = state_file(tmp_path, "e")
    for text in ("", '{"parent_run_id": "p"', '{"experiment_id": "1"}', '{"parent_run_id": "p", "overrides": "x"}'):
        path.write_text(text)
        with pytest.raises(StateError, match="search.json"):
            SearchState.load(path)
        assert SearchState.find(tmp_path, "e") is None
    assert SearchState.find(tmp_path, "missing") is None
