"""The validated schema of one training, and the search-domain syntax.

Every knob has its valid range here, once. A spec may put a search domain
(``{uniform: [a, b]}``, ``{loguniform: [a, b]}``, ``{int: [a, b]}``,
``{choice: [...]}``, ``{grid: [...]}``) at any knob; the domain's values are
validated against the knob's own range by substituting them into the config
and validating that, so there is only one source of truth for ranges.

``trainers`` reads only these sections; ``search/spec.py`` adds the rest.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CHANNELS = {
    "fashion_mnist": 1,
    "cifar10": 3,
    "cifar100": 3,
    "stl10": 3,
    "image_folder": 3,
    "synthetic": None,  # set by dataset.channels
    "infomin_toy": 3,
}
DOMAIN_KINDS = ("uniform", "loguniform", "int", "choice", "grid")


class SpecError(Exception):
    """A spec or override is invalid. Carries the dotted key so the message names it."""

    def __init__(self, key: str, reason: str, file: str | None = None):
        self.key, self.reason, self.file = key, reason, file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key or '<top level>'}: {reason}")


class _KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class DatasetConfig(_Section):
    name: Literal["fashion_mnist", "cifar10", "cifar100", "stl10", "image_folder", "synthetic", "infomin_toy"] = (
        "fashion_mnist"
    )
    root: str = "data"
    download: bool = False
    subset: int | None = Field(None, ge=1, description="use only the first N training images")
    test_subset: int | None = Field(None, ge=1, description="use only the first N test images")
    image_size: int | None = Field(None, ge=8, le=512, description="resize to this size; None keeps native")
    channels: int = Field(1, ge=1, le=3, description="synthetic only")
    num_classes: int = Field(10, ge=2, le=1000, description="synthetic only")

    @property
    def num_channels(self) -> int:
        return CHANNELS[self.name] or self.channels


class ModelConfig(_Section):
    backbone: Literal["convnet", "resnet18_cifar"] = "convnet"
    width: int = Field(16, ge=8, le=512, description="convnet base width (channels 16-32-64: the CPU default)")
    depth: int = Field(3, ge=1, le=5, description="convnet stages, each doubling the channels and halving the size")
    proj_dim: int = Field(128, ge=8, le=4096)
    proj_hidden: int = Field(512, ge=8, le=8192)


class MethodConfig(_Section):
    name: Literal["simclr", "moco", "ir"] = "simclr"
    temperature: float = Field(0.2, gt=0.0, le=10.0)
    queue_size: int = Field(4096, ge=16, le=1_000_000, description="MoCo queue length K")
    momentum: float = Field(0.99, ge=0.0, le=1.0, description="MoCo key-encoder EMA")
    bn_groups: int = Field(
        1, ge=1, le=64, description="MoCo: BatchNorm groups with keys shuffled across them (shuffling BN); 1 = off"
    )
    symmetric: bool = Field(
        False, description="MoCo: average the loss with the views swapped (MoCo v3); each image trains the query twice"
    )
    bank_momentum: float = Field(0.5, ge=0.0, lt=1.0, description="IR memory-bank update m")
    num_negatives: int = Field(4096, ge=1, le=1_000_000, description="IR negatives drawn per anchor")


class ViewsConfig(_Section):
    """Knob values are the magnitudes at strength 1; ``strength`` scales all of them at once.

    At strength s a magnitude m becomes s*m, a probability p becomes s*p, and the crop's
    minimum area becomes 1 - s*(1 - crop_scale_min): s=0 gives identical views, s=1 the
    InfoMin-Aug-level distortion the knobs describe. ``None`` colour knobs mean "the dataset's
    default": SimCLR's values on RGB data, 0 on grayscale data.
    """

    strength: float = Field(1.0, ge=0.0, le=1.0)
    crop_scale_min: float = Field(0.2, gt=0.0, le=1.0)
    crop_scale_max: float = Field(1.0, gt=0.0, le=1.0)
    crop_ratio_min: float = Field(3 / 4, gt=0.0, le=1.0)
    crop_ratio_max: float = Field(4 / 3, ge=1.0, le=10.0)
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    brightness: float = Field(0.8, ge=0.0, le=1.0)
    contrast: float = Field(0.8, ge=0.0, le=1.0)
    saturation: float | None = Field(None, ge=0.0, le=1.0)
    hue: float | None = Field(None, ge=0.0, le=0.5)
    jitter_p: float = Field(0.8, ge=0.0, le=1.0)
    grayscale_p: float | None = Field(None, ge=0.0, le=1.0)
    blur_p: float = Field(0.5, ge=0.0, le=1.0)
    blur_sigma_min: float = Field(0.1, gt=0.0, le=10.0)
    blur_sigma_max: float = Field(2.0, gt=0.0, le=10.0)
    solarize_p: float = Field(0.0, ge=0.0, le=1.0)
    solarize_threshold: float = Field(0.5, ge=0.0, le=1.0)
    rotation_degrees: float = Field(0.0, ge=0.0, le=180.0)
    shared: list[Literal["class", "background", "position"]] | None = Field(
        None, description="infomin_toy only: the factors the two views share (the rest are redrawn)"
    )

    @model_validator(mode="after")
    def _ranges(self) -> ViewsConfig:
        if self.crop_scale_min > self.crop_scale_max:
            raise _KeyedError(
                "views.crop_scale_min",
                f"must be <= crop_scale_max, got {self.crop_scale_min} > {self.crop_scale_max}",
            )
        if self.blur_sigma_min > self.blur_sigma_max:
            raise _KeyedError(
                "views.blur_sigma_min",
                f"must be <= blur_sigma_max, got {self.blur_sigma_min} > {self.blur_sigma_max}",
            )
        return self

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
            raise _KeyedError("negatives.lower", f"must be < negatives.upper, got {self.lower} >= {self.upper}")
        if self.anneal != "none" and self.anneal_start < self.upper:
            raise _KeyedError(
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
    compile_views: bool = Field(False, description="torch.compile the view pipeline (CUDA graphs on CUDA)")
    max_steps: int | None = Field(None, ge=1, description="stop each epoch after this many steps (dry runs)")
    threads: int | None = Field(None, ge=1, le=256, description="torch CPU threads; None = torch's default")


class EvaluationConfig(_Section):
    knn_k: int = Field(200, ge=1, le=10_000)
    knn_t: float = Field(0.07, gt=0.0, le=10.0)
    linear_epochs: int = Field(30, ge=1, le=1000)
    linear_lr: float = Field(1e-2, gt=0.0, le=10.0)
    knn_every_epoch: bool = True
    monitor_train: int = Field(10_000, ge=1, description="training images used as the per-epoch kNN bank")
    monitor_test: int = Field(2_000, ge=1, description="test images scored by the per-epoch kNN")


class MIConfig(_Section):
    estimator: Literal["infonce", "nwj", "smile"] = "infonce"
    steps: int = Field(300, ge=1, le=100_000)
    batch_size: int = Field(256, ge=8, le=65_536)
    pairs: int = Field(16384, ge=16, le=1_000_000, description="critic training pairs (held-out: pairs/4)")
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)
    enabled: bool = True


class TrainConfig(_Section):
    """One training. Unknown keys are errors at every depth."""

    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    views: ViewsConfig = ViewsConfig()
    negatives: NegativesConfig = NegativesConfig()
    trainer: TrainerConfig = TrainerConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    mi: MIConfig = MIConfig()

    @model_validator(mode="after")
    def _cross(self) -> TrainConfig:
        if self.dataset.num_channels != 3:
            for knob in ("saturation", "hue", "grayscale_p"):
                value = getattr(self.views, knob)
                if value not in (None, 0.0):
                    raise _KeyedError(
                        f"views.{knob}",
                        f"needs 3 colour channels, but dataset '{self.dataset.name}' has "
                        f"{self.dataset.num_channels}; remove it or set it to 0",
                    )
        if self.views.shared is not None and self.dataset.name != "infomin_toy":
            raise _KeyedError("views.shared", f"only applies to dataset 'infomin_toy', not '{self.dataset.name}'")
        return self


TRAIN_SECTIONS = tuple(TrainConfig.model_fields)


# --------------------------------------------------------------------------- domains


def is_domain(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DOMAIN_KINDS


def check_domain(key: str, value: dict) -> tuple[str, list]:
    """Validate a domain's own shape (not yet the knob's range)."""
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise SpecError(key, f"{kind} domain needs a non-empty list, got {args!r}")
    if kind in ("uniform", "loguniform", "int"):
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise SpecError(key, f"{kind} domain needs [low, high] numbers, got {args!r}")
        lo, hi = args
        if not lo < hi:
            raise SpecError(key, f"{kind} domain is inverted or empty: low {lo} must be < high {hi}")
        if kind == "loguniform" and lo <= 0:
            raise SpecError(key, f"loguniform domain needs low > 0, got {lo}")
        if kind == "int" and not all(isinstance(a, int) for a in args):
            raise SpecError(key, f"int domain needs integer bounds, got {args!r}")
    return kind, args


def domain_default(value: dict) -> Any:
    """The value one standalone training uses for a searched knob: midpoint or first choice."""
    kind, args = next(iter(value.items()))
    if kind == "uniform":
        return (args[0] + args[1]) / 2
    if kind == "loguniform":
        return math.sqrt(args[0] * args[1])
    if kind == "int":
        return (args[0] + args[1]) // 2
    return args[0]


def domain_probes(value: dict) -> list:
    """The values that must all be valid for the domain to be valid."""
    return list(next(iter(value.values())))


def walk(tree: Any, prefix: str = ""):
    """Yield (dotted_key, leaf) for every leaf, treating a domain as a leaf."""
    if isinstance(tree, dict) and not is_domain(tree):
        for k, v in tree.items():
            yield from walk(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, tree


def get_path(tree: dict, key: str) -> Any:
    node = tree
    for part in key.split("."):
        node = node[part]
    return node


def set_path(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(key, f"'{part}' is not a section")
    node[parts[-1]] = value


def find_domains(raw: dict) -> dict[str, dict]:
    return {k: v for k, v in walk(raw) if is_domain(v)}


def resolve(raw: dict, values: dict[str, Any] | None = None) -> dict:
    """A copy of ``raw`` with every domain replaced: by ``values[key]`` if given, else its default."""
    out = copy.deepcopy(raw)
    values = values or {}
    for key, dom in find_domains(raw).items():
        set_path(out, key, values[key] if key in values else domain_default(dom))
    return out


def _error_key(err: ValidationError) -> tuple[str, str]:
    """The dotted key and a readable reason for pydantic's first error."""
    first = err.errors()[0]
    ctx_err = first.get("ctx", {}).get("error")
    if isinstance(ctx_err, _KeyedError):
        return ctx_err.key, ctx_err.reason
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return key, "unknown key"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] != "missing" and "input" in first:
        msg = f"{msg} (got {first['input']!r})"
    return key, msg


