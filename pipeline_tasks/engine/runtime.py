"""The runtime around every stage: what a doit action runs.

`run_stage(payload)` is the single, top-level, picklable action of every compiled task. It
instantiates the executor, reads the upstream manifests, runs `execute` with retries (backoff) and
an optional timeout (in a child process group that is killed when time is up), then writes the
manifest atomically and last. A failure leaves the stage without a manifest (so it is never taken
as complete), keeps its partial outputs for inspection, and writes an error report.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import logging
import multiprocessing
import os
import shutil
import signal
import time
import traceback
from typing import Any

from doit.exceptions import TaskFailed

from .. import atomic, process_groups
from ..errors import (
    PipelineError,
    ResourceExhaustedError,
    SpecError,
    StageCancelled,
    StageConfigError,
    StageExecutionError,
    StageInputError,
    StageTimeoutError,
)
from ..executor import StageContext
from ..models import ExecutionStatus, RetryPolicy, StageResult
from ..redaction import finish_masked_streams, masked_std_streams, redact, redact_obj
from ..spec.registry import get_executor_class
from ..state import events as ev
from ..state import folders
from ..state.events import EventBus
from ..state.paths import StatePaths
from . import manifest as mf
from . import resources, usage

NOT_RETRIED = (StageConfigError, StageInputError, StageCancelled, SpecError)


class _RedactingFormatter(logging.Formatter):
    """Log lines with the secrets masked, tracebacks of `log.exception` included."""

    def __init__(self, secrets: list[str]):
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def stage_logger(paths: StatePaths, stage_id: str, secrets: list[str]) -> logging.Logger:
    """A logger writing to `<state>/logs/<stage>.log`; the file is created on first use only.

    Made directly, not through `logging.getLogger`: registered loggers live forever and each new
    one costs a cache flush over all of them (quadratic over 10,000 stages)."""
    logger = logging.Logger(f"pipeline_tasks.stage.{stage_id}", logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(paths.log(stage_id), delay=True, encoding="utf-8")
    handler.setFormatter(_RedactingFormatter(secrets))
    logger.addHandler(handler)
    return logger


class _LazyStageLogger:
    """The stage logger, built on first use: most tiny stages never log, and a Logger with its
    handler, formatter and filter costs more than the rest of such a stage's bookkeeping."""

    def __init__(self, paths: StatePaths, stage_id: str, secrets: list[str]):
        self._args = (paths, stage_id, secrets)
        self._logger: logging.Logger | None = None

    def __getattr__(self, name: str):
        if self._logger is None:
            self._logger = stage_logger(*self._args)
        return getattr(self._logger, name)

    def close(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)


_grant: dict | None = None      # what the scheduler gave the stage this process runs next
_in_attempt = False             # an executor is running in this process (or its child, watched from here)


@contextlib.contextmanager
def granted(grant: dict | None):
    """Run the next stage with `grant` (`engine.scheduler.Grant.payload()`): its amounts and GPU ids."""
    global _grant
    _grant = grant
    try:
        yield
    finally:
        _grant = None


def in_attempt() -> bool:
    """Whether a stage attempt is running here: the safety guard's signal interrupts only that."""
    return _in_attempt


class StagePreempted(BaseException):
    """Raised inside a running stage that the run's safety guard stops (`engine.safety`): a
    BaseException, like KeyboardInterrupt, so that an executor's `except Exception` lets it pass."""

    def __init__(self, reason: str, requeue: bool):
        super().__init__(reason)
        self.reason = reason
        self.requeue = requeue          # interrupted to run again after the pause, not failed


class Requeued(TaskFailed):
    """A stage interrupted by a pause of the run (`safety.on_exhaustion: cancel`): not a failure,
    the scheduler starts it again when the run resumes."""


def _error_names(exc: BaseException) -> set[str]:
    names = {cls.__name__ for cls in type(exc).__mro__}
    names.update(getattr(exc, "original_types", ()))
    code = getattr(exc, "error_code", None)
    if code:
        names.add(code)
    names.update(getattr(exc, "original_codes", ()))
    return names


