"""A spec's training sections -> a validated ``TrainConfig``, and pydantic's errors -> the spec key.

Why a module of its own: the schema (``trainers/config.py``) says what each knob may be; this
says how a spec with search domains is checked against it (every value a domain can take is
substituted alone and validated, so a bad domain is named like a bad constant), which point of
a search a trial trains, and how an error is named by the dotted key a user wrote.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from trainers.config import RENAMED, TrainConfig
from trainers.domains import check_domain, domain_values, find_domains, is_domain, resolve, set_path, span
from trainers.errors import KeyedError, SpecError, locate
from trainers.methods import knobs as method_knobs
from trainers.pairs.registry import FAMILIES


def error_key(err: ValidationError) -> tuple[str, str]:
    """The dotted key and a readable reason for pydantic's first error."""
    first = err.errors()[0]
    ctx = first.get("ctx", {})
    if isinstance(ctx.get("error"), KeyedError):
        return ctx["error"].key, ctx["error"].reason
    loc = list(first["loc"])
    family = None
    if [str(p) for p in loc[:2]] == ["views", "pairs"] and len(loc) > 2 and loc[2] in FAMILIES:
        family = FAMILIES[loc.pop(2)]  # pydantic names the family it picked; the spec has no such level
    key, union = locate(tuple(loc), TrainConfig)
    if first["type"] == "union_tag_invalid":  # e.g. method.name: byol
        discriminator = ctx["discriminator"].strip("'")
        return f"{key}.{discriminator}", f"{ctx['tag']!r} is not registered; the registered ones are {ctx['expected_tags']}"
    if first["type"] == "extra_forbidden":
        if union is not None and key.rpartition(".")[0] == union[0]:  # a knob of another member?
            union_key, disc, members, tag = union
            knob = key.rpartition(".")[2]
            others = [t for t, m in members.items() if knob in m.model_fields]
            if others:
                return key, f"only applies to {union_key}.{disc}: {' or '.join(others)} (this spec uses {tag})"
        if key not in RENAMED and family is not None:
            return key, f"unknown key of views.pairs kind '{family.name()}' (its keys: {', '.join(family.knobs()) or 'none'})"
        return key, RENAMED.get(key, "unknown key")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] != "missing" and "input" in first:
        shown = repr(first["input"])
        msg = f"{msg} (got {shown if len(shown) <= 200 else shown[:200] + '...'})"
    return key, msg


def _validate(raw: dict) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise SpecError(*error_key(err)) from None


def validate_train(raw: dict) -> TrainConfig:
    """Validate the training sections of a spec, domains included; return the default config.

    Each domain value (both bounds, every choice) is substituted alone into the default
    config and validated, so a domain outside its knob's range is named like a bad constant.
    """
    if not isinstance(raw, dict):
        raise SpecError("", f"a spec must be a mapping of sections, got {type(raw).__name__}")
    domains = find_domains(raw)
    for key, dom in domains.items():
        check_domain(key, dom)
    cfg = _validate(point_raw(raw))
    for key, dom in domains.items():
        for value in domain_values(dom):
            problem = probe(raw, key, value)
            if problem is None:
                continue
            bad, reason = problem
            if key == "method.name" and bad != key:  # a knob of the method this value brings in
                raise SpecError(bad, f"{reason} (with method.name: {value})")
            raise SpecError(key, f"domain value {value!r} is invalid: {reason}")
    method_knobs.check_searched_methods(raw)
    _check_ring_domains(raw)
    return cfg


def probe(raw: dict, key: str, value: Any) -> tuple[str, str] | None:
    """The spec with ``key`` at ``value`` and every other domain at its default, validated:
    None, or the (key, reason) of its first error."""
    try:
        TrainConfig.model_validate(point_raw(raw, {key: value}))
    except ValidationError as err:
        return error_key(err)
    return None


def point_raw(raw: dict, values: dict[str, Any] | None = None) -> dict:
    """The training sections at one point: each domain at ``values[key]``, else its default; with
    ``method.name`` searched, only the point's own method's knobs (``trainers/methods/knobs.py``)."""
    out = resolve(raw, method_knobs.with_method_for_probe(raw, values or {}))
    if method_knobs.searched_methods(raw) and isinstance(out.get("method"), dict):
        out["method"] = method_knobs.own_knobs(out["method"])
    return out


def _check_ring_domains(raw: dict) -> None:
    neg = raw.get("negatives") or {}
    lo, hi = neg.get("lower", 0.0), neg.get("upper", 1.0)

    s_lo, s_hi = span(lo), span(hi)
    if s_lo and s_hi and (is_domain(lo) or is_domain(hi)) and s_lo[1] >= s_hi[0]:
        raise SpecError(
            "negatives.upper",
            f"every sampled lower must be < every sampled upper, but lower can reach {s_lo[1]} "
            f"and upper can be as low as {s_hi[0]}",
        )


def point_config(train_raw: dict, values: dict[str, Any]) -> TrainConfig:
    """Spec constants + sampled ``values`` (dotted keys) -> the validated training of one point.

    Values may come from a searcher as numpy scalars; they become Python numbers first, since
    the schema is strict.
    """
    plain = {k: (v.item() if hasattr(v, "item") and not isinstance(v, (list, dict)) else v) for k, v in values.items()}
    raw = point_raw(train_raw, plain)
    for key in set(plain) - set(find_domains(train_raw)):  # set by the search itself (replicate seeds)
        set_path(raw, key, plain[key])
    return TrainConfig.model_validate(raw)
