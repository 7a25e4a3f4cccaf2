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
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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
        atomic.write_json(self.latest, data.to_dict(), fsync=False, indent=None)
        if history:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(data.checkpoint_time))
            name = f"{stamp}-{int(data.checkpoint_time * 1000) % 1000:03d}-{data.pipeline_state}.json"
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
        except (ValueError, TypeError) as exc:
            raise PipelineNotFoundError(f"not a checkpoint file ({exc})", path=path) from None

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
