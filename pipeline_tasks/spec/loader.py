"""Pipeline spec: a YAML or JSON file (or a dict) → validated, fully resolved `Pipeline`.

Order of work, each step raising a SpecError that names file:line:column, stage and key, with
every resolved secret value shown as ***: 1. syntax, and the reader's limits (source.py); 2. the
top-level and per-stage structure (cerberus); 3. the graph (duplicate ids, unknown dependencies,
cycles); 4. per stage, in topological order: `${ENV}` / `${secret:ENV}` / `{vars.x}` /
`{stage_id.key}` substitution, then the stage type's own config schema (with its defaults filled
in) and its `validate_config()`; 5. declared input files exist.

Every problem is reported in one pass (`SpecErrors`): all structure problems of every stage; then,
once the graph holds, every problem of every stage's config (a stage downstream of one with a
problem is not checked: its references cannot be resolved). A stage with `enabled: false` is left
out, and one with `enabled: auto` whose model or optional package is absent (`ModelWeightsError`,
`MissingPackageError`) too, with the reason in
`Pipeline.skipped`; so are the stages downstream of either. `targets` (a run of some stages) leaves
out, instead of refusing the pipeline, a stage with problems that no target needs.
"""
from __future__ import annotations

import copy
import math
import os
import re
import time
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    DagError,
    MissingPackageError,
    ModelWeightsError,
    PipelineError,
    SpecError,
    SpecErrors,
    StageConfigError,
)
from ..executor import StageExecutor, shell_words, template_literal
from ..models import ON_EXHAUSTION, Pipeline, PipelineStage, RetryPolicy, SafetySettings
from ..redaction import redact_obj
from ..settings import apply_defaults
from ..state.paths import pipeline_id_for
from . import dag, foreach
from .registry import get_executor_class
from .schema_check import Check, compile_check
from .source import MAX_DEPTH, TOO_DEEP, PipelineSource, YamlSource, nesting_depth

if TYPE_CHECKING:
    import cerberus

ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
MAX_ID_LENGTH = 64            # a stage id names files (manifest, log, error report) and doit tasks
MAX_NAME_LENGTH = 100         # the pipeline name names its state folder
RESERVED_IDS = {"vars", "pipeline", "item", "env", "run", "list", "info", "forget", "clean", "help", "ignore",
                "dumpdb", "strace", "tabcompletion", "reset-dep", "auto"}

PIPELINE_SCHEMA = {
    "name": {"type": "string", "required": True, "empty": False, "maxlength": MAX_NAME_LENGTH},
    "id": {"type": "string", "regex": ID_PATTERN, "maxlength": MAX_NAME_LENGTH},
    "version": {"type": ["string", "number"]},
    "description": {"type": "string"},
    "state_dir": {"type": "string", "empty": False},
    "max_parallel_stages": {"type": "integer", "min": 1},
}
RETRY_SCHEMA = {
    "max_retries": {"type": "integer", "min": 0, "max": 100},
    "retry_delay": {"type": "number", "min": 0},
    "backoff_multiplier": {"type": "number", "min": 1},
    "retry_on_errors": {"type": "list", "schema": {"type": "string"}},
}
STAGE_SCHEMA = {
    "id": {"type": "string", "required": True, "regex": ID_PATTERN, "maxlength": MAX_ID_LENGTH},
    "type": {"type": "string", "required": True, "empty": False},
    "description": {"type": "string"},
    "depends_on": {"type": "list", "schema": {"type": "string"}},
    "config": {"type": "dict"},
    "retry": {"type": "dict", "schema": RETRY_SCHEMA},
    "timeout": {"type": "number", "min": 0},
    "resources": {"type": "dict", "keysrules": {"type": "string"}, "valuesrules": {"type": "number", "min": 0}},
    "priority": {"type": "integer", "min": -1000, "max": 1000},
    "foreach": {"type": ["string", "dict"]},     # checked by spec.foreach
    "enabled": {"type": ["boolean", "string"], "allowed": [True, False, "auto"]},
}
TOP_SCHEMA = {
    "pipeline": {"type": "dict", "required": True, "schema": PIPELINE_SCHEMA},
    "env": {"type": "dict", "keysrules": {"type": "string", "regex": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "valuesrules": {"type": ["string", "number", "boolean"]}},
    "vars": {"type": "dict", "keysrules": {"type": "string", "regex": ID_PATTERN}},
    "resources": {"type": "dict", "keysrules": {"type": "string", "regex": ID_PATTERN},
                  "valuesrules": {"type": "number", "min": 1}},
    "safety": {"type": "dict", "schema": {
        "min_free_disk_gb": {"type": "number", "min": 0},
        "max_memory_percent": {"type": "number", "min": 1, "max": 100},
        "max_gpu_memory_percent": {"type": "number", "min": 1, "max": 100},
        "check_interval": {"type": "number", "min": 0.05, "max": 3600},
        "on_exhaustion": {"type": "string", "allowed": list(ON_EXHAUSTION)},
        "pause_timeout": {"type": "number", "min": 0}}},
    "stages": {"type": "list", "required": True, "empty": False},
}

# one token of a value, read left to right in a single pass: a literal `{{` or `}}`, `${NAME}` /
# `${secret:NAME}` / `${NAME:-default}`, or a `{owner.key.path}` reference
_REF = r"\{(?P<owner>[A-Za-z_][A-Za-z0-9_\-]*)\.(?P<keys>[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\}"
_TOKEN_RE = re.compile(r"\{\{|\}\}|\$\{(?P<secret>secret:)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*?))?\}|"
                       + _REF)
_REF_RE = re.compile(_REF)
_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "mapping",
               type(None): "null"}

