"""`pipeline-tasks models list | fetch NAME... | verify [NAME...]`: the model catalogue and cache
from the command line."""
from __future__ import annotations

import json
import sys

from ..errors import PipelineError
from .catalogue import DEFAULTS, load
from .store import MODELS_DIR_ENV, models_dir, state_of


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="list, fetch and verify model weights (ISNet, SAM, SAM 2, face embedders)",
                       description="The catalogue of known model files and the local model cache. Runs never "
                                   "download: `models fetch` is the one command that does.")
    p.add_argument("--cache-dir", default=None,
                   help=f"model cache (default: ${MODELS_DIR_ENV} or ~/.cache/pipeline_tasks/models)")
    p.add_argument("--catalogue", default=None, metavar="FILE",
                   help="a YAML/JSON list of extra catalogue entries (default: $PIPELINE_TASKS_MODEL_CATALOGUE)")
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    q = models.add_parser("list", help="every known model: size, licence, user, and whether it is cached")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    q = models.add_parser("fetch", help="download models into the cache (resumes an interrupted fetch; "
                                        "verified by size and sha256 before it is kept)")
    q.add_argument("names", nargs="+", metavar="NAME")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
    q.set_defaults(func=cmd_fetch)
    q = models.add_parser("verify", help="digest cached models again and compare with the catalogue")
    q.add_argument("names", nargs="*", metavar="NAME", help="(default: every cached model)")
    q.set_defaults(func=cmd_verify)


def _entries(args, names: list[str] | None = None):
    catalogue = load(args.catalogue)
    if not names:
        return list(catalogue.values())
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise PipelineError(f"unknown model {', '.join(repr(n) for n in unknown)}; known: "
                            f"{', '.join(sorted(catalogue))} (pipeline-tasks models list)")
    return [catalogue[n] for n in names]


def _mb(size: int | None) -> str:
    return "?" if size is None else f"{size / 1e6:.1f} MB"


def cmd_list(args) -> int:
    root = models_dir(args.cache_dir)
    defaults = {name: backend for backend, name in DEFAULTS.items()}
    rows = []
    for e in _entries(args):
        st = state_of(e, root)
        rows.append({"name": e.name, "used_by": e.used_by, "default_for": defaults.get(e.name), "size": e.size,
                     "sha256": e.sha256, "licence": e.licence, "url": e.url, "file": str(st.path), "state": st.state})
    if args.json:
        print(json.dumps({"cache_dir": str(root), "models": rows}, indent=2))
        return 0
    print(f"model cache: {root}")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        default = " (default)" if r["default_for"] else ""
        pin = "" if r["sha256"] else "  [no published sha256: recorded at first fetch]"
        print(f"{r['name']:<{width}}  {r['state']:<9}  {_mb(r['size']):>9}  {r['used_by']}{default}  "
              f"[{r['licence']}]{pin}")
    return 0


def cmd_fetch(args) -> int:
    # imported here: its HTTP modules would cost every other command ~10 ms to import
    from .fetch import fetch
    root = models_dir(args.cache_dir)
    for entry in _entries(args, args.names):
        if args.no_progress or not sys.stderr.isatty():
            path, how = fetch(entry, root, timeout=args.timeout)
        else:
            path, how = _fetch_with_bar(entry, root, args.timeout)
        print(f"{entry.name}: {how} and verified: {path}")
    return 0


def _fetch_with_bar(entry, root, timeout):
    from rich import progress as rp

    from .fetch import fetch
    with rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
                     rp.TransferSpeedColumn(), rp.TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(entry.name, total=entry.size)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)
        return fetch(entry, root, progress=update, timeout=timeout)


def cmd_verify(args) -> int:
    root = models_dir(args.cache_dir)
    bad = 0
    for entry in _entries(args, args.names):
        st = state_of(entry, root)
        if st.state in ("missing", "partial"):
            if args.names:
                print(f"{entry.name}: {st.state} (pipeline-tasks models fetch {entry.name})")
                bad += 1
            continue
        st = state_of(entry, root, rehash=True)
        if st.state == "verified":
            print(f"{entry.name}: ok {st.path}")
        else:
            bad += 1
            print(f"{entry.name}: DAMAGED {st.path}: {st.detail}; fetch it again with "
                  f"`pipeline-tasks models fetch {entry.name}`")
    return 1 if bad else 0

