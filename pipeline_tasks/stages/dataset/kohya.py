"""kohya-ss (sd-scripts) layout: one `<repeats>_<name>/` folder per concept holding image + `.txt`
caption pairs, and a dataset config `.toml` (`[general]`, `[[datasets]]`, `[[datasets.subsets]]`)
that `train_network.py --dataset_config` reads, written with tomli-w. Each subset's `image_dir` is
relative to the project folder the pipeline runs in (where the trainer is started), so the file is
the same in every clone of the project."""
from __future__ import annotations

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


HEADER = "# kohya-ss sd-scripts dataset config (train_network.py --dataset_config this.toml)\n"


def dataset_toml(subsets: list[Subset], *, resolution: int, enable_bucket: bool, bucket_step: int,
                 caption_extension: str = ".txt", keep_tokens: int = 1, batch_size: int = 1) -> str:
    """The dataset config as TOML text (by tomli-w), a comment line first."""
    import tomli_w

    dataset: dict[str, Any] = {"resolution": resolution, "batch_size": batch_size, "enable_bucket": enable_bucket}
    if enable_bucket:
        dataset.update(bucket_reso_steps=bucket_step, bucket_no_upscale=True)
    dataset["subsets"] = [{"image_dir": s.image_dir, "num_repeats": s.num_repeats, "class_tokens": s.class_tokens}
                          for s in subsets]
    config = {"general": {"caption_extension": caption_extension, "shuffle_caption": False,
                          "keep_tokens": keep_tokens},
              "datasets": [dataset]}
    return HEADER + tomli_w.dumps(config)