def should_retry(exc: BaseException, policy: RetryPolicy, attempt: int) -> bool:
    """Whether attempt number `attempt` failing with `exc` is retried: the policy has retries left
    and names the error (a category of `models.ERROR_CATEGORIES` or a class name of it or a base)."""
    if attempt > policy.max_retries:
        return False
    if isinstance(exc, NOT_RETRIED) or not isinstance(exc, Exception):
        return False
    errno = exc.errno if isinstance(exc, OSError) else getattr(exc, "original_errno", None)
    return policy.matches(_error_names(exc), errno)


def disk_full_message(exc: BaseException, where: str | None) -> str | None:
    """For a write that found its disk full (ENOSPC, or a quota): which path, and how much space
    its file system has left; None for any other error (looked for along the exception's causes)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return None
    path = seen.filename if isinstance(seen.filename, str) else (where or os.getcwd())
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        free = f"{shutil.disk_usage(probe).free / 1024 ** 2:,.1f} MB free on its file system"
    except OSError:
        free = "free space unknown"
    return (f"no space left on device writing {'in ' if path == where else ''}{path} ({free}); "
            f"the stage's partial outputs are not taken as complete")


def _execute_once(payload: dict, context: StageContext, inputs: dict) -> StageResult:
    cls = get_executor_class(payload["type"])
    executor = cls(payload["stage_id"], payload["config"], context)
    try:
        result = executor.execute(inputs)
    except Exception as exc:
        full = disk_full_message(exc, payload.get("output_dir"))
        if full is None:
            raise
        raise StageExecutionError(full, stage=payload["stage_id"],
                                  hint="free space there (the safety guard's min_free_disk_gb pauses a run "
                                       "before this)") from exc
    if not isinstance(result, StageResult):
        raise StageExecutionError(f"executor {cls.__name__}.execute returned {type(result).__name__}, "
                                  f"expected StageResult", stage=payload["stage_id"])
    return result


def _child_main(conn, payload: dict, context: StageContext, inputs: dict,
                env: dict[str, str]) -> None:  # pragma: no cover - child
    os.setsid()
    os.environ.update(env)

    def stop(signum, frame):
        raise KeyboardInterrupt("timeout")
    signal.signal(signal.SIGTERM, stop)
    try:
        result = _execute_once(payload, context, inputs)
        conn.send(("ok", result))
    except BaseException as exc:  # report everything to the parent
        conn.send(("err", _portable_error(exc)))
    finally:
        finish_masked_streams()
        conn.close()


def _portable_error(exc: BaseException) -> dict:
    message = exc.message if isinstance(exc, PipelineError) else str(exc)
    return {"types": [c.__name__ for c in type(exc).__mro__], "message": message,
            "codes": [getattr(exc, "error_code", None)] if getattr(exc, "error_code", None) else [],
            "errno": exc.errno if isinstance(exc, OSError) else None,
            "traceback": traceback.format_exc(), "pipeline_error": isinstance(exc, PipelineError),
            "class": type(exc).__name__}


def _rebuild_error(info: dict, stage_id: str) -> BaseException:
    if "StageCancelled" in info["types"]:
        exc: BaseException = StageCancelled(info["message"], stage=stage_id)
    elif "ResourceExhaustedError" in info["types"]:
        exc = ResourceExhaustedError(info["message"], stage=stage_id)
    elif "StageInputError" in info["types"]:
        exc = StageInputError(info["message"])
    elif "StageConfigError" in info["types"]:
        exc = StageConfigError(info["message"])
    else:
        exc = StageExecutionError(info["message"] if info["pipeline_error"] else f"{info['class']}: {info['message']}",
                                  stage=stage_id)
    exc.original_types = info["types"]            # type: ignore[attr-defined]
    exc.original_codes = info.get("codes", [])    # type: ignore[attr-defined]
    exc.original_errno = info.get("errno")        # type: ignore[attr-defined]
    exc.child_traceback = info["traceback"]       # type: ignore[attr-defined]
    return exc


def _execute_in_child(payload: dict, context: StageContext, inputs: dict, *, timeout: float | None,
                      mem_limit: int | None, env: dict[str, str], used: usage.Usage) -> StageResult:
    """Run one attempt in a forked child in its own process group (`env` set there, so a GPU grant
    reaches a fresh process); kill the group on timeout or when its memory goes past `mem_limit`
    bytes, and have it killed if this process dies (`process_groups.Guard`)."""
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child_conn, payload, context, inputs, env), daemon=False)
    proc.start()
    child_conn.close()
    guard = process_groups.Guard(proc.pid)
    watch = None
    if mem_limit:
        watch = usage.TreeWatch(proc.pid, mem_limit, lambda rss: process_groups.kill_group(proc.pid), used)
    try:
        finished = parent_conn.poll(timeout)
        status, value = parent_conn.recv() if finished else ("timeout", None)
    except EOFError:
        status, value = "died", None
    except BaseException:          # interrupted (cancel): stop the child too
        _kill_group(proc)
        guard.release()
        raise
    finally:
        parent_conn.close()
        if watch is not None:
            watch.stop()
    if status == "timeout":
        _kill_group(proc)
    guard.release()
    if status == "timeout":
        raise StageTimeoutError(f"timed out after {timeout:g} s (stage 'timeout'); its processes were stopped",
                                stage=payload["stage_id"])
    proc.join()
    if watch is not None and watch.tripped:
        raise ResourceExhaustedError(
            f"stopped: its processes used {watch.peak / usage.MB:,.0f} MB of memory, above its limit "
            f"mem_gb: {mem_limit / 1024 ** 3:g} ({mem_limit / usage.MB:,.0f} MB)", stage=payload["stage_id"],
            hint="raise the stage's resources.mem_gb, or make it use less")
    if status == "ok":
        return value
    if status == "died":
        raise StageExecutionError(f"the stage's process died (exit code {proc.exitcode})", stage=payload["stage_id"])
    raise _rebuild_error(value, payload["stage_id"])


def _kill_group(proc) -> None:
    """SIGTERM the child's process group (the child turns it into KeyboardInterrupt, so an executor
    can stop its own subprocesses), then SIGKILL whatever is left of the group."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        proc.join(grace)


