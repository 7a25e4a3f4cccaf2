"""`pipeline-tasks` / `python -m pipeline_tasks`: the command line.

User errors (PipelineError) print one line on stderr and exit non-zero, without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .engine.capacity import parse_option
from .engine.progress import format_eta
from .engine.session import GC_THRESHOLDS, PipelineSession, doit_main
from .engine.usage import describe as describe_usage
from .errors import PipelineError, PipelineNotFoundError
from .models import OrchestratorConfig, Pipeline, PipelineState
from .orchestrator import PipelineOrchestrator, pipeline_of
from .spec.loader import load_pipeline
from .state.checkpoint import read_checkpoint
from .state.paths import AbortRun, RunLock, StatePaths, read_record, update_record
from .version import __version__
from .weights.commands import add_models_parser

DEFAULT_CONFIG = "configs/demo.yaml"
WATCH_INTERVAL = 2.0              # seconds between `status --watch` frames


# -- resolving what the user named -------------------------------------------------------------------
def resolve_pipeline(target: str | None, state_root: str, output_root: str | None = None,
                     **load: Any) -> Pipeline:
    """The pipeline named by a YAML or JSON path, a pipeline id, or a checkpoint file (`.json`,
    `.json.gz`). `output_root` (`create --output-dir`) roots its relative output paths; a pipeline
    id or a checkpoint brings the root it was created with. `load`: `load_pipeline`'s `overrides`
    and `targets`."""
    target = target or DEFAULT_CONFIG
    path = Path(target)
    if path.is_file() and (path.name.endswith(".json.gz") or (path.suffix == ".json" and _is_checkpoint(path))):
        return pipeline_of(read_checkpoint(path), path, **load)
    if path.exists():
        return load_pipeline(path, output_root=output_root, **load)
    if path.suffix in (".yaml", ".yml", ".json") or os.sep in target:
        raise PipelineNotFoundError("pipeline file not found", path=path)
    paths = StatePaths(Path(state_root) / target)
    record = read_record(paths)
    if record and record.get("source"):
        return load_pipeline(_recorded_source(record, state_root), output_root=record.get("output_root"), **load)
    if record and paths.checkpoint.exists():          # a pipeline built from a dict: its checkpoint keeps it
        return pipeline_of(read_checkpoint(paths.checkpoint), paths.checkpoint, **load)
    known = ", ".join(sorted(r["pipeline_id"] for r in _records(state_root))) or "none yet"
    raise PipelineNotFoundError(f"'{target}' is neither a pipeline file nor a known pipeline id",
                                hint=f"known ids in {state_root}: {known}")


def _recorded_source(record: dict, state_root: str) -> Path:
    """The pipeline file a run record names. Its path is relative to the project folder the run
    worked in (where its relative paths resolve): tried from here, then from the folder the record
    names, then from the folder holding the state root. Found elsewhere than here, the command
    works from that folder, as the run did."""
    source = Path(record["source"])
    if source.is_absolute() or source.exists():
        return source
    folders = [record.get("project_dir"), Path(state_root).resolve().parent]
    for folder in (Path(f) for f in folders if f):
        if (folder / source).is_file():
            os.chdir(folder)
            return source
    raise PipelineNotFoundError(f"pipeline '{record.get('pipeline_id')}' was run from {source}, which is not "
                                "found from here nor from its project folder", path=source,
                                hint="run the command in the project folder, or name the pipeline file")


def _is_checkpoint(path: Path) -> bool:
    """A `.json` file is a checkpoint when it names a pipeline id and holds no stages; any other is
    a pipeline file (whose errors the spec reports)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "pipeline_id" in data and "stages" not in data


def _records(state_root: str) -> list[dict]:
    root = Path(state_root)
    out = []
    if root.is_dir():
        for child in sorted(root.iterdir()):
            record = read_record(StatePaths(child))
            if record and record.get("pipeline_id"):
                out.append(record)
    return out


def _session(args, targets: list[str] | None = None) -> PipelineSession:
    here, state_dir = os.getcwd(), os.path.abspath(args.state_dir)
    pipeline = resolve_pipeline(args.target, args.state_dir, getattr(args, "output_dir", None),
                                overrides=getattr(args, "set", None), targets=targets)
    if os.getcwd() != here:                 # working from the pipeline's project folder now
        args.state_dir = state_dir
    for stage_id, why in pipeline.skipped.items():
        print(f"notice: stage '{stage_id}' is left out: {why}", file=sys.stderr)
    return PipelineSession.open(pipeline, args.state_dir if args.state_dir_given else None)


