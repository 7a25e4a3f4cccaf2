"""The files frame_extraction hands on: `frames.jsonl` (one record per kept frame), `scenes.csv`
(one row per scene) and `scene_scores.csv` (the cut detector's score of every frame it saw). One
reader and one writer each, for producers and consumers alike; a bad line is a `StageInputError`
naming the file and the line. The scene list is also written for other tools:
`scenes-pyscenedetect.csv` (PySceneDetect's CSV layout, by its own writer; `scenedetect load-scenes`
reads it) and `scenes.edl` (a CMX 3600 edit decision list, which video editors import)."""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ...atomic import write_text
from ...errors import StageInputError
from ...jsonl import RecordError, fields, integer, number, read_listing, text, write_records

FRAMES = "frames.jsonl"
SCENES = "scenes.csv"
SCENES_PYSCENEDETECT = "scenes-pyscenedetect.csv"
SCENES_EDL = "scenes.edl"
SCENE_COLUMNS = ("scene_index", "start_frame", "end_frame", "start_time", "end_time")
SCORES = "scene_scores.csv"
SCORE_COLUMNS = ("frame_index", "score")
RERUN = "rerun frame_extraction"


@dataclass(frozen=True)
class FrameRecord:
    """One kept frame. `file` is relative to the listing's folder (or absolute); `pts_time`,
    `source` ("scene" | "interval") and `video` (the source video's absolute path, where segmentation
    reads neighbouring frames) are what frame_extraction adds, optional in a hand-made listing."""
    file: str
    frame_index: int
    scene_index: int = 0
    pts_time: float | None = None
    source: str | None = None
    video: str | None = None

    @classmethod
    def from_dict(cls, record: Any) -> FrameRecord:
        d = fields(record)
        return cls(file=text(d, "file"), frame_index=integer(d, "frame_index"),
                   scene_index=integer(d, "scene_index", 0), pts_time=number(d, "pts_time", None),
                   source=text(d, "source", None), video=text(d, "video", None))

    def to_dict(self) -> dict[str, Any]:
        d = {"file": self.file, "frame_index": self.frame_index, "scene_index": self.scene_index}
        if self.pts_time is not None:
            d["pts_time"] = self.pts_time
        if self.source is not None:
            d["source"] = self.source
        if self.video is not None:
            d["video"] = self.video
        return d


def write_frames(path: str | os.PathLike, records: Iterable[FrameRecord]) -> str:
    """Write `frames.jsonl` atomically (records in the order given); returns the text written."""
    return write_records(path, (r.to_dict() for r in records))


def read_frames(path: str | os.PathLike, *, stage: str | None = None) -> list[FrameRecord]:
    return read_listing(path, FrameRecord.from_dict, what="frame", hint=RERUN, stage=stage)


@dataclass(frozen=True)
class SceneRow:
    """One scene: frames [start_frame, end_frame) and their times in seconds (end exclusive)."""
    scene_index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float


