"""The training schema: ranges, domains validated against the knob's own range, overrides."""

import pytest

from trainers.config import (
    SpecError,
    TrainConfig,
    apply_overrides,
    domain_default,
    flatten,
    resolve,
    validate_train,
)


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
    raw = apply_overrides({}, ["trainer.epochs=3", "views.strength={uniform: [0.1, 0.2]}"])
    assert raw == {"trainer": {"epochs": 3}, "views": {"strength": {"uniform": [0.1, 0.2]}}}
    with pytest.raises(SpecError) as err:
        apply_overrides({}, ["trainer.epoch=3"])
    assert err.value.key == "trainer.epoch"


def test_flatten_uses_dotted_names():
    flat = flatten(validate_train({}))
    assert flat["views.strength"] == 1.0 and flat["negatives.lower"] == 0.0 and flat["method.name"] == "simclr"