def read_inputs(payload: dict) -> dict[str, dict[str, Any]]:
    inputs = {}
    for stage_id, path in payload["upstream_manifests"].items():
        data = mf.read(path)
        if data is None:
            raise StageInputError(f"upstream stage '{stage_id}' has no readable manifest; run it first",
                                  path=path, stage=payload["stage_id"])
        group, _, item = stage_id.partition(":")
        if item:            # one of the items a gather stage reads: inputs[stage][item]
            inputs.setdefault(group, {})[item] = data.get("outputs", {})
        else:
            inputs[stage_id] = data.get("outputs", {})
    return inputs


@functools.lru_cache(maxsize=64)
def _state_paths(root: str) -> StatePaths:
    return StatePaths(root)


@functools.lru_cache(maxsize=64)
def _event_bus(path: str, secrets: tuple[str, ...]) -> EventBus:
    """One bus per events file and secret set, shared by the stages a process runs."""
    return EventBus(path, redact=list(secrets))


def run_stage(payload: dict) -> dict | TaskFailed:
    """The doit action of every stage. Returns the task values doit saves in its database: the
    produced files' sizes, which the next up-to-date check compares without reading the manifest.
    What the stage prints goes out with its secrets masked."""
    secrets = payload.get("secrets") or []
    if not secrets:
        return _run_stage(payload, secrets)
    with masked_std_streams(secrets):
        return _run_stage(payload, secrets)


