"""The compiled schema check never accepts what the spec's cerberus validator rejects, and does accept
valid configs; a schema it does not model falls back to cerberus and says why."""
from __future__ import annotations

import math
import random
import re

import pytest

from pipeline_tasks.settings import apply_defaults
from pipeline_tasks.spec import loader as spec
from pipeline_tasks.spec.registry import available_types, get_executor_class
from pipeline_tasks.spec.schema_check import compile_check, unsupported_rules

POOL = [None, True, False, 0, 1, -1, 7, 2.5, -0.5, 1e12, math.nan, math.inf, -math.inf,
        "", "x", "s1", "mod:fn", "a b", "abc\n", [], ["a"], [1, 2],
        {}, {"a": 1}, {"x": "y"}]


def schemas() -> list[tuple[str, dict, bool]]:
    out = [("top", spec.TOP_SCHEMA, False), ("stage", spec.STAGE_SCHEMA, False),
           ("pipeline", spec.PIPELINE_SCHEMA, False), ("retry", spec.RETRY_SCHEMA, False)]
    for name in available_types():
        try:
            cls = get_executor_class(name)
        except Exception:       # a stage type whose optional dependencies are not installed
            continue
        out.append((name, cls.config_schema or {}, not cls.config_schema))
    return out


def plausible(rules: dict, rng: random.Random):
    """A value that often satisfies `rules` (and sometimes does not)."""
    if "allowed" in rules and rng.random() < 0.8:
        return rng.choice(list(rules["allowed"]))
    types = rules.get("type", "string")
    kind = rng.choice(types) if isinstance(types, list) else types
    if kind in ("integer", "number", "float"):
        low, high = rules.get("min", 0), rules.get("max", (rules.get("min", 0) or 0) + 10)
        value = rng.choice([low, high, (low + high) / 2, low - 1, high + 1])
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "dict":
        if isinstance(rules.get("schema"), dict):
            return document(rules["schema"], rng)
        return rng.choice([{}, {"a": 1}, {"k": "v"}, {"gpu": 1.0}])
    if kind == "list":
        item = rules.get("schema")
        return [plausible(item, rng) if isinstance(item, dict) else rng.choice(POOL) for _ in range(rng.randint(0, 3))]
    words = ["x", "mod:fn", "s1", "out/a", "", "a-b", "en", "fr"]
    if "regex" in rules and rng.random() < 0.8:
        words = [w for w in words if re.fullmatch(rules["regex"], w)] or words
    return rng.choice(words)


def document(schema: dict, rng: random.Random) -> dict:
    doc = {}
    for key, rules in schema.items():
        if rules.get("required") or rng.random() < 0.3:
            doc[key] = plausible(rules, rng)
    return doc


def validator(schema: dict, allow_unknown: bool = False):
    """The validator the spec uses (booleans are no integers, NaN and infinities no numbers)."""
    return spec._validator_class()(schema, allow_unknown=allow_unknown)


def valid_seed(schema: dict, validator, rng: random.Random) -> dict:
    for _ in range(2000):
        doc = apply_defaults(schema, document(schema, rng))
        if validator.validate(doc, normalize=False):
            return doc
    raise AssertionError("no valid document found to start from")


def mutate(doc: dict, schema: dict, rng: random.Random) -> dict:
    doc = dict(doc)
    for _ in range(rng.randint(1, 2)):
        key = rng.choice(list(schema) + ["unknown_key"])
        roll = rng.random()
        if roll < 0.15:
            doc.pop(key, None)
        elif key in schema and roll < 0.75:
            doc[key] = plausible(schema[key], rng)
        else:
            doc[key] = rng.choice(POOL)
    return doc


