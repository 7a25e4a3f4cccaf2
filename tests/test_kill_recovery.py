"""kill -9 of a whole run, at random points, over the demo pipeline (a shorter video, plus a custom
command stage that writes its output bit by bit), again and again until the pipeline completes:

- no process of a killed run outlives it (the custom command included: it runs in a process group
  of its own);
- nothing half-written is recorded: every manifest on disk lists files exactly as they are;
- nothing finished is redone: a stage whose success doit recorded never starts again;
- the final outputs are byte for byte those of an uninterrupted run.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT

from pipeline_tasks.engine import manifest as mf
from pipeline_tasks.engine.status import recorded_values

pytestmark = pytest.mark.slow

KILLS = 10                  # at least this many kill -9, over as many complete runs as it takes
COMMAND_KILLS = 3           # of which at least this many while the custom command runs
LINES = 60                  # the command takes ~3.5 s: longer than a killed run's processes may outlive it
COMMAND = (f": > {{output_dir}}/partial.txt; for i in $(seq 1 {LINES}); do echo line $i >> {{output_dir}}/partial.txt; "
           f"sleep 0.05; done; mv {{output_dir}}/partial.txt {{output_dir}}/lines.txt")


def pipeline_yaml() -> str:
    """configs/demo.yaml up to the dataset, on a 6 s video, plus the `lines` command stage."""
    data = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())
    stages = {s["id"]: s for s in data["stages"]}
    stages["make_video"]["config"].update(duration=6, fps=12, width=320, height=180, num_scenes=3, num_characters=2)
    stages["cluster"]["config"].update(min_cluster_size=5)
    stages["dataset"]["config"].update(target_size=20, resolution=128)
    kept = [stages[s] for s in ("make_video", "extract_frames", "segment", "cluster", "dataset")]
    kept.append({"id": "lines", "type": "custom", "depends_on": ["extract_frames"],
                 "config": {"command": COMMAND, "output_dir": "work/demo/lines"}})
    data["stages"] = kept
    data["pipeline"]["name"] = "killed"
    return yaml.safe_dump(data, sort_keys=False)


STAGES = ["make_video", "extract_frames", "segment", "cluster", "dataset", "lines"]


def outputs(root: Path) -> dict[str, object]:
    """Every file the run leaves in the output folders, comparable between runs: bytes, except
    the folder locks (they name the run that holds them), the manifests without their run facts
    (durations), and clustering's `embeddings.npz` by its arrays less `stamps`: it caches each
    crop's embedding under the crop file's mtime, which no two runs share (nor does the zip
    container's own time stamp)."""
    found: dict[str, object] = {}
    for path in sorted((root / "work/demo").rglob("*")):
        rel = str(path.relative_to(root))
        if not path.is_file() or path.name == ".stage.lock":
            continue
        if path.name == ".stage.json":
            data = json.loads(path.read_text())
            found[rel] = {k: v for k, v in data.items() if k not in mf.RUN_FACTS}
            for entry in found[rel]["files"]:
                if entry["path"].endswith(".npz"):
                    entry.pop("digest")
        elif path.suffix == ".npz":
            with np.load(io.BytesIO(path.read_bytes())) as arrays:
                found[rel] = {k: arrays[k].tolist() for k in sorted(arrays.files) if k != "stamps"}
        else:
            found[rel] = path.read_bytes()
    return found


def survivors(root: Path) -> list[str]:
    """Processes (other than this test's) working in the workspace: what a run left running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(str(root) + os.sep):
            found.append(f"{entry}: {cmdline}")
    return found


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Workspace:
    def __init__(self, ws):
        self.ws = ws
        self.root = ws.root
        self.manifests = {s: self.root / "work/demo" / folder / ".stage.json" for s, folder in zip(
            STAGES, ["video", "frames", "characters", "clusters", "dataset", "lines"])}

    def state(self) -> Path:
        (state,) = self.ws.state_dirs()
        return state

    def recorded(self) -> set[str]:
        """Stages whose success doit recorded (database or journal)."""
        if not (self.root / ".pipeline").exists():
            return set()
        return set(recorded_values(self.state() / "doit.sqlite")) & set(STAGES)

    def events_from(self, offset: int) -> list[dict]:
        path = self.state() / "events.jsonl" if (self.root / ".pipeline").exists() else None
        if path is None or not path.exists():
            return []
        with open(path, "rb") as fh:
            fh.seek(offset)
            return [json.loads(line) for line in fh if line.strip()]

    def events_size(self) -> int:
        if not (self.root / ".pipeline").exists():
            return 0
        path = self.state() / "events.jsonl"
        return path.stat().st_size if path.exists() else 0

    def check_recorded_outputs(self) -> None:
        """Every manifest on disk lists its files as they are; the command's output is whole."""
        for stage, manifest in self.manifests.items():
            if not manifest.exists():
                continue
            data = mf.read(manifest)
            assert data is not None, f"{manifest} is on disk but is no manifest"
            for entry in data["files"]:
                path = manifest.parent / entry["path"]
                if entry["path"].endswith(".npz"):
                    assert path.stat().st_size == entry["size"], path
                else:
                    assert mf.sized_digest(path) == (entry["size"], entry["digest"]), f"{stage}: {path} changed"
        lines = self.manifests["lines"].parent / "lines.txt"
        if self.manifests["lines"].exists():
            assert lines.read_text().splitlines() == [f"line {i}" for i in range(1, LINES + 1)]

    def check_status(self) -> None:
        """What `status` calls done has a manifest."""
        proc = self.ws.cli("status", "p.yaml", "--json", check=True)
        for st in json.loads(proc.stdout)["stages"]:
            if st["state"] in ("success", "up to date"):
                assert self.manifests[st["stage_id"]].exists(), st

    def wipe(self) -> None:
        shutil.rmtree(self.root / "work", ignore_errors=True)
        shutil.rmtree(self.root / ".pipeline", ignore_errors=True)


def test_kill_9_at_random_points_of_the_demo(ws):
    ws.write("p.yaml", pipeline_yaml())
    space = Workspace(ws)
    began = time.monotonic()
    ws.cli("run", "p.yaml", "--no-progress", check=True, timeout=300)
    longest = max(4.0, time.monotonic() - began)      # kills fall anywhere within an uninterrupted run
    reference = outputs(ws.root)
    assert any(k.endswith("lines/lines.txt") for k in reference) and any(k.endswith(".npz") for k in reference)

    rng = random.Random(20240613)
    kills: list[str] = []
    command_kills = 0
    rounds = 0
    def enough() -> bool:
        return len(kills) >= KILLS and command_kills >= COMMAND_KILLS

    while not enough():
        rounds += 1
        # a round ends with the first run that completes; how many kills land before it depends on
        # the machine's load (delays are drawn from one uninterrupted run's time): a bound, not a count
        assert rounds <= 12, kills
        space.wipe()
        attempts = 0
        while True:
            attempts += 1
            assert attempts <= 40, f"the pipeline made no progress over {attempts} runs: {kills}"
            recorded_before = space.recorded()
            offset = space.events_size()
            proc = ws.popen("run", "p.yaml", "--no-progress")
            command_mode = ((len(kills) % 3 == 2 or command_kills < COMMAND_KILLS + len(kills) - KILLS)
                            and "lines" not in recorded_before)
            if enough():
                delay = None                                # enough: let this round finish
            elif command_mode:
                # the command's own process, not its file: a killed run leaves partial.txt behind
                started = wait_for(lambda p=proc: p.poll() is not None
                                   or any("partial.txt" in s for s in survivors(ws.root)), timeout=120)
                assert started
                delay = rng.uniform(0.0, 1.0)
            else:
                delay = rng.uniform(0.2, longest)
            if delay is not None and not wait_for(lambda p=proc: p.poll() is not None, timeout=delay):
                during_command = any("partial.txt" in p for p in survivors(ws.root))
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills.append(f"round {rounds}: {'command' if command_mode else 'random'} +{delay:.2f}s"
                             f"{' (command running)' if during_command else ''}")
                command_kills += during_command
                assert wait_for(lambda: not survivors(ws.root), timeout=2), survivors(ws.root)
                space.check_recorded_outputs()
                space.check_status()
            else:
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
            redone = [e["stage_id"] for e in space.events_from(offset)
                      if e["type"] == "pipeline.stage_started" and e["stage_id"] in recorded_before]
            assert not redone, f"finished stages ran again: {redone} (kills so far: {kills})"
            if proc.returncode == 0:
                break
        assert space.recorded() == set(STAGES)
        final = outputs(ws.root)
        differ = sorted(k for k in set(final) | set(reference) if final.get(k) != reference.get(k))
        assert not differ, f"outputs differ from the uninterrupted run's: {differ} (after {kills})"
    assert not survivors(ws.root)
    print(f"{len(kills)} kills over {rounds} rounds: " + "; ".join(kills))
