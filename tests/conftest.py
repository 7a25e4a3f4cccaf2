"""Shared fixtures of the test suite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# fixtures shared by several test modules, registered once (one session-scoped render per session)
pytest_plugins = ["video_fixtures", "character_fixtures"]

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


def _shared_data() -> Path:
    """Real media clips: $PIPELINE_TASKS_SHARED_DATA, else the `shared/data` folder beside the
    checkout, else /work/shared/data."""
    candidates = [REPO_ROOT.parent / "shared" / "data"]
    if os.environ.get("PIPELINE_TASKS_SHARED_DATA"):
        candidates.insert(0, Path(os.environ["PIPELINE_TASKS_SHARED_DATA"]))
    candidates.append(Path("/work/shared/data"))
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = _shared_data()


def wait_for(predicate, *, timeout: float, what: str) -> None:
    """Poll `predicate` until it is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class Workspace:
    """A temporary working directory with helpers to write pipelines and run the CLI."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def cli(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pipeline_tasks", *args], cwd=self.root, env=cli_env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"CLI {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "pipeline_tasks", *args], cwd=self.root, env=cli_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def runs(self) -> list[str]:
        log = self.root / "runs.log"
        return log.read_text().split() if log.exists() else []

    def reset_runs(self) -> None:
        (self.root / "runs.log").unlink(missing_ok=True)

    def state_dirs(self) -> list[Path]:
        return sorted(p for p in (self.root / ".pipeline").iterdir() if p.is_dir())

    def events(self) -> list[dict]:
        (state,) = self.state_dirs()
        lines = (state / "events.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(autouse=True)
def spec_cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own, empty spec cache (never the user's): inherited by the CLI it runs."""
    folder = tmp_path_factory.mktemp("spec-cache")
    monkeypatch.setenv("PIPELINE_TASKS_CACHE", str(folder))
    monkeypatch.delenv("PIPELINE_TASKS_NO_CACHE", raising=False)
    return folder


@pytest.fixture(autouse=True)
def models_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own, empty model cache and the built-in model catalogue (never the user's)."""
    folder = tmp_path_factory.mktemp("models")
    monkeypatch.setenv("PIPELINE_TASKS_MODELS_DIR", str(folder))
    monkeypatch.delenv("PIPELINE_TASKS_MODEL_CATALOGUE", raising=False)
    return folder


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    return Workspace(tmp_path)
