"""Manifests written in place: complete exactly when they parse; digests from one descriptor."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline_tasks.engine import manifest as mf


def test_written_manifest_reads_back_as_json_not_as_the_callers_objects(tmp_path):
    path = tmp_path / "out" / mf.MANIFEST_NAME          # the folder is made if missing
    data = mf.build("s", "custom", {"where": Path("a/b"), "n": (1, 2)}, [], version="3", metrics={"t": 0.5})
    mf.write(path, data)
    again = mf.read(path)
    assert again["outputs"] == {"where": "a/b", "n": [1, 2]}      # what another process would read
    assert again["version"] == "3" and again["metrics"] == {"t": 0.5}


def test_a_torn_manifest_reads_as_missing_and_as_changed(tmp_path):
    path = tmp_path / mf.MANIFEST_NAME
    mf.write(path, mf.build("s", "custom", {}, [{"path": "x", "size": 1, "digest": "d"}]))
    st = os.stat(path)
    state = mf.ManifestChecker().get_state(str(path), None)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])          # killed while writing
    assert mf.read(path) is None
    assert mf.ManifestChecker().check_modified(str(path), os.stat(path), state) is True
    path.write_bytes(whole)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert mf.read(path)["stage_id"] == "s"
    assert mf.ManifestChecker().check_modified(str(path), os.stat(path), state) is False   # same content


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7])
def test_sized_digest_reads_the_whole_file(tmp_path, size):
    path = tmp_path / "f"
    data = os.urandom(size)
    path.write_bytes(data)
    expected = (size, hashlib.blake2b(data, digest_size=16).hexdigest())
    assert mf.sized_digest(path) == expected
    assert mf.sized_digest(path, chunk=4096) == expected