_schema_validators: dict[int, cerberus.Validator] = {}
_EMPTY_SCHEMA: dict = {}
_VALIDATOR_CLASS: type | None = None


class _NotFiniteMeta(type):
    def __instancecheck__(cls, value: Any) -> bool:
        return isinstance(value, float) and not math.isfinite(value)


class NotFinite(metaclass=_NotFiniteMeta):
    """`isinstance(x, NotFinite)`: x is NaN or an infinity (a type cerberus can exclude)."""


def _validator_class() -> type[cerberus.Validator]:
    """cerberus' Validator with numbers as a pipeline means them: a boolean is no integer, and NaN
    or an infinity no number (`timeout: .inf` is a typo, not a wish)."""
    global _VALIDATOR_CLASS
    if _VALIDATOR_CLASS is None:
        import cerberus  # on first validation only (spec-cache hits never need it)
        from cerberus import TypeDefinition

        class PipelineValidator(cerberus.Validator):
            types_mapping = {**cerberus.Validator.types_mapping,
                             "integer": TypeDefinition("integer", (int,), (bool,)),
                             "number": TypeDefinition("number", (int, float), (bool, NotFinite)),
                             "float": TypeDefinition("float", (int, float), (bool, NotFinite))}

        _VALIDATOR_CLASS = PipelineValidator
    return _VALIDATOR_CLASS


def _validator(schema: dict, allow_unknown: bool = False) -> cerberus.Validator:
    """One Validator per schema, built on first use (building one checks the schema)."""
    validator = _schema_validators.get(id(schema))
    if validator is None:
        validator = _schema_validators[id(schema)] = _validator_class()(schema, allow_unknown=allow_unknown)
    return validator


_fast_checks: dict[tuple[int, bool], Check | None] = {}


def _invalid(schema: dict, doc: Any, allow_unknown: bool = False) -> cerberus.Validator | None:
    """None when `doc` is valid; else the cerberus validator holding its errors. The compiled check
    (`schema_check`) answers for most valid documents; cerberus decides everything else."""
    key = (id(schema), allow_unknown)
    if key not in _fast_checks:
        _fast_checks[key] = compile_check(schema, allow_unknown)
    check = _fast_checks[key]
    if check is not None and check(doc):
        return None
    validator = _validator(schema, allow_unknown)
    return None if validator.validate(doc, normalize=False) else validator


def _describe(value: Any) -> str:
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{name} {text[:60]}" if value is not None else "null"


def _leaf_errors(errors) -> list:
    out = []
    for err in errors:
        if err.is_group_error and err.child_errors:
            out.extend(_leaf_errors(err.child_errors))
        else:
            out.append(err)
    return out


