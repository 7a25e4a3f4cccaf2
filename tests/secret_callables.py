"""Stage callables that handle a secret every way a stage can: print it, log it, return it, fail
with it (importable from subprocesses via PYTHONPATH)."""
from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path


def leak(output_dir, args, log):
    token = args["token"]
    print("token is", token)
    print(repr(token), json.dumps(token), shlex.quote(token), [token], {"t": token})
    sys.stdout.write(token[:3])             # a secret written in pieces
    sys.stdout.write(token[3:] + "\n")
    sys.stderr.write(f"stderr {token}\n")
    log.info("using %s", token)
    log.info("repr %r", token)
    log.warning("in a list %s", [token])
    logging.getLogger("some.library").warning("library saw %s", token)
    try:
        raise ValueError(token)
    except ValueError:
        log.exception("caught")
    Path(output_dir, "done.txt").write_text("done")
    return {"token": token, "nested": {"items": [token, f"x{token}y"]}, "quoted": shlex.quote(token)}


def fail(args, log):
    token = args["token"]
    print(f"about to fail with {token}", flush=True)
    log.info("note: %s", args["note"])
    raise RuntimeError(f"bad token {token!r} in {args['note']}")
