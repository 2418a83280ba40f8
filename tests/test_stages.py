"""Extra kornia view stages from the spec: names, arguments, YAML shape, and what they do to a batch."""

from __future__ import annotations

import pytest
import torch

from trainers.stages import (
    StageError,
    Stages,
    accepted_stage_names,
    build_stage,
    check_kwargs,
    check_on,
    resolve_stage_class,
    stage_entries,
)

# The stages of the example spec.
EXAMPLE = [
    ("RandomErasing", {"p": 0.5, "scale": [0.02, 0.2]}),
    ("RandomSharpness", {"sharpness": 0.5, "p": 0.5}),
    ("RandomPerspective", {"distortion_scale": 0.3, "p": 0.5}),
    ("auto.RandAugment", {"n": 2, "m": 10}),
]


def batch(b: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed))


def changed_per_sample(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).amax(1) > 1e-6


# --------------------------------------------------------------------------------------------------
# What stages do to a batch


def test_erasing_changes_pixels_keeps_shape_and_range():
    torch.manual_seed(0)
    x = batch(8, 3, 32)
    y = Stages([("RandomErasing", {"p": 1.0, "scale": [0.02, 0.2]})])(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert changed_per_sample(x, y).all()  # p = 1: every sample erased somewhere
    assert (y != x).float().mean() < 0.5  # ... but only a patch of it


@pytest.mark.parametrize("name, kwargs", EXAMPLE, ids=[n for n, _ in EXAMPLE])
def test_example_stage_runs_on_3_channels(name, kwargs):
    torch.manual_seed(1)
    x = batch(6, 3, 32)
    stages = Stages([(name, {**kwargs, "p": 1.0} if "p" in kwargs else kwargs)])
    stages.probe(3, 32)
    y = stages(x)
    assert y.shape == x.shape
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert changed_per_sample(x, y).any()


def test_example_spec_runs_as_one_pipeline():
    torch.manual_seed(2)
    stages = check_on(EXAMPLE, channels=3, size=32)
    x = batch(8, 3, 32)
    y = stages(x)
    assert y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0
    assert stages.names == [n for n, _ in EXAMPLE] and len(stages) == 4


# Findings on 1-channel 28 px batches (kornia 0.9.0). RandAugment's default policy has a "color"
# sub-policy (RandomSaturation) that needs 3 channels: it fails only on the calls that draw it, so
# the probe runs every sub-policy. A policy without colour ops works on 1 channel.
ONE_CHANNEL = [
    ("RandomErasing", {"p": 1.0}, True),
    ("RandomSharpness", {"sharpness": 0.5, "p": 1.0}, True),
    ("RandomPerspective", {"distortion_scale": 0.3, "p": 1.0}, True),
    ("auto.RandAugment", {"n": 2, "m": 10}, False),
    ("auto.RandAugment", {"n": 1, "m": 10, "policy": [[["rotate", -30.0, 30.0]], [["auto_contrast", 0, 1]]]}, True),
    ("auto.TrivialAugment", {}, True),
    ("RandomHue", {"hue": 0.1, "p": 0.1}, False),  # colour op; probed with p forced to 1
    ("ColorJitter", {"brightness": 0.4, "hue": 0.1}, False),
]


@pytest.mark.parametrize(
    "name, kwargs, works", ONE_CHANNEL, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(ONE_CHANNEL)]
)
def test_one_channel_28px(name, kwargs, works):
    torch.manual_seed(3)
    stages = Stages([(name, kwargs)])
    if works:
        stages.probe(1, 28)
        y = stages(batch(4, 1, 28))
        assert y.shape == (4, 1, 28, 28) and 0.0 <= y.min() and y.max() <= 1.0
    else:
        with pytest.raises(StageError) as err:
            check_on([("RandomErasing", {}), (name, kwargs)], channels=1, size=28)
        assert (err.value.key, err.value.index) == (name, 1)
        assert "1-channel" in err.value.reason
        Stages([(name, kwargs)]).probe(3, 28)  # the same stage is fine on 3 channels


