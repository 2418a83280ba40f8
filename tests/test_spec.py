"""The search spec: valid specs load, and every malformed spec or override exits 2 naming the key
with nothing created (docs/design.md: exit codes)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from search.spec import Spec, SpecError, load_spec, validate_spec
from tests.conftest import REPO, TINY_SPEC, cli_env, run_search
from trainers.validation import point_config

GOOD = yaml.safe_load(TINY_SPEC)


def spec_with(**sections) -> str:
    """TINY_SPEC with sections replaced (None removes one)."""
    raw = {**GOOD, **sections}
    return yaml.safe_dump({k: v for k, v in raw.items() if v is not None})


# ----------------------------------------------------------------------------- valid specs


def test_flagship_spec_is_valid():
    spec = load_spec(REPO / "spaces" / "augment_strength.yaml")
    assert spec.experiment == "augment_strength"
    assert spec.train.dataset.name == "fashion_mnist"
    assert spec.train.method.name == "simclr" and spec.train.model.backbone == "convnet"
    assert set(spec.domains) == {"views.strength"}  # a clean InfoMin test: only the views vary
    assert spec.search.repeats >= 3 and spec.train.dataset.test_subset is None  # replicates, the whole test split
    assert spec.search.scheduler == "none"  # every trial keeps its final linear probe for the fit


def test_overrides_go_through_the_same_schema(tiny_spec):
    spec = load_spec(tiny_spec, ["trainer.epochs=3", "views.strength={uniform: [0.1, 0.5]}", "search.seed=7"])
    assert spec.train.trainer.epochs == 3 and spec.max_epochs() == 3
    assert spec.domains["views.strength"] == {"uniform": [0.1, 0.5]}
    assert spec.search.seed == 7
    assert spec.overrides == ("trainer.epochs=3", "views.strength={uniform: [0.1, 0.5]}", "search.seed=7")


def test_defaults_and_mode_follow_the_metric():
    spec = validate_spec({"experiment": "x", "search": {"metric": "train_loss"}})
    assert spec.search.mode == "min"
    assert validate_spec({"experiment": "x"}).search.mode == "max"


def test_trial_config_merges_sampled_values(tiny_spec):
    spec = load_spec(tiny_spec)
    cfg = point_config(spec.train_raw, {"views.strength": 0.3, "negatives.lower": 0.05, "negatives.upper": 0.5})
    assert (cfg.views.strength, cfg.negatives.lower, cfg.negatives.upper) == (0.3, 0.05, 0.5)
    assert cfg.trainer.batch_size == 32


def test_fingerprint_tracks_the_spec(tiny_spec):
    a, b = load_spec(tiny_spec), load_spec(tiny_spec)
    assert a.fingerprint() == b.fingerprint()
    assert load_spec(tiny_spec, ["search.num_samples=5"]).fingerprint() != a.fingerprint()


def test_analysis_section_defaults_and_round_trip_through_parent_params():
    """Old specs keep their meaning (the linear probe); the parent run's params give the section back."""
    from analysis.settings import from_params

    default = validate_spec({"experiment": "x"}).analysis
    assert (default.probe, default.min_effect, default.alpha) == ("linear", 0.01, 0.05)
    assert (default.fit_metric(), default.select_metric()) == ("linear_acc", "val_linear_acc")
    spec = validate_spec({"experiment": "x", "analysis": {"probe": "knn", "min_effect": 0.02,
                                                          "stability_resamples": 50}})
    assert (spec.analysis.fit_metric(), spec.analysis.select_metric()) == ("knn_acc", "val_knn_acc")
    assert from_params(spec.analysis.as_params()) == spec.analysis
    assert from_params({}) == default  # a search from before the section: the defaults
    assert validate_spec({"experiment": "x", "analysis": {"min_effect": 0.02}}).fingerprint() != \
        validate_spec({"experiment": "x"}).fingerprint()  # a threshold is part of the search, not tuned later
    with pytest.raises(SpecError) as err:
        from_params({"analysis.min_effect": "2"})
    assert err.value.key == "analysis.min_effect"


def test_experiment_names():
    for ok in ("a", "aug.v2", "A_b-3"):
        assert validate_spec({"experiment": ok}).experiment == ok
    for bad in ("a/b", "..", ".", "a b", "", "x\\y"):
        with pytest.raises(SpecError) as err:
            validate_spec({"experiment": bad})
        assert err.value.key == "experiment"


