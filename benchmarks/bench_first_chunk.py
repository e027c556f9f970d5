"""Compile time of a Trainer's first chunk and its steady steps/s, for comparing two checkouts.

``python benchmarks/bench_first_chunk.py CASE STEPS`` (CASE: ``e3``, ``default``, ``wave``) prints one
JSON object: ``first_chunk_s`` (trace + compile + run of the first chunk, no persistent cache) and the
median steps/s over 5 timed ``advance(STEPS)`` calls, by wall and by process CPU time. It times one
process of one checkout: run it alternately from two checkouts (A, B, A, B, ...) and compare medians,
as benchmarks/README.md does for the chunk-level refresh cond.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import numpy as np

from pinnlab import make_problem, nets
from pinnlab.training import TrainConfig, Trainer


def setup(case: str):
    """(problem, net config, train config): paper E3, or the lab's default / wave preset."""
    if case == "e3":
        problem = make_problem("poisson", a=4)
        net = nets.convention("paper_code", problem.default_init, width=100, depth=1)
        return problem, net, TrainConfig(optimizer="sgd", lr=1e-5, weighting="none", ntk_every=0, chunk=1000)
    from pinnlab.lab.state import LabState, build, preset

    state = LabState() if case == "default" else preset(case)
    return build(state, chunk=state.chunk or 100)


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("e3", "default", "wave"):
        sys.exit("usage: bench_first_chunk.py {e3,default,wave} STEPS")
    problem, net, train = setup(sys.argv[1])
    trainer = Trainer(problem, net, train)
    chunk = train.chunk
    t0 = time.perf_counter()
    trainer.advance(chunk)
    jax.block_until_ready(trainer.state.params)
    out = {"case": sys.argv[1], "chunk": chunk, "first_chunk_s": time.perf_counter() - t0}
    steps = max(chunk, int(sys.argv[2]) // chunk * chunk)
    walls, cpus = [], []
    for _ in range(5):
        w0, c0 = time.perf_counter(), time.process_time()
        trainer.advance(steps)
        jax.block_until_ready(trainer.state.params)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    out.update(steps=steps, steps_per_s_wall=steps / float(np.median(walls)),
               steps_per_s_cpu=steps / float(np.median(cpus)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
