"""The package's layers: no module imports (even lazily, inside a function) from a layer above it.

ground floor (errors, models, atomic, jsonl, redaction, version, process_groups) < weights/ < state/
< executor, settings < stages/ < spec/ < engine/ < report/
< entry points (cli, orchestrator, builder, __main__, __init__, templates)."""
import ast
from pathlib import Path

import pipeline_tasks

PACKAGE = Path(pipeline_tasks.__file__).parent
LAYERS = [
    {"errors", "models", "atomic", "jsonl", "redaction", "version", "process_groups"},
    {"weights"},
    {"state"},
    {"executor", "settings"},
    {"stages"},
    {"spec"},
    {"engine"},
    {"report"},
    {"cli", "orchestrator", "builder", "__main__", "__init__", "templates"},
]


def layer(module: str) -> int:
    """Layer of a dotted name inside the package ('' is the package itself: the top)."""
    head = module.split(".")[0] if module else "__init__"
    for rank, names in enumerate(LAYERS):
        if head in names:
            return rank
    raise AssertionError(f"module {module!r} is in no layer; add it to LAYERS and docs/architecture.md")


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported dotted name relative to the package, line) for every import in one file."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts[:-1]          # a module's package; for __init__ that is the package it defines
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("pipeline_tasks"):
                target = node.module.partition(".")[2]
            else:
                continue
            if target:
                found.append((target, node.lineno))
            else:                 # `from .. import x`: each name is a module of the package
                found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((a.name.partition(".")[2], node.lineno) for a in node.names
                         if a.name.startswith("pipeline_tasks."))
    return found


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = layer(module)
        for target, line in imports(path):
            if layer(target) > own:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from ..engine import runtime\n")
    assert layer("engine.runtime") > layer("state.events")
    # a state/ module importing engine/ is what the check must flag
    target = PACKAGE / "state" / "_probe_upward.py"
    target.write_text(bad.read_text())
    try:
        found = imports(target)
    finally:
        target.unlink()
    assert found == [("engine", 1)] and layer(found[0][0]) > layer("state._probe_upward")


def test_the_command_line_loads_no_http_client_no_status_code_and_no_psutil():
    """What only `models fetch` and `status` need is imported by them, and psutil only by what
    measures a run (capacity, safety guard, usage): every other command (a no-op `run` of a batch
    above all, `plan`) would pay for it at each start."""
    import subprocess
    import sys
    code = ("import sys, pipeline_tasks.cli; "
            "print(sorted(m for m in ('http.client', 'urllib.request', 'ssl', 'pipeline_tasks.engine.status', "
            "'psutil') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_stage_module_loads_no_engine():
    """A process that imports one of the package's modules (a stage's helpers, such as the
    segmentation's scene workers) does not pay for the engine: the package's public names (the
    builder, the orchestrator, doit) are imported on first use, not by the package itself."""
    import subprocess
    import sys
    code = ("import sys, pipeline_tasks.stages.characters.scene_workers; "
            "print(sorted(m for m in ('doit', 'yaml', 'pipeline_tasks.builder', 'pipeline_tasks.orchestrator', "
            "'pipeline_tasks.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