def test_spec_validation_imports_neither_ray_mlflow_nor_torch():
    code = ("import sys, search.spec, search.paths; "
            "print(sorted(m for m in ('ray', 'mlflow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, env=cli_env())
    assert out.stdout.strip() == "[]", out.stderr


def test_spec_is_plain_data(tiny_spec):
    """Ray pickles the spec into tuner.pkl with the callback."""
    import pickle

    spec = load_spec(tiny_spec)
    assert isinstance(pickle.loads(pickle.dumps(spec)), Spec)


# ----------------------------------------------------------------------------- bad input -> exit 2

BAD = [
    # (id, spec text, overrides, what the message must name)
    ("yaml-syntax", "experiment: [unclosed\n", [], "YAML syntax"),
    ("empty-file", "", [], "empty"),
    ("list-top-level", "- experiment: x\n", [], "top level"),
    ("missing-experiment", spec_with(experiment=None), [], "experiment"),
    ("unknown-section", spec_with(sweep={"n": 1}), [], "sweep"),
    ("unknown-key-depth2", spec_with(views={"strenght": 0.5}), [], "views.strenght"),
    ("unknown-key-search", spec_with(search={"algo": "optuna"}), [], "search.algo"),
    ("wrong-type", spec_with(trainer={"epochs": "two"}), [], "trainer.epochs"),
    ("inverted-range", spec_with(views={"strength": {"uniform": [1.0, 0.2]}}), [], "views.strength"),
    ("domain-outside-range", spec_with(views={"strength": {"uniform": [0.0, 2.0]}}), [], "views.strength"),
    ("ring-lower-ge-upper", spec_with(negatives={"lower": 0.5, "upper": 0.1}), [], "negatives.lower"),
    ("ring-domains-overlap", spec_with(negatives={"lower": {"uniform": [0.0, 0.6]}, "upper": {"uniform": [0.5, 1.0]}}),
     [], "negatives.upper"),
    ("num-samples-0", spec_with(search={"num_samples": 0}), [], "search.num_samples"),
    ("unknown-algorithm", spec_with(search={"algorithm": "hyperopt"}), [], "search.algorithm"),
    ("experiment-slash", spec_with(experiment="a/b"), [], "experiment"),
    ("experiment-dotdot", spec_with(experiment=".."), [], "experiment"),
    ("grid-with-optuna", spec_with(views={"strength": {"grid": [0.2, 0.8]}}), [], "views.strength"),
    ("uniform-on-int-knob", spec_with(trainer={"epochs": 2, "batch_size": {"uniform": [16, 64]}}), [],
     "trainer.batch_size"),
    ("dataset-searched", spec_with(dataset={"name": "synthetic", "subset": {"int": [100, 200]}}), [], "dataset.subset"),
    ("domain-in-search-section", spec_with(search={"num_samples": {"int": [1, 4]}}), [], "search.num_samples"),
    ("grace-beyond-epochs", spec_with(search={"scheduler": "asha", "grace_period": 5}), [], "search.grace_period"),
    ("mode-against-metric", spec_with(search={"metric": "val_knn_acc", "mode": "min"}), [], "search.mode"),
    ("test-split-metric", spec_with(search={"metric": "knn_acc"}), [], "val_knn_acc"),
    ("repeats-with-random", spec_with(search={"algorithm": "random", "repeats": 2}), [], "search.repeats"),
    ("analysis-unknown-probe", spec_with(analysis={"probe": "svm"}), [], "analysis.probe"),
    ("analysis-effect-zero", spec_with(analysis={"min_effect": 0}), [], "analysis.min_effect"),
    ("set-analysis-alpha", TINY_SPEC, ["analysis.alpha=0.7"], "analysis.alpha"),
    ("set-missing-key", TINY_SPEC, ["trainer.epochz=1"], "trainer.epochz"),
    ("set-bad-value", TINY_SPEC, ["trainer.epochs=0"], "trainer.epochs"),
    ("set-no-equals", TINY_SPEC, ["trainer.epochs"], "trainer.epochs"),
    ("set-bad-domain", TINY_SPEC, ["trainer.lr={loguniform: [0, 1]}"], "trainer.lr"),
    ("batch-exceeds-data", spec_with(trainer={"epochs": 2, "batch_size": 512}), [], "trainer.batch_size"),
    ("dataset-missing", spec_with(dataset={"name": "cifar10", "root": "/nonexistent/cifar"}), [], "cifar"),
    ("learned-negative-budget", TINY_SPEC, ["views.pairs={kind: learned, budget: {grid: [0.05, -0.1]}}"],
     "views.pairs.budget"),
    ("learned-label-fraction", TINY_SPEC, ["views.pairs={kind: learned, label_fraction: 1.2}"],
     "views.pairs.label_fraction"),
    ("learned-with-moco", TINY_SPEC, ["views.pairs=learned", "method.name=moco"], "method.name"),
]


SUBPROCESS = ("yaml-syntax", "set-no-equals", "dataset-missing")  # the real command's exit 2, end to end


@pytest.mark.parametrize("text,overrides,needle", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_spec_exits_2_naming_the_key(request, tmp_path, search_main, text, overrides, needle):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    args = [a for o in overrides for a in ("--set", o)]
    if request.node.callspec.id in SUBPROCESS:
        proc = run_search(tmp_path, spec, *args, timeout=120)
        code, err = proc.returncode, proc.stderr
        assert "Traceback" not in err
    else:
        code, err = search_main(tmp_path, spec, *args)  # a traceback here would be an exception, failing the test
    assert code == 2, err
    assert needle in err, err
    if needle not in ("YAML syntax", "empty", "top level", "cifar"):
        assert "bad.yaml" in err  # the file is named too
    assert not (tmp_path / "runs").exists()


def test_usage_errors_exit_2(tmp_path, tiny_spec, search_main):
    with pytest.raises(SystemExit) as stop:  # argparse's own exit
        search_main(tmp_path, tiny_spec, "--no-such-flag")
    assert stop.value.code == 2
    missing = run_search(tmp_path, tmp_path / "nope.yaml", timeout=60)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    assert not (tmp_path / "runs").exists()


def test_at_least_fifteen_bad_cases():
    assert len(BAD) >= 15


def test_span_is_the_smallest_and_largest_number_a_knob_can_take():
    from trainers.domains import span

    def slow(value):  # the obvious reference: every number the knob can be
        values = list(next(iter(value.values()))) if isinstance(value, dict) else [value]
        nums = sorted(v for v in values if type(v) in (int, float))
        return (nums[0], nums[-1]) if nums else None

    for value in ({"uniform": [0.1, 0.9]}, {"choice": [3, 1, 2]}, {"grid": [2.0]}, 5, 0.25, "x", True,
                  {"choice": ["a", "b"]}, {"choice": [True, 4]}, {"int": [2, 8]}):
        assert span(value) == slow(value), value
