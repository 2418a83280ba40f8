"""The training schema: ranges, domains validated against the knob's own range, overrides."""

import pytest

from trainers.config import TrainConfig
from trainers.domains import domain_default, flatten, resolve
from trainers.errors import SpecError
from trainers.specfile import apply_overrides
from trainers.validation import validate_train


def error_of(raw):
    with pytest.raises(SpecError) as err:
        validate_train(raw)
    return err.value


def test_defaults_validate():
    cfg = validate_train({})
    assert isinstance(cfg, TrainConfig) and cfg.negatives.uniform


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"views": {"hue": 0.1}}, "views.hue"),
        ({"views": {"saturation": 0.5}}, "views.saturation"),
        ({"negatives": {"lower": 0.3, "upper": 0.2}}, "negatives.lower"),
        ({"views": {"strength": 1.5}}, "views.strength"),
        ({"views": {"nope": 1}}, "views.nope"),
        ({"method": {"name": "byol"}}, "method.name"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name"),
        ({"views": {"strength": {"uniform": [0.0, 2.0]}}}, "views.strength"),
        ({"views": {"strength": {"uniform": [0.8, 0.2]}}}, "views.strength"),
        ({"trainer": {"lr": {"loguniform": [0.0, 1.0]}}}, "trainer.lr"),
        ({"method": {"name": {"choice": ["simclr", "swav"]}}}, "method.name"),
        ({"negatives": {"lower": {"uniform": [0.0, 0.5]}, "upper": {"uniform": [0.3, 1.0]}}}, "negatives.upper"),
        ({"views": {"crop_scale_min": 0.9, "crop_scale_max": 0.5}}, "views.crop_scale_min"),
        ({"trainer": {"epochs": True}}, "trainer.epochs"),  # strict types: not 1
        ({"trainer": {"lr": "0.1"}}, "trainer.lr"),
        ({"evaluation": {"monitor_test": 5}}, "evaluation.monitor_test"),
        ({"mi": {"pairs": 64}}, "mi.pairs"),  # fewer than one batch of 256
        ({"views": {"pairs": "channels"}}, "views.pairs.kind"),  # grayscale data
        ({"views": {"pairs": "toy"}}, "views.pairs.kind"),
        ({"views": {"pairs": "rings"}}, "views.pairs.kind"),  # not a registered family
        ({"views": {"pairs": {"distance": 0.5}}}, "views.pairs.kind"),
        ({"views": {"pairs": 3}}, "views.pairs"),
        ({"views": {"pairs": {"kind": "patches", "gap": 0.5}}}, "views.pairs.gap"),  # another family's knob
        ({"views": {"pairs": {"kind": "patches", "distance": 1.5}}}, "views.pairs.distance"),
        ({"views": {"pairs": {"kind": "patches", "distance": {"uniform": [0.0, 1.5]}}}}, "views.pairs.distance"),
        ({"views": {"patch_distance": 0.5}}, "views.patch_distance"),  # an old flat key
        ({"views": {"stages": ["RandomErasing"]}}, "views.stages.0"),
        ({"views": {"stages": [{"RandomErasing": {"p": 2.0}}]}}, "views.stages.0.RandomErasing.p"),
    ],
)
def test_bad_values_name_their_key(raw, key):
    assert error_of(raw).key == key


def test_hue_allowed_on_rgb_data():
    cfg = validate_train({"dataset": {"name": "cifar10"}, "views": {"hue": 0.1}})
    assert cfg.views.hue == 0.1


def test_domain_defaults_and_resolution():
    assert domain_default({"uniform": [0.0, 1.0]}) == 0.5
    assert domain_default({"loguniform": [1e-4, 1e-2]}) == pytest.approx(1e-3)
    assert domain_default({"int": [1, 4]}) == 2
    assert domain_default({"choice": ["moco", "ir"]}) == "moco"
    raw = {"views": {"strength": {"uniform": [0.0, 1.0]}}, "negatives": {"upper": {"grid": [1.0, 0.1]}}}
    assert validate_train(raw).views.strength == 0.5
    assert resolve(raw, {"views.strength": 0.9})["views"]["strength"] == 0.9
    assert resolve(raw)["negatives"]["upper"] == 1.0


