"""What the lock file costs a run: `engine.lockfile.write` on N stages, in-process, CPU time.

    TMPDIR=/dev/shm python bench/lockfile.py --stages 10000 --repeat 3

N manifests of a binary tree of stages (as bench/engine.py makes), then, best of --repeat each:
a first run's write (every stage executed, its manifest parsed in this process, as the runtime
leaves it), and a no-op run's (every stage up to date with its locked config: the old lock is
parsed, nothing rendered or written).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from pipeline_tasks.engine import lockfile
from pipeline_tasks.engine import manifest as mf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.stages
    with tempfile.TemporaryDirectory() as root:
        os.chdir(root)
        manifests = {}
        for i in range(n):
            path = f"out/s{i}/.stage.json"
            mf.write(path, mf.build(f"s{i}", "custom", {"output_dir": f"out/s{i}"},
                                    [{"path": "out.txt", "size": 4, "digest": f"{i:032x}"}]))
            manifests[f"s{i}"] = path
        specs = [{"id": f"s{i}", "type": "custom", "version": "1", "fingerprint": f"{i:032x}", "inputs": [],
                  "upstream": [f"s{(i - 1) // 2}"] if i else [], "reproducible": True} for i in range(n)]
        ids = [s["id"] for s in specs]
        first, noop = [], []
        for _ in range(args.repeat):
            if os.path.exists("p.lock.json"):
                os.unlink("p.lock.json")
            t = time.process_time()
            lockfile.write("p.lock.json", "p", specs, manifests, ids, [], lockfile.InputDigests("d.json"))
            first.append(time.process_time() - t)
            t = time.process_time()
            wrote = lockfile.write("p.lock.json", "p", specs, manifests, [], ids, lockfile.InputDigests("d.json"))
            noop.append(time.process_time() - t)
            assert not wrote
        size = os.path.getsize("p.lock.json")
    print(f"{n} stages: lock file {size / 1e6:.2f} MB; first run's write {min(first) * 1000:.0f} ms CPU, "
          f"no-op run's {min(noop) * 1000:.0f} ms CPU (best of {args.repeat})")


if __name__ == "__main__":
    main()