def _run_stage(payload: dict, secrets: list[str]) -> dict | TaskFailed:
    stage_id = payload["stage_id"]
    # absolute: one process may run same-named pipelines of several folders (their state dirs'
    # relative paths are equal); each must write its own events file
    paths = _state_paths(os.path.abspath(payload["state_dir"]))
    bus = _event_bus(str(paths.events), tuple(secrets))
    logger = _LazyStageLogger(paths, stage_id, secrets)
    grant = _grant
    held = payload.get("resources") or {}
    if grant and "cpu" in grant["amounts"] and "cpu" not in held:   # the cores given for a default need
        held = {**held, "cpu": grant["amounts"]["cpu"]}
    context = StageContext(stage_id, pipeline_id=payload["pipeline_id"], bus=bus, logger=logger,
                           cancel_file=paths.cancel_flag, resources=held, state_dir=paths.root)
    manifest_path = payload["manifest"]
    policy = RetryPolicy(**payload["retry"])
    started = time.time()
    extra = {"granted": _describe_grant(grant)} if grant and (grant["amounts"] or grant["gpu_auto"]) else {}
    bus.emit(ev.STAGE_STARTED, pipeline_id=payload["pipeline_id"], stage_id=stage_id, stage_type=payload["type"],
             **extra)
    env_backup = _apply_env(payload["env"]) if payload.get("env") else {}
    used: dict = {}
    try:
        _remove_manifest(manifest_path, stage_id)
        if os.path.exists(paths.cancel_flag_str):
            raise StageCancelled("run cancelled before the stage started", stage=stage_id)
        inputs = read_inputs(payload)
        if grant is None and payload.get("resources") and payload.get("capacity"):
            # no scheduler (plain `doit -n N`): tokens between the worker processes
            with resources.hold(paths.root / "resources", payload["resources"], payload["capacity"],
                                on_wait=lambda name: logger.info("waiting for a free '%s' token", name)):
                result = _attempts(payload, context, inputs, policy, bus, logger, paths, grant, used)
        else:
            result = _attempts(payload, context, inputs, policy, bus, logger, paths, grant, used)
        outputs = result.outputs
        files = _produced_files(payload, manifest_path)
        manifest = mf.build(stage_id, payload["type"], outputs, files, version=payload["version"],
                            metrics={**result.metrics, "usage": used}, duration=round(time.time() - started, 6))
        manifest = redact_obj(manifest, secrets)
        signature = mf.write(manifest_path, manifest, fsync=payload.get("fsync", False))
        finished = time.time()
        bus.emit(ev.STAGE_COMPLETED, pipeline_id=payload["pipeline_id"], stage_id=stage_id,
                 started=started, finished=finished, duration=round(finished - started, 6), attempts=context.attempt,
                 metrics=result.metrics, outputs=outputs, usage=used)
        # kept by doit with the task: the facts of the stage's last successful run, which `status`
        # and the report show while later runs find the stage up to date
        return {"_files": mf.file_facts(files), "_manifest": signature,
                "_run": {"started": started, "finished": finished, "duration": round(finished - started, 6),
                         "attempts": context.attempt}}
    except BaseException as exc:
        finished = time.time()
        cancelled = isinstance(exc, (StageCancelled, KeyboardInterrupt)) or getattr(exc, "requeue", False)
        message = redact(_user_message(exc, payload), secrets)
        report = paths.error_report(stage_id)
        detail = getattr(exc, "child_traceback", None) or traceback.format_exc()
        try:        # a full disk must not hide the stage's own error behind the report's
            report.write_text(redact(f"stage: {stage_id} ({payload['type']})\nattempts: {context.attempt}\n"
                                     f"error: {message}\nlog: {paths.log(stage_id)}\n\n{detail}", secrets))
            logger.error("%s", message)
            bus.emit(ev.STAGE_FAILED, pipeline_id=payload["pipeline_id"], stage_id=stage_id, started=started,
                     finished=finished, duration=round(finished - started, 6), attempts=context.attempt,
                     error=message, error_type=type(exc).__name__, cancelled=cancelled, error_report=str(report),
                     usage=used, **({"requeued": True} if getattr(exc, "requeue", False) else {}))
        except OSError as write_error:
            message += f" (and its failure could not be recorded: {atomic.naming(write_error, report)})"
        if isinstance(exc, KeyboardInterrupt):
            raise
        if getattr(exc, "requeue", False):
            return Requeued(message)
        return TaskFailed(message)
    finally:
        _restore_env(env_backup)
        logger.close()


