"""E3's training step at several commits, each against one base commit in ABBA pairs (a bisect helper).

Run from the repository root: ``python benchmarks/bench_e3_revs.py --base 7b6db5d REV [REV ...] [--pairs 2]``.
Each commit's ``pinnlab/`` is exported with ``git archive`` into a temporary directory; one process per
measurement (base, rev, rev, base) compiles the Poisson E3 step (1x100, GD, chunk 1000) and takes the median
of 7 timings of 4,000 steps. Prints one JSON line per pair: both means and the ratio rev / base. This is
``bench_compare.py``'s E3 case alone, so a bisect costs ~40 s per pair instead of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import json, time
import numpy as np
from pinnlab import TrainConfig, Trainer, convention, make_problem
t = Trainer(make_problem("poisson"), convention("paper_code", width=100), TrainConfig(lr=1e-5, steps=10**6, chunk=1000))
t.advance(4000)
times = []
for _ in range(7):
    t0 = time.perf_counter(); t.advance(4000); times.append(time.perf_counter() - t0)
print(json.dumps(float(np.median(times))))
"""


def export(rev: str, root: Path) -> Path:
    """``pinnlab/`` as committed at ``rev``, in its own directory under ``root``."""
    target = root / rev
    target.mkdir()
    archive = subprocess.run(["git", "archive", rev, "pinnlab"], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def seconds(tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=tree, env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the commit every other one is timed against")
    p.add_argument("revs", nargs="+", help="commits to time against --base")
    p.add_argument("--pairs", type=int, default=1, help="ABBA pairs per commit (default 1)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = export(args.base, Path(tmp))
        for rev in args.revs:
            tree = export(rev, Path(tmp))
            for _ in range(args.pairs):
                a1, b1, b2, a2 = seconds(base), seconds(tree), seconds(tree), seconds(base)
                print(json.dumps({"base": args.base, "rev": rev, "base_s": round((a1 + a2) / 2, 4),
                                  "rev_s": round((b1 + b2) / 2, 4), "ratio": round((b1 + b2) / (a1 + a2), 3)}),
                      flush=True)


if __name__ == "__main__":
    main()
