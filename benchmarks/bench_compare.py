"""Two source trees side by side: training steps/s, the paper-scale NTK and the lab's first frame.

    git worktree add /tmp/base <commit>
    python benchmarks/bench_compare.py --base /tmp/base            # this tree against /tmp/base

Each round runs one child process per tree, in alternating order (ABBA), with the tree first on
PYTHONPATH; every child warms up (compiles) before it times. The result is the median of each metric
per tree and the ratio head / base (below 1: the head is faster). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _util import environment, print_json  # noqa: E402

CHILD = r"""
import json, time
import jax, numpy as np
import pinnlab
from pinnlab import TrainConfig, Trainer, convention, make_problem, ntk

def median_time(fn, repeats):
    fn()  # compile
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return float(np.median(out))

result = {"pinnlab": pinnlab.__file__}
poisson = make_problem("poisson")
t = Trainer(poisson, convention("paper_code", width=100), TrainConfig(lr=1e-5, steps=10**6, chunk=1000))
result["e3_seconds_per_4000_steps"] = median_time(lambda: t.advance(4000), 5)
wave = make_problem("wave")
w = Trainer(wave, convention("paper_code", "glorot_normal", width=100, depth=3),
            TrainConfig(optimizer="adam", lr=1e-3, steps=10**6, chunk=100, weighting="ntk", update_every=100))
result["wave_seconds_per_500_steps"] = median_time(lambda: w.advance(500), 5)
paper = Trainer(wave, convention("paper_code", "glorot_normal", width=500, depth=3), TrainConfig())
result["ntk_paper_scale_seconds"] = median_time(
    lambda: ntk.kernel(paper.apply, paper.state.params, wave.terms, paper.probe), 5)
if LAB:
    from pinnlab import Lab
    Lab("poisson")  # imports and compiles once
    t0 = time.perf_counter(); Lab("poisson", seed=1); result["lab_first_frame_seconds"] = time.perf_counter() - t0
print(json.dumps(result))
"""


def child(tree: Path, lab: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    # cwd: the tree, so that neither the caller's directory (first on sys.path for -c) nor an editable
    # install's path wins over PYTHONPATH
    proc = subprocess.run([sys.executable, "-c", f"LAB = {lab}\n" + CHILD], env=env, capture_output=True, text=True,
                          timeout=1800, cwd=tree)
    if proc.returncode:
        raise SystemExit(f"child for {tree} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other source tree (e.g. a git worktree)")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds (one child per tree each)")
    parser.add_argument("--no-lab", action="store_true", help="skip the lab's first frame (needs ipywidgets)")
    args = parser.parse_args()
    trees = {"base": Path(args.base).resolve(), "head": HERE.parent}
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    for r in range(args.rounds):
        for name in (("base", "head") if r % 2 == 0 else ("head", "base")):
            runs[name].append(child(trees[name], not args.no_lab))
    for name, tree in trees.items():
        assert all(Path(run["pinnlab"]).is_relative_to(tree) for run in runs[name]), f"{name} imported another tree"
    metrics = [k for k in runs["head"][0] if k != "pinnlab"]
    medians = {name: {k: statistics.median(run[k] for run in runs[name]) for k in metrics} for name in runs}
    ratios = {k: medians["head"][k] / medians["base"][k] for k in metrics}
    print_json({"environment": environment(), "trees": {k: str(v) for k, v in trees.items()}, "rounds": args.rounds,
                "median": medians, "ratio_head_over_base": ratios, "runs": runs})


if __name__ == "__main__":
    main()
