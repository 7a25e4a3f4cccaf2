"""kohya-ss (sd-scripts) layout: one `<repeats>_<name>/` folder per concept holding image + `.txt`
caption pairs, and a dataset config `.toml` (`[general]`, `[[datasets]]`, `[[datasets.subsets]]`)
that `train_network.py --dataset_config` reads. The TOML is written by hand (values are only
strings, integers, booleans); strings use JSON escapes, which are valid TOML basic strings."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A concept name usable as a folder name (kohya reads the class token from after the `_`)."""
    out = _UNSAFE.sub("_", name.strip()).strip("._")
    return out or "concept"


def folder_name(repeats: int, name: str) -> str:
    return f"{int(repeats)}_{safe_name(name)}"


@dataclass
class Subset:
    image_dir: str
    num_repeats: int
    class_tokens: str


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=True)
    raise TypeError(f"unsupported TOML value {v!r}")


def dataset_toml(subsets: list[Subset], *, resolution: int, enable_bucket: bool, bucket_step: int,
                 caption_extension: str = ".txt", keep_tokens: int = 1, batch_size: int = 1) -> str:
    lines = ["# kohya-ss sd-scripts dataset config (train_network.py --dataset_config this.toml)",
             "[general]",
             f"caption_extension = {_value(caption_extension)}",
             "shuffle_caption = false",
             f"keep_tokens = {_value(keep_tokens)}",
             "",
             "[[datasets]]",
             f"resolution = {_value(resolution)}",
             f"batch_size = {_value(batch_size)}",
             f"enable_bucket = {_value(enable_bucket)}"]
    if enable_bucket:
        lines += [f"bucket_reso_steps = {_value(bucket_step)}", "bucket_no_upscale = true"]
    for s in subsets:
        lines += ["", "  [[datasets.subsets]]",
                  f"  image_dir = {_value(s.image_dir)}",
                  f"  num_repeats = {_value(s.num_repeats)}",
                  f"  class_tokens = {_value(s.class_tokens)}"]
    return "\n".join(lines) + "\n"