def check_stage_names(session: PipelineSession, names: list[str]) -> None:
    """Our own error for a stage name the pipeline does not have, with the stages it has."""
    pipeline = session.pipeline
    known = list(dict.fromkeys(s.group or s.id for s in pipeline.stages)) + [g for g in pipeline.batches]
    members = set(pipeline.stage_ids)
    for name in names:
        if name in known or name in members:
            continue
        if name in pipeline.skipped:
            raise PipelineError(f"stage '{name}' is left out of this pipeline: {pipeline.skipped[name]}")
        from .spec.dag import _suggest
        raise PipelineError(f"unknown stage '{name}'{_suggest(name, known)}",
                            hint="the stages: " + ", ".join(dict.fromkeys(known)))


# -- commands -----------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    session = _session(args)
    session.tasks()             # compiling checks what only the engine knows: output folders, the state directory
    session.scheduling()        # and that every stage fits in the machine (or the declared capacity)
    pipeline = session.pipeline
    print(f"ok: {pipeline.source}: pipeline '{pipeline.name}' with {len(pipeline.stages)} stage(s)")
    return 0


def cmd_create(args) -> int:
    session = _session(args)
    session.paths.ensure()
    record = read_record(session.paths)
    if record is None or record.get("state") is None:
        update_record(session.paths, pipeline_id=session.pipeline_id, name=session.pipeline.name,
                      source=str(session.pipeline.source), output_root=session.pipeline.output_root,
                      state=PipelineState.PENDING.value, created_at=time.time(),
                      stage_count=len(session.pipeline.stages))
    print(session.pipeline_id)
    return 0


def _orchestrator(args, session: PipelineSession) -> PipelineOrchestrator:
    orchestrator = PipelineOrchestrator(OrchestratorConfig(
        state_dir=Path(args.state_dir if args.state_dir_given else session.paths.root.parent),
        max_parallel_stages=args.jobs or session.pipeline.max_parallel_stages or 1,
        show_progress=not args.no_progress, continue_on_error=args.keep_going, durable=not args.no_durable,
        resources=parse_option(args.resources)))
    orchestrator.follow_events = False      # nobody in this process listens: the display tails the log itself
    orchestrator.cap_workers_by_plan = False    # a fresh process: workers as asked (the safety guard stops them)
    return orchestrator


def cmd_run(args) -> int:
    targets = (args.stage or []) + (args.until or [])
    session = _session(args, targets=targets or None)
    if args.command == "resume" and RunLock(session.paths, session.pipeline_id).is_held_elsewhere():
        return _resume_paused(session, args)
    check_stage_names(session, targets)
    if getattr(args, "dry_run", False):
        return cmd_plan(args, session)
    orchestrator = _orchestrator(args, session)
    result = orchestrator.execute_pipeline(session.pipeline, force=args.always, stages=targets or None)
    if result.status == PipelineState.COMPLETED:
        return 0
    if result.status == PipelineState.CANCELLED:
        print(f"cancelled; continue with: pipeline-tasks resume {session.pipeline_id}", file=sys.stderr)
        return 130
    from .engine.items import name_some
    for label, names in (("failed", [s for s in result.failed if s not in result.blocked]),
                         ("blocked", result.blocked)):
        by_stage: dict[str, list[str]] = {}
        for stage_id in (s for s in names if ":" in s):
            by_stage.setdefault(stage_id.partition(":")[0], []).append(stage_id.partition(":")[2])
        if by_stage:
            print(f"{label} items: " + "; ".join(f"{g}: {name_some(keys)}" for g, keys in by_stage.items()),
                  file=sys.stderr)
    print(f"error: pipeline '{session.pipeline_id}' failed: {result.error_message}", file=sys.stderr)
    print(f"  error reports: {session.paths.root / 'errors'}; rerun with: pipeline-tasks resume "
          f"{session.pipeline_id}", file=sys.stderr)
    return 1


