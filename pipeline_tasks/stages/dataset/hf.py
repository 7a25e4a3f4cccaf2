"""Hugging Face `imagefolder` metadata: `metadata.jsonl` at the dataset root, one
`{"file_name": <path relative to the root, posix>, "text": <caption>}` per image, so
`load_dataset("imagefolder", data_dir=root)` yields image + text columns."""
from __future__ import annotations

import json


def metadata_jsonl(rows: list[tuple[str, str]]) -> str:
    """`rows`: (relative posix path, caption), written sorted by path."""
    return "".join(json.dumps({"file_name": f, "text": t}, ensure_ascii=False) + "\n" for f, t in sorted(rows))
