"""Fetching a catalogue model into the model cache: resumable, verified before it is kept.

The download goes to `<file>.part`. A `.part` left by an interrupted fetch is continued with an
HTTP `Range` request (a server that answers with the whole file instead starts it over). When the
bytes are all there, the size and the sha256 are checked against the catalogue; a file that fails
either is deleted and never becomes `<file>`. Only then is it renamed into place, with the record
of its check beside it. A model already cached and verified is not fetched again (no network).
Called only by `pipeline-tasks models fetch`: no stage ever downloads.
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelWeightsError, PipelineError
from ..version import __version__
from .catalogue import ModelEntry
from .store import CHUNK, PART_SUFFIX, file_sha256, state_of, write_record

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class ModelFetchError(PipelineError):
    """A model could not be downloaded (network, server, or the bytes were not the catalogue's)."""


Progress = Callable[[int, int | None], None]     # (bytes so far, total bytes or None)


def fetch(entry: ModelEntry, root: Path, progress: Progress | None = None, timeout: float = 60.0) -> tuple[Path, str]:
    """Make `entry` present and verified in `root`. Returns its path and what was done: "cached"
    (already there, nothing downloaded), "downloaded" or "resumed"."""
    dest = root / entry.file
    state = state_of(entry, root)
    if state.state == "unchecked":
        state = state_of(entry, root, rehash=True)
    if state.state == "verified":
        return dest, "cached"
    root.mkdir(parents=True, exist_ok=True)
    if state.state == "mismatch":
        dest.unlink()                        # a damaged file of ours in the cache: fetched anew
    part = dest.with_name(dest.name + PART_SUFFIX)
    start = part.stat().st_size if part.is_file() else 0
    if entry.size is not None and start > entry.size:
        part.unlink()
        start = 0
    how = "resumed" if start else "downloaded"
    if entry.size is None or start < entry.size:
        start = _download(entry, part, start, progress, timeout)
    _check(entry, part)
    os.replace(part, dest)
    write_record(dest, entry.sha256 or file_sha256(dest))
    return dest, how


def _download(entry: ModelEntry, part: Path, start: int, progress: Progress | None, timeout: float) -> int:
    headers = {"User-Agent": f"pipeline-tasks/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(entry.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start and entry.size is None:
            return start                     # nothing past what we have: the .part is whole
        raise ModelFetchError(f"cannot fetch model '{entry.name}': the server answered {exc.code} {exc.reason}",
                              path=entry.url) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelFetchError(f"cannot fetch model '{entry.name}': {reason}", path=entry.url) from None
    with response:
        length = response.headers.get("Content-Length")
        if start and response.status == 206:
            m = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                raise ModelFetchError(f"cannot resume model '{entry.name}': the server sent another range "
                                      f"({response.headers.get('Content-Range')!r})", path=entry.url)
            mode = "ab"
        else:
            start, mode = 0, "wb"            # a whole answer: start over
        total = start + int(length) if length and length.isdigit() else entry.size
        done = start
        try:
            with open(part, mode) as fh:
                if progress:
                    progress(done, total)
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except http.client.IncompleteRead as exc:    # the connection closed early
                        fh.write(exc.partial)
                        done += len(exc.partial)
                        raise
                    if not chunk:
                        break
                    fh.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as exc:   # keep the .part for resuming
            raise ModelFetchError(f"fetch of model '{entry.name}' interrupted after {done} of "
                                  f"{total if total is not None else '?'} bytes ({exc.__class__.__name__}); "
                                  "run the same command again to resume", path=entry.url) from None
    if total is not None and done < total:
        raise ModelFetchError(f"fetch of model '{entry.name}' interrupted after {done} of {total} bytes (the "
                              "connection closed early); run the same command again to resume", path=entry.url)
    return done


def _check(entry: ModelEntry, part: Path) -> None:
    """Size and sha256 of a finished download; a wrong one is deleted."""
    size = part.stat().st_size
    problem = None
    if entry.size is not None and size != entry.size:
        problem = f"{size} bytes, the catalogue says {entry.size}"
    elif entry.sha256 is not None:
        digest = file_sha256(part)
        if digest != entry.sha256:
            problem = f"sha256 {digest}, the catalogue says {entry.sha256}"
    if problem:
        part.unlink()
        raise ModelWeightsError(f"downloaded model '{entry.name}' is not the catalogue's file ({problem}); it was "
                                "deleted. Check the catalogue entry's url and sha256, then fetch again",
                                path=entry.url)
