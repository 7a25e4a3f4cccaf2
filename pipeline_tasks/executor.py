"""The StageExecutor contract every stage type implements, the context it runs in, and its toolkit.

A stage type is a `StageExecutor` subclass that declares:

- `type_name`: its name in messages and in its output record; a pipeline file's `type:` names it by
  the name it is registered under (entry point, `register_stage_executor`), which should be the same;
- `config_schema`: a cerberus schema of its `config:`; the spec checks every config against it and
  fills in its `default`s. The rules type (string, integer, number, float, boolean, list, dict),
  required, nullable, empty, allowed, min, max, minlength, maxlength, regex, excludes, schema,
  keysrules, valuesrules, allow_unknown and default are also compiled into a fast accept-only
  check (spec/schema_check.py); a schema with any other rule (`anyof`, `oneof`, `check_with` …) is
  validated by cerberus alone, about 40 µs a stage slower, and `schema_check.unsupported_rules`
  names the rule. In every schema a boolean is no integer, and NaN or an infinity no number
  (docs/adding-a-stage.md);
- `version`: bump it when the stage's output changes, so its stages rerun;
- `validate_config()`: checks the schema cannot make (across keys, against the file system);
  raise `StageConfigError(message, key=...)`, or return False to reject the config;
- `estimate_duration()`: seconds the stage should take, or None; the ETA of a stage never run;
- `input_files()`: files it reads that no upstream stage produces (they become doit `file_dep`);
- `execute(inputs)`: the work; `inputs[upstream_id]` is that stage's outputs dict; return
  `self.result(outputs, metrics)`.

Inside a stage, read the config through `self.settings`: one frozen attribute per schema key,
defaults filled in, nested dict schemas as nested settings (`self.settings.vad.threshold`); an
unknown name raises at once. `self.config` is the same config as a plain dict.

The toolkit (`self.output_folder()`, an `OutputFolder`) does the chores of every stage that writes
files: it creates the output folder and proves it writable, sweeps the temporary files a killed run
left, keeps the record of which files this stage wrote (`.stage-files.jsonl`), says which of them an
earlier run with the same resume state already wrote (item-level resume), and, when
`self.result()` is called, removes what an earlier run wrote that this run did not. A stage owns
only what it wrote: files it did not write are never overwritten, moved or removed.

Report progress with `self.progress(done, total)` (it also raises `StageCancelled` when the run is
cancelled), log with `self.log`, write every file atomically with `pipeline_tasks.atomic`. A bad
input raises `StageInputError(message, path=...)`, never a library traceback.

Example: a complete stage type (docs/adding-a-stage.md explains it line by line and tests it)::

    import hashlib
    import json
    from pathlib import Path

    from pipeline_tasks import atomic
    from pipeline_tasks.errors import StageConfigError, StageInputError
    from pipeline_tasks.executor import StageExecutor


    class ChecksumStage(StageExecutor):
        type_name = "checksums"
        version = "1"
        description = "A digest of every file in a folder, one JSON file each, and a checksums.txt"
        config_schema = {
            "input_dir": {"type": "string", "required": True, "empty": False},
            "output_dir": {"type": "string", "required": True, "empty": False},
            "algorithm": {"type": "string", "allowed": ["sha256", "blake2b"], "default": "sha256"},
            "pattern": {"type": "string", "regex": r"^[^/]+$", "default": "*"},
        }

        def validate_config(self) -> None:
            if Path(self.settings.input_dir).resolve() == Path(self.settings.output_dir).resolve():
                raise StageConfigError("output_dir must not be input_dir (the stage would digest its own "
                                       "outputs)", stage=self.stage_id, key="output_dir")

        def execute(self, inputs):
            s = self.settings
            src = Path(s.input_dir)
            if not src.is_dir():
                raise StageInputError("input folder does not exist", path=src, stage=self.stage_id)
            files = sorted(p for p in src.glob(s.pattern) if p.is_file())
            out = self.output_folder(resume={"algorithm": s.algorithm})
            lines, computed = [], 0
            for done, path in enumerate(files, 1):
                name = f"digests/{path.name}.json"
                item = out.claim(name)
                stamp = {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
                record = json.loads(item.read_text()) if out.wrote_before(name) else {}
                if {k: record.get(k) for k in stamp} != stamp:
                    digest = hashlib.new(s.algorithm, path.read_bytes()).hexdigest()
                    record = {**stamp, "digest": digest}
                    atomic.write_json(item, record)
                    computed += 1
                lines.append(f"{record['digest']}  {path.name}\\n")
                self.progress(done, len(files), unit="files")
            atomic.write_text(out.claim("checksums.txt"), "".join(lines))
            return self.result(outputs={"checksums": str(out.path / "checksums.txt"), "files": len(files)},
                               metrics={"computed": computed, "resumed": len(files) - computed})
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import stat
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from . import atomic
from .errors import PipelineError, StageCancelled, StageExecutionError, StageInputError
from .models import ExecutionStatus, StageResult
from .settings import FreeSettings, Settings, apply_defaults, settings_type
from .state import folder_record
from .state.events import STAGE_PROGRESS, EventBus
from .state.folder_record import RECORD_NAME


def shell_words(value: Any) -> str:
    """`value` as it goes into a shell template: each item of a list or tuple one word, anything
    else one word (its `str`), each quoted exactly once. Raises ValueError for a NUL character,
    which no argument of a process can hold."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    words = []
    for item in items:
        text = str(item)
        if "\0" in text:
            raise ValueError("holds a NUL character, which no command argument can hold")
        words.append(shlex.quote(text))
    return " ".join(words)


