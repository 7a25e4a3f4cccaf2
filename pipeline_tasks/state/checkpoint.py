"""`checkpoint.json` in the documented checkpoint format, and the CheckpointManager (save / load / list / prune)."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import PipelineNotFoundError
from .paths import writing


@dataclass
class CheckpointData:
    pipeline_id: str
    checkpoint_time: float = field(default_factory=time.time)
    completed_stages: list[str] = field(default_factory=list)
    stage_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipeline_state: str = "running"
    next_stage: str | None = None
    source: str | None = None
    state_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointData:
        """The checkpoint in `data`; ValueError naming the first field of the wrong shape."""
        if not isinstance(data, dict):
            raise ValueError(f"a JSON object was expected, found {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key, (kinds, what) in _SHAPES.items():
            if key in known and not isinstance(known[key], kinds):
                raise ValueError(f"'{key}' should be {what}, found {type(known[key]).__name__}")
        if not all(isinstance(s, str) for s in known.get("completed_stages", ())):
            raise ValueError("'completed_stages' should list stage ids")
        if not all(isinstance(v, dict) for v in known.get("stage_outputs", {}).values()):
            raise ValueError("'stage_outputs' should map each stage id to an object of outputs")
        if "pipeline_id" not in known:
            raise ValueError("'pipeline_id' is missing")
        return cls(**known)


_SHAPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "pipeline_id": (str, "a string"), "checkpoint_time": ((int, float), "a number"),
    "completed_stages": (list, "a list of stage ids"), "stage_outputs": (dict, "an object"),
    "pipeline_state": (str, "a string"), "next_stage": ((str, type(None)), "a stage id or null"),
    "source": ((str, type(None)), "a path or null"), "state_dir": ((str, type(None)), "a path or null"),
}


class CheckpointManager:
    """Keeps `checkpoint.json` (the latest) and a history under `checkpoints/`."""

    def __init__(self, state_dir: str | Path, keep_last: int = 10):
        self.state_dir = Path(state_dir)
        self.latest = self.state_dir / "checkpoint.json"
        self.history = self.state_dir / "checkpoints"
        self.keep_last = keep_last

    def save(self, data: CheckpointData, *, history: bool = False) -> Path:
        data.checkpoint_time = time.time()
        # compact JSON: the indenting encoder is pure Python, too slow for 10,000 stages' outputs
        with writing(self.latest, "the checkpoint"):
            atomic.write_json(self.latest, data.to_dict(), fsync=False, indent=None)
        if history:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(data.checkpoint_time))
            name = f"{stamp}-{int(data.checkpoint_time * 1000) % 1000:03d}-{data.pipeline_state}.json"
            with writing(self.history / name, "the checkpoint history"):
                self.history.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.latest, self.history / name)      # the same bytes, not encoded twice
            self.prune(self.keep_last)
        return self.latest

    def load(self, path: str | Path | None = None) -> CheckpointData:
        path = Path(path) if path else self.latest
        try:
            return CheckpointData.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise PipelineNotFoundError("no checkpoint found", path=path) from None
        except OSError as exc:
            raise PipelineNotFoundError(f"cannot read the checkpoint ({exc.strerror})", path=path) from None
        except ValueError as exc:           # not JSON, not UTF-8, or the wrong shape
            raise PipelineNotFoundError(f"not a checkpoint file ({exc})", path=path,
                                        hint="delete it: the next run writes a new one") from None

    def list(self) -> list[Path]:
        if not self.history.is_dir():
            return []
        return sorted(self.history.glob("*.json"))

    def prune(self, keep_last: int | None = None) -> list[Path]:
        keep = self.keep_last if keep_last is None else keep_last
        files = self.list()
        removed = files[:-keep] if keep > 0 else files
        for path in removed:
            path.unlink(missing_ok=True)
        return removed