def test_probe_refuses_shape_change_and_keeps_rng():
    torch.manual_seed(4)
    before = torch.get_rng_state()
    with pytest.raises(StageError, match="batch shape|must keep") as err:
        Stages([("RandomHorizontalFlip", {}), ("CenterCrop", {"size": 16})]).probe(3, 32)
    assert (err.value.key, err.value.index, err.value.path) == ("CenterCrop", 1, "1.CenterCrop")
    Stages([("RandomCrop", {"size": [32, 32], "padding": 4})]).probe(3, 32)  # shape-keeping crop is fine
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", ["RandomErasing", "RandomSharpness"])
def test_per_sample_randomness(name):
    torch.manual_seed(5)
    x = batch(64, 3, 16)
    y = Stages([(name, {"p": 0.5})])(x)
    changed = changed_per_sample(x, y)
    assert 5 < int(changed.sum()) < 59  # ~32 of 64: some samples changed, some not


def test_stages_are_an_nn_module_and_empty_is_identity():
    x = batch(2, 3, 8)
    assert Stages([])(x) is x and not Stages([])
    stages = Stages.from_yaml([{"RandomErasing": None}, {"RandomInvert": {"p": 1.0}}])
    assert isinstance(stages, torch.nn.Module) and stages.names == ["RandomErasing", "RandomInvert"]
    with pytest.raises(ValueError, match="B, C, H, W"):
        stages(x[0])


# --------------------------------------------------------------------------------------------------
# Names, arguments and YAML shape


def test_resolve_accepts_augmentations_and_policies():
    import kornia.augmentation as K

    assert resolve_stage_class("RandomErasing") is K.RandomErasing
    assert resolve_stage_class("auto.RandAugment") is K.auto.RandAugment
    names = accepted_stage_names()
    for n in ("RandomSharpness", "RandomPerspective", "auto.AutoAugment", "auto.TrivialAugment"):
        assert n in names
    for n in ("AugmentationSequential", "RandomMixUpV2", "RandomAffine3D", "Normalize", "auto.PolicySequential"):
        assert n not in names
    assert all(issubclass(resolve_stage_class(n), torch.nn.Module) for n in names)


BAD_NAMES = [
    # name, reason fragment
    ("RandomErasin", "did you mean RandomErasing"),
    ("RandAugment", "auto.RandAugment"),
    ("AugmentationSequential", "container"),
    ("ImageSequential", "container"),
    ("VideoSequential", "container"),
    ("PatchSequential", "container"),
    ("ManyToManyAugmentationDispather", "container"),
    ("auto.PolicySequential", "container"),
    ("RandomMixUpV2", "mix augmentation"),
    ("RandomCutMixV2", "mix augmentation"),
    ("RandomMosaic", "mix augmentation"),
    ("RandomAffine3D", "3D"),
    ("AugmentationBase2D", "abstract"),
    ("Normalize", "not an augmentation"),
    ("RandomDissolving", "Stable Diffusion"),
    ("container", "not a class"),
    ("os.system", "import paths are not accepted"),
    ("torch.nn.Linear", "import paths are not accepted"),
    ("kornia.augmentation.RandomErasing", "import paths are not accepted"),
    ("__class__", "not a stage name"),
]


@pytest.mark.parametrize("name, fragment", BAD_NAMES, ids=[n for n, _ in BAD_NAMES])
def test_bad_stage_names(name, fragment):
    with pytest.raises(StageError) as err:
        build_stage(name, {})
    assert err.value.key == name and fragment in err.value.reason
    assert str(err.value).startswith(f"{name}: ")


