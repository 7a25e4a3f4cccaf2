"""Stage callables of the batch (foreach) tests, importable from subprocesses via PYTHONPATH."""
from __future__ import annotations

from pathlib import Path


def _mark(stage_id: str) -> None:
    with open("runs.log", "a") as fh:
        fh.write(stage_id + "\n")


def item(output_dir, stage_id, args, inputs):
    """One item: writes args['text'] and the same item's upstream text (inputs[stage] is that item's outputs)."""
    _mark(stage_id)
    if args.get("fail_if") and Path(args["fail_if"]).exists():
        raise ValueError(f"cannot read {args['fail_if']}")
    parts = [str(args.get("text", ""))]
    for upstream in sorted(inputs):
        parts.append(Path(inputs[upstream]["output_dir"], "out.txt").read_text().upper())
    Path(output_dir, "out.txt").write_text("|".join(parts))
    return {"text": parts[0]}


def gather(output_dir, stage_id, args, inputs):
    """A gather: inputs[stage][item] for every item; writes one line per item, sorted by key."""
    _mark(stage_id)
    lines = []
    for upstream in sorted(inputs):
        for key, outputs in sorted(inputs[upstream].items()):
            lines.append(f"{upstream} {key} {Path(outputs['output_dir'], 'out.txt').read_text()}")
    Path(output_dir, "all.txt").write_text("\n".join(lines) + "\n")
    return {"items": len(lines), "dirs": args.get("dirs"), "order": {up: list(inputs[up]) for up in inputs}}


def note(output_dir, stage_id, args):
    """Writes its args as JSON."""
    import json
    _mark(stage_id)
    Path(output_dir, "args.json").write_text(json.dumps(args, sort_keys=True))