def cmd_status(args) -> int:
    from .engine.status import pipeline_status  # each command imports what only it needs
    session = _session(args)
    from .engine.items import find_orphans, summarise
    redraw = bool(args.watch) and not args.json and sys.stdout.isatty()
    drawn = 0                           # lines of the previous frame, redrawn in place on a terminal
    while True:
        status = pipeline_status(session)
        rows = summarise(session.pipeline, ((s.stage_id, s.state.value) for s in status.stages))
        orphans = find_orphans(session) if session.pipeline.batches else []
        frame = io.StringIO()
        with contextlib.redirect_stdout(frame):
            if args.json:
                data = status.to_dict()
                if session.pipeline.batches:
                    data["items"] = [row.to_dict() for row in rows if row.batch]
                    data["orphans"] = [vars(o) for o in orphans]
                print(json.dumps(data, indent=2, default=str))
            else:
                _print_status(status, rows, orphans)
        text = frame.getvalue()
        if redraw and drawn:
            sys.stdout.write(f"\x1b[{drawn}F\x1b[J")         # back to the frame's first line, clear below
        sys.stdout.write(text)
        sys.stdout.flush()
        drawn = text.count("\n")
        if not args.watch or status.state not in ("running", "paused"):
            return 0
        time.sleep(args.interval)


def _print_status(status, rows, orphans) -> None:
    from .engine.items import describe
    head = f"{status.pipeline_id}: {status.state}, {status.done}/{len(status.stages)} stages ({status.percent:.0f}%)"
    if status.running_pid:
        head += f", pid {status.running_pid}"
    if status.eta is not None:
        head += f", ETA {format_eta(status.eta)}"
    if status.paused_reason:
        head += f" ({status.paused_reason})"
    print(head)
    if status.capacity and status.current:
        held = status.held
        print("  holding " + ", ".join(f"{name} {held[name]:g} of {status.capacity[name]:g}"
                                       for name in sorted(status.capacity)))
    batches = {row.stage_id: row for row in rows if row.batch}
    shown: set[str] = set()
    for st in status.stages:
        group, _, _ = st.stage_id.partition(":")
        if group in batches:             # a batch stage: one line with its item counts
            if group not in shown:
                shown.add(group)
                print(f"  {batches[group].state:<10} {group}  {describe(batches[group])}")
            continue
        line = f"  {st.state.value:<10} {st.stage_id}"
        if st.duration is not None:
            line += f"  {st.duration:.2f}s"
        if st.attempts and st.attempts > 1:
            line += f"  ({st.attempts} attempts)"
        if st.usage:
            line += "  " + describe_usage(st.usage)
        if st.progress:
            p = st.progress
            total = f"/{p['total']}" if p.get("total") is not None else ""
            line += (f"  {p.get('done')}{total} {p.get('unit', '')}, {p.get('rate') or 0:.1f}/s, "
                     f"ETA {format_eta(p.get('eta'))}")
        if st.error:
            line += f"  error: {st.error}"
        print(line)
    for group in batches:
        if group not in shown:
            print(f"  {'empty':<10} {group}  0 items")
    _print_orphans(orphans)


def _print_orphans(orphans) -> None:
    for orphan in orphans:
        print(f"  orphan     {orphan.stage_id}  ({orphan.files} file(s) in {orphan.output_dir or orphan.manifest}; "
              "its item left the pipeline)")
    if orphans:
        print(f"{len(orphans)} orphaned item(s): remove their files with `pipeline-tasks clean --orphans`")


def cmd_list(args) -> int:
    records = _records(args.state_dir)
    rows = []
    for record in records:
        paths = StatePaths(Path(args.state_dir) / record["pipeline_id"])
        state = record.get("state", PipelineState.PENDING.value)
        if state == "created":          # the name of PENDING in records of earlier versions
            state = PipelineState.PENDING.value
        if state in ("running", "paused") and not RunLock(paths, record["pipeline_id"]).is_held_elsewhere():
            state = "interrupted"
        if args.state and state != args.state:
            continue
        rows.append({"pipeline_id": record["pipeline_id"], "name": record.get("name"), "state": state,
                     "source": record.get("source"), "updated_at": record.get("updated_at")})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["updated_at"] or 0))
            print(f"{row['pipeline_id']:<32} {row['state']:<12} {when}  {row['source']}")
        if not rows:
            print("no pipelines" + (f" in state '{args.state}'" if args.state else "") + f" under {args.state_dir}")
    return 0