def _message(err, schema_keys: list[str] | None = None, secrets: list[str] = ()) -> tuple[str, bool]:
    """A user-facing message for a cerberus error, and whether it points at the key (not the value).
    The value is shown with every secret in it replaced by ***."""
    import cerberus
    field = err.document_path[-1] if err.document_path else ""
    rule, constraint = err.rule, err.constraint
    value = redact_obj(err.value, list(secrets))
    if err.code == cerberus.errors.UNKNOWN_FIELD.code:
        known = sorted(schema_keys or [])
        import difflib
        hint = difflib.get_close_matches(str(field), known, n=1)
        msg = f"unknown key '{field}'"
        if hint:
            msg += f"; did you mean '{hint[0]}'?"
        elif known:
            msg += f"; expected one of: {', '.join(known)}"
        return msg, True
    if rule == "required":
        return f"missing required key '{field}'", True
    if rule == "type":
        expected = constraint if isinstance(constraint, str) else " or ".join(constraint)
        expected = expected.replace("dict", "mapping")
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite {expected}, got {value}", False
        return f"expected {expected}, got {_describe(value)}", False
    if rule == "allowed":
        return f"must be one of {', '.join(map(repr, constraint))}, got {value!r}", False
    if rule == "min":
        return f"must be at least {constraint}, got {value!r}", False
    if rule == "max":
        return f"must be at most {constraint}, got {value!r}", False
    if rule in ("minlength", "maxlength") and isinstance(err.value, str):
        bound = "at least" if rule == "minlength" else "at most"
        return f"must be {bound} {constraint} characters long, got {len(err.value)}", False
    if rule == "minlength":
        return f"needs at least {constraint} item(s)", False
    if rule == "maxlength":
        return f"allows at most {constraint} item(s)", False
    if rule == "empty":
        return "must not be empty", False
    if rule == "regex":
        return f"{value!r} does not match the pattern {constraint}", False
    if rule == "nullable":
        return "must not be null", False
    handler = cerberus.errors.BasicErrorHandler()
    return handler._format_message(field, err), False


def _schema_keys(schema: dict, doc_path: tuple) -> list[str]:
    """The keys allowed at `doc_path` inside `schema` (for 'did you mean')."""
    node: Any = schema
    for part in doc_path:
        if isinstance(part, int):
            node = node.get("schema", {}) if isinstance(node, dict) else {}
            continue
        rules = node.get(part) if isinstance(node, dict) else None
        if not isinstance(rules, dict):
            return []
        node = rules.get("schema", {})
    return list(node.keys()) if isinstance(node, dict) else []


def _errors(validator: cerberus.Validator, schema: dict, secrets: list[str] = ()):
    """(cerberus error, message, points at the key) of each problem: an unknown key first (often a
    typo of the missing required one), then missing keys, then values."""
    import cerberus
    rank = {cerberus.errors.UNKNOWN_FIELD.code: 0, cerberus.errors.REQUIRED_FIELD.code: 1}
    errors = sorted(_leaf_errors(validator._errors), key=lambda e: rank.get(e.code, 2))
    out = []
    for err in errors:
        msg, on_key = _message(err, _schema_keys(schema, tuple(err.document_path[:-1])), secrets)
        out.append((err, msg, on_key))
    return out