def write_scenes(path: str | os.PathLike, rows: Iterable[SceneRow]) -> str:
    """Write `scenes.csv` atomically (a header, then the rows; times with 6 decimals)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SCENE_COLUMNS)
    for r in rows:
        w.writerow([r.scene_index, r.start_frame, r.end_frame, f"{r.start_time:.6f}", f"{r.end_time:.6f}"])
    write_text(path, buf.getvalue())
    return buf.getvalue()


def write_scene_exports(folder: str | os.PathLike, rows: Iterable[SceneRow], fps: Fraction, *, video: str) -> None:
    """`SCENES_PYSCENEDETECT` (by PySceneDetect's own writer) and `SCENES_EDL` in `folder`,
    atomically, from the scene rows (frame ranges, end exclusive) at the video's frame rate."""
    from scenedetect import FrameTimecode
    from scenedetect.output import write_scene_list

    rows = list(rows)
    scenes = [(FrameTimecode(r.start_frame, fps=fps), FrameTimecode(r.end_frame, fps=fps)) for r in rows]
    buf = io.StringIO(newline="")
    write_scene_list(buf, scenes)
    write_text(Path(folder) / SCENES_PYSCENEDETECT, buf.getvalue())
    write_text(Path(folder) / SCENES_EDL, scenes_edl(rows, fps, video=video))


def scenes_edl(rows: Iterable[SceneRow], fps: Fraction, *, video: str) -> str:
    """A CMX 3600 edit decision list with one cut event per scene, source and record ranges both
    the scene's frames, in non-drop-frame timecode at the video's nominal (whole) frame rate; each
    event names its clip (`* FROM CLIP NAME:`) so an editor can link it to the video."""
    rate = max(1, round(fps))
    name = _edl_text(os.path.basename(video))
    lines = [f"TITLE: {_edl_text(os.path.splitext(os.path.basename(video))[0])[:70] or 'scenes'}",
             "FCM: NON-DROP FRAME", ""]
    for event, r in enumerate(rows, 1):
        start, end = _timecode(r.start_frame, rate), _timecode(r.end_frame, rate)
        lines += [f"{event:03d}  AX       V     C        {start} {end} {start} {end}",
                  f"* FROM CLIP NAME: {name}", ""]
    return "\n".join(lines)


def _timecode(frame: int, rate: int) -> str:
    seconds, frames = divmod(frame, rate)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{frames:02d}"


def _edl_text(text: str) -> str:
    """One line of printable ASCII, which is all an EDL holds."""
    return "".join(c if " " <= c <= "~" else "_" for c in text)


def read_scenes(path: str | os.PathLike, *, stage: str | None = None) -> list[SceneRow]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return _parse_scenes(path, fh, stage)
    except FileNotFoundError as exc:
        raise StageInputError(f"{path.name} not found", path=path, stage=stage, hint=RERUN) from exc
    except UnicodeDecodeError as exc:
        raise StageInputError("not UTF-8 text", path=path, stage=stage, hint=RERUN) from exc
    except OSError as exc:
        raise StageInputError(f"cannot read {path.name}: {exc.strerror or exc}", path=path, stage=stage,
                              hint=RERUN) from exc


def _parse_scenes(path: Path, fh, stage: str | None) -> list[SceneRow]:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != SCENE_COLUMNS:
        raise StageInputError(f"not a scene list: the header must be {','.join(SCENE_COLUMNS)}", path=path, line=1,
                              stage=stage, hint=RERUN)
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        try:
            if len(cells) != len(SCENE_COLUMNS):
                raise RecordError(f"{len(cells)} columns instead of {len(SCENE_COLUMNS)}")
            idx, start, end = (_int(c, name) for c, name in zip(cells[:3], SCENE_COLUMNS))
            rows.append(SceneRow(idx, start, end, _float(cells[3], "start_time"), _float(cells[4], "end_time")))
        except RecordError as exc:
            raise StageInputError(f"not a scene row: {exc}", path=path, line=reader.line_num, stage=stage,
                                  hint=RERUN) from exc
    return rows


def _int(cell: str, name: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise RecordError(f"{name} must be an integer, not {cell!r}") from None


def _float(cell: str, name: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise RecordError(f"{name} must be a number, not {cell!r}") from None


def write_scores(path: str | os.PathLike, scores: Iterable[tuple[int, float]]) -> str:
    """Write `scene_scores.csv` atomically: a header, then one (frame_index, score) row per frame."""
    buf = io.StringIO()
    buf.write(",".join(SCORE_COLUMNS) + "\n")
    for index, score in scores:
        buf.write(f"{index},{score:.4f}\n")
    write_text(path, buf.getvalue())
    return buf.getvalue()


def read_scores(path: str | os.PathLike, *, stage: str | None = None) -> list[tuple[int, float]]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != SCORE_COLUMNS:
                raise StageInputError(f"not a score list: the header must be {','.join(SCORE_COLUMNS)}", path=path,
                                      line=1, stage=stage, hint=RERUN)
            rows = []
            for cells in reader:
                try:
                    if len(cells) != len(SCORE_COLUMNS):
                        raise RecordError(f"{len(cells)} columns instead of {len(SCORE_COLUMNS)}")
                    rows.append((_int(cells[0], "frame_index"), _float(cells[1], "score")))
                except RecordError as exc:
                    raise StageInputError(f"not a score row: {exc}", path=path, line=reader.line_num, stage=stage,
                                          hint=RERUN) from exc
            return rows
    except FileNotFoundError as exc:
        raise StageInputError(f"{path.name} not found", path=path, stage=stage, hint=RERUN) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise StageInputError(f"cannot read {path.name}: {exc}", path=path, stage=stage, hint=RERUN) from exc