def cmd_cancel(args) -> int:
    session = _session(args)
    lock = RunLock(session.paths, session.pipeline_id)
    if not lock.is_held_elsewhere():
        raise PipelineError(f"pipeline '{session.pipeline_id}' is not running")
    holder = lock.holder() or {}
    session.paths.cancel_flag.touch()
    pid = holder.get("pid")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    print(f"cancelling {session.pipeline_id} (pid {pid})")
    deadline = time.time() + args.wait
    while time.time() < deadline and lock.is_held_elsewhere():
        time.sleep(0.1)
    if lock.is_held_elsewhere():
        print(f"still stopping after {args.wait:g} s", file=sys.stderr)
        return 1
    print(f"cancelled; continue with: pipeline-tasks resume {session.pipeline_id}")
    return 0


def _running(session: PipelineSession) -> RunLock:
    lock = RunLock(session.paths, session.pipeline_id)
    if not lock.is_held_elsewhere():
        raise PipelineError(f"pipeline '{session.pipeline_id}' is not running")
    return lock


def _wait_for_state(session: PipelineSession, lock: RunLock, states: tuple[str, ...], wait: float) -> bool:
    deadline = time.time() + wait
    while time.time() < deadline:
        record = read_record(session.paths) or {}
        if record.get("state") in states or not lock.is_held_elsewhere():
            return True
        time.sleep(0.1)
    return False


def cmd_pause(args) -> int:
    """Hold a running pipeline: no stage starts, running ones are stopped (SIGSTOP) until `resume`."""
    from .engine.safety import write_pause
    session = _session(args)
    lock = _running(session)
    write_pause(session.paths, by="user", reason="paused by pipeline-tasks pause", since=time.time())
    if not _wait_for_state(session, lock, (PipelineState.PAUSED.value,), args.wait):
        print(f"asked to pause; not paused yet after {args.wait:g} s", file=sys.stderr)
        return 1
    print(f"paused {session.pipeline_id}; continue with: pipeline-tasks resume {session.pipeline_id}")
    return 0


def _resume_paused(session: PipelineSession, args) -> int:
    """`resume` of a pipeline that is running: lift its pause."""
    from .engine.safety import read_pause
    lock = RunLock(session.paths, session.pipeline_id)
    info = read_pause(session.paths)
    if info is None:
        raise PipelineError(f"pipeline '{session.pipeline_id}' is running and not paused")
    session.paths.pause_flag.unlink(missing_ok=True)
    if not _wait_for_state(session, lock, (PipelineState.RUNNING.value,), args.wait):
        print(f"asked to resume; still paused after {args.wait:g} s", file=sys.stderr)
        return 1
    record = read_record(session.paths) or {}
    if info.get("by") == "guard" and record.get("state") == PipelineState.PAUSED.value:
        print(f"still paused by a safety limit: {info.get('reason')}", file=sys.stderr)
        return 1
    print(f"resumed {session.pipeline_id}")
    return 0


def cmd_plan(args, session: PipelineSession | None = None) -> int:
    from .engine.status import plan
    session = session or _session(args)
    entries = plan(session)
    if getattr(args, "json", False):
        print(json.dumps([vars(e) for e in entries], indent=2))
        return 0
    from .engine.items import find_orphans, plan_lines
    runs = [e for e in entries if e.will_run]
    mays = [e for e in entries if e.may_run]
    for line in plan_lines(session.pipeline, entries):
        print(line)
    print(f"{len(runs)} of {len(entries)} stage(s) would run"
          + (f", {len(mays)} more may run (if what runs before them changes their input)" if mays else ""))
    if session.pipeline.batches:
        _print_orphans(find_orphans(session))
    return 0


def cmd_clean(args) -> int:
    """Remove the outputs of items that left the pipeline (only the files their manifests list)."""
    from .engine.items import clean_orphans
    if not args.orphans:
        raise PipelineError("say what to clean: --orphans (outputs of items no longer in the pipeline)",
                            hint="a stage's outputs: pipeline-tasks doit PIPELINE -- clean STAGE")
    session = _session(args)
    lock = RunLock(session.paths, session.pipeline_id).acquire()
    try:
        orphans = clean_orphans(session)
    finally:
        lock.release()
    print(f"removed the outputs of {len(orphans)} orphaned item(s)"
          + (": " + " ".join(o.stage_id for o in orphans) if orphans else ""))
    return 0