def _validate(raw: dict) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise SpecError(*_error_key(err)) from None


def validate_train(raw: dict) -> TrainConfig:
    """Validate the training sections of a spec, domains included; return the default config.

    Each domain value (both bounds, every choice) is substituted alone into the default
    config and validated, so a domain outside its knob's range is named like a bad constant.
    """
    if not isinstance(raw, dict):
        raise SpecError("", f"a spec must be a mapping of sections, got {type(raw).__name__}")
    for key, dom in find_domains(raw).items():
        check_domain(key, dom)
    base = resolve(raw)
    cfg = _validate(base)
    for key, dom in find_domains(raw).items():
        for probe in domain_probes(dom):
            trial = copy.deepcopy(base)
            set_path(trial, key, probe)
            try:
                TrainConfig.model_validate(trial)
            except ValidationError as err:
                _, reason = _error_key(err)
                raise SpecError(key, f"domain value {probe!r} is invalid: {reason}") from None
    _check_ring_domains(raw)
    return cfg


def _check_ring_domains(raw: dict) -> None:
    neg = raw.get("negatives") or {}
    lo, hi = neg.get("lower", 0.0), neg.get("upper", 1.0)

    def span(v):
        if is_domain(v):
            nums = [a for a in next(iter(v.values())) if isinstance(a, (int, float))]
            return (min(nums), max(nums)) if nums else None
        return (v, v) if isinstance(v, (int, float)) else None

    s_lo, s_hi = span(lo), span(hi)
    if s_lo and s_hi and (is_domain(lo) or is_domain(hi)) and s_lo[1] >= s_hi[0]:
        raise SpecError(
            "negatives.upper",
            f"every sampled lower must be < every sampled upper, but lower can reach {s_lo[1]} "
            f"and upper can be as low as {s_hi[0]}",
        )


