"""`pipeline-tasks graph`: the terminal view (`--format ascii`) and SVG/PNG drawn by Graphviz's
`dot` (an error that says how to install it where it is missing)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from conftest import cli_env
from test_cli_habits import PIPELINE

GRAPHVIZ_INSTALL = "apt-get install -y graphviz"


@pytest.fixture
def pipeline(ws):
    ws.write("p.yaml", PIPELINE)
    return ws


def test_ascii_graph_draws_each_stage_below_what_it_needs(pipeline):
    ws = pipeline
    text = ws.cli("graph", "p.yaml", "--format", "ascii", check=True).stdout
    lines = text.splitlines()
    rows = {name: next(i for i, line in enumerate(lines) if re.search(rf"\*[ |/\\]* {name}  \[custom\]$", line))
            for name in ("a", "b", "c", "side")}
    assert rows["a"] < rows["b"] < rows["c"] and rows["a"] < rows["side"]
    assert lines[0].startswith("*") and "a  [custom]" in lines[0]
    assert any(line.strip() in ("|\\", "|/") for line in lines)        # the branch to side and back
    ws.cli("run", "p.yaml", "--until", "b", check=True)
    text = ws.cli("graph", "p.yaml", "--format", "ascii", "--status", check=True).stdout
    assert "b  [custom]  success" in text and "c  [custom]  pending" in text


def test_svg_and_png_need_graphviz_and_say_how_to_install_it(pipeline, tmp_path):
    ws = pipeline
    empty = tmp_path / "no-programs"
    empty.mkdir()
    env = {**cli_env(), "PATH": str(empty)}
    proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", "graph", "p.yaml", "--format", "svg"],
                          cwd=ws.root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "needs Graphviz's `dot` program, which is not installed" in proc.stderr
    assert "apt-get install graphviz" in proc.stderr and "--format dot" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_svg_and_png_drawn_by_graphviz(pipeline):
    if shutil.which("dot") is None:
        pytest.fail(f"Graphviz is not installed; the graph drawing test needs it: {GRAPHVIZ_INSTALL}")
    ws = pipeline
    ws.cli("graph", "p.yaml", "--format", "svg", "-o", "g.svg", check=True)
    svg = (ws.root / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert all(f">{name}<" in svg for name in ("a", "b", "c", "side"))
    ws.cli("graph", "p.yaml", "--format", "png", "-o", "g.png", check=True)
    assert (ws.root / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