# doit inspects each python-action's signature before every call (to offer `targets`, `task` …);
# a precomputed one makes that a lookup
run_stage.__signature__ = inspect.signature(run_stage)  # type: ignore[attr-defined]


def _attempts(payload: dict, context: StageContext, inputs: dict, policy: RetryPolicy, bus: EventBus,
              logger: logging.Logger, paths: StatePaths, grant: dict | None, used: dict) -> StageResult:
    """Run the executor until it succeeds or the retry policy gives up; `used` gets what the last
    attempt used (`engine.usage`)."""
    global _in_attempt
    env = _gpu_env(grant)
    devices = tuple(grant["gpu_devices"]) if grant else ()
    mem_limit = payload.get("mem_limit")
    timeout = float(payload["timeout"]) if payload.get("timeout") else None
    isolate = bool(timeout or mem_limit or env)
    attempt = 0
    while True:
        attempt += 1
        context.attempt = attempt
        meter = usage.measure(devices)
        try:
            try:
                _in_attempt = True
                with meter as usage_now:
                    if isolate:
                        return _execute_in_child(payload, context, inputs, timeout=timeout, mem_limit=mem_limit,
                                                 env=env, used=usage_now)
                    return _execute_once(payload, context, inputs)
            finally:
                _in_attempt = False
                used.clear()
                used.update(meter.usage.as_dict())
                if env or (grant and grant.get("gpu_auto")):     # a GPU stage: say where it ran
                    used["device"] = "gpu" if devices else "cpu"
                    if devices:
                        used["gpu_devices"] = list(devices)
        except BaseException as exc:
            if isinstance(exc, StagePreempted):       # the run's safety guard stopped it
                if exc.requeue:
                    raise
                exc = ResourceExhaustedError(exc.reason, stage=payload["stage_id"])
                if not should_retry(exc, policy, attempt):
                    raise exc from None
            elif not should_retry(exc, policy, attempt):
                raise
            delay = policy.delay_before(attempt)
            logger.warning("attempt %d failed (%s: %s); retrying in %.2f s", attempt, type(exc).__name__, exc, delay)
            bus.emit(ev.STAGE_RETRY, pipeline_id=payload["pipeline_id"], stage_id=payload["stage_id"],
                     attempt=attempt, error=f"{type(exc).__name__}: {exc}", delay=delay, usage=dict(used))
            _sleep_unless_cancelled(delay, paths, payload["stage_id"])


def _gpu_env(grant: dict | None) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for a stage given GPUs, or hidden GPUs for `device: auto` given none."""
    if not grant:
        return {}
    if grant["gpu_devices"]:
        return {"CUDA_VISIBLE_DEVICES": ",".join(grant["gpu_devices"])}
    if grant.get("hide_gpus"):
        return {"CUDA_VISIBLE_DEVICES": ""}
    return {}


def _describe_grant(grant: dict) -> dict:
    out = {k: v for k, v in grant["amounts"].items()}
    if grant["gpu_devices"]:
        out["gpu_devices"] = list(grant["gpu_devices"])
    return out


def _user_message(exc: BaseException, payload: dict) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "cancelled"
    full = None if isinstance(exc, PipelineError) else disk_full_message(exc, payload.get("output_dir"))
    if full is not None:
        exc = StageExecutionError(full, stage=payload["stage_id"])
    if getattr(exc, "requeue", False):
        return f"stage '{payload['stage_id']}': interrupted to run again when the run resumes ({exc})"
    if isinstance(exc, PipelineError):
        if exc.stage is None:
            exc.stage = payload["stage_id"]
        text = str(exc)
    else:
        text = f"stage '{payload['stage_id']}': {type(exc).__name__}: {exc}"
    if payload.get("source") and payload.get("line"):
        text += f" [{payload['source']}:{payload['line']}]"
    return text


def _sleep_unless_cancelled(delay: float, paths: StatePaths, stage_id: str) -> None:
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if os.path.exists(paths.cancel_flag):
            raise StageCancelled("run cancelled while waiting to retry", stage=stage_id)
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _remove_manifest(path: str, stage_id: str) -> None:
    """A rerun starts without a manifest: a crash from here on never leaves the old one looking current."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StageExecutionError(f"cannot remove its previous manifest before running ({exc.strerror})", path=path,
                                  stage=stage_id, hint="make the output folder writable, or remove the file") from None