class _Resolver:
    """Substitutes `${ENV}`, `${secret:ENV}`, `{vars.x}`, `{pipeline.x}` and `{stage.key}` in one
    pass over the text as written: substituted text is never read again."""

    def __init__(self, source: PipelineSource, env: dict[str, str], vars_: dict[str, Any], pipeline_meta: dict):
        self.source = source
        self.env = env
        self.vars = vars_
        self.pipeline_meta = pipeline_meta
        self.env_used: dict[str, str | None] = {}    # process environment read (for the spec cache)
        self.configs: dict[str, dict] = {}          # resolved, normalised configs of stages done so far
        self.masked: dict[str, dict] = {}           # same, with secrets left as ${secret:NAME}
        self.secrets: dict[str, list[str]] = {}     # secret values each stage done so far carries
        self.stage_ids: set[str] = set()            # every stage id of the pipeline (for messages)

    def env_value(self, match: re.Match, where: tuple, stage: str | None, secrets: list[str] | None, mask: bool) -> str:
        is_secret, name, default = match.group("secret"), match.group("name"), match.group("default")
        if is_secret and mask:
            return match.group(0)
        if name in self.env:
            value = str(self.env[name])
        elif name in os.environ:
            value = self.env_used[name] = os.environ[name]
        elif default is not None:
            value = default
            self.env_used[name] = None
        else:
            raise self.source.error(f"environment variable '{name}' is not set (and no default given "
                                    f"with ${{{name}:-default}})", where, stage=stage)
        if is_secret and value:
            if secrets is not None:
                secrets.append(value)
            self.source.secrets.append(value)        # error messages of the whole pipeline mask it
        return value

    def value(self, value: Any, where: tuple, stage: str | None, upstream: Container[str] | None,
              secrets: list[str] | None, mask: bool, quote_keys: tuple = ()) -> Any:
        """Resolve `value`. Strings under a top-level key in `quote_keys` are shell templates: each
        substituted value goes in as `template_literal(shell_words(value))`, and their `{{` `}}`
        stay for the executor's own pass (see `StageExecutor.shell_template_keys`)."""
        if isinstance(value, dict):
            return {k: self.value(v, where + (k,), stage, upstream, secrets, mask,
                                  ("*",) if k in quote_keys or "*" in quote_keys else ())
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, where + (i,), stage, upstream, secrets, mask, quote_keys)
                    for i, v in enumerate(value)]
        if not isinstance(value, str) or ("{" not in value and "}" not in value):
            return value
        shell = bool(quote_keys)
        if not shell:
            whole = _REF_RE.fullmatch(value)
            if whole:               # only a reference: the value keeps its type
                return self.reference(whole, where, stage, upstream, secrets, mask)
        gathered: list[foreach.GatheredList] = []

        def substitute(match: re.Match) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token if shell else token[0]
            if match.group("name"):
                found: Any = self.env_value(match, where, stage, secrets, mask)
            else:
                found = self.reference(match, where, stage, upstream, secrets, mask)
            if not shell:
                if isinstance(found, foreach.GatheredList):     # every item's value: filled in below
                    gathered.append(found)
                    return foreach.slot(len(gathered) - 1)
                return _as_text(found)
            try:
                return template_literal(shell_words(found))
            except ValueError as exc:
                raise self.source.error(f"the value substituted for '{token}' {exc}", where, stage=stage) from None
        text = _TOKEN_RE.sub(substitute, value)
        if gathered:                # in a gather stage: one string per item
            try:
                return foreach.per_item(text, gathered, _as_text)
            except ValueError as exc:
                raise self.source.error(str(exc), where, stage=stage) from None
        return text

    def reference(self, match: re.Match, where: tuple, stage: str | None, upstream: Container[str] | None,
                  secrets: list[str] | None, mask: bool) -> Any:
        owner, dotted = match.group("owner"), match.group("keys")
        keys = dotted.split(".")
        if owner == "vars":
            root, label = self.vars, "vars"
        elif owner == "pipeline":
            root, label = self.pipeline_meta, "pipeline"
        else:
            if upstream is None or owner not in upstream:
                if owner in self.stage_ids:
                    raise self.source.error(
                        f"reference '{match.group(0)}' names stage '{owner}', which is not upstream of "
                        f"this stage; add it to depends_on", where, stage=stage)
                raise self.source.error(f"reference '{match.group(0)}' names an unknown stage '{owner}'"
                                        + dag._suggest(owner, self.stage_ids | {"vars", "pipeline"}),
                                        where, stage=stage)
            root, label = (self.masked if mask else self.configs)[owner], f"stage '{owner}' config"
            if secrets is not None:         # a secret stays one downstream
                secrets.extend(self.secrets.get(owner, ()))
        node: Any = root
        for i, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                have = sorted(node) if isinstance(node, dict) else []
                raise self.source.error(
                    f"reference '{match.group(0)}': {label} has no key '{'.'.join(keys[:i + 1])}'"
                    + (f"; it has: {', '.join(have)}" if have else ""), where, stage=stage)
            node = node[key]
        return copy.deepcopy(node)


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def load_pipeline(path: str | Path, *, check_inputs: bool = True, use_cache: bool = True,
                  overrides: list[str] | None = None, targets: list[str] | None = None,
                  output_root: str | os.PathLike | None = None) -> Pipeline:
    """Load and validate a pipeline file, YAML or `.json` (a cached result when nothing it depends on
    changed). `overrides`: `STAGE.KEY[.KEY]=VALUE` or `vars.NAME=VALUE` texts applied to the file's
    data first (`--set`); `targets`: the stages a run asks for (problems elsewhere leave stages out);
    `output_root`: the folder every relative output path of the pipeline is rooted in."""
    from . import cache as spec_cache
    source = PipelineSource.from_file(path)
    key = (spec_cache.key(source, check_inputs) if use_cache and not overrides and not targets and not output_root
           else None)
    if key:
        cached = spec_cache.load(key)
        if cached is not None:
            cached.created_at = time.time()
            return cached
    data = source.load()
    if overrides:
        data = apply_overrides(data, overrides, source)
    pipeline = build_pipeline(data, source, check_inputs=check_inputs, targets=targets, output_root=output_root)
    if key:             # the entry holds no load time: the same file gives the same bytes
        created, pipeline.created_at = pipeline.created_at, 0.0
        spec_cache.save(key, pipeline)
        pipeline.created_at = created
    return pipeline