def test_overrides_validate_keys_and_parse_yaml():
    raw = apply_overrides({}, ["trainer.epochs=3", "views.strength={uniform: [0.1, 0.2]}"], TrainConfig)
    assert raw == {"trainer": {"epochs": 3}, "views": {"strength": {"uniform": [0.1, 0.2]}}}
    with pytest.raises(SpecError) as err:
        apply_overrides({}, ["trainer.epoch=3"], TrainConfig)
    assert err.value.key == "trainer.epoch"


def test_flatten_uses_dotted_names():
    flat = flatten(validate_train({}))
    assert flat["views.strength"] == 1.0 and flat["negatives.lower"] == 0.0 and flat["method.name"] == "simclr"


def test_renamed_keys_say_what_to_write_instead():
    err = error_of({"evaluation": {"monitor_test": 5}})
    assert "monitor_val" in err.reason


@pytest.mark.parametrize("old,new,kind", [
    ("patch_size", "size", "patches"), ("patch_distance", "distance", "patches"),
    ("color_space", "color_space", "channels"), ("frequency_cutoff", "cutoff", "frequency"),
    ("frequency_gap", "gap", "frequency"), ("shared", "shared", "toy"),
])
def test_old_flat_family_keys_name_their_new_key(old, new, kind):
    err = error_of({"views": {old: {"grid": [0.5]}}})
    assert err.key == f"views.{old}" and f"views.pairs.{new}" in err.reason and f"kind: {kind}" in err.reason


def test_a_family_is_a_name_or_a_mapping_with_its_knobs():
    from trainers.pairs.registry import FAMILIES

    assert validate_train({"views": {"pairs": "patches"}}).views.pairs == FAMILIES["patches"]()
    cfg = validate_train({"views": {"pairs": {"kind": "frequency", "cutoff": 0.3, "gap": {"uniform": [0.0, 0.8]}}}})
    assert (cfg.views.pairs.kind, cfg.views.pairs.cutoff, cfg.views.pairs.gap) == ("frequency", 0.3, 0.4)
    assert validate_train({}).views.source("fashion_mnist") == "augment"
    assert validate_train({"dataset": {"name": "infomin_toy"}}).views.source("infomin_toy") == "toy"
    err = error_of({"views": {"pairs": "rings"}})
    assert all(name in err.reason for name in FAMILIES)  # the registered kinds are listed
    assert "size, distance" in error_of({"views": {"pairs": {"kind": "patches", "gap": 0.1}}}).reason
    flat = flatten(validate_train({"views": {"pairs": {"kind": "patches", "distance": 0.25}}}))
    assert flat["views.pairs.kind"] == "patches" and flat["views.pairs.distance"] == 0.25  # MLflow params


def test_set_reaches_a_familys_knobs():
    raw = {"views": {"pairs": {"kind": "patches"}}}
    out = apply_overrides(raw, ["views.pairs.distance={uniform: [0.0, 1.0]}"], TrainConfig)
    assert out["views"]["pairs"] == {"kind": "patches", "distance": {"uniform": [0.0, 1.0]}}
    assert validate_train(out).views.pairs.distance == 0.5
    with pytest.raises(SpecError) as err:
        apply_overrides(raw, ["views.pairs.nope=1"], TrainConfig)
    assert err.value.key == "views.pairs.nope"


def test_domains_reach_into_the_stage_list():
    raw = {"views": {"stages": [{"RandomSharpness": {"sharpness": {"uniform": [0.1, 0.9]}, "p": 1.0}}]}}
    assert validate_train(raw).views.stages[0]["RandomSharpness"]["sharpness"] == pytest.approx(0.5)
    assert set(flatten(raw)) == {"views.stages.0.RandomSharpness.sharpness", "views.stages.0.RandomSharpness.p"}


def test_strength_scaling_is_declared_once_per_knob():
    from trainers.config import ViewsConfig

    knobs = ViewsConfig.pipeline_knobs()
    assert knobs["crop_scale_min"] == "towards_one" and knobs["crop_ratio_max"] == "log"
    assert knobs["solarize_threshold"] == "fixed" and knobs["blur_p"] == "linear"
    assert "strength" not in knobs and "pairs" not in knobs and len(knobs) == 17


