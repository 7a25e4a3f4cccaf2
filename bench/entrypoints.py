"""No-op run of one generated pipeline through each of the three entry points, CPU time.

    python bench/entrypoints.py --stages 10000 --repeat 3

The same binary-tree pipeline as bench/engine.py (custom stages writing one small file), run once
to completion, then re-run with nothing to do through: the CLI (`pipeline-tasks run`), plain `doit`
with the repository's root dodo.py (`doit config=p.yaml`), and the Python API
(`PipelineOrchestrator.execute_pipeline`) in a fresh interpreter. Best of --repeat, user + system
CPU seconds of the whole process; the API line also prints the GC thresholds it leaves behind.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine  # noqa: E402  (bench/engine.py: pipeline generator and timer)

ROOT = Path(__file__).resolve().parent.parent
API = """
import gc
from pipeline_tasks import OrchestratorConfig, PipelineBuilder, PipelineOrchestrator, PipelineState
pipeline = PipelineBuilder().load_from_yaml("p.yaml")
result = PipelineOrchestrator(OrchestratorConfig(show_progress=False)).execute_pipeline(pipeline)
assert result.status == PipelineState.COMPLETED and not result.executed, result
print(gc.get_threshold())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [".", os.environ.get("PYTHONPATH")])))
    workdir = Path(tempfile.mkdtemp(prefix="bench-entry-"))
    engine.write_pipeline(workdir / "p.yaml", args.stages)
    (workdir / "bench_stage.py").write_text(engine.STAGE_MODULE)
    shutil.copy(ROOT / "dodo.py", workdir / "dodo.py")
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")      # registers the durable backend
    commands = {
        "CLI `pipeline-tasks run`": [sys.executable, "-m", "pipeline_tasks", "run", "p.yaml", "--no-progress"],
        "plain `doit` (root dodo.py)": [sys.executable, "-m", "doit", "config=p.yaml"],
        "Python API": [sys.executable, "-c", API],
    }
    engine.timed(commands["CLI `pipeline-tasks run`"], workdir, env)            # the first, real run
    print(f"no-op run of {args.stages} stages, CPU seconds (user + system), best of {args.repeat}\n")
    for name, cmd in commands.items():
        best = min(engine.timed(cmd, workdir, env) for _ in range(args.repeat))
        print(f"| {name} | {best:.2f} |")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
