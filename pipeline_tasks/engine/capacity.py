"""What the machine has and what each stage needs: `cpu`, `mem_gb`, `gpu` and named resources.

A stage's need is its type's defaults (`StageExecutor.default_resources`, e.g. `gpu: 1` for a
model on `device: cuda`) overridden by its `resources:`. The capacity is what was declared
(`run --resources gpu=1,mem_gb=16`, else the pipeline file's top-level `resources:`), and for
`cpu`, `mem_gb` and `gpu` what was not declared is detected: usable cores, total memory, and the
GPUs named by `CUDA_VISIBLE_DEVICES`, else those NVML reports. A need above the capacity is a
validation error (a stage that could never start would otherwise wait for ever), except a `cpu`
need that is the type's default: a stage type asks by default for the cores it can use (scenes
modelled in parallel), and a run given fewer cores gives it those (`fit_type_defaults`); stages
that could start together share the free cores (`scheduler.ResourcePool.share`); the stage reads
what it was given in `StageContext.resources`.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace

from ..errors import SpecError
from ..executor import StageExecutor
from ..models import Pipeline, PipelineStage
from ..spec.registry import get_executor_class

DETECTED = ("cpu", "mem_gb", "gpu")
AUTO = "auto"                   # a default `gpu` need: a free GPU if there is one, else the CPU
_OPTION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$")


@dataclass(frozen=True)
class Need:
    """What one stage holds while it runs."""
    amounts: dict[str, float] = field(default_factory=dict)
    gpu_auto: bool = False          # takes a GPU when one is free, runs on the CPU otherwise
    priority: int = 0
    cpu_from_type: bool = False     # `cpu` is the stage type's default: lowered to a smaller capacity

    @property
    def mem_limit_bytes(self) -> int | None:
        mem = self.amounts.get("mem_gb")
        return int(mem * 1024 ** 3) if mem else None


NO_NEED = Need()


@dataclass(frozen=True)
class Capacity:
    """What stages running at the same time may hold together."""
    amounts: dict[str, float]
    gpu_devices: tuple[str, ...] = ()        # the ids CUDA_VISIBLE_DEVICES takes, one per GPU
    declared: frozenset[str] = frozenset()   # the names given by the user rather than detected

    def describe(self) -> str:
        parts = []
        for name in sorted(self.amounts):
            value = self.amounts[name]
            how = "" if name in self.declared else " detected"
            parts.append(f"{name}={value:g}{how}")
        return ", ".join(parts)


def parse_option(text: str | None) -> dict[str, float]:
    """`gpu=1,mem_gb=16` → {"gpu": 1.0, "mem_gb": 16.0}."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = _OPTION.match(part)
        if not match:
            raise SpecError(f"--resources: '{part.strip()}' is not NAME=NUMBER",
                            hint="e.g. --resources gpu=1,mem_gb=16,cpu=8")
        out[match.group(1)] = float(match.group(2))
    return out


def stage_need(stage: PipelineStage, executor: StageExecutor | None = None) -> Need:
    """The stage type's default resources overridden by the stage's own `resources:`."""
    executor = executor or get_executor_class(stage.type)(stage.id, stage.config)
    defaults = dict(executor.default_resources())
    gpu_auto = defaults.get("gpu") == AUTO
    if gpu_auto:
        del defaults["gpu"]
    amounts = {k: float(v) for k, v in defaults.items()}
    for name, value in stage.resources.items():
        amounts[name] = float(value)
    if "gpu" in stage.resources:
        gpu_auto = False
    return Need({k: v for k, v in amounts.items() if v > 0}, gpu_auto, stage.priority,
                cpu_from_type="cpu" in defaults and "cpu" not in stage.resources)


def fit_type_defaults(needs: dict[str, Need], capacity: Capacity) -> dict[str, Need]:
    """`needs` with each `cpu` that is its stage type's default lowered to the capacity's cores."""
    have = capacity.amounts.get("cpu")
    if not have:
        return needs
    return {name: replace(need, amounts={**need.amounts, "cpu": have})
            if need.cpu_from_type and need.amounts.get("cpu", 0.0) > have else need
            for name, need in needs.items()}


def _visible_devices() -> tuple[str, ...] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not part or part.startswith("-"):      # CUDA stops at the first invalid id
            break
        ids.append(part)
    return tuple(ids)


def detect_gpus() -> tuple[str, ...]:
    """GPU ids: CUDA_VISIBLE_DEVICES when set, else NVML's devices, else none."""
    visible = _visible_devices()
    if visible is not None:
        return visible
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return tuple(str(i) for i in range(pynvml.nvmlDeviceGetCount()))
        finally:
            pynvml.nvmlShutdown()
    except Exception:       # no package, no driver: no GPU
        return ()


def detect(names: set[str]) -> dict[str, float]:
    """Detected amounts of the `names` among cpu, mem_gb, gpu."""
    out: dict[str, float] = {}
    if "cpu" in names:
        out["cpu"] = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if "mem_gb" in names:
        # imported here, as everywhere in the engine: a command that runs no stage (plan,
        # status) never loads psutil
        import psutil
        out["mem_gb"] = round(psutil.virtual_memory().total / 1024 ** 3, 2)
    if "gpu" in names:
        out["gpu"] = float(len(detect_gpus()))
    return out


def capacity_for(pipeline: Pipeline, needs: dict[str, Need], declared: dict[str, float] | None = None) -> Capacity:
    """The run's capacity: `declared` (the command line) over the pipeline file's `resources:`,
    with cpu, mem_gb and gpu detected where neither gives them. GPUs are looked for only when a
    stage asks for one."""
    given = {**pipeline.resources, **(declared or {})}
    wants_gpu = any("gpu" in n.amounts or n.gpu_auto for n in needs.values())
    to_detect = {"cpu", "mem_gb"} | ({"gpu"} if wants_gpu else set())
    amounts = {**detect(to_detect - set(given)), **given}
    gpus = int(amounts.get("gpu", 0))
    devices: tuple[str, ...] = ()
    if gpus:
        found = _visible_devices() if "gpu" in given else detect_gpus()
        found = found or ()
        devices = tuple(found[:gpus]) + tuple(str(i) for i in range(len(found), gpus))
    return Capacity(amounts, devices, frozenset(given))


def check_fits(pipeline: Pipeline, needs: dict[str, Need], capacity: Capacity) -> None:
    """A SpecError naming the first stage that needs more of something than the capacity holds."""
    for stage in pipeline.stages:
        need = needs.get(stage.id, NO_NEED)
        for name, amount in need.amounts.items():
            have = capacity.amounts.get(name)
            if have is None and name not in DETECTED:
                continue                # a named resource without a capacity: not limited
            have = have or 0.0
            if amount > have + 1e-9:
                how = "declared" if name in capacity.declared else "detected"
                raise SpecError(
                    f"needs {amount:g} {name} but the run has {have:g} ({how}); it could never start",
                    path=pipeline.source, line=stage.line, stage=stage.id,
                    hint=f"lower the stage's resources.{name} or give the capacity: "
                         f"run --resources {name}={math.ceil(amount):g}")
