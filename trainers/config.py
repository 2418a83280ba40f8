"""The validated schema of one training: every knob with its valid range, written once.

``trainers`` reads only these sections (dataset, model, method, views, negatives, trainer,
evaluation, mi); ``search/spec.py`` adds the sections a search has. A spec may put a search
domain at any knob (``trainers/domains.py``); ``trainers/validation.py`` checks every value a
domain can take against the knob's own range here, by substituting it into the config.
Types are strict: ``epochs: true`` or ``lr: "0.1"`` is an error, not 1 or 0.1.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from trainers.errors import KeyedError
from trainers.methods import knobs as method_knobs
from trainers.pairs.family import KIND_KEY, PairFamily
from trainers.pairs.registry import FAMILIES, PairsSpec, default_family

CHANNELS = {
    "fashion_mnist": 1,
    "cifar10": 3,
    "cifar100": 3,
    "stl10": 3,
    "image_folder": 3,
    "synthetic": None,  # set by dataset.channels
    "infomin_toy": 3,
}
VAL_DEFAULT_MAX, VAL_DEFAULT_FRACTION = 5000, 0.1
# Keys that existed once: a spec that still names one gets the replacement in its error.
RENAMED = {
    "evaluation.monitor_test": "renamed to evaluation.monitor_val: the per-epoch kNN scores validation "
    "images, never the test split",
    **{f"views.{old}": f"moved to views.pairs.{new} (views.pairs: {{kind: {kind}, {new}: ...}})"
       for kind, family in FAMILIES.items() for old, new in family.flat_keys.items()},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DatasetConfig(_Section):
    name: Literal["fashion_mnist", "cifar10", "cifar100", "stl10", "image_folder", "synthetic", "infomin_toy"] = (
        "fashion_mnist"
    )
    root: str = "data"
    download: bool = False
    subset: int | None = Field(None, ge=2, description="use only the first N training images (validation included)")
    val_size: int | None = Field(
        None, ge=1, description="validation images carved from the training images with a fixed seed "
        f"(default: 10% of them, at most {VAL_DEFAULT_MAX}); they never train the encoder or the probe",
    )
    val_seed: int = Field(0, ge=0, le=2**31 - 1, description="which training images become validation images")
    test_subset: int | None = Field(None, ge=1, description="use only the first N test images")
    image_size: int | None = Field(None, ge=8, le=512, description="resize to this size; None keeps native")
    channels: int = Field(1, ge=1, le=3, description="synthetic only")
    num_classes: int = Field(10, ge=2, le=1000, description="synthetic only")

    @property
    def num_channels(self) -> int:
        return CHANNELS[self.name] or self.channels

    def val_count(self, n_train: int) -> int:
        """Validation images out of ``n_train`` training images (the default when val_size is unset)."""
        if self.val_size is not None:
            return self.val_size
        return max(1, min(VAL_DEFAULT_MAX, round(VAL_DEFAULT_FRACTION * n_train)))


class ModelConfig(_Section):
    backbone: Literal["convnet", "resnet18_cifar"] = "convnet"
    width: int = Field(16, ge=8, le=512, description="convnet base width (channels 16-32-64: the CPU default)")
    depth: int = Field(3, ge=1, le=5, description="convnet stages, each doubling the channels and halving the size")
    proj_dim: int = Field(128, ge=8, le=4096)
    proj_hidden: int = Field(512, ge=8, le=8192)


# The method section: the registered methods' knob models, told apart by ``method.name``
# (trainers/methods/knobs.py); a section without ``name`` is the default method's.
MethodConfig = Annotated[
    Union[tuple(method_knobs.REGISTRY.values())],  # noqa: UP007 (a Union built from the registry)
    Field(discriminator="name"),
    BeforeValidator(method_knobs.with_default_name),
]


def _knob(default: Any, scale: str, **kw: Any) -> Any:
    """A view-pipeline knob; ``scale`` says how ``views.strength`` acts on it (see ``ViewsConfig``)."""
    return Field(default, json_schema_extra={"scale": scale}, **kw)


class ViewsConfig(_Section):
    """How the two views of an image are made.

    ``pairs`` picks the view family with its knobs, ``{kind: <family>, <knob>: ...}`` (a bare
    family name is ``{kind: <family>}`` with the defaults); each family declares its knobs in its
    module of ``trainers/pairs/`` and ``trainers/pairs/registry.py`` lists them. Unset, it is the
    dataset's default family (``toy`` for ``infomin_toy``, ``augment`` otherwise). The
    augmentation pipeline runs on top of every family, then the Kornia ``stages``.

    The pipeline knobs are the magnitudes at strength 1; ``strength`` scales all of them at once
    (each knob's ``scale``): ``linear`` m -> s*m (magnitudes, probabilities), ``towards_one``
    m -> 1 - s*(1 - m) (crop areas), ``log`` m -> m**s (aspect ratios), ``fixed`` (thresholds).
    s=0 gives identical views, s=1 the InfoMin-Aug-level distortion the knobs describe. ``None``
    colour knobs mean "the dataset's default": SimCLR's values on RGB data, 0 on grayscale data.
    """

    strength: float = Field(1.0, ge=0.0, le=1.0)
    crop_scale_min: float = _knob(0.2, "towards_one", gt=0.0, le=1.0)
    crop_scale_max: float = _knob(1.0, "towards_one", gt=0.0, le=1.0)
    crop_ratio_min: float = _knob(3 / 4, "log", gt=0.0, le=1.0)
    crop_ratio_max: float = _knob(4 / 3, "log", ge=1.0, le=10.0)
    flip_p: float = _knob(0.5, "linear", ge=0.0, le=1.0)
    brightness: float = _knob(0.8, "linear", ge=0.0, le=1.0)
    contrast: float = _knob(0.8, "linear", ge=0.0, le=1.0)
    saturation: float | None = _knob(None, "linear", ge=0.0, le=1.0)
    hue: float | None = _knob(None, "linear", ge=0.0, le=0.5)
    jitter_p: float = _knob(0.8, "linear", ge=0.0, le=1.0)
    grayscale_p: float | None = _knob(None, "linear", ge=0.0, le=1.0)
    blur_p: float = _knob(0.5, "linear", ge=0.0, le=1.0)
    blur_sigma_min: float = _knob(0.1, "linear", gt=0.0, le=10.0)
    blur_sigma_max: float = _knob(2.0, "linear", gt=0.0, le=10.0)
    solarize_p: float = _knob(0.0, "linear", ge=0.0, le=1.0)
    solarize_threshold: float = _knob(0.5, "fixed", ge=0.0, le=1.0)
    rotation_degrees: float = _knob(0.0, "linear", ge=0.0, le=180.0)
    stages: list[dict[str, dict[str, Any] | None]] = Field(
        default_factory=list,
        description="extra kornia.augmentation stages after the built-in ops, each {ClassName: {arg: value}}; "
        "'auto.RandAugment' names kornia.augmentation.auto; any numeric argument may be a search domain",
    )
    pairs: PairsSpec | None = Field(
        None, description="the view family {kind: ..., its knobs}; default: the dataset's (toy for infomin_toy, "
        "augment otherwise)",
    )

    @field_validator("pairs", mode="before")
    @classmethod
    def _family(cls, value: Any) -> Any:
        """A bare name is the family with its defaults; an unknown kind lists the registered ones."""
        if isinstance(value, str):
            value = {"kind": value}
        if value is not None and not isinstance(value, (dict, PairFamily)):
            raise KeyedError("views.pairs", f"must be a family name or {{kind: <family>, <knob>: ...}}, got {value!r}; "
                                            f"registered: {', '.join(FAMILIES)}")
        if isinstance(value, dict):
            kind = value.get("kind")
            if kind not in FAMILIES:
                what = "missing" if "kind" not in value else f"unknown view family {kind!r}"
                raise KeyedError(KIND_KEY, f"{what}; registered: {', '.join(FAMILIES)}")
        return value

    @classmethod
    def pipeline_knobs(cls) -> dict[str, str]:
        """Knob name -> how strength scales it: the augmentation pipeline's knobs, in one place."""
        return {
            name: field.json_schema_extra["scale"]
            for name, field in cls.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and "scale" in field.json_schema_extra
        }

    @model_validator(mode="after")
    def _ranges(self) -> ViewsConfig:
        for lo, hi in (("crop_scale_min", "crop_scale_max"), ("blur_sigma_min", "blur_sigma_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise KeyedError(f"views.{lo}", f"must be <= {hi}, got {getattr(self, lo)} > {getattr(self, hi)}")
        return self

    @field_validator("stages")
    @classmethod
    def _stages(cls, stages: list) -> list:
        if stages:  # names and arguments, once per distinct entry; the trial builds and probes the modules
            from trainers.stages import StageError, validate_stages

            try:
                validate_stages(stages)
            except StageError as err:
                raise KeyedError(f"views.stages.{err.path}", err.reason) from None
        return stages

    def resolved(self, channels: int) -> ViewsConfig:
        """Fill the dataset-dependent colour defaults."""
        rgb = channels == 3
        return self.model_copy(
            update={
                "saturation": self.saturation if self.saturation is not None else (0.8 if rgb else 0.0),
                "hue": self.hue if self.hue is not None else (0.2 if rgb else 0.0),
                "grayscale_p": self.grayscale_p if self.grayscale_p is not None else (0.2 if rgb else 0.0),
            }
        )

    def family(self, dataset: str) -> PairFamily:
        """The view family in force (``pairs`` or the dataset's default), with its knobs."""
        return self.pairs if self.pairs is not None else default_family(dataset)

    def source(self, dataset: str) -> str:
        """The name of the view family in force."""
        return self.family(dataset).kind


class NegativesConfig(_Section):
    """The ring: candidates ranked by similarity (most similar first), keep ranks in [lower, upper)."""

    lower: float = Field(0.0, ge=0.0, lt=1.0)
    upper: float = Field(1.0, gt=0.0, le=1.0)
    anneal: Literal["none", "linear", "step", "exponential"] = "none"
    anneal_start: float = Field(1.0, gt=0.0, le=1.0, description="upper bound at step 0 when annealing")
    anneal_epochs: int | None = Field(None, ge=1, description="anneal over this many epochs (default: all)")

    @model_validator(mode="after")
    def _band(self) -> NegativesConfig:
        if self.lower >= self.upper:
            raise KeyedError("negatives.lower", f"must be < negatives.upper, got {self.lower} >= {self.upper}")
        if self.anneal != "none" and self.anneal_start < self.upper:
            raise KeyedError(
                "negatives.anneal_start", f"must be >= negatives.upper, got {self.anneal_start} < {self.upper}"
            )
        return self

    @property
    def uniform(self) -> bool:
        return self.lower == 0.0 and self.upper == 1.0 and self.anneal == "none"


class TrainerConfig(_Section):
    epochs: int = Field(4, ge=1, le=10_000)
    batch_size: int = Field(256, ge=2, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = Field(1e-6, ge=0.0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: linear warm-up, then cosine decay to 0 over the configured epochs"
    )
    warmup_epochs: float = Field(0.0, ge=0.0, le=1000.0, description="linear warm-up length (cosine only)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = Field(
        True, description="NHWC activations: oneDNN's fast layout on the CPU, the tensor cores' on CUDA"
    )
    compile: bool = False
    compile_views: bool = Field(False, description="torch.compile the pair source (CUDA graphs on CUDA)")
    max_steps: int | None = Field(None, ge=1, description="stop each epoch after this many steps (dry runs)")
    threads: int | None = Field(None, ge=1, le=256, description="torch CPU threads; None = torch's default")


class EvaluationConfig(_Section):
    knn_k: int = Field(200, ge=1, le=10_000)
    knn_t: float = Field(0.07, gt=0.0, le=10.0)
    linear_epochs: int = Field(30, ge=1, le=1000)
    linear_lr: float = Field(1e-2, gt=0.0, le=10.0)
    probe_seed: int = Field(0, ge=0, le=2**31 - 1, description="the linear probe's own seed: one fixed protocol")
    knn_every_epoch: bool = True
    monitor_train: int = Field(10_000, ge=1, description="training images used as the per-epoch kNN bank")
    monitor_val: int = Field(2_000, ge=1, description="validation images scored by the per-epoch kNN")


class MIConfig(_Section):
    """The view-MI protocol: everything that decides an estimate besides the data.

    Keep it fixed within a study, or MI values do not compare (``analysis/mi.py``).
    """

    enabled: bool = True
    estimator: Literal["infonce", "nwj", "smile"] = "infonce"
    steps: int = Field(300, ge=1, le=100_000, description="critic training steps")
    batch_size: int = Field(256, ge=8, le=65_536, description="K, candidates per batch: InfoNCE's cap is log K")
    pairs: int = Field(16384, ge=16, le=1_000_000, description="critic training pairs (held-out: eval_pairs more)")
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    hidden: int = Field(128, ge=8, le=4096, description="critic width; its conv widths are hidden/4, /2, /1")
    embed: int = Field(64, ge=2, le=4096, description="critic embedding size")
    smile_clip: float = Field(5.0, gt=0.0, le=100.0, description="SMILE's clipping threshold tau")
    # The task information I(v; y) of one view (analysis/taskinfo.py): a classifier of the same
    # convnet as the critic, trained on single views of the training images, scored on views of
    # the validation images. Measured with the view MI, once per view configuration.
    label_info: bool = Field(True, description="also measure the task information I(v; y) >= H(y) - CE")
    label_steps: int = Field(300, ge=1, le=100_000, description="task-information classifier steps, one view per image")
    label_batch_size: int = Field(256, ge=8, le=65_536, description="task-information classifier batch")
    label_lr: float = Field(2e-3, gt=0.0, le=1.0, description="task-information classifier learning rate (Adam)")

    @model_validator(mode="after")
    def _sizes(self) -> MIConfig:
        if self.pairs < self.batch_size:
            raise KeyedError("mi.pairs", f"must be >= mi.batch_size ({self.batch_size}), got {self.pairs}")
        return self

    @property
    def eval_pairs(self) -> int:
        """Held-out pairs: pairs//4 rounded down to whole batches, at least one batch."""
        return max(1, (self.pairs // 4) // self.batch_size) * self.batch_size


class TrainConfig(_Section):
    """One training. Unknown keys are errors at every depth."""

    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = method_knobs.REGISTRY[method_knobs.DEFAULT]()
    views: ViewsConfig = ViewsConfig()
    negatives: NegativesConfig = NegativesConfig()
    trainer: TrainerConfig = TrainerConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    mi: MIConfig = MIConfig()

    @model_validator(mode="after")
    def _cross(self) -> TrainConfig:
        channels, name = self.dataset.num_channels, self.dataset.name
        if channels != 3:
            for knob in ("saturation", "hue", "grayscale_p"):
                value = getattr(self.views, knob)
                if value not in (None, 0.0):
                    raise KeyedError(
                        f"views.{knob}",
                        f"needs 3 colour channels, but dataset '{name}' has {channels}; remove it or set it to 0",
                    )
        family = self.views.family(name)
        family.check_data(name, channels)
        family.check_method(self.method.name)
        return self


TRAIN_SECTIONS = tuple(TrainConfig.model_fields)


def training_sections(raw: dict) -> dict:
    """Only the sections ``trainers`` reads (a search spec carries more)."""
    return {k: v for k, v in raw.items() if k in TRAIN_SECTIONS}