def cmd_graph(args) -> int:
    from .engine.items import as_written, summarise
    from .engine.status import pipeline_status
    from .report.graph_text import render_graphviz, to_ascii, to_dot, to_mermaid
    session = _session(args)
    states = None
    if args.status:
        rows = summarise(session.pipeline, ((s.stage_id, s.state.value) for s in pipeline_status(session).stages))
        states = {row.stage_id: row.state for row in rows}
    pipeline = as_written(session.pipeline)        # a batch stage is one node
    if args.format in ("svg", "png"):
        data = render_graphviz(to_dot(pipeline, states), args.format)
        if args.output:
            Path(args.output).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0
    text = {"mermaid": to_mermaid, "ascii": to_ascii}.get(args.format, to_dot)(pipeline, states)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args) -> int:
    """One self-contained HTML report of the latest run: DAG, timeline, scores, samples."""
    from .engine.status import pipeline_status
    from .report import build_report
    session = _session(args)
    if not session.paths.record.exists():
        raise PipelineError(f"pipeline '{session.pipeline_id}' has not run yet; nothing to report",
                            hint=f"run it first: pipeline-tasks run {args.target or DEFAULT_CONFIG}")
    out = build_report(session.paths.root, session.pipeline, args.output or session.paths.root / "report.html",
                       status=pipeline_status(session))
    print(out)
    return 0


def cmd_verify(args) -> int:
    """Check the workspace against the pipeline's lock file (exit 1 with the first differences)."""
    from .engine import lockfile
    session = _session(args)
    if session.pipeline.source is None:
        raise PipelineError("verify needs a pipeline file (its lock file lies beside it)")
    lock = lockfile.lock_path(session.pipeline.source)
    specs = session.lock_specs()
    problems = lockfile.differences(lock, specs, session.manifests(), lockfile.InputDigests(None))
    if not problems:
        print(f"ok: the workspace is what {lock} records ({len(specs)} stage(s))")
        return 0
    shown = problems[:args.max]
    print(f"{lock}: {len(problems)} difference(s)" + (f", the first {len(shown)}:" if len(shown) < len(problems)
                                                      else ":"))
    for line in shown:
        print(f"  {line}")
    return 1


def cmd_clusters(args) -> int:
    """The clustering stages' clusters with their fingerprints, to name them in a names.yaml."""
    from .report import clusters_page
    session = _session(args)
    stages = clusters_page.collect(session.pipeline)
    if args.html:
        Path(args.html).write_text(clusters_page.as_html(stages, f"{session.pipeline.name}: clusters"),
                                   encoding="utf-8")
        print(args.html)
    else:
        sys.stdout.write(clusters_page.as_text(stages))
    return 0


def cmd_doit(args) -> int:
    """Any doit command on the pipeline's stages: info, forget, clean, ignore, list, strace …"""
    session = _session(args)
    try:
        return doit_main(session).run(args.doit_args or ["list", "--status"])
    except AbortRun as stop:
        raise stop.error from None


def cmd_new(args) -> int:
    """Write a ready pipeline from a built-in template."""
    from . import templates
    if not args.template:
        for name in templates.names():
            params = " ".join(f"{k}={v}" for k, v in templates.parameters(name).items())
            print(f"{name:<12} {templates.summary(name)}\n{'':<12} parameters: {params}")
        return 0
    folder = Path(args.folder or ".")
    path, input_dir = templates.write(args.template, folder, templates.parse_values(args.set or []))
    print(f"wrote {path} ({templates.summary(args.template)})")
    go = f"cd {folder} && pipeline-tasks run {templates.PIPELINE_FILE}" if str(folder) != "." else \
        f"pipeline-tasks run {templates.PIPELINE_FILE}"
    if input_dir is not None and not any(input_dir.iterdir()):
        print(f"put the inputs in {input_dir}, then: {go}")
        return 0
    here = os.getcwd()
    os.chdir(folder)                    # the pipeline's relative paths are relative to its folder
    try:
        pipeline = load_pipeline(templates.PIPELINE_FILE)
    finally:
        os.chdir(here)
    print(f"ok: pipeline '{pipeline.name}' with {len(pipeline.stages)} stage(s); run it: {go}")
    return 0


