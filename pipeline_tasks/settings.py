"""A stage's config as typed, read-only settings (`StageExecutor.settings`), made from its cerberus
schema, and the schema's defaults filled into a config."""
from __future__ import annotations

import copy
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .errors import StageConfigError


def apply_defaults(schema: dict, doc: dict) -> dict:
    """Fill in cerberus `default`s (also in nested dict schemas). Done by hand because cerberus'
    normalisation costs ~0.5 ms a document, 10x its validation: too slow for 10,000 stages.
    Executors get their defaults this way whether the config came through the spec or not."""
    defaults, nested = _default_plan(schema)
    out = dict(doc)
    for key, default in defaults:
        if key not in out:
            out[key] = copy.deepcopy(default) if isinstance(default, (dict, list, set)) else default
    for key, sub in nested:
        if key in doc and isinstance(doc[key], dict):
            out[key] = apply_defaults(sub, doc[key])
    return out


_plans: dict[int, tuple[list, list, dict]] = {}


def _default_plan(schema: dict) -> tuple[list, list]:
    """(key, default) pairs and (key, sub-schema) pairs of a schema, worked out once per schema."""
    plan = _plans.get(id(schema))
    if plan is None or plan[2] is not schema:
        rules = [(key, r) for key, r in schema.items() if isinstance(r, dict)]
        plan = _plans[id(schema)] = (
            [(key, r["default"]) for key, r in rules if "default" in r],
            [(key, r["schema"]) for key, r in rules if r.get("type") == "dict"
             and isinstance(r.get("schema"), dict)],
            schema)
    return plan[0], plan[1]


class Settings:
    """A stage's config as read-only attributes, one per key of its schema (see `settings_type`).

    Values are the config's, with the schema's defaults for the keys it leaves out (None for a key
    with no default), `number`s as float, lists as tuples, dicts as read-only mappings and dicts
    with a `schema` as nested Settings. Reading a name the schema does not have raises at once."""

    __slots__ = ("_values",)
    _keys: ClassVar[tuple[str, ...]] = ()
    _owner: ClassVar[str] = ""
    _known: ClassVar[frozenset[str]] = frozenset()
    # key -> converter, for the keys whose values are not kept as they are: worked out once per class
    _converters: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init__(self, values: Mapping[str, Any]):
        if not self._known.issuperset(values):
            unknown = sorted(str(k) for k in values if k not in self._known)[0]
            raise StageConfigError(f"unknown config key '{unknown}' for {self._owner}; known keys: "
                                   f"{', '.join(self._keys) or '(none)'}", key=unknown)
        own = dict(values)
        for key in self._converters.keys() & own.keys():
            if own[key] is not None:
                own[key] = self._converters[key](own[key])
        object.__setattr__(self, "_values", own)

    def __getattr__(self, name: str) -> Any:        # called only for names that are not settings
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{self._owner} has no config key '{name}'; its schema has: {', '.join(self._keys)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are read-only ({self._owner}.{name}); the config is fixed when the "
                             "pipeline is loaded")

    def __delattr__(self, name: str) -> None:
        self.__setattr__(name, None)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, k) == getattr(other, k) for k in self._keys)

    __hash__ = None         # type: ignore[assignment]  (values may be read-only mappings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self._keys)})"

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain, mutable Python values (nested settings as dicts)."""
        return {k: thaw(getattr(self, k)) for k in self._keys}


def thaw(value: Any) -> Any:
    """A settings value as plain, mutable Python values (a copy)."""
    kind = type(value)
    if kind is types.MappingProxyType or kind is dict:
        return {k: thaw(v) for k, v in value.items()}
    if kind is tuple:
        return [thaw(v) for v in value]
    if isinstance(value, Settings):
        return value.as_dict()
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(value)
    return value


def _as_float(value: Any) -> Any:
    return float(value) if type(value) is int else value


def _converter(rules: dict, name: str, owner: str) -> Callable[[Any], Any] | None:
    """How a value of these rules becomes a setting; None: as it is (strings, integers, booleans)."""
    kind = rules.get("type")
    if kind == "dict" and isinstance(rules.get("schema"), dict):
        nested = settings_type(rules["schema"], f"{name}Settings", f"{owner}.{name}")
        return lambda value: nested(value if isinstance(value, Mapping) else {})
    if kind == "list" and isinstance(rules.get("schema"), dict):
        item = _converter(rules["schema"], name, owner) or _freeze
        return lambda value: tuple(None if v is None else item(v) for v in value)
    if kind == "number":
        return _as_float
    if kind in ("string", "integer", "boolean"):
        return None
    return _freeze


def settings_type(schema: Mapping[str, Any], name: str = "Settings", owner: str = "stage") -> type[Settings]:
    """A Settings class for a cerberus schema: its keys become the attributes (keys that are not
    Python identifiers are left out; read those from the `config` dict)."""
    keys = tuple(k for k, rules in schema.items() if isinstance(k, str) and k.isidentifier()
                 and not k.startswith("_") and isinstance(rules, dict))
    namespace: dict[str, Any] = {}
    converters = {}
    for key in keys:
        rules = schema[key]
        convert = _converter(rules, key, owner)
        default = rules.get("default")
        if "default" not in rules and rules.get("type") == "dict" and isinstance(rules.get("schema"), dict):
            default = {}            # a nested schema left out of the config: its own defaults
        if convert is not None:
            converters[key] = convert
            if default is not None:
                default = convert(default)      # once: a read-only value, shared
        namespace[key] = property(_reader(key, default))
    # keys left out of the attributes are still known: they are no error in a config
    namespace.update(__slots__=(), _keys=keys, _owner=owner, _known=frozenset(schema), _converters=converters)
    return type(name, (Settings,), namespace)


def _reader(key: str, default: Any) -> Callable[[Settings], Any]:
    def read(self: Settings) -> Any:
        return self._values.get(key, default)
    read.__name__ = key
    return read


class FreeSettings(Settings):
    """Settings of a stage type without a schema: whatever its config holds."""

    __slots__ = ()
    _owner = "stage"

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", {k: _freeze(v) for k, v in values.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            raise AttributeError(f"the config has no key '{name}'; it has: {', '.join(self._values)}") from None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values == other._values

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def as_dict(self) -> dict[str, Any]:
        return {k: thaw(v) for k, v in self._values.items()}
