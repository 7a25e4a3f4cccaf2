"""The fast YAML path (yaml-rs) must give exactly what PyYAML gives, or step aside."""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml

from pipeline_tasks.spec.source import YamlSource
from pipeline_tasks.spec.yaml_fast import UNSURE, fast_load

ROOT = Path(__file__).resolve().parent.parent

# each reads differently in YAML 1.2 (yaml-rs) and YAML 1.1 (PyYAML), or is something yaml-rs
# accepts and PyYAML does not
DIALECT_TRAPS = [
    "a: yes", "a: No", "a: on", "a: OFF", "yes: 1", "a: 010", "a: -017", "a: 0o10", "a: 09", "a: 1e3",
    "a: 1.5e3", "a: 1E-3", "a: 2024-01-15", "a: 2024-01-15 10:00:00", "a: 12:30", "a: 190:20:30.15",
    "a: =", "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2", "a: !!str 12", "a: !custom 1", "? [1, 2]\n: x",
    "a: 1\n---\nb: 2", "%YAML 1.1\n---\na: 1", "a: 1\n...\n", "...\na: 1", "!!map {a: 1}", "0777", "- 0_1", "%TAG ! tag:x,2000:\n---\na: !x 1", "a: 1\na: 2", "a: [a, b]: c",
    "x: {a: 'on'}\ny: on", "- y\n- n\n- 'off'\n- off", "a: 2001-12-14\n  21:59:43",
    # found by comparing both readers on generated documents
    "a: -.5", "a: +.5", "a: _1", "a: +_1", "a: 1_", "a: [x, ?]", "a: |\n", "a: \"\\/\"", "a: x\x07", "a:\tb",
    "a: [x, |]", "a: [@x]", "k:\n  &a: 1", "k:\n  : v",
]
# read the same, but the fast path is allowed to be cautious
CAUTIOUS = ["a: &x [1, 2]\nb: *x", "cmd: \"test ! -f x && echo done\"", "a: 1.", "a: 1_000", "a: 0x1F", "a: 0b101", "a: |\n  x\n  y\n", "a: >\n  folded\n  text\n",
            "? complex\n: v", "url: http://host:8080/x", "a: 1.5e+3", "a: 1,000", "a: 'turn it on'\nb: 'on'"]
# read the same by both: the fast path may take them
PLAIN = [
    "", "# only a comment", "a: 1", "a: -5", "a: +5", "a: 0", "a: 0.5", "a: .5", "a: .inf", "a: -.Inf", "a: .nan", "a: ~", "a: null", "a: Null", "a:", "a: true",
    "a: False", "a: y", "a: n", "a: tRUE", "a: '2024'", "version: '1'", "a: '1_000'", "depends_on: [s-1]\nv: '1'", "a: \"1\"\nb: [1]", "a: '2.5'\nb: 2.5", "a: '1'\nb: 1", "a: ['1', \"2.5\"]", "a: \"\\x41\\t\"", "a: 'it''s'", "---\na: 1", "a: 'yes'", "'on': 1",
    "a: 'hello world!'",
    "a: [1, {b: [c, d]}]\n", "k: 'v'  # comment", "a: \"{stage.output_dir}\"", "a: ${HOME}", "1: one",
]


def pyyaml(text: str):
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return (len(a) == len(b) and all(same(ka, kb) for ka, kb in zip(a, b))
                and all(same(va, vb) for va, vb in zip(a.values(), b.values())))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def repo_yaml_files() -> list[Path]:
    return sorted(p for folder in ("configs", "tests", "bench") for p in (ROOT / folder).rglob("*.y*ml"))


@pytest.mark.parametrize("text", DIALECT_TRAPS)
def test_fast_path_steps_aside_where_the_dialects_differ(text):
    assert fast_load(text) is UNSURE


@pytest.mark.parametrize("text", PLAIN)
def test_fast_path_reads_plain_yaml_as_pyyaml_does(text):
    fast = fast_load(text)
    assert fast is not UNSURE, text
    assert same(fast, pyyaml(text)), text


def test_every_loaded_document_equals_pyyaml():
    """YamlSource.load (fast path or not) against PyYAML on every YAML file of the repository and
    every trap: the result is what PyYAML reads, or PyYAML's own error."""
    texts = [p.read_text() for p in repo_yaml_files()] + DIALECT_TRAPS + PLAIN + CAUTIOUS
    assert len(texts) > len(DIALECT_TRAPS) + len(PLAIN) + len(CAUTIOUS)
    for text in texts:
        try:
            expected = pyyaml(text)
        except yaml.YAMLError:
            with pytest.raises(Exception, match="invalid YAML"):
                YamlSource(text).load()
            continue
        assert same(YamlSource(text).load(), expected), text