BAD_KWARGS = [
    # name, kwargs, key, reason fragment
    ("RandomErasing", {"scal": [0.1, 0.2]}, "RandomErasing.scal", "did you mean scale"),
    ("RandomErasing", {"p": 2.0}, "RandomErasing.p", "[0, 1]"),
    ("RandomErasing", {"p": "high"}, "RandomErasing.p", "expected float"),
    ("RandomErasing", {"p": True}, "RandomErasing.p", "expected float"),
    ("RandomErasing", {"scale": "big"}, "RandomErasing.scale", "expected"),
    ("RandomErasing", {"p": 1.0, "scale": [0.5, 0.1]}, "RandomErasing.scale", "smaller"),  # kornia's own check
    ("RandomErasing", {"p": 1.0, "value": 3.0}, "RandomErasing.value", "between 0 - 1"),
    ("RandomPerspective", {"distortion_scale": 1.5}, "RandomPerspective.distortion_scale", "[0, 1]"),
    ("auto.RandAugment", {"n": 2, "m": 40}, "auto.RandAugment.m", "(0, 30)"),
    ("auto.RandAugment", {"n": 2.5, "m": 10}, "auto.RandAugment.n", "expected int"),
    ("auto.RandAugment", {"m": 10}, "auto.RandAugment.n", "missing required"),
    ("auto.AutoAugment", {"policy": "foo"}, "auto.AutoAugment.policy", "foo"),
]


@pytest.mark.parametrize("name, kwargs, key, fragment", BAD_KWARGS, ids=[k for _, _, k, _ in BAD_KWARGS])
def test_bad_arguments(name, kwargs, key, fragment):
    with pytest.raises(StageError) as err:
        build_stage(name, kwargs)
    assert err.value.key == key and fragment in err.value.reason


def test_unknown_argument_lists_the_accepted_ones():
    import kornia.augmentation as K

    with pytest.raises(StageError) as err:
        check_kwargs(K.RandomErasing, {"scal": [0.1, 0.2]})
    assert err.value.key == "RandomErasing.scal"
    assert "accepts: scale, ratio, value" in err.value.reason


def test_yaml_lists_become_tuples():
    m = build_stage("RandomErasing", {"p": 0.5, "scale": [0.02, 0.2]})
    assert m.scale == (0.02, 0.2) and isinstance(m.scale, tuple)


GOOD_ENTRIES = [
    (
        [{"RandomErasing": {"p": 0.5}}, {"auto.RandAugment": {"n": 2, "m": 10}}],
        [("RandomErasing", {"p": 0.5}), ("auto.RandAugment", {"n": 2, "m": 10})],
    ),
    ([{"RandomInvert": None}, {"RandomSharpness": {}}], [("RandomInvert", {}), ("RandomSharpness", {})]),
    (None, []),
    ([], []),
]


@pytest.mark.parametrize("raw, expected", GOOD_ENTRIES)
def test_stage_entries_good(raw, expected):
    assert stage_entries(raw) == expected


BAD_ENTRIES = [
    # raw, key
    (["RandomErasing"], "0"),  # a string, not a mapping
    ([{"RandomErasing": {}}, {"RandomErasing": {}, "RandomSharpness": {}}], "1"),  # two keys
    ([{}], "0"),
    ([["RandomErasing", {}]], "0"),
    ([{"RandomErasing": {}}, {"RandomErasing": [0.5]}], "1.RandomErasing"),  # kwargs not a mapping
    ([{"RandomErasing": {1: 2}}], "0.RandomErasing"),
    ({"RandomErasing": {}}, ""),  # not a list
]


@pytest.mark.parametrize("raw, key", BAD_ENTRIES)
def test_stage_entries_bad(raw, key):
    with pytest.raises(StageError) as err:
        stage_entries(raw)
    assert err.value.key == key
    if key.isdigit():
        assert "each stage is one mapping {ClassName: {arg: value}}" in err.value.reason


def test_build_errors_in_stages_carry_the_index():
    with pytest.raises(StageError) as err:
        Stages([("RandomErasing", {}), ("RandomErasing", {"scal": 0.1})])
    assert (err.value.key, err.value.index, err.value.path) == ("RandomErasing.scal", 1, "1.RandomErasing.scal")
    assert isinstance(err.value, ValueError)