def template_literal(text: str) -> str:
    """`text` as literal text of a template: braces doubled, so no placeholder is read in it."""
    return text.replace("{", "{{").replace("}", "}}")


# -- the context of a run -------------------------------------------------------------------------------

def _as_path(value: str | os.PathLike | None) -> Path | None:
    if not value or isinstance(value, Path):
        return value or None
    return Path(value)


class StageContext:
    """What the runtime gives an executor: logging, events, progress, cancellation, resources."""

    def __init__(self, stage_id: str, *, pipeline_id: str | None = None, bus: EventBus | None = None,
                 logger: logging.Logger | None = None, cancel_file: str | os.PathLike | None = None,
                 resources: dict[str, float] | None = None, progress_interval: float = 0.5,
                 state_dir: str | os.PathLike | None = None):
        self.stage_id = stage_id
        self.pipeline_id = pipeline_id
        self.bus = bus or EventBus()
        self._log = logger
        self.cancel_file = _as_path(cancel_file)
        self.resources = dict(resources or {})
        self.state_dir = _as_path(state_dir)
        self.progress_interval = progress_interval
        self.attempt = 0                        # 1 on the first attempt, 2 on the first retry …
        self._start = time.monotonic()
        self._last_emit = 0.0
        self._last_cancel_check = 0.0

    @functools.cached_property
    def pause_file(self) -> Path | None:
        """The run's pause flag, beside its cancel flag (made on first use: most stages never look)."""
        return self.cancel_file.with_name("pause") if self.cancel_file is not None else None

    @property
    def log(self) -> logging.Logger:
        if self._log is None:       # looked up only when used: compiling 10,000 stages makes no loggers
            self._log = logging.getLogger(f"pipeline_tasks.stage.{self.stage_id}")
        return self._log

    def cancelled(self) -> bool:
        return self.cancel_file is not None and self.cancel_file.exists()

    def check_cancelled(self) -> None:
        """Raise StageCancelled when the run is being cancelled; wait here while the run is paused
        (`pipeline-tasks pause`, a safety limit): checked at most every 0.2 s."""
        now = time.monotonic()
        if now - self._last_cancel_check < 0.2:
            return
        self._last_cancel_check = now
        if self.cancelled():
            raise StageCancelled("run cancelled", stage=self.stage_id)
        if self.pause_file is not None and self.pause_file.exists():
            while self.pause_file.exists() and not self.cancelled():
                time.sleep(0.2)
            if self.cancelled():
                raise StageCancelled("run cancelled", stage=self.stage_id)

    def progress(self, done: int, total: int | None = None, *, unit: str = "items", message: str = "") -> None:
        """Report `done` of `total` items; throttled to one event every `progress_interval` s."""
        self.check_cancelled()
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_emit < self.progress_interval:
            return
        self._last_emit = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        # no ETA from the first instants: a rate measured over a few ms says nothing
        eta = (total - done) / rate if total and rate > 0 and elapsed >= 1.0 else None
        self.bus.emit(STAGE_PROGRESS, pipeline_id=self.pipeline_id, stage_id=self.stage_id, done=done,
                      total=total, unit=unit, rate=round(rate, 3),
                      eta=round(eta, 1) if eta is not None else None, message=message)


