"""Dotted keys and the search-domain syntax of a spec.

A spec may put a search domain at any knob: ``{uniform: [a, b]}``, ``{loguniform: [a, b]}``,
``{int: [a, b]}`` (b included), ``{choice: [...]}`` or ``{grid: [...]}``. A domain is a mapping
with exactly one of those keys, so the spec stays plain YAML and a knob's range is written once,
in the schema (``trainers/config.py``), which validates every value a domain can take.

Keys are dotted paths through the spec's mappings (``views.strength``). A list of mappings (the
``views.stages`` list of Kornia stages) is walked into too, its items named by their index
(``views.stages.0.RandomErasing.p``); any other list is one value.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

from trainers.errors import SpecError

DOMAIN_KINDS = ("uniform", "loguniform", "int", "choice", "grid")


def is_domain(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DOMAIN_KINDS


def domain_values(dom: dict) -> list:
    """The explicit values of a domain (the bounds, for ranges): all must be valid knob values."""
    return list(next(iter(dom.values())))


def span(value: Any) -> tuple[float, float] | None:
    """(smallest, largest) number a knob can take: a domain's numeric values or a constant; None
    when it takes no number."""
    nums = [v for v in (domain_values(value) if is_domain(value) else [value]) if _number(v)]
    return (min(nums), max(nums)) if nums else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_domain(key: str, value: dict) -> tuple[str, list]:
    """Validate a domain's own shape (not yet the knob's range)."""
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise SpecError(key, f"{kind} domain needs a non-empty list, got {args!r}")
    if kind in ("uniform", "loguniform", "int"):
        if len(args) != 2 or not all(_number(a) for a in args):
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


def _walk_list(items: list) -> bool:
    return bool(items) and all(isinstance(item, dict) and not is_domain(item) for item in items)


def walk(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted_key, leaf) for every leaf, treating a domain as a leaf."""
    if isinstance(tree, dict) and not is_domain(tree):
        for k, v in tree.items():
            yield from walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, list) and _walk_list(tree):
        for i, v in enumerate(tree):
            yield from walk(v, f"{prefix}.{i}")
    else:
        yield prefix, tree


def _step(node: Any, part: str, key: str) -> Any:
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise SpecError(key, f"'{part}' is not an index of this list (it has {len(node)} items)")
        return node[int(part)]
    return node[part]


def get_path(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = _step(node, part, key)
    return node


def set_path(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = tree
    for part in parts[:-1]:
        node = _step(node, part, key) if isinstance(node, list) else node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise SpecError(key, f"'{part}' is not a section")
    last = parts[-1]
    if isinstance(node, list):
        _step(node, last, key)
        node[int(last)] = value
    else:
        node[last] = value


def find_domains(raw: dict) -> dict[str, dict]:
    return {k: v for k, v in walk(raw) if is_domain(v)}


def resolve(raw: dict, values: dict[str, Any] | None = None) -> dict:
    """A copy of ``raw`` with every domain replaced: by ``values[key]`` if given, else its default."""
    out = copy.deepcopy(raw)
    values = values or {}
    for key, dom in find_domains(raw).items():
        set_path(out, key, values[key] if key in values else domain_default(dom))
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-name view of a config (a pydantic model or a dict), as MLflow params and tables use it."""
    if hasattr(tree, "model_dump"):
        tree = tree.model_dump()
    return dict(walk(tree, prefix))