# -- parser ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline-tasks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pipeline-tasks {__version__}")
    parser.add_argument("--state-dir", default=None,
                        help="where pipeline state lives (default: the pipeline's state_dir or .pipeline)")
    parser.add_argument("--traceback", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text, target=True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        if target:
            p.add_argument("target", nargs="?", help=f"pipeline YAML file or pipeline id (default: {DEFAULT_CONFIG})")
            _add_target_options(p, name)
        p.set_defaults(func=func)
        return p

    p = add("validate", cmd_validate, "check a pipeline file; every problem names file:line:column")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", help="as `run --set`")
    add("create", cmd_create, "validate a pipeline, assign and record its pipeline id")
    for name, text in (("run", "run a pipeline (stages already up to date are skipped)"),
                       ("resume", "continue a pipeline by id, checkpoint.json or file: a paused run goes on, "
                                  "a stopped one runs again from where it stopped")):
        p = add(name, cmd_run, text)
        p.add_argument("-n", "--jobs", type=int, default=None, help="stages run in parallel (processes)")
        p.add_argument("--stage", action="append", help="run only this stage (and what it needs); repeatable")
        p.add_argument("--until", action="append", metavar="STAGE",
                       help="run the stages up to STAGE and STAGE itself (Snakemake's --until); repeatable")
        p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", default=None,
                       help="override a config value for this run, as an edit of the file would; repeatable")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="say what would run and why (= plan)")
        p.add_argument("--always", action="store_true", help="re-execute every stage")
        p.add_argument("--keep-going", action="store_true", help="keep running independent stages after a failure")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument("--no-durable", action="store_true", help="doit's plain sqlite backend (benchmarks only)")
        p.add_argument("--wait", type=float, default=30, help=argparse.SUPPRESS if name == "run" else
                       "resume of a paused run: seconds to wait for it to go on")
        p.add_argument("--resources", metavar="NAME=N,...",
                       help="the capacity stages share, e.g. gpu=1,mem_gb=16,cpu=8 (default: the pipeline "
                            "file's resources:, then what the machine has)")
    p = add("status", cmd_status, "state, progress and ETA of a pipeline (works during a run)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true",
                   help="refresh until the run ends, in place on a terminal")
    p.add_argument("--interval", type=float, default=WATCH_INTERVAL, metavar="SECONDS",
                   help=f"seconds between --watch refreshes (default {WATCH_INTERVAL:g})")
    p = add("list", cmd_list, "pipelines under the state directory", target=False)
    p.add_argument("--state", choices=[s.value for s in PipelineState] + ["interrupted"])
    p.add_argument("--json", action="store_true")
    p = add("cancel", cmd_cancel, "stop a running pipeline cleanly (state: cancelled)")
    p.add_argument("--wait", type=float, default=30, help="seconds to wait for it to stop")
    p = add("pause", cmd_pause, "hold a running pipeline: no stage starts, running stages stop until `resume`")
    p.add_argument("--wait", type=float, default=30, help="seconds to wait for it to pause")
    p = add("plan", cmd_plan, "dry run: which stages would run, and why")
    p.add_argument("--json", action="store_true")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", help="as `run --set`")
    p = add("clean", cmd_clean, "remove outputs the pipeline no longer produces (--orphans: removed items')")
    p.add_argument("--orphans", action="store_true", help="outputs of foreach items no longer in the pipeline")
    p = add("graph", cmd_graph, "the stage graph: in the terminal, as DOT or Mermaid text, or drawn as SVG/PNG")
    p.add_argument("--format", choices=["dot", "mermaid", "ascii", "svg", "png"], default="dot",
                   help="ascii: a terminal view; svg, png: drawn by Graphviz's dot (installed separately)")
    p.add_argument("--status", action="store_true", help="colour stages by state")
    p.add_argument("-o", "--output")
    p = add("report", cmd_report, "write an HTML report of the latest run (open it in a browser)")
    p.add_argument("-o", "--output", help="HTML file to write (default: <state dir>/report.html)")
    p = add("new", cmd_new, "write a ready pipeline from a built-in template (no TEMPLATE: list them)", target=False)
    p.add_argument("template", nargs="?", help="characters, subtitles or frames")
    p.add_argument("folder", nargs="?", help="where to write pipeline.yaml (default: here)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="a template parameter; repeatable")
    p = add("verify", cmd_verify, "check the workspace against the pipeline's lock file (<name>.lock.json)")
    p.add_argument("--max", type=int, default=20, help="differences shown at most (default 20)")
    p = add("clusters", cmd_clusters, "the clusters with their fingerprints and contact sheets, to name them")
    p.add_argument("--html", metavar="FILE", help="write one HTML page of the contact sheets instead")
    p = add("doit", cmd_doit, "run a doit command on the stages, e.g. `doit PIPELINE -- info STAGE`")
    p.add_argument("doit_args", nargs=argparse.REMAINDER)
    add_models_parser(sub)
    return parser


# the option spellings of the target, per command: `create --config FILE`, `run --pipeline-id ID`,
# `resume --checkpoint PATH` … (the positional form names the same thing)
_TARGET_OPTIONS = {
    "--pipeline-id": "the pipeline's id (as `create` printed it, or `list` shows it)",
    "--config": "the pipeline file (YAML or JSON)",
    "--checkpoint": "a checkpoint file of the pipeline (checkpoint.json, or a .json.gz under checkpoints/)",
}
_METAVARS = {"--pipeline-id": "ID", "--config": "FILE", "--checkpoint": "PATH"}
_TARGET_OPTIONS_OF = {"create": ("--config", "--pipeline-id"), "validate": ("--config",),
                      "resume": ("--checkpoint", "--pipeline-id", "--config")}


def _add_target_options(parser: argparse.ArgumentParser, command: str) -> None:
    for option in _TARGET_OPTIONS_OF.get(command, ("--pipeline-id", "--config")):
        parser.add_argument(option, dest="target_" + option[2:].replace("-", "_"), metavar=_METAVARS[option],
                            help=_TARGET_OPTIONS[option] + " (instead of the positional form)")
    if command == "create":
        parser.add_argument("--output-dir", help="root every relative output path of the pipeline in this folder "
                                                 "(a pipeline of its own: its id differs from the file's)")


def _target_from_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`args.target` from whichever spelling was given; two at once is an error."""
    given = [(name, value) for name, value in vars(args).items() if name.startswith("target_") and value]
    if getattr(args, "target", None):
        given.insert(0, ("target", args.target))
    if len(given) > 1:
        parser.error("name the pipeline once: " + " and ".join(
            "--" + n[7:].replace("_", "-") if n != "target" else repr(v) for n, v in given))
    if given:
        args.target = given[0][1]


def main(argv: list[str] | None = None) -> int:
    """The `pipeline-tasks` command. Run as the process's command (argv from sys.argv), it also
    tunes the garbage collector for the process; called with an explicit argv (embedded), it
    leaves the caller's collector alone."""
    whole_process = argv is None
    if whole_process:
        gc.set_threshold(*GC_THRESHOLDS)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.state_dir_given = args.state_dir is not None
    if args.state_dir is None:
        args.state_dir = ".pipeline"
    if getattr(args, "doit_args", None) and args.doit_args[0] == "--":
        args.doit_args = args.doit_args[1:]
    _target_from_options(parser, args)
    if args.command == "resume" and args.target is None:
        parser.error("resume needs a pipeline id, checkpoint file or pipeline file (--pipeline-id ID, "
                     "--checkpoint PATH, or positional)")
    try:
        code = args.func(args)
        sys.stdout.flush()              # a closed pipe shows up here, not at interpreter exit
        if whole_process:
            # The process ends next. Its garbage cycles (doit's task graph: ~30 objects a stage)
            # would be collected by the interpreter's final full GC, 0.3 s for 10,000 stages;
            # freezing skips that scan (the OS reclaims the memory). doit's workers exit so too.
            gc.freeze()
        return code
    except PipelineError as exc:
        if args.traceback:
            raise
        for line in str(exc).splitlines():      # several problems (`validate`): one line each
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`pipeline-tasks plan | head`): stop quietly, like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:          # what a disk says (full, read-only, gone), with the file it says it of
        if args.traceback:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