# -- the output folder and what the stage wrote in it ----------------------------------------------------

def project_path(path: str | os.PathLike) -> str:
    """`path` relative to the working directory (the project folder the pipeline runs in) when it
    lies inside it, else absolute; `/` separators. What a stage writes into its outputs in place of
    an absolute path, so outputs are the same in every clone of the project."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return (absolute if relative == ".." or relative.startswith(".." + os.sep) else relative).replace(os.sep, "/")


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def create_folder(path: str | os.PathLike, stage_id: str | None = None) -> None:
    """Make `path` (and its parents); a folder that cannot be made is the user's to fix."""
    if os.path.isdir(path):         # one stat for the usual folder the engine has made already
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StageInputError(f"output directory is not writable ({exc.strerror or exc}); choose another "
                              "output_dir or fix its permissions", path=path, stage=stage_id) from exc


class OutputFolder:
    """A stage's output folder and the record of the files the stage wrote in it.

    Opened by `StageExecutor.output_folder()`. The folder's ownership record (`.stage-files.jsonl`,
    `state.folder_record`) holds what was there before the stage first ran, the stage's type, version
    and resume state, then one line per file or folder the stage made. A path is
    recorded before anything is written to it (`claim`), so even a killed run leaves a record of
    what it may have written. `finish` (called by `StageExecutor.result`) removes what earlier runs
    wrote that this run did not claim, then rewrites the record sorted: the same outputs give the
    same record, byte for byte.

    Only recorded paths are ever removed, and only regular files (never a link, a FIFO or a
    folder's contents) whose real path lies inside the folder; recorded folders are removed only
    once empty. A path the record does not hold is never written over: `claim` refuses it.
    """

    def __init__(self, path: str | os.PathLike, *, stage_id: str, stage_type: str, version: str,
                 resume: Any = None):
        self.path = Path(path)
        self.stage_id = stage_id
        self._root = os.fspath(self.path)
        header = {"type": stage_type, "version": str(version), "resume": resume}
        self._header = json.loads(_ENCODE(header))      # as it reads back (tuples become lists …)
        self._record = folder_record.Record()
        self._files: set[str] = set()       # recorded: written by this stage, this run or earlier
        self._dirs: set[str] = set()
        self._claimed: set[str] = set()     # what this run writes or keeps
        self._claimed_dirs: set[str] = set()
        self._checked_dirs: set[str] = {""}
        self._real_root: str | None = None
        self._fd: int | None = None
        self._finished = False
        self._open()

    # -- opening ------------------------------------------------------------------------------------
    def _open(self) -> None:
        create_folder(self.path, self.stage_id)
        try:
            self._record = folder_record.read(self._root)
        except PipelineError as exc:
            raise StageInputError(exc.message, path=exc.path, stage=self.stage_id, hint=exc.hint) from None
        files, dirs = self._record.files, self._record.dirs
        self._sweep_temp_files(files)
        if self._record.stage != self._header:   # another version or resume state: earlier items are not valid
            self._remove(files, dirs)
            files, dirs = set(), {d for d in dirs if self._lexists(d)}
        self._files, self._dirs = files, dirs
        self.previous_files = frozenset(self._files)
        try:
            self._save(self._files, self._dirs)
            self._fd = os.open(self.path / RECORD_NAME, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise StageInputError(f"output directory is not writable ({exc.strerror or exc}); choose another "
                                  "output_dir or fix its permissions", path=self.path, stage=self.stage_id) from exc
        self._close = weakref.finalize(self, _close_quietly, self._fd)     # also when the run fails

    def _sweep_temp_files(self, files: set[str]) -> None:
        """Remove the temporary files (`atomic`) a killed run left beside files this stage records."""
        owned = files | {RECORD_NAME}
        for folder, _subdirs, names in os.walk(self._root):        # links to folders are not followed
            rel_folder = os.path.relpath(folder, self._root).replace(os.sep, "/")
            prefix = "" if rel_folder == "." else rel_folder + "/"
            for name in names:
                target = atomic.temp_target(name)
                if target is not None and prefix + target in owned:
                    self._unlink_regular(os.path.join(folder, name))

    # -- what a stage calls -------------------------------------------------------------------------
    def claim(self, *parts: str | os.PathLike) -> Path:
        """Declare that this run writes (or keeps) a file and return its path (`self.path / ...`),
        its folders made. `parts` name it inside the folder (`"frames.jsonl"`, `"masks", name`), or
        are one absolute path inside it. Refuses a path where a file this stage did not write already
        is: the stage would write over it."""
        rel = self._relative(parts)
        if rel not in self._claimed:
            self._make_parents(rel)
            if rel not in self._files:
                if self._lexists(rel):
                    raise StageInputError(
                        f"the output folder already holds '{rel}', which this stage did not write; move it out of "
                        "the folder or choose another output_dir", path=self.path, stage=self.stage_id)
                self._append({"file": rel})
                self._files.add(rel)
            self._claimed.add(rel)
        return self.path / rel

    def folder(self, *parts: str | os.PathLike) -> Path:
        """Declare that this run keeps a folder (made if missing), even if it stays empty."""
        rel = self._relative(parts)
        self._make_parents(rel + "/-")
        self._claimed_dirs.add(rel)
        return self.path / rel

    def wrote_before(self, *parts: str | os.PathLike) -> bool:
        """True if an earlier run (same version and resume state) wrote this file (named as for
        `claim`) and it is still a regular file here: the item can be kept instead of made again."""
        rel = self._relative(parts)
        if rel not in self.previous_files:
            return False
        try:
            return stat.S_ISREG(os.lstat(os.path.join(self._root, rel)).st_mode)
        except OSError:
            return False

    def finish(self) -> list[str]:
        """Remove the files earlier runs wrote that this run did not claim (and recorded folders left
        empty), save the record. Returns the removed files. Called by `StageExecutor.result`."""
        if self._finished:
            return []
        self._finished = True
        removed = self._remove(self._files - self._claimed, self._dirs - self._kept_dirs())
        self._close()
        self._fd = None
        self._files = set(self._claimed)
        self._dirs = {d for d in self._dirs if self._lexists(d)}
        try:
            self._save(self._files, self._dirs)
        except OSError as exc:
            raise StageExecutionError(f"cannot write {RECORD_NAME}: {exc.strerror or exc}", path=self.path,
                                      stage=self.stage_id) from exc
        return removed

    # -- inner workings -----------------------------------------------------------------------------
    def _relative(self, parts: tuple) -> str:
        if len(parts) == 1 and os.path.isabs(parts[0]):
            text = os.path.relpath(parts[0], os.path.abspath(self._root))
        else:
            text = "/".join(os.fspath(p) for p in parts)
        rel = os.path.normpath(text).replace(os.sep, "/")
        if rel in (".", "..", RECORD_NAME) or rel.startswith("../") or os.path.isabs(rel):
            raise ValueError(f"{'/'.join(map(str, parts))!r} is not a path inside the output folder {self._root}")
        return rel

    def _lexists(self, rel: str) -> bool:
        return os.path.lexists(os.path.join(self._root, rel))

    def _make_parents(self, rel: str) -> None:
        parent = rel.rpartition("/")[0]
        if parent in self._checked_dirs:
            return
        done = ""
        for part in parent.split("/"):
            done = f"{done}/{part}" if done else part
            if done in self._checked_dirs:
                continue
            full = os.path.join(self._root, done)
            if os.path.islink(full):
                raise StageInputError(f"'{done}' in the output folder is a symbolic link; the stage writes only "
                                      "inside its folder: remove the link or choose another output_dir",
                                      path=self.path, stage=self.stage_id)
            if not os.path.isdir(full):
                if os.path.lexists(full):
                    raise StageInputError(f"the output folder holds a file '{done}' where the stage needs a folder; "
                                          "move it or choose another output_dir", path=self.path,
                                          stage=self.stage_id)
                if done not in self._dirs:
                    self._append({"dir": done})
                    self._dirs.add(done)
                os.mkdir(full)
            self._checked_dirs.add(done)

    def _kept_dirs(self) -> set[str]:
        kept = set(self._claimed_dirs)
        for rel in self._claimed | self._claimed_dirs:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                kept.add("/".join(parts[:i]))
        return kept

    def _append(self, entry: dict) -> None:
        if self._fd is None:
            raise RuntimeError("the output folder is finished; open a new one for another run")
        os.write(self._fd, folder_record.encode_line(entry))

    def _save(self, files: Iterable[str], dirs: Iterable[str]) -> None:
        self._record.stage, self._record.files, self._record.dirs = self._header, set(files), set(dirs)
        folder_record.write(self._root, self._record)

    def _inside(self, rel: str) -> str | None:
        """The absolute path of a recorded entry, or None if it is not a plain path whose folder
        really lies inside the output folder (an edited record, a folder replaced by a link)."""
        rel = os.path.normpath(rel)
        if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep) or rel == ".":
            return None
        if self._real_root is None:
            self._real_root = os.path.realpath(self._root)
        parent = os.path.realpath(os.path.join(self._root, os.path.dirname(rel)))
        if parent != self._real_root and not parent.startswith(self._real_root + os.sep):
            return None
        return os.path.join(parent, os.path.basename(rel))

    def _unlink_regular(self, path: str) -> bool:
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return False
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StageExecutionError(f"cannot remove an earlier output ({exc.strerror or exc})", path=path,
                                      stage=self.stage_id) from exc
        return True

    def _remove(self, files: Iterable[str], dirs: Iterable[str]) -> list[str]:
        removed = []
        for rel in sorted(files):
            path = self._inside(rel)
            if path is not None and self._unlink_regular(path):
                removed.append(rel)
        for rel in sorted(dirs, key=lambda d: d.count("/"), reverse=True):    # deepest first
            path = self._inside(rel)
            if path is not None and not os.path.islink(path):
                try:
                    os.rmdir(path)
                except OSError:         # not empty (a user's file in it), or gone
                    pass
        return removed


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