def test_a_generated_pipeline_takes_the_fast_path():
    lines = ["pipeline: {name: big, version: '1'}", "stages:"]
    for i in range(200):
        lines.append(f"  - id: s{i}\n    type: custom\n    depends_on: [s{(i - 1) // 2}]\n    config:\n"
                     f"      callable: \"mod:fn\"\n      output_dir: out/s{i}\n      args: {{rate: 0.5, n: {i}}}")
    text = "\n".join(lines) + "\n"
    fast = fast_load(text)
    assert fast is not UNSURE
    assert same(fast, pyyaml(text))


def test_copied_resolvers_are_pyyamls():
    from yaml.resolver import Resolver

    from pipeline_tasks.spec.yaml_fast import _TYPED_FIRST, _YAML11_RESOLVERS
    theirs = {(tag.rsplit(":", 1)[-1], rx.pattern) for rxs in Resolver.yaml_implicit_resolvers.values()
              for tag, rx in rxs}
    assert theirs == set(_YAML11_RESOLVERS.items())
    assert {c for c in Resolver.yaml_implicit_resolvers if c} == set(_TYPED_FIRST)


@pytest.mark.parametrize("value", ["0", "7", "-3", "+12", "1.5", "-0.25", "10.0", "true", "False", "NULL", "~"])
def test_values_both_dialects_type_alike(value):
    import yaml_rs

    from pipeline_tasks.spec.yaml_fast import _BOTH_TYPE_ALIKE
    assert _BOTH_TYPE_ALIKE.fullmatch(value)
    assert same(yaml_rs.loads(f"x: {value}")["x"], pyyaml(f"x: {value}")["x"])


# -- both readers on generated documents: every token kind in every quoting style, nested block and
#    flow collections, block scalars, multi-line scalars, comments
TOKENS = ["0", "1", "-1", "+1", "12345678901234567890", "-0.0", "0.0", "1.5", "1_000", ".5", "1.", "007", "0x1f", "0b11",
  "0o17", "1e3", "1.5e+3", "inf", ".inf", "-.inf", ".nan", "NaN", "true", "True", "yes", "No", "on", "OFF", "y", "n", "_x", "x_1",
  "null", "Null", "~", "", "2024-01-15", "12:30", "abc", "a b", "é", "日本", "a:b", "a: b", "#x", "a #c", "-", "--", "a-1", "s-1",
  "'q'", "\"dq\"", "x\\ty", "=", "<<", "<", "!", "&a", "*a", "%", "@x", "`x", "a,b", "[x]", "{x}", "?", "|", ">", "3.14.15",
  "+", ".", "..", "-.5", "0.", "00", "e1", "E", "_1", "1_", "a  b", " lead", "trail ", "x: y", "a\\nb", "\\u00e9", "\\x41", "\\/",
  "tab\there", "q'q", 'd"d', "a\\\\b", "http://x:80/y", "mod:fn", "out/s1", "{{x}}", "${HOME}", "{a.b}"]
def scalar(rng):
    t = rng.choice(TOKENS)
    style = rng.random()
    if style < 0.45: return t
    if style < 0.7: return "'" + t.replace("'", "''") + "'"
    if style < 0.95: return '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return '"' + t + '"'            # raw: escapes as written
def node(rng, depth, indent):
    r = rng.random()
    pad = " " * (indent + 2)
    if depth > 2 or r < 0.45:
        v = " " + scalar(rng)
        if rng.random() < 0.05: v += "  # comment"
        return v
    if r < 0.55: return " [" + ", ".join(scalar(rng) for _ in range(rng.randint(0, 3))) + "]"
    if r < 0.6: return " {" + ", ".join(f"k{i}: {scalar(rng)}" for i in range(rng.randint(0, 3))) + "}"
    if r < 0.65:
        ind = rng.choice(["|", ">", "|-", ">+", "|2"])
        return f" {ind}\n" + "\n".join(pad + rng.choice(["line", "two words", "", "  more", "x: y"]) for _ in range(rng.randint(0, 3)))
    if r < 0.7:   # multi-line plain or quoted
        return " " + rng.choice(["first", "'first", '"first']) + "\n" + pad + rng.choice(["second", "second'", 'second"', "12:30", "2"])
    if r < 0.82:
        return "\n" + "\n".join(f"{pad}-{node(rng, depth+1, indent+2)}" for _ in range(rng.randint(1, 3)))
    keys = [f"k{i}" if rng.random() < 0.8 else scalar(rng) for i in range(rng.randint(1, 3))]
    return "\n" + "\n".join(f"{pad}{k}:{node(rng, depth+1, indent+2)}" for k in keys)


def test_generated_documents_read_as_pyyaml_reads_them():
    rng = random.Random(7)
    taken = 0
    for _ in range(3000):
        text = "\n".join(f"key{j}:{node(rng, 0, 0)}" for j in range(rng.randint(1, 4))) + "\n"
        fast = fast_load(text)
        if fast is UNSURE:
            continue
        taken += 1
        assert same(fast, pyyaml(text)), text
    assert taken > 500          # the fast path is taken often enough for this to mean something
