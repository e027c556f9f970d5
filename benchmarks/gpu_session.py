"""Every GPU measurement of the README in one prepared, time-boxed run (one device lease).

    python benchmarks/gpu_session.py --out DIR                 # on the GPU machine (~9 min)
    python benchmarks/gpu_session.py --out /tmp/g --quick      # the same steps at tiny sizes (CPU check)

A lease is short and a second start is expensive, so the steps run in priority order, each in its own
process under a time limit cut to what is left of ``--budget-s``; a step that fails or runs out loses
only itself. Each step writes ``DIR/<step>.json`` (the benchmark's own JSON), and everything else goes
to ``DIR/log.txt``:

1. ``env``: devices, versions, ``nvidia-smi``.
   ``install``: ``pip install --dry-run --no-index .`` against the machine's own jax, flax, optax and numpy
   (pip's JSON report: what pinnlab would add; it fails if ``pyproject.toml`` excludes what is there).
   Build isolation needs setuptools >= 77 with no index: ``--wheels DIR`` is a folder that holds its wheel.
   ``tests``: the JAX canary on the host CPU (``JAX_PLATFORMS=cpu``), then the core tests on the GPU
   (``--tests``; the Jupyter stack is not needed for them), their summary in the log.
2. ``check``: the wave kernel (widths 64 and 500, 3 x 100 points; 3 x 300 did not finish in 90 s on an
   H200, float64 compilation included) in float64 by both methods (they must agree to ~1e-10), and the
   float32 kernels at JAX's default matmul precision and at "highest", each against the float64 one
   (on a GPU, float32 matmuls run as TF32 by default).
3. ``ntk_paper``: ``bench_ntk_structured.py --only paper`` (full K + eigenvalues, three blocks).
4. ``train``: ``bench_train.py`` (E3 and the wave step at widths 100 and 500, chunk 100).
5. ``spectrum``: ``bench_spectrum.py``: Lanczos top 20 of the 9,000-point K, structured and generic.
6. ``e4``: ``pinnlab reproduce fig6 fig7 fig8 --scale full`` (80,000 Adam steps at width 500, twice),
   only when the wave step rate measured in ``train`` says it fits in the time left; its figure
   files are packed into ``DIR/e4_full.tgz``.
7. ``table``: ``bench_ntk_structured.py --only table`` with whatever time is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class Session:
    """Runs steps in order under one deadline, logging to ``out/log.txt``."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.deadline, self.t0 = out, time.monotonic() + budget_s, time.monotonic()
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "log.txt"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, msg: str) -> None:
        line = f"[+{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, file=sys.stderr, flush=True)
        with self.log_path.open("a") as f:
            f.write(line + "\n")

    def step(self, name: str, argv: list[str], limit_s: float, reserve_s: float = 0.0,
             save: bool = True, env: dict | None = None) -> dict | None:
        """Run ``argv`` with at most ``limit_s`` (and never into the last ``reserve_s``); its stdout is the
        step's JSON (``DIR/<name>.json`` if ``save``, else the log). Returns the parsed JSON, or None when it
        failed or ran out of time."""
        limit = min(limit_s, self.left() - reserve_s)
        if limit < 5:
            self.log(f"skip {name}: {self.left():.0f} s left")
            return None
        self.log(f"start {name} (limit {limit:.0f} s): {' '.join(argv[1:])}")
        t0 = time.monotonic()
        with self.log_path.open("a") as err:
            try:
                proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, timeout=limit, cwd=ROOT, text=True,
                                      env=None if env is None else {**os.environ, **env})
            except subprocess.TimeoutExpired:
                self.log(f"end {name}: timed out after {limit:.0f} s")
                return None
        self.log(f"end {name}: exit {proc.returncode} in {time.monotonic() - t0:.1f} s")
        if save:
            (self.out / f"{name}.json").write_text(proc.stdout)
        else:
            with self.log_path.open("a") as f:
                f.write(proc.stdout)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return None


def environment() -> dict:
    import flax
    import jax
    import numpy as np
    import optax

    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        smi = f"nvidia-smi: {exc}"
    return {"devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(), "jax": jax.__version__,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "nvidia_smi": smi,
            "default_matmul_precision": str(jax.config.jax_default_matmul_precision)}