# ----------------------------------------------------------------------------- the method section


def test_a_knob_of_another_method_names_its_key_and_its_method():
    err = error_of({"method": {"queue_size": 1024}})  # no name: simclr
    assert err.key == "method.queue_size" and "only applies to method.name: moco (this spec uses simclr)" in err.reason
    err = error_of({"method": {"name": "moco", "num_negatives": 8}})
    assert err.key == "method.num_negatives" and "method.name: ir" in err.reason
    assert error_of({"method": {"name": "ir", "nope": 1}}).reason == "unknown key"


def test_an_unknown_method_lists_the_registered_ones():
    from trainers.methods.knobs import REGISTRY

    err = error_of({"method": {"name": "byol"}})
    assert err.key == "method.name" and "'byol'" in err.reason
    assert all(f"'{name}'" in err.reason for name in REGISTRY)


def test_errors_inside_a_method_name_the_spec_key_not_the_union_tag():
    assert error_of({"method": {"name": "moco", "queue_size": 1}}).key == "method.queue_size"
    err = error_of({"method": {"name": "moco", "momentum": {"uniform": [0.5, 1.5]}}})
    assert err.key == "method.momentum" and "1.5" in err.reason
    assert error_of({"method": {"temperature": {"loguniform": [0.01, 20.0]}}}).key == "method.temperature"
    cfg = validate_train({"method": {"name": "moco", "temperature": {"loguniform": [0.01, 1.0]}, "momentum": 0.9}})
    assert cfg.method.name == "moco" and cfg.method.temperature == pytest.approx(0.1) and cfg.method.momentum == 0.9


def test_a_trial_logs_only_the_knobs_of_its_method():
    assert {k for k in flatten(validate_train({})) if k.startswith("method.")} == {"method.name", "method.temperature"}
    moco = {k for k in flatten(validate_train({"method": {"name": "moco"}})) if k.startswith("method.")}
    assert moco == {"method.name", "method.temperature", "method.queue_size", "method.momentum", "method.bn_groups",
                    "method.symmetric"}


def test_a_searched_method_name_keeps_each_methods_knobs_for_its_own_points():
    from trainers.validation import point_config

    raw = {"method": {"name": {"grid": ["simclr", "moco", "ir"]}, "temperature": 0.3, "queue_size": 1024,
                      "num_negatives": 64}}
    assert validate_train(raw).method.name == "simclr"
    flat = {name: flatten(point_config(raw, {"method.name": name})) for name in ("simclr", "moco", "ir")}
    assert "method.queue_size" not in flat["simclr"] and "method.num_negatives" not in flat["simclr"]
    assert flat["moco"]["method.queue_size"] == 1024 and "method.num_negatives" not in flat["moco"]
    assert flat["ir"]["method.num_negatives"] == 64 and flat["ir"]["method.temperature"] == 0.3
    # a knob of no searched method, and a bad domain value of one, still fail by key
    err = error_of({"method": {"name": {"grid": ["simclr", "moco"]}, "num_negatives": 64}})
    assert err.key == "method.num_negatives" and "method.name: ir" in err.reason
    err = error_of({"method": {"name": {"grid": ["simclr", "moco"]}, "queue_size": {"grid": [1024, 3]}}})
    assert err.key == "method.queue_size" and "3" in err.reason
    err = error_of({"method": {"name": {"grid": ["simclr", "moco"]}, "queue_size": {"uniform": [100, 1000]}}})
    assert err.key == "method.queue_size" and "with method.name: moco" in err.reason  # an int knob, 550.0


def test_overrides_reach_every_methods_knobs():
    raw = apply_overrides({}, ["method.name=moco", "method.queue_size=256"], TrainConfig)
    assert validate_train(raw).method.queue_size == 256
    with pytest.raises(SpecError) as err:
        apply_overrides({}, ["method.queue_sise=3"], TrainConfig)
    assert err.value.key == "method.queue_sise"