# --------------------------------------------------------------------------- files and overrides


def load_yaml(path: str | Path) -> dict:
    """Read a spec with ``yaml.safe_load``; every failure is a SpecError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("", "file not found", file=str(path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError("", f"YAML syntax error: {err}", file=str(path)) from None
    if raw is None:
        raise SpecError("", "the file is empty", file=str(path))
    if not isinstance(raw, dict):
        raise SpecError("", f"the top level must be a mapping, got a {type(raw).__name__}", file=str(path))
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as YAML (so numbers, booleans and domains work)."""
    if "=" not in text:
        raise SpecError(text, "--set needs KEY=VALUE")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise SpecError(key, "--set needs a dotted key like trainer.epochs")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise SpecError(key, f"cannot parse value {value!r}: {err}") from None
    return key, parsed


def known_key(schema: type[BaseModel], key: str) -> bool:
    """Is ``key`` a leaf or section of the schema?"""
    model: Any = schema
    for part in key.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


def apply_overrides(raw: dict, overrides: list[str], schema: type[BaseModel] = TrainConfig) -> dict:
    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        if not known_key(schema, key):
            raise SpecError(key, "--set names a key that does not exist in the spec schema")
        set_path(out, key, value)
    return out


def training_sections(raw: dict) -> dict:
    """Only the sections ``trainers`` reads (a search spec carries more)."""
    return {k: v for k, v in raw.items() if k in TRAIN_SECTIONS}


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Spec file -> one training config (domains at their defaults). Raises SpecError."""
    raw = load_yaml(path)
    try:
        raw = apply_overrides(raw, overrides or [])
        return validate_train(training_sections(raw))
    except SpecError as err:
        raise SpecError(err.key, err.reason, file=str(path)) from None


def flatten(cfg: BaseModel | dict, prefix: str = "") -> dict[str, Any]:
    """Dotted-name view of a config, as MLflow params and report tables use it."""
    tree = cfg.model_dump() if isinstance(cfg, BaseModel) else cfg
    return {k: v for k, v in walk(tree, prefix)}
