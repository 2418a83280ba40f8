"""Extra kornia view stages from the spec: names, arguments, YAML shape, and what they do to a batch."""

from __future__ import annotations

import re
from pathlib import Path

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
    validate_stages,
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
    ("ColorJitter", {"brightness": [0.1, 0.2, 0.3]}, "ColorJitter.brightness", "length 2"),  # kornia's checks
    ("RandomErasing", {"scale": 0.5}, "RandomErasing.scale", "length 2"),
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


ARGUMENTS = [
    # name, kwargs, what check_kwargs returns (value and type): YAML values made to fit the annotation
    ("ColorJitter", {"brightness": 1}, {"brightness": 1.0}),  # Union[Tensor, float, ...]: the float arm
    ("ColorJitter", {"hue": [-0.1, 0.1]}, {"hue": (-0.1, 0.1)}),  # ... a list of 2: the tuple arm
    ("RandomAffine", {"degrees": 10, "translate": 0.1}, {"degrees": 10.0, "translate": 0.1}),  # a number for a
    ("RandomAffine", {"degrees": 10, "resample": "nearest"}, {"degrees": 10.0, "resample": "nearest"}),  # range
    ("RandomFisheye", {"center_x": [-0.1, 0.1], "center_y": [0, 0.1], "gamma": [1, 2]},  # Tensor
     {"center_x": torch.tensor([-0.1, 0.1]), "center_y": torch.tensor([0, 0.1]), "gamma": torch.tensor([1.0, 2.0])}),
    ("auto.RandAugment", {"n": 1, "m": 5, "policy": [[["rotate", -30, 30]]]},
     {"n": 1, "m": 5, "policy": [[("rotate", -30.0, 30.0)]]}),
]


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple, dict)):
        items = (lambda d: list(d.items()) if isinstance(d, dict) else list(d))
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(items(a), items(b)))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name, kwargs, expected", ARGUMENTS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(ARGUMENTS)])
def test_arguments_are_validated_into_what_the_constructor_takes(name, kwargs, expected):
    got = check_kwargs(resolve_stage_class(name), kwargs, name=name)
    assert _same(got, expected), got
    build_stage(name, kwargs)  # and kornia takes them


@pytest.mark.parametrize("kwargs, key, fragment", [
    ({"degrees": 10, "resample": True}, "resample", "expected str or int or Resample"),
    ({"center_x": [0.1, "a"], "center_y": 0.1, "gamma": 1.0}, "center_x", "expected tensor"),
])
def test_lenient_arms_still_refuse(kwargs, key, fragment):
    name = "RandomAffine" if "resample" in kwargs else "RandomFisheye"
    with pytest.raises(StageError) as err:
        check_kwargs(resolve_stage_class(name), kwargs)
    assert err.value.key == f"{name}.{key}" and fragment in err.value.reason


def test_spec_time_check_remembers_entries_and_builds_nothing(monkeypatch):
    from trainers.stages import arguments, entries

    checked, built = [], []
    real_check = entries.check_kwargs
    monkeypatch.setattr(entries, "check_kwargs", lambda *a, **k: checked.append(a[1]) or real_check(*a, **k))
    monkeypatch.setattr(arguments, "construct", lambda *a: built.append(a) or pytest.fail("built at spec time"))
    raw = [{"RandomErasing": {"p": 0.123457}}, {"RandomSharpness": {"sharpness": 0.31, "p": 0.5}}]
    for _ in range(5):
        assert validate_stages(raw) == [("RandomErasing", {"p": 0.123457}), ("RandomSharpness", {"sharpness": 0.31, "p": 0.5})]
    assert checked == [{"p": 0.123457}, {"sharpness": 0.31, "p": 0.5}] and built == []
    validate_stages([{"RandomErasing": {"p": 1}}])
    with pytest.raises(StageError) as err:  # True == 1 in Python, but not for the remembered checks
        validate_stages([{"RandomErasing": {"p": 0.5}}, {"RandomErasing": {"p": True}}])
    assert err.value.path == "1.RandomErasing.p" and "expected float" in err.value.reason
    with pytest.raises(StageError) as again:  # a remembered error is raised again, at its new index
        validate_stages([{"RandomErasing": {"p": True}}])
    assert again.value.path == "0.RandomErasing.p" and again.value.reason == err.value.reason


def test_a_trial_builds_each_stage_once(monkeypatch):
    from trainers.pairs import build_augmentation
    from trainers.stages import arguments
    from trainers.validation import validate_train

    built = []
    real = arguments.construct
    monkeypatch.setattr(arguments, "construct", lambda cls, kw, name: built.append(name) or real(cls, kw, name))
    raw = {"views": {"stages": [{"RandomErasing": {"p": {"uniform": [0.2, 0.8]}}}, {"auto.RandAugment": {"n": 1, "m": 9}}]}}
    cfg = validate_train(raw)  # the default point and both bounds of the domain: validated, not built
    assert built == []
    aug = build_augmentation(cfg, batch(4, 3, 16))
    assert built == ["RandomErasing", "auto.RandAugment"] and aug.stages.names == built


def test_only_kornias_public_api_is_imported():
    """No ``kornia...._private`` module or ``_Private`` name: they change without notice between releases."""
    import trainers.stages

    for path in Path(trainers.stages.__file__).parent.glob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from|import) kornia", line):
                assert not re.search(r"(\._|import _|, _)", line), f"{path.name}: {line.strip()}"
