"""Reading a spec: the YAML file, ``--set KEY=VALUE`` overrides, and the training sections.

YAML is parsed with a ``yaml.SafeLoader`` that also refuses what ``safe_load`` lets through:
duplicate keys (YAML keeps the last one and silently drops the first block), and documents that
expand past a small bound. Aliases make the second dangerous: a few hundred bytes of nested
``&a [*b, *b, ...]`` expand to billions of nodes, and everything downstream (validation, copies,
fingerprints) walks the expanded tree. So the loaded document's size and depth are counted with
an early exit before anything else touches it. Every failure is a ``SpecError`` naming the file,
so the CLIs exit 2 before anything starts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from trainers.config import RENAMED, TrainConfig, training_sections
from trainers.domains import set_path
from trainers.errors import SpecError
from trainers.validation import validate_train

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 20_000  # scalars, mappings and lists of the expanded document
MAX_DEPTH = 24


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (merge keys ``<<`` may still be overridden)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a scalar", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                f"while reading the mapping at line {node.start_mark.line + 1}", node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1}); YAML would keep only the last",
                key_node.start_mark,
            )
        seen[key] = key_node
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def check_size(doc: Any, what: str = "the document") -> None:
    """Raise SpecError if ``doc`` expands past MAX_NODES nodes or MAX_DEPTH levels (early exit),
    naming the key where the budget ran out (the list or mapping holding it)."""
    count = 0
    stack: list[tuple[Any, int, str]] = [(doc, 1, "")]
    while stack:
        node, depth, key = stack.pop()
        count += 1
        if count > MAX_NODES:
            where = _container(key)
            raise SpecError(where, f"{what} expands to more than {MAX_NODES:,} values"
                                   f"{' here' if where else ''} (a list that long, or YAML aliases); refusing it")
        if depth > MAX_DEPTH:
            raise SpecError(_container(key), f"{what} nests deeper than {MAX_DEPTH} levels; refusing it")
        if isinstance(node, dict):
            stack.extend((child, depth + 1, f"{key}.{k}" if key else str(k)) for k, child in node.items())
        elif isinstance(node, list):
            stack.extend((child, depth + 1, f"{key}.{i}" if key else str(i)) for i, child in enumerate(node))


def _container(key: str) -> str:
    """``views.stages.9321.RandomErasing.p`` -> ``views.stages``: the key up to its first list index."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part.isdigit() and i:
            return ".".join(parts[:i])
    return key


def parse_yaml(text: str, what: str = "the document") -> Any:
    """``yaml`` text -> plain data, strictly (duplicate keys, size bound). Raises SpecError."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe_load plus two refusals
    except yaml.YAMLError as err:
        raise SpecError("", f"YAML error: {err}") from None
    check_size(doc, what)
    return doc


def load_yaml(path: str | Path) -> dict:
    """Read a spec file: UTF-8, at most 1 MB, strict YAML, a mapping at the top."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("", "file not found", file=str(path))
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise SpecError("", f"the file is {len(data):,} bytes; a spec is at most {MAX_FILE_BYTES:,}", file=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("", f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})",
                        file=str(path)) from None
    try:
        raw = parse_yaml(text, "the spec")
    except SpecError as err:
        raise SpecError(err.key, err.reason.replace("YAML error", "YAML syntax error"), file=str(path)) from None
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
        parsed = parse_yaml(value, f"--set {key}") if value.strip() else None
    except SpecError as err:
        raise SpecError(key, f"cannot parse value {value!r}: {err.reason}") from None
    return key, parsed


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field may hold, through Optional, unions (``views.pairs``: one model per
    view family) and Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [model for arg in get_args(annotation) for model in _models(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def known_key(schema: type[BaseModel], key: str) -> bool:
    """Is ``key`` a leaf or section of the schema (of any model a union there may hold)? Past a
    list, e.g. ``views.stages.0...``, any key is accepted here: the schema validates list items."""
    annotations: list[Any] = [schema]
    for part in key.split("."):
        models = [model for annotation in annotations for model in _models(annotation)]
        if not models:
            return any(a is list or get_origin(a) is list for a in annotations)
        annotations = [model.model_fields[part].annotation for model in models if part in model.model_fields]
        if not annotations:
            return False
    return True


def apply_overrides(raw: dict, overrides: list[str], schema: type[BaseModel]) -> dict:
    out = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        if not known_key(schema, key):
            raise SpecError(key, RENAMED.get(key, "--set names a key that does not exist in the spec schema"))
        set_path(out, key, value)
    return out


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Spec file -> one training config (search domains at their defaults). Raises SpecError."""
    raw = load_yaml(path)
    try:
        raw = apply_overrides(raw, overrides or [], TrainConfig)
        return validate_train(training_sections(raw))
    except SpecError as err:
        raise SpecError(err.key, err.reason, file=str(path)) from None
