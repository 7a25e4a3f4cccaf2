"""An accept-only fast path for cerberus: compiled checks that say "valid" only when cerberus would.

cerberus stays the judge of every document and the author of every message, but it costs ~40 µs
a document: without this check a cold `validate` of a large pipeline takes 1.3-2.5x as long
(docs/benchmarks.md, "Cold validate"). `compile_check(schema)` turns a schema that uses only the rules in
`SUPPORTED_RULES` (and the types in `_TYPES`) into a plain function. The function is at least as
strict as the spec's validator (a boolean is no integer, NaN and infinities are no numbers to
either): when it says no, or the schema uses any other rule (`anyof`, `oneof`, `check_with`,
`dependencies` …), the caller asks cerberus, whose answer counts. Such a schema works
the same, only slower to validate; `unsupported_rules(schema)` names what made it so.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "float": (int, float), "boolean": (bool,),
    "list": (list,), "dict": (dict,),
}
# rules that only normalisation reads (cerberus skips them when validating with normalize=False)
_IGNORED = frozenset({"default", "default_setter", "meta", "coerce", "rename", "rename_handler", "purge_unknown"})
SUPPORTED_RULES = frozenset({"type", "required", "nullable", "empty", "allowed", "min", "max", "minlength",
                             "maxlength", "regex", "excludes", "schema", "keysrules", "valuesrules",
                             "allow_unknown"}) | _IGNORED


class _Unsupported(Exception):
    pass


def compile_check(schema: dict, allow_unknown: bool = False) -> Check | None:
    """A function doc -> bool that is True only for documents cerberus accepts with this schema
    (`validate(doc, normalize=False)`), or None if the schema uses a rule it does not model."""
    try:
        return _mapping(schema, allow_unknown)
    except _Unsupported:
        return None


def unsupported_rules(schema: dict, allow_unknown: bool = False) -> list[str]:
    """What keeps `compile_check` from compiling `schema` (empty when it compiles)."""
    try:
        _mapping(schema, allow_unknown)
    except _Unsupported as exc:
        return [str(reason) for reason in exc.args]
    return []


def _mapping(schema: dict, allow_unknown: bool) -> Check:
    if not isinstance(allow_unknown, bool):
        raise _Unsupported("allow_unknown with rules")
    fields = {name: _field(rules, allow_unknown) for name, rules in schema.items()}
    required = [name for name, rules in schema.items() if rules.get("required")]
    excludes = {name: _as_list(rules["excludes"]) for name, rules in schema.items() if "excludes" in rules}

    def check(doc: Any) -> bool:
        if type(doc) is not dict:
            return False
        for name in required:
            if name not in doc:
                return False
        for name, value in doc.items():
            field = fields.get(name)
            if field is None:
                if not allow_unknown:
                    return False
            elif not field(value):
                return False
            if name in excludes and any(other in doc for other in excludes[name]):
                return False
        return True
    return check


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _field(rules: dict, allow_unknown: bool) -> Check:
    if not isinstance(rules, dict):
        raise _Unsupported(f"rules given as {type(rules).__name__}")
    unknown = set(rules) - SUPPORTED_RULES
    if unknown:
        raise _Unsupported(*sorted(f"rule '{rule}'" for rule in unknown))
    names = _as_list(rules["type"]) if "type" in rules else []
    if any(name not in _TYPES for name in names):
        raise _Unsupported(*sorted(f"type '{name}'" for name in names if name not in _TYPES))
    types = tuple(t for name in names for t in _TYPES[name])
    bool_ok = "boolean" in names        # a bool is an int to Python, not a number to a user
    nullable = bool(rules.get("nullable"))
    bounds = _bounds(rules)
    nested = _nested(rules, names, allow_unknown)

    def check(value: Any) -> bool:
        if value is None:
            return nullable
        if types and (not isinstance(value, types) or (isinstance(value, bool) and not bool_ok)
                      or (isinstance(value, float) and not math.isfinite(value))):
            return False
        if bounds is not None and not bounds(value):
            return False
        return nested is None or nested(value)
    return check


def _bounds(rules: dict) -> Check | None:
    """The value rules (empty, allowed, min, max, minlength, maxlength, regex), or None if none."""
    not_empty = rules.get("empty") is False
    allowed = rules.get("allowed")
    low, high = rules.get("min"), rules.get("max")
    min_len, max_len = rules.get("minlength"), rules.get("maxlength")
    pattern = rules.get("regex")
    match = re.compile(pattern if pattern.endswith("$") else pattern + "$").match if pattern else None
    if not (not_empty or match or any(r is not None for r in (allowed, low, high, min_len, max_len))):
        return None

    def check(value: Any) -> bool:
        sized = isinstance(value, (str, list, dict))
        try:
            if not_empty and sized and not value:
                return False
            if allowed is not None:
                if isinstance(value, (list, dict)):
                    if any(x not in allowed for x in value):
                        return False
                elif value not in allowed:
                    return False
            if low is not None and value < low:
                return False
            if high is not None and value > high:
                return False
            if min_len is not None and (not sized or len(value) < min_len):
                return False
            if max_len is not None and (not sized or len(value) > max_len):
                return False
        except TypeError:               # a comparison the value does not support
            return False
        return match is None or (isinstance(value, str) and match(value) is not None)
    return check


def _nested(rules: dict, names: list[str], allow_unknown: bool) -> Check | None:
    """The rules on what a dict or list holds (schema, keysrules, valuesrules), or None if none."""
    sub: Check | None = None
    item: Check | None = None
    if "schema" in rules:
        if names == ["dict"]:
            sub = _mapping(rules["schema"], rules.get("allow_unknown", allow_unknown))
        elif "list" in names and "dict" not in names:      # e.g. ["string", "list"]: one path or several
            item = _field(rules["schema"], allow_unknown)
        else:
            raise _Unsupported("rule 'schema' without a dict or list type")
    keys = _field(rules["keysrules"], allow_unknown) if "keysrules" in rules else None
    values = _field(rules["valuesrules"], allow_unknown) if "valuesrules" in rules else None
    if sub is None and item is None and keys is None and values is None:
        return None

    def check(value: Any) -> bool:
        if sub is not None and not sub(value):
            return False
        if item is not None and isinstance(value, list) and not all(item(x) for x in value):
            return False
        if keys is not None and not (isinstance(value, dict) and all(keys(k) for k in value)):
            return False
        return values is None or (isinstance(value, dict) and all(values(v) for v in value.values()))
    return check
