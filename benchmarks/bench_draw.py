"""What one frame of the lab costs the page: plotly.js redrawing the lab's figure in Debian chromium.

Run from the repository root: ``python benchmarks/bench_draw.py [--preset poisson] [--busy 2]``.
It trains the lab headless (``--steps``), copies its figure (data and layout) into a bare page that
loads plotly's own ``plotly.min.js``, and times ``Plotly.restyle`` of every trace's ``y`` (what a frame
sends) ``--rounds`` times per variant and pass, the passes alternately forward and reversed.
``restyle`` is the call itself (plotly.js draws SVG inside it); ``paint`` runs until the next animation
frame after it. Variants, each one change to the lab's figure: ``lab`` (as drawn), ``no-legend``,
``no-annotations`` (the panel titles), ``no-shapes`` (the budget line), ``no-hover``, ``fewer-points``
(curves thinned to ~300 points, the 1D prediction panels to ~250), ``webgl`` (``scattergl`` traces)
and ``bare`` (no legend, annotations, shapes or hover). ``--busy N`` runs N busy-loop processes
beside it. Prints one JSON object: medians and worst in ms per variant.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import CHROMIUM, busy_loops, environment, median, print_json  # noqa: E402

VARIANTS = ("lab", "no-legend", "no-annotations", "no-shapes", "no-hover", "fewer-points", "webgl", "bare")
RESTYLE_JS = """
async ([fig, rounds]) => {
  const gd = document.getElementById('gd');
  await Plotly.newPlot(gd, fig.data, fig.layout, {responsive: false});
  const idx = fig.data.map((t, i) => i).filter(i => Array.isArray(fig.data[i].y) && fig.data[i].y.length > 10);
  const out = [];
  for (let r = 0; r < rounds; r++) {
    const ys = idx.map(i => fig.data[i].y.map(v => (typeof v === 'number') ? v * (1 + 1e-3 * Math.sin(r + 1)) : v));
    const t0 = performance.now();
    Plotly.restyle(gd, {y: ys}, idx);
    const t1 = performance.now();
    await new Promise(res => requestAnimationFrame(() => setTimeout(res, 0)));
    out.push([t1 - t0, performance.now() - t0]);
  }
  Plotly.purge(gd);
  return out;
}
"""


def plain(obj):
    """A JSON tree of lists and floats (plotly's own JSON packs arrays as base64, which restyle cannot scale)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def lab_figure(preset: str, steps: int) -> dict:
    import pinnlab

    lab = pinnlab.Lab(preset)
    lab.set(budget=0)
    lab.run(steps)
    data = []
    for trace in lab.figure.data:
        props = trace.to_plotly_json()
        for key in ("x", "y", "z"):
            if getattr(trace, key, None) is not None:
                props[key] = np.asarray(getattr(trace, key))
        data.append(plain(props))
    return {"data": data, "layout": plain(lab.figure.layout.to_plotly_json())}


def variant(fig: dict, name: str) -> dict:
    f = copy.deepcopy(fig)
    layout = f["layout"]
    if name in ("no-legend", "bare"):
        layout["showlegend"] = False
    if name in ("no-annotations", "bare"):
        layout.pop("annotations", None)
    if name in ("no-shapes", "bare"):
        layout.pop("shapes", None)
    if name in ("no-hover", "bare"):
        layout["hovermode"] = False
    for trace in f["data"]:
        n = len(trace["y"]) if isinstance(trace.get("y"), list) else 0
        if name == "fewer-points" and trace["type"] == "scatter" and n > 500:
            stride = -(-n // (250 if n >= 1000 else 300))
            for key in ("x", "y"):
                if isinstance(trace.get(key), list):
                    trace[key] = trace[key][::stride]
        if name == "webgl" and trace["type"] == "scatter":
            trace["type"] = "scattergl"
    return f


def points(fig: dict) -> int:
    return sum(len(t[k]) for t in fig["data"] for k in ("x", "y") if isinstance(t.get(k), list))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="poisson")
    p.add_argument("--steps", type=int, default=20_000, help="training steps before the figure is copied")
    p.add_argument("--rounds", type=int, default=15, help="restyles per variant and pass (the first 3 untimed)")
    p.add_argument("--passes", type=int, default=4, help="passes over the variants, alternately reversed")
    p.add_argument("--busy", type=int, default=0, help="busy-loop processes beside it")
    args = p.parse_args()

    import plotly
    from playwright.sync_api import sync_playwright

    fig = lab_figure(args.preset, args.steps)
    plotly_js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    times: dict[str, list] = {name: [] for name in VARIANTS}
    with busy_loops(args.busy), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.set_content("<div id='gd' style='width:1240px;height:640px'></div>")
        page.add_script_tag(content=plotly_js)
        for k in range(args.passes):  # forward, then backward: no variant always runs first
            for name in VARIANTS if k % 2 == 0 else VARIANTS[::-1]:
                times[name] += page.evaluate(RESTYLE_JS, [variant(fig, name), args.rounds])[3:]
        browser.close()
    out = {"preset": args.preset, "steps": args.steps, "busy": args.busy, "load_average": os.getloadavg(),
           "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
           "plotly": plotly.__version__, "environment": environment(), "variants": {}}
    for name, t in times.items():
        t = np.asarray(t)
        out["variants"][name] = {"points": points(variant(fig, name)), "restyle_ms": median(t[:, 0]),
                                 "paint_ms": median(t[:, 1]), "worst_paint_ms": float(t[:, 1].max()), "n": len(t)}
    print_json(out)


if __name__ == "__main__":
    main()