def load_pipeline_dict(data: dict, *, check_inputs: bool = True, name: str = "<dict>",
                       output_root: str | os.PathLike | None = None) -> Pipeline:
    """A pipeline from a dict shaped like a pipeline file. Its id comes from its name (or the
    `pipeline: id:` it sets), not its content, so a changed stage reruns alone; the dict is kept
    (`Pipeline.definition`) so the pipeline can be resumed from its checkpoint."""
    import yaml
    if nesting_depth(data) > MAX_DEPTH:
        raise SpecError(TOO_DEEP, path=name)
    source = YamlSource(yaml.safe_dump(data, sort_keys=False), name)
    pipeline = build_pipeline(copy.deepcopy(data), source, check_inputs=check_inputs, output_root=output_root)
    pipeline.definition = copy.deepcopy(data)
    return pipeline


def _rooted(config: dict, root: str | os.PathLike | None) -> dict:
    """`output_dir` (and a list of declared `outputs`) made absolute under `root` when relative."""
    if not root:
        return config
    out = dict(config)
    value = out.get("output_dir")
    if isinstance(value, str) and value and not os.path.isabs(value):
        out["output_dir"] = os.path.join(os.fspath(root), value)
    files = out.get("outputs")
    if isinstance(files, list):
        out["outputs"] = [os.path.join(os.fspath(root), f) if isinstance(f, str) and f and not os.path.isabs(f)
                          else f for f in files]
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`stage.key.sub=value` -> (["stage", "key", "sub"], value read as YAML: `2` is a number,
    `[de, fr]` a list, `true` a boolean, anything else the text)."""
    import yaml
    dotted, sep, value_text = text.partition("=")
    keys = dotted.strip().split(".")
    if not sep or len(keys) < 2 or not all(keys):
        raise SpecError(f"--set {text!r}: expected STAGE.KEY=VALUE (a config key, dots for nested keys) "
                        "or vars.NAME=VALUE")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    return keys, value


def apply_overrides(data: Any, overrides: list[str], source: PipelineSource) -> Any:
    """The file's data with each `--set` applied, as if the file said so: `STAGE.KEY=VALUE` sets a
    key of the stage's config (`STAGE.enabled` the stage's switch), `vars.NAME=VALUE` a var."""
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        return data                 # build_pipeline says what is wrong with the file itself
    for text in overrides:
        keys, value = parse_override(text)
        owner, rest = keys[0], keys[1:]
        if owner == "vars":
            if not isinstance(data.get("vars"), dict):
                data["vars"] = {}
            node = data["vars"]
        else:
            stages = [s for s in data["stages"] if isinstance(s, dict) and s.get("id") == owner]
            if not stages:
                ids = [s["id"] for s in data["stages"] if isinstance(s, dict) and isinstance(s.get("id"), str)]
                raise SpecError(f"--set {text!r}: no stage '{owner}'" + dag._suggest(owner, ids + ["vars"]),
                                path=source.path, hint="stages: " + ", ".join(ids))
            stage = stages[0]
            if rest == ["enabled"]:
                node = stage
            else:
                if not isinstance(stage.get("config"), dict):
                    stage["config"] = {}
                node = stage["config"]
        for key in rest[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[rest[-1]] = value
    return data


class _Problems:
    """The problems found so far, each a SpecError; raised together at the end of a pass."""

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    def add(self, error: SpecError) -> None:
        self.errors.extend(error.errors if isinstance(error, SpecErrors) else [error])

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise SpecErrors(self.errors)


class _ModelAbsent(Exception):
    """A stage with `enabled: auto` lacks a model or optional package it needs: it is left out, not refused."""

    def __init__(self, error: SpecError):
        super().__init__(str(error))
        self.error = error


def _check_structure(data: dict, source: PipelineSource) -> list[dict]:
    """The stages' dicts, once the top level and every stage's own keys are right (all problems
    raised at once: the graph needs every stage's id and depends_on)."""
    problems = _Problems()
    top_validator = _invalid(TOP_SCHEMA, data)
    if top_validator is not None:
        for err, msg, on_key in _errors(top_validator, TOP_SCHEMA):
            problems.add(source.error(msg, tuple(err.document_path), key=on_key))
        if not isinstance(data.get("stages"), list):
            problems.raise_if_any()
    stage_dicts = []
    for index, raw in enumerate(data["stages"]):
        where = ("stages", index)
        if not isinstance(raw, dict):
            problems.add(source.error(f"stage #{index + 1}: expected a mapping with id, type, depends_on, config; "
                                      f"got {_describe(raw)}", where))
            continue
        stage_validator = _invalid(STAGE_SCHEMA, raw)
        if stage_validator is not None:
            stage_name = raw.get("id") if isinstance(raw.get("id"), str) else f"#{index + 1}"
            for err, msg, on_key in _errors(stage_validator, STAGE_SCHEMA):
                problems.add(source.error(msg, where + tuple(err.document_path), key=on_key, stage=stage_name))
            continue
        if raw["id"] in RESERVED_IDS:
            problems.add(source.error(f"'{raw['id']}' is a reserved name and cannot be a stage id", where + ("id",),
                                      stage=raw["id"]))
            continue
        stage_dicts.append(raw)
    problems.raise_if_any()
    return stage_dicts


def _leave_out_unneeded(targets: list[str], order: list[str], deps: dict, broken: dict, skipped: dict) -> None:
    """A run of some stages: a stage with a problem that no target needs is left out, not refused."""
    needed = set()
    for target in targets:
        group = target.partition(":")[0]
        if group in deps:
            needed |= {group} | dag.ancestors(group, deps)
    for stage_id in [s for s in order if s in broken and s not in needed]:
        error = broken.pop(stage_id)
        skipped[stage_id] = (f"not needed by this run and has a problem: {error}" if error is not None
                             else "not needed by this run and downstream of a stage with a problem")


def _check_resources(data: dict, stage_dicts: list[dict], source: PipelineSource, problems: _Problems) -> dict:
    capacity = dict(data.get("resources") or {})
    for index, raw in enumerate(stage_dicts):
        for name, amount in (raw.get("resources") or {}).items():
            if name in capacity and amount > capacity[name]:
                problems.add(source.error(f"asks for {amount:g} '{name}' but the pipeline has only {capacity[name]:g} "
                                          f"(top-level resources)", ("stages", index, "resources", name),
                                          stage=raw["id"], config_key=None))
    return capacity


def build_pipeline(data: Any, source: PipelineSource, *, check_inputs: bool = True,
                   targets: list[str] | None = None, output_root: str | os.PathLike | None = None) -> Pipeline:
    if data is None:
        raise SpecError("the pipeline file is empty; expected 'pipeline:' and 'stages:'", path=source.path)
    if not isinstance(data, dict):
        raise source.error(f"expected a mapping with 'pipeline:' and 'stages:', got {_describe(data)}")
    stage_dicts = _check_structure(data, source)
    ids = [s["id"] for s in stage_dicts]
    deps = {s["id"]: list(s.get("depends_on") or []) for s in stage_dicts}
    index_of = {}
    for i, stage_id in enumerate(ids):
        index_of.setdefault(stage_id, i)

    def dag_error(message, stage_index=None, field=None, item=None, stage=None):
        where = ("stages", stage_index) if stage_index is not None else ()
        if field:
            where += (field,)
        if item is not None:
            where += (item,)
        return source.error(message, where, stage=stage, cls=DagError)

    batches = foreach.Batches(stage_dicts, source)
    batches.add_implied_deps(deps)
    order = dag.check_graph(ids, deps, dag_error)

    meta = data["pipeline"]
    env_block = {k: str(v) for k, v in (data.get("env") or {}).items()}
    resolver = _Resolver(source, {}, {}, {"name": meta["name"], "version": str(meta.get("version", ""))})
    resolver.stage_ids = set(ids)
    # env values may use the process environment; vars may use env
    env_secrets: list[str] = []
    resolver.env = {k: resolver.value(v, ("env", k), None, set(), env_secrets, False) for k, v in env_block.items()}
    resolver.vars = resolver.value(data.get("vars") or {}, ("vars",), None, set(), env_secrets, False)
    batches.discover(resolver.vars)

    lines = source.stage_lines()
    stages: dict[str, PipelineStage] = {}
    checked_inputs: list[str] = []
    skipped: dict[str, str] = {}                # left out, with why
    broken: dict[str, SpecError] = {}           # has a problem (reported unless no target needs it)
    for stage_id in order:
        index = index_of[stage_id]
        raw = stage_dicts[index]
        where = ("stages", index)
        left_out = [d for d in deps[stage_id] if d in skipped or d in broken]
        if left_out:
            if all(d in skipped for d in left_out):
                skipped[stage_id] = f"upstream stage '{left_out[0]}' is left out"
            else:
                broken[stage_id] = None         # not checked: an upstream stage has a problem
            continue
        enabled = raw.get("enabled", True)
        if enabled is False:
            skipped[stage_id] = "enabled: false"
            continue
        added: list[str] = []
        try:
            checked_inputs.extend(_build_stage(
                stage_id, raw, where, deps, source=source, resolver=resolver, batches=batches,
                env_secrets=env_secrets, lines=lines, stages=stages, added=added, check_inputs=check_inputs,
                auto=enabled == "auto", output_root=output_root))
        except (_ModelAbsent, SpecError) as exc:
            for name in added:
                del stages[name]
            if isinstance(exc, _ModelAbsent):
                hint = f" ({exc.error.hint})" if exc.error.hint else ""
                skipped[stage_id] = f"enabled: auto, and {exc.error.message}{hint}"
            else:
                broken[stage_id] = exc

    if targets:
        _leave_out_unneeded(targets, order, deps, broken, skipped)
    problems = _Problems()
    for error in broken.values():
        if error is not None:
            problems.add(error)
    capacity = _check_resources(data, stage_dicts, source, problems)
    problems.raise_if_any()
    source_path = Path(source.path) if source.path != "<dict>" else None
    pipeline = Pipeline(
        id=meta.get("id") or pipeline_id_for(meta["name"]), config=copy.deepcopy(meta),
        output_root=os.path.abspath(output_root) if output_root else None,
        env_used=resolver.env_used, input_files=checked_inputs, resources=capacity,
        name=meta["name"], version=str(meta.get("version", "")),
        stages=[stages[m] for i in ids if i not in skipped for m in batches.members(i)],
        batches={k: v for k, v in batches.keys().items() if k not in skipped}, globs=batches.globs,
        source=source_path, env=resolver.env,
        vars=resolver.vars, state_dir=Path(meta["state_dir"]) if meta.get("state_dir") else None,
        max_parallel_stages=meta.get("max_parallel_stages"), skipped=skipped,
        safety=SafetySettings(**(data.get("safety") or {})))
    return pipeline


def _build_stage(stage_id: str, raw: dict, where: tuple, deps: dict, *, source: PipelineSource,
                 resolver: _Resolver, batches: foreach.Batches, env_secrets: list[str], lines: dict,
                 stages: dict[str, PipelineStage], added: list[str], check_inputs: bool, auto: bool,
                 output_root: str | os.PathLike | None = None) -> list[str]:
    """Add each instance of one stage (one, or one per item of a batch stage) to `stages` (their
    names to `added`); return the input files checked. A SpecError for its first problem (all of
    its config's), `_ModelAbsent` when `auto` and a model it needs is absent."""
    try:
        cls = get_executor_class(raw["type"])
    except StageConfigError as exc:
        raise source.error(exc.message, where + ("type",), stage=stage_id, hint=exc.hint) from None
    templated = _has_reference(raw.get("config"))
    upstream = dag.Upstream(stage_id, deps) if templated else set()
    quote_keys = tuple(cls.shell_template_keys)
    checked: list[str] = []
    for instance in batches.instances(stage_id, raw.get("config") or {}, where, quote_keys):
        name = instance.id         # the stage id, or "stage:item" for one item of a batch stage
        batches.view(instance, upstream, resolver.configs, resolver.masked)
        secrets = list(env_secrets)
        config_raw = instance.config
        resolved = resolver.value(config_raw, where + ("config",), name, upstream, secrets, False, quote_keys)
        # nothing to substitute (no `{`): nothing to mask either
        masked = (resolver.value(config_raw, where + ("config",), name, upstream, None, True, quote_keys)
                  if templated else resolved)
        resolved, masked = _rooted(resolved, output_root), _rooted(masked, output_root)
        resolved = _validate_config(cls, resolved, source, where, name)
        masked = _fill_defaults(masked, resolved)
        resolver.configs[stage_id] = resolved
        resolver.masked[stage_id] = masked
        batches.record(instance, resolved, masked)
        secrets = sorted(set(secrets))
        # a batch stage's items may carry different secrets: downstream stages carry them all
        resolver.secrets[stage_id] = sorted({*resolver.secrets.get(stage_id, ()), *secrets})
        retry = RetryPolicy(**raw["retry"]) if raw.get("retry") is not None else None
        stage = PipelineStage(
            id=name, type=raw["type"], depends_on=batches.depends_on(instance, deps[stage_id]), config=resolved,
            retry=retry, timeout=raw.get("timeout"), resources=dict(raw.get("resources") or {}),
            priority=raw.get("priority", 0), line=lines.get(stage_id), secret_values=secrets, fingerprint_config=masked,
            description=raw.get("description", ""), group=instance.group, item=instance.item)
        stages[name] = stage
        added.append(name)
        executor = cls(name, resolved)
        try:
            if executor.validate_config() is False:
                raise StageConfigError(f"{cls.__name__}.validate_config() rejected the config (it returned "
                                       "False); see the stage type's documentation for what it accepts")
        except PipelineError as exc:
            key = exc.key
            error = source.error(exc.message, where + ("config", key) if key else where + ("config",),
                                 stage=name, config_key=key, hint=exc.hint)
            if auto and isinstance(exc, (ModelWeightsError, MissingPackageError)):
                raise _ModelAbsent(error) from None
            raise error from None
        if check_inputs:
            checked.extend(_check_input_files(executor, stage, stages, deps, source, where))
    return checked


def _has_reference(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return isinstance(value, str) and "{" in value


def _validate_config(cls, config: dict, source: PipelineSource, where: tuple, stage_id: str) -> dict:
    config = apply_defaults(cls.config_schema or {}, config)
    validator = _invalid(cls.config_schema or _EMPTY_SCHEMA, config, allow_unknown=not cls.config_schema)
    if validator is not None:
        errors = []
        for err, msg, on_key in _errors(validator, cls.config_schema, source.secrets):
            path = tuple(err.document_path)
            key = ".".join(str(p) for p in path) if path else None
            errors.append(source.error(msg, where + ("config",) + path, key=on_key, stage=stage_id, config_key=key))
        raise errors[0] if len(errors) == 1 else SpecErrors(errors)
    return config


def _fill_defaults(masked: dict, resolved: dict) -> dict:
    """The masked config plus whatever defaults normalisation added to the resolved one."""
    out = dict(resolved)
    out.update(masked)
    return out


def _check_input_files(executor: StageExecutor, stage: PipelineStage, stages: dict[str, PipelineStage],
                       deps: dict, source: PipelineSource, where: tuple) -> list[str]:
    """Raise for a declared input that neither exists nor lies in an upstream output folder;
    return the inputs that exist (the spec cache re-checks them)."""
    files = executor.input_files()
    existing: list[str] = []
    for file in files:
        if os.path.exists(file):
            existing.append(file)
            continue
        if _made_upstream(file, stage, stages):
            continue
        found = _find_value(stage.config, file) or ()
        key = ".".join(str(p) for p in found if isinstance(p, str)) or None
        raise source.error(f"input file '{file}' does not exist", where + ("config",) + found,
                           stage=stage.id, config_key=key, cls=SpecError)
    return existing


def _made_upstream(file: str, stage: PipelineStage, stages: dict[str, PipelineStage]) -> bool:
    """Whether `file` lies in the output folder of a stage upstream of `stage`: a direct one (a
    gather has thousands: looked up through the file's folders), else any (nearest first)."""
    absolute = os.path.abspath(file)
    direct = {os.path.abspath(stages[d].config["output_dir"]) for d in stage.depends_on
              if stages[d].config.get("output_dir")}
    folder = os.path.dirname(absolute)
    while True:
        if absolute in direct or folder in direct:
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for up in dag.Upstream(stage.id, foreach.ExpandedGraph(stages)):
        out = stages[up].config.get("output_dir")
        if out:
            folder = os.path.abspath(out)
            if absolute == folder or absolute.startswith(folder + os.sep):
                return True
    return False


def _find_value(node: Any, wanted: Any, path: tuple = ()) -> tuple | None:
    """Document path of the first occurrence of `wanted` inside `node`."""
    if node == wanted:
        return path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _find_value(value, wanted, path + (key,))
        if found is not None:
            return found
    return None