@pytest.mark.parametrize("name,schema,allow_unknown", schemas(), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_check_accepts_only_what_cerberus_accepts(name, schema, allow_unknown):
    check = compile_check(schema, allow_unknown)
    assert check is not None, (f"{name}: validated by cerberus alone, because its schema uses "
                               f"{', '.join(unsupported_rules(schema, allow_unknown))} (see the executor docstring)")
    judge = validator(schema, allow_unknown)
    rng = random.Random(name)
    seed = valid_seed(schema, judge, rng)
    assert check(seed), (name, seed)           # a valid document takes the fast path
    accepted = rejected = 0
    for _ in range(500):
        doc = mutate(seed, schema, rng)
        if check(doc):
            accepted += 1
            assert judge.validate(doc, normalize=False), (name, doc, judge.errors)
        else:
            rejected += 1
    assert accepted > 50 and rejected > 50, (name, accepted, rejected)


def test_unmodelled_rules_fall_back_to_cerberus():
    assert compile_check({"a": {"type": "string", "oneof": [{"regex": "x"}]}}) is None
    assert compile_check({"a": {"type": "date"}}) is None
    assert compile_check({"a": {"type": "dict", "schema": {}}}, allow_unknown={"type": "string"}) is None
    assert unsupported_rules({"a": {"type": "string", "oneof": [{"regex": "x"}]}}) == ["rule 'oneof'"]
    assert unsupported_rules({"a": {"anyof": [{"type": "string"}]}, "b": {"type": ["date", "string"]}}) == [
        "rule 'anyof'"]
    assert unsupported_rules({"a": {"type": ["date", "string"]}}) == ["type 'date'"]
    assert unsupported_rules({"a": {"type": "string", "default": "x"}}) == []


def test_a_stage_type_with_an_unmodelled_rule_is_validated_by_cerberus(monkeypatch):
    """`anyof` keeps a schema off the fast path; its configs are still checked, with cerberus' message."""
    from pipeline_tasks import PipelineBuilder, SpecError, register_stage_executor
    from pipeline_tasks.executor import StageExecutor
    from pipeline_tasks.spec import registry
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))     # registrations end with the test

    class SizeStage(StageExecutor):
        config_schema = {"size": {"anyof": [{"type": "integer", "min": 1}, {"type": "string", "allowed": ["auto"]}]}}

        def execute(self, inputs):
            return self.result()

    register_stage_executor("size_anyof", SizeStage)
    assert compile_check(SizeStage.config_schema) is None

    def load(size):
        return PipelineBuilder().load_from_dict({"pipeline": {"name": "x"}, "stages": [
            {"id": "a", "type": "size_anyof", "config": {"size": size}}]})
    assert load(3).stages[0].config == {"size": 3}
    assert load("auto").stages[0].config == {"size": "auto"}
    with pytest.raises(SpecError, match="stage 'a', key 'size'"):
        load(0)
    with pytest.raises(SpecError, match="stage 'a', key 'size'"):
        load(True)


@pytest.mark.parametrize("schema,doc,expected", [
    ({"n": {"type": "integer", "min": 1}}, {"n": True}, False),        # a bool is no integer
    ({"n": {"type": "number"}}, {"n": math.nan}, False),              # NaN is no number
    ({"n": {"type": "number", "max": 10}}, {"n": -math.inf}, False),
    ({"n": {"type": "float"}}, {"n": 2.5}, True),
    ({"n": {"type": "integer", "min": 1}}, {"n": 0}, False),
    ({"n": {"type": "integer", "min": 1}}, {"n": 3}, True),
    ({"s": {"type": "string", "regex": "^[a-z]+$"}}, {"s": "ab"}, True),
    ({"s": {"type": "string", "regex": "^[a-z]+$"}}, {"s": "ab1"}, False),
    ({"s": {"type": "string", "empty": False}}, {"s": ""}, False),
    ({"s": {"type": "string", "nullable": True}}, {"s": None}, True),
    ({"s": {"type": "string"}}, {"s": None}, False),
    ({"s": {"type": "string", "required": True}}, {}, False),
    ({"a": {"type": "string", "excludes": "b"}, "b": {"type": "string"}}, {"a": "x", "b": "y"}, False),
    ({"l": {"type": "list", "schema": {"type": "string", "allowed": ["x", "y"]}}}, {"l": ["x", "z"]}, False),
    ({"d": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "number", "min": 0}}},
     {"d": {"a": 1, "b": -1}}, False),
    ({"d": {"type": "dict", "schema": {"x": {"type": "integer"}}}}, {"d": {"x": 1, "y": 2}}, False),
    ({}, {"anything": 1}, False),
])
def test_fast_check_cases(schema, doc, expected):
    assert compile_check(schema)(doc) is expected
    assert validator(schema).validate(doc, normalize=False) is expected