# -- the contract -----------------------------------------------------------------------------------------

class StageExecutor(ABC):
    """Base class of every stage type: the declarations the compiler reads, `execute`, the toolkit."""

    type_name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    # whether the same inputs and config give byte-identical outputs (the lock file compares them);
    # False for a stage whose outputs describe the run itself (the report: times, durations)
    reproducible: ClassVar[bool] = True
    config_schema: ClassVar[dict[str, Any]] = {}
    description: ClassVar[str] = ""
    # config keys holding shell templates. The spec substitutes its own placeholders (`${ENV}`,
    # `{vars.x}`, `{stage.key}`) into them as `template_literal(shell_words(value))` and leaves `{{`
    # `}}` as they are, so the key's text stays a template in the executor's syntax (`{name}`
    # placeholders, `{{` `}}` literal braces) that the executor renders in one pass
    shell_template_keys: ClassVar[tuple[str, ...]] = ()
    # the class of `settings`, made from `config_schema` when the class is defined
    Settings: ClassVar[type[Settings]] = FreeSettings
    _settings_schema: ClassVar[dict[str, Any]] = config_schema

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._make_settings_type()

    @classmethod
    def _make_settings_type(cls) -> None:
        schema = cls.config_schema
        cls.Settings = (settings_type(schema, f"{cls.__name__}.Settings", cls.type_name or cls.__name__)
                        if schema else FreeSettings)
        cls._settings_schema = schema

    def __init__(self, stage_id: str, config: dict[str, Any], context: StageContext | None = None):
        self.stage_id = stage_id
        self.config = apply_defaults(self.config_schema, config) if self.config_schema else dict(config)
        self._context = context
        self._settings: Settings | None = None
        self._output: OutputFolder | None = None

    @property
    def context(self) -> StageContext:
        """The runtime's context; a standalone one (events to no file) when used outside a run.
        Made on first use: compiling 10,000 stages instantiates 10,000 executors."""
        if self._context is None:
            self._context = StageContext(self.stage_id)
        return self._context

    @property
    def settings(self) -> Settings:
        """The config as read-only attributes named like the schema's keys (made on first use)."""
        if self._settings is None:
            cls = type(self)
            if cls._settings_schema is not cls.config_schema:     # schema replaced after the class was made
                cls._make_settings_type()
            self._settings = cls.Settings(self.config)
        return self._settings

    # -- declarations used by the compiler -------------------------------------------------------
    def validate_config(self) -> bool:
        """Checks beyond the schema (across keys, against the file system). Raise
        StageConfigError(key=...) to say what is wrong, or return False to reject the config
        without a reason; True (or None) accepts it. The spec calls it once, when the pipeline is
        loaded."""
        return True

    def default_resources(self) -> dict[str, float | str]:
        """What a stage of this type holds while it runs unless its `resources:` says otherwise:
        `cpu`, `mem_gb` (also a limit: a stage going past it is stopped), `gpu` (a number, or
        "auto": a free GPU if there is one, else the CPU). One core by default."""
        return {"cpu": 1}

    def packages(self) -> list[str]:
        """The optional Python packages (pip names) this stage computes its outputs with, with its
        settings, beyond those every install of the project has: the lock file records their
        versions, for another build may write other bytes (a model backend's torch)."""
        return []

    def input_files(self) -> list[str]:
        """Files this stage reads that no upstream stage produces (become doit file_dep)."""
        return []

    def output_files(self) -> list[str]:
        """Files this stage promises to write (checked after execute; recorded in the manifest).
        Everything under `output_dir` is recorded anyway."""
        return []

    def output_dir(self) -> str | None:
        value = self.config.get("output_dir")
        return str(value) if value else None

    def estimate_duration(self) -> float | None:
        """Seconds this stage is expected to take, if the executor can tell from its config and
        inputs; None when it cannot. The pipeline's ETA uses it for a stage that has never
        completed (after that, the duration of its last run)."""
        return None

    # -- the work ----------------------------------------------------------------------------------
    @abstractmethod
    def execute(self, inputs: dict[str, dict[str, Any]]) -> StageResult:
        """Run the stage. `inputs[upstream_id]` is that stage's outputs dict."""

    # -- the toolkit ---------------------------------------------------------------------------------
    def output_folder(self, resume: Any = None) -> OutputFolder:
        """Open `output_dir` for this run: create it, prove it writable, sweep the temporary files a
        killed run of this stage left, and load the record of what earlier runs wrote.

        `resume` is whatever decides whether items written by an earlier run are still valid (the
        config keys that change them, an identity of the input): JSON-able, compared with the
        value the last run saved. When it differs (or `version` does), the files earlier runs wrote
        are removed now; when it is equal, `wrote_before(path)` tells which items to skip."""
        if self._output is not None and not self._output._finished:
            return self._output
        out = self.output_dir()
        if not out:
            raise StageExecutionError(f"{type(self).__name__} has no output_dir to open", stage=self.stage_id)
        self._output = OutputFolder(out, stage_id=self.stage_id, stage_type=self.type_name or type(self).__name__,
                                    version=self.version, resume=resume)
        return self._output

    @property
    def log(self) -> logging.Logger:
        return self.context.log

    def progress(self, done: int, total: int | None = None, *, unit: str = "items", message: str = "") -> None:
        self.context.progress(done, total, unit=unit, message=message)

    def result(self, outputs: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> StageResult:
        """The StageResult of a successful run; finishes the output folder if one was opened
        (removes what earlier runs wrote and this one did not, saves the record)."""
        if self._output is not None:
            self._output.finish()
        outputs = dict(outputs or {})
        if self.output_dir() and "output_dir" not in outputs:
            outputs["output_dir"] = self.output_dir()
        return StageResult(stage_id=self.stage_id, status=ExecutionStatus.SUCCESS,
                           outputs=outputs, metrics=dict(metrics or {}))
