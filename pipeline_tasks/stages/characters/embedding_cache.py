"""The clustering stage's embedding cache, `embeddings.npz`: one vector per crop, found by the
digest of the crop's bytes under a fingerprint of the embedder settings (item-level resume).

Nothing in the file depends on when or where it was written (no file times in the keys, fixed
times in the zip entries), so two runs over the same crops write the same bytes and the stage's
outputs stay reproducible."""
from __future__ import annotations

import hashlib
import io
import os
import zipfile

import numpy as np

from ...atomic import write_bytes

ZIP_TIME = (1980, 1, 1, 0, 0, 0)       # the earliest time a zip entry can hold


def content_digest(path: str | os.PathLike) -> str:
    """Digest of a file's bytes (raises OSError, e.g. FileNotFoundError, as `open` does)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def load(path: str | os.PathLike, fingerprint: str) -> dict[str, np.ndarray]:
    """digest -> vector from the cache at `path`; empty when there is none, it does not parse, or
    it was made with other embedder settings."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return {}
            return dict(zip(z["digests"].tolist(), z["vectors"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return {}


def encode(fingerprint: str, digests: list[str], vectors: np.ndarray) -> bytes:
    """The `.npz` bytes (a zip of `.npy` arrays that `np.load` reads), built without a clock."""
    buf = io.BytesIO()
    arrays = {"fingerprint": np.array(fingerprint), "digests": np.array(digests), "vectors": vectors}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            with zf.open(zipfile.ZipInfo(name + ".npy", date_time=ZIP_TIME), "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)
    return buf.getvalue()


def save(path: str | os.PathLike, fingerprint: str, digests: list[str], vectors: np.ndarray) -> bool:
    """Write the cache atomically unless the file already holds exactly these bytes; True if written."""
    data = encode(fingerprint, digests, vectors)
    try:
        with open(path, "rb") as fh:
            if fh.read() == data:
                return False
    except OSError:
        pass
    write_bytes(path, data)
    return True
