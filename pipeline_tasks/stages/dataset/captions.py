"""Caption text from a template. Fields: {trigger}, {name}, {cluster}, {scene}, {frame},
{source_frame}, {width}, {height}. Unknown metadata renders as an empty string, and the
comma-separated parts left empty by that are dropped ("a, , b" -> "a, b")."""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from ..characters.formats import InstanceRecord

FIELDS = ("trigger", "name", "cluster", "scene", "frame", "source_frame", "width", "height")
DEFAULT_TEMPLATE = "{trigger}, {name}, solo, full body, scene {scene}"


def check_template(template: str) -> None:
    """Raise ValueError naming the first field the template uses that does not exist."""
    for _lit, name, _spec, _conv in string.Formatter().parse(template):
        if name is not None and name not in FIELDS:
            raise ValueError(f"unknown caption field {{{name}}}; available: "
                             + ", ".join("{" + f + "}" for f in FIELDS))


def caption_fields(*, trigger: str, name: str, cluster: int, instance: InstanceRecord | None,
                   size: tuple[int, int]) -> dict:
    """The template's fields; scene, frame and source_frame are empty without an instance record."""
    known = instance is not None
    return {"trigger": trigger, "name": name, "cluster": cluster,
            "scene": instance.scene_index if known else "", "frame": instance.frame_index if known else "",
            "source_frame": Path(instance.source_frame).name if known else "", "width": size[0], "height": size[1]}


def render_caption(template: str, fields: dict[str, Any]) -> str:
    text = template.format(**{k: ("" if v is None else v) for k, v in fields.items()})
    parts = [p.strip() for p in text.split(",")]
    # a part that lost its value ("scene ") is dropped too
    keep = [p for p in parts if p and not _lost_value(p, template)]
    return ", ".join(keep)


def _lost_value(part: str, template: str) -> bool:
    """True for a part like 'scene' left over from 'scene {scene}' with an empty value."""
    for piece in template.split(","):
        piece = piece.strip()
        if "{" in piece and piece.split("{")[0].strip() == part and piece.split("{")[0].strip():
            return True
    return False


def without_solo(text: str) -> str:
    """A caption of a crop showing several characters: its "solo" part removed."""
    return ", ".join(p for p in (part.strip() for part in text.split(",")) if p and p.lower() != "solo")
