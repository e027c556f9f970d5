#!/usr/bin/env bash
# The paper's full-scale runs on one GPU: E4 (wave, [2,500,500,500,1], 80,000 Adam steps, Algorithm 1
# every 100 steps, with and without weights; Figs. 6-8) and E3 (Poisson, Fig. 4), written to
# ${OUT:-results/full}/figN.json (+ .html when plotly is installed; the GPU image has no plotly and the
# JSON holds every number). Needs only jax, flax, optax and numpy; prints the device first.
#   bash benchmarks/gpu_paper.sh            # full scale (paper: ~16 min on a P100 for one wave run)
#   SCALE=smoke bash benchmarks/gpu_paper.sh  # seconds: check the script on a CPU first
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-full}
PY=${PYTHON:-python}
OUT=${OUT:-results/$SCALE}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY'
import jax, flax, optax, numpy
print("devices:", jax.devices(), "| jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "numpy", numpy.__version__, flush=True)
PY
start=$(date +%s)
"$PY" -m pinnlab reproduce fig6 fig7 fig8 --scale "$SCALE" --out "$OUT" --no-progress   # E4
"$PY" -m pinnlab reproduce fig4 --scale "$SCALE" --out "$OUT" --no-progress   # E3
echo "total seconds: $(( $(date +%s) - start ))"
"$PY" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
e4 = json.loads((out / "fig6.json").read_text())["numbers"]
e3 = json.loads((out / "fig4.json").read_text())["numbers"]
print(json.dumps({"wave_rel_l2_no_weights": e4["no weights"]["rel_l2"], "wave_rel_l2_alg1": e4["Algorithm 1"]["rel_l2"],
                  "wave_seconds": [e4["no weights"]["seconds"], e4["Algorithm 1"]["seconds"]],
                  "poisson_rel_l2": {k: v["rel_l2"] for k, v in e3.items() if isinstance(v, dict)}}, indent=2))
PY
