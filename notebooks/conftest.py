"""Notebook tests: ``pytest --nbval-lax --nbval-current-env notebooks/``.

nbval starts each notebook's kernel as a subprocess of this pytest process, in the notebook's folder, so
environment variables set here, at collection time, reach every kernel before it starts.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Every preset in the notebooks runs at "smoke" scale: a few hundred steps, seconds per preset.
os.environ["PINNLAB_SMOKE"] = "1"
# Test this checkout's pinnlab, installed or not (the kernels start in notebooks/, not in the repo root).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
# One BLAS thread per kernel: on small shared machines (CI runners, 2 cores and several jobs) threaded
# OpenBLAS oversubscribes the cores and a 900 x 900 eigvalsh takes seconds instead of ~0.1 s.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