def _produced_files(payload: dict, manifest_path: str) -> list[dict]:
    """What the stage wrote: the regular files in its output folder that were not there before it
    first ran (`state.folders`), plus its declared outputs outside the folder."""
    declared = payload.get("declared_outputs") or []
    not_files = [p for p in declared if not os.path.isfile(p)]
    if not_files:
        raise StageExecutionError(f"finished but did not write its declared output(s) as regular file(s): "
                                  f"{', '.join(not_files)}", stage=payload["stage_id"])
    output_dir = payload.get("output_dir")
    if output_dir:
        files = mf.scan_files(output_dir, exclude=lambda: folders.preexisting(output_dir), mtimes=True)
        if not declared:
            return files
        inside = {os.path.abspath(p) for p in declared}
        root = os.path.abspath(output_dir)
        extra = [p for p in inside if not p.startswith(root + os.sep)]
        return files + mf.describe_files(extra, os.path.dirname(manifest_path), mtimes=True)
    return mf.describe_files(declared, os.path.dirname(manifest_path), mtimes=True)


def _apply_env(env: dict[str, str]) -> dict[str, str | None]:
    backup = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    return backup


def _restore_env(backup: dict[str, str | None]) -> None:
    for key, value in backup.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_standalone(stage_id: str, stage_type: str, config: dict, inputs: dict, *, policy: RetryPolicy,
                   timeout: float | None = None, bus: EventBus | None = None) -> StageResult:
    """One stage's executor run in this process on `inputs`, outside any pipeline run: retried as
    `policy` says, each attempt limited to `timeout` seconds, events on `bus`. No manifest is
    written and nothing is skipped. Returns a StageResult whose status is SUCCESS or FAILED."""
    bus = bus or EventBus()
    context = StageContext(stage_id, bus=bus)
    payload = {"stage_id": stage_id, "type": stage_type, "config": config}
    started = time.time()
    bus.emit(ev.STAGE_STARTED, stage_id=stage_id, stage_type=stage_type)
    attempt = 0
    while True:
        attempt += 1
        context.attempt = attempt
        try:
            executor = get_executor_class(stage_type)(stage_id, config, context)
            if executor.validate_config() is False:
                raise StageConfigError(f"{type(executor).__name__}.validate_config() rejected the config",
                                       stage=stage_id)
            if timeout:
                with usage.measure(()) as used:
                    result = _execute_in_child(payload, context, inputs, timeout=float(timeout), mem_limit=None,
                                               env={}, used=used)
            else:
                result = _execute_once(payload, context, inputs)
            break
        except Exception as exc:
            if should_retry(exc, policy, attempt):
                delay = policy.delay_before(attempt)
                bus.emit(ev.STAGE_RETRY, stage_id=stage_id, attempt=attempt, error=f"{type(exc).__name__}: {exc}",
                         delay=delay)
                time.sleep(delay)
                continue
            finished = time.time()
            message = _user_message(exc, {"stage_id": stage_id})
            bus.emit(ev.STAGE_FAILED, stage_id=stage_id, started=started, finished=finished,
                     duration=round(finished - started, 6), attempts=attempt, error=message,
                     error_type=type(exc).__name__)
            return StageResult(stage_id, ExecutionStatus.FAILED, finished - started, error_message=message,
                               started_at=started, finished_at=finished, attempts=attempt)
    finished = time.time()
    result.duration, result.started_at, result.finished_at, result.attempts = (
        finished - started, started, finished, attempt)
    bus.emit(ev.STAGE_COMPLETED, stage_id=stage_id, started=started, finished=finished,
             duration=round(finished - started, 6), attempts=attempt, metrics=result.metrics, outputs=result.outputs)
    return result
