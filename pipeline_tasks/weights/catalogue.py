"""The catalogue of known model files: where each comes from, its size and sha256, its licence,
and which stage and backend use it.

A config names a model by its catalogue name (`weights: isnet-anime`) or gives a path; a backend
named without weights uses its default entry (`DEFAULTS`). More entries (a mirror, a private
model) come from a YAML or JSON file named by `$PIPELINE_TASKS_MODEL_CATALOGUE`: a list of
mappings with the fields of `ModelEntry`; an entry with a built-in name replaces it.

`sha256` is None where no published digest could be confirmed: such a file is checked by size
when fetched, its digest is recorded then, and every later check compares against that record.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import SpecError

CATALOGUE_ENV = "PIPELINE_TASKS_MODEL_CATALOGUE"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelEntry:
    name: str               # catalogue name, as a config writes it
    file: str               # file name in the model cache
    url: str
    size: int | None        # bytes; None where not published
    sha256: str | None      # None where no published digest is known (recorded at first fetch)
    licence: str
    used_by: str            # stage and config that use it, e.g. "segmentation model: isnet"
    description: str = ""

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None


BUILTIN = (
    ModelEntry("isnet-anime", "isnet-anime.onnx",
               "https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-anime.onnx",
               176_069_933, "f15622d853e8260172812b657053460e20806f04b9e05147d49af7bed31a6e99",
               "Apache-2.0", "segmentation model: isnet",
               "IS-Net trained on anime characters (SkyTNT anime-segmentation), rembg's ONNX export"),
    ModelEntry("isnet-general-use", "isnet-general-use.onnx",
               "https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-general-use.onnx",
               178_648_008, "60920e99c45464f2ba57bee2ad08c919a52bbf852739e96947fbb4358c0d964a",
               "Apache-2.0", "segmentation model: isnet",
               "IS-Net for general images (DIS), rembg's ONNX export"),
    ModelEntry("u2net", "u2net.onnx",
               "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",
               175_997_641, "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
               "Apache-2.0", "segmentation model: u2net", "U²-Net salient-object model, rembg's ONNX export"),
    ModelEntry("sam-vit-b", "sam_vit_b_01ec64.pth",
               "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
               375_042_383, "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
               "Apache-2.0", "segmentation model: sam", "Segment Anything ViT-B checkpoint"),
    ModelEntry("sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt",
               "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt",
               156_008_466, None, "Apache-2.0", "segmentation model: sam2",
               "SAM 2.1 Hiera-Tiny checkpoint"),
    ModelEntry("facenet-vggface2", "20180402-114759-vggface2.pt",
               "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
               None, None, "MIT (facenet-pytorch); trained on VGGFace2", "clustering embedder: facenet",
               "InceptionResnetV1 face-identity embedder state_dict (facenet-pytorch)"),
)

# the entry a backend uses when its config names no weights
DEFAULTS = {"isnet": "isnet-anime", "u2net": "u2net", "sam": "sam-vit-b", "sam2": "sam2.1-hiera-tiny",
            "facenet": "facenet-vggface2"}


def _entry_from(data: object, where: str) -> ModelEntry:
    names = {f.name for f in fields(ModelEntry)}
    if not isinstance(data, dict) or not {"name", "file", "url"} <= set(data) or set(data) - names:
        raise SpecError(f"a catalogue entry is a mapping with name, file, url and optionally "
                        f"{', '.join(sorted(names - {'name', 'file', 'url'}))}", path=where)
    values = {"size": None, "sha256": None, "licence": "", "used_by": "", **data}
    if not isinstance(values["name"], str) or not NAME.match(values["name"]):
        raise SpecError(f"catalogue name {values['name']!r}: lower-case letters, digits, '.', '_', '-'", path=where)
    file = values["file"]
    if not isinstance(file, str) or not file or "/" in file or file.startswith("."):
        raise SpecError(f"catalogue entry '{values['name']}': 'file' is a plain file name", path=where)
    if values["sha256"] is not None and not (isinstance(values["sha256"], str) and SHA256.match(values["sha256"])):
        raise SpecError(f"catalogue entry '{values['name']}': sha256 is 64 lower-case hex digits", path=where)
    if values["size"] is not None and not (isinstance(values["size"], int) and values["size"] > 0):
        raise SpecError(f"catalogue entry '{values['name']}': size is a positive number of bytes", path=where)
    return ModelEntry(**values)


def load(extra: str | os.PathLike | None = None) -> dict[str, ModelEntry]:
    """Name → entry: the built-in entries, then those of `extra` (or `$PIPELINE_TASKS_MODEL_CATALOGUE`)."""
    entries = {e.name: e for e in BUILTIN}
    path = extra or os.environ.get(CATALOGUE_ENV)
    if path:
        import yaml
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"cannot read the model catalogue: {exc.strerror or exc}", path=path) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"the model catalogue is not valid YAML/JSON: {exc}", path=path) from None
        if not isinstance(data, list):
            raise SpecError("a model catalogue file holds a list of entries", path=path)
        for item in data:
            entry = _entry_from(item, str(path))
            entries[entry.name] = entry
    return entries