def check(width: int, n: int) -> dict:
    """Float64 structured vs Jacobian, and float32 (two matmul precisions) vs float64, on this device."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pinnlab import make_net, make_problem, nets, ntk

    problem = make_problem("wave", n_ntk=n)
    config = nets.convention("paper_code", problem.default_init, width=width, depth=3)
    net = make_net(config, problem.dim, problem.mean, problem.std, jax.random.key(0))
    points = problem.sample(jax.random.key(1), ntk=True)

    def kernel(params, pts, method):
        return np.asarray(ntk.kernel(net.apply, params, problem.terms, pts, method=method), np.float64)

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    with jax.enable_x64(True):
        p64, x64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (net.params, points))
        ref = kernel(p64, x64, "jacobian")
        out = {"width": width, "n": n, "f64_structured_vs_jacobian": rel(kernel(p64, x64, "structured"), ref)}
    for precision in ("default", "highest"):
        with contextlib.nullcontext() if precision == "default" else jax.default_matmul_precision(precision):
            for method in ("structured", "jacobian"):
                out[f"f32_{method}_{precision}_vs_f64"] = rel(kernel(net.params, points, method), ref)
    top = ntk.eigenvalues(ref)[:3]
    out["f64_top_eigenvalues"] = [float(v) for v in top]
    return out


def pack(out: Path, src: Path, name: str) -> None:
    with tarfile.open(out / name, "w:gz") as tar:
        tar.add(src, arcname=src.name)


def e4_fits(train: dict | None, left_s: float) -> tuple[bool, str]:
    """Whether two 80,000-step width-500 wave runs fit in ``left_s``, from the measured step rate."""
    try:
        rate = next(w for w in train["wave"] if w["width"] == 500)["pinnlab_steps_per_s"]
    except (TypeError, KeyError, StopIteration):  # no rate: run only with most of a full lease left
        return left_s > 330, f"no measured width-500 wave step rate, {left_s:.0f} s left"
    estimate = 2 * 80_000 / rate * 1.25 + 60  # +25%: NTK refreshes, evaluation; +60 s: compile, spectra
    return estimate < left_s, f"estimate {estimate:.0f} s at {rate:.0f} steps/s, {left_s:.0f} s left"


STEPS = ("env", "install", "tests", "check", "ntk_paper", "train", "spectrum", "e4", "table")
CORE_TESTS = ("tests/test_ntk.py", "tests/test_training.py", "tests/test_gauss_newton.py")


def install_argv(py: str, wheels: Path | None) -> list[str]:
    """pip's dry run of ``pip install .`` with no index: resolves pinnlab's requirements against what is installed."""
    links = ["--find-links", str(wheels)] if wheels else []
    return [py, "-m", "pip", "install", "--dry-run", "--no-index", *links, "--quiet", "--report", "-", str(ROOT)]


def pytest_argv(py: str, files: list[str], workers: int) -> list[str]:
    """pytest without the project's addopts (they name nbval, which a bare GPU image lacks)."""
    return [py, "-m", "pytest", "-o", "addopts=-ra", "-q", "-p", "no:cacheprovider", "-n", str(workers), *files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=540.0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script on a CPU")
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps, in order: {','.join(STEPS)}")
    parser.add_argument("--wheels", type=Path, help="a folder with a setuptools>=77 wheel, for the install step")
    parser.add_argument("--tests", nargs="*", default=list(CORE_TESTS), help="test files run on the GPU")
    parser.add_argument("--child", choices=["env", "check"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    q, only = args.quick, set(args.only.split(","))
    if only - set(STEPS):
        parser.error(f"--only: unknown steps {sorted(only - set(STEPS))}; choose from {','.join(STEPS)}")
    if args.child == "env":
        print(json.dumps(environment()))
        return
    if args.child == "check":
        print(json.dumps([check(32, 20)] if q else [check(64, 100), check(500, 100)]))
        return
    # children allocate GPU memory as they need it: with JAX's default (75% of the card at start per
    # process) a parent holding jax would starve its benchmark child
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    s, py = Session(args.out, args.budget_s), sys.executable
    run = lambda name, *a, **k: s.step(name, *a, **k) if name in only else None  # noqa: E731
    run("env", [py, __file__, "--out", str(args.out), "--child", "env"], 60)
    run("install", install_argv(py, args.wheels), 90)
    if "tests" in only:
        s.step("canary_cpu", pytest_argv(py, ["tests/test_jax_canary.py"], 1), 60, save=False,
               env={"JAX_PLATFORMS": "cpu"})
        s.step("tests", pytest_argv(py, args.tests, 1 if q else 4), 200, save=False)
    run("check", [py, __file__, "--out", str(args.out), "--child", "check"] + (["--quick"] if q else []), 150)
    bench = lambda name: [py, str(HERE / name)]  # noqa: E731
    run("ntk_paper", bench("bench_ntk_structured.py") + (["--quick"] if q else ["--only", "paper", "--repeats",
        "3", "--timeout", "150"]), 330)
    train = run("train", bench("bench_train.py") + (["--quick", "--skip", "ntk_cost"] if q else
                ["--skip", "ntk_cost", "--widths", "500", "--no-nested", "--budget-s", "6", "--wave-chunk", "100"]),
                150, reserve_s=60)
    run("spectrum", bench("bench_spectrum.py") + (["--quick", "--methods", "lanczos_structured"] if q else
        ["--widths", "500", "--ns", "3000", "--methods", "lanczos_structured", "lanczos", "--timeout-s", "45"]),
        100)
    if "e4" in only:
        fits, why = (True, "quick") if q else e4_fits(train, s.left() - 20)
        s.log(f"e4 full scale: {'run' if fits else 'skip'} ({why})")
        if fits:
            full = args.out / "e4_full"
            figs = ["-m", "pinnlab", "reproduce", "fig6", "fig7", "fig8", "--scale", "smoke" if q else "full",
                    "--out", str(full), "--no-progress"]
            s.step("e4", [py] + figs, 600, reserve_s=10, save=False)  # its numbers are in the figure JSONs
            if full.exists():
                pack(args.out, full, "e4_full.tgz")
                for f in full.iterdir():  # the tarball carries them; keep DIR under the fetch limit of 8 files
                    f.unlink()
                full.rmdir()
    run("table", bench("bench_ntk_structured.py") + ["--only", "table", "--repeats", "3", "--timeout", "120"]
        + (["--widths", "32", "--sizes", "20"] if q else ["--widths", "64", "500", "--sizes", "300", "1000",
           "3000"]), 600)
    s.log(f"done, {s.left():.0f} s of the budget left")


if __name__ == "__main__":
    main()
