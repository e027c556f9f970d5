"""Click an eigenvalue in the lab's spectra panel: how long until the page draws its eigenvector, for two revisions.

Run from the repository root: ``python benchmarks/bench_eigen_click.py [--rounds 5] [--revs d458831 a43e2a5]``.
Each revision's ``pinnlab`` is exported with ``git archive`` into a temporary directory and served by its own
JupyterLab (both at once; the helpers of ``bench_click.py``), opened in Debian chromium in a one-cell notebook,
``import pinnlab; lab = pinnlab.Lab("poisson"); lab.run(300); lab``: a paused lab that has trained a bit. Then
per round, and per revision in turn (the order alternating from round to round), three real mouse clicks
(CDP input events; the mouse first hovers the point until plotly's hover data holds it, then ``time.time()``
right before the click) on the spectra panel's ``λ·K_rr (residual)`` trace:

1. ``first``: rank ``--first`` (3) -> until the page's figure (``gd._fullData``, polled on every animation frame)
   has a trace named ``mode 3 of ...``: the eigenvector panel replaces the prediction (a new grid: a rebuild);
2. ``other``: rank ``--other`` (5) while mode 3 is shown -> until a trace is named ``mode 5 of ...``: at d458831
   the panel's traces are restyled in place (``View.restyle``), before it (a43e2a5) the figure was rebuilt;
3. ``hide``: rank 5 again -> until no trace is named ``mode ...`` and ``prediction û`` is back.

A click whose target the page did not show within ``--click-timeout-s`` counts as missed (``None``). The kernel's
side is timed too: the lab's ``show_mode`` is wrapped in the kernel (an instance attribute: the click handler
calls ``self.show_mode``), so ``kernel_enter`` is click -> the handler started and ``kernel_done`` click -> it
returned (the figure's messages are sent by then). ``--warmup`` rounds first (not in the summary: the first
eigenvector compiles its JAX functions) are kept in ``raw``. Page errors and console errors are recorded.
Results go to ``--out`` (default ``benchmarks/results_eigen_click_cpu.json``, overwritten).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_click as bc  # noqa: E402

REPO = bc.REPO
OUT = bc.OUT
GD = f"document.querySelector('{OUT} .js-plotly-plot')"

# Viewport pixel of point `rank` (x = rank) of the trace named `name`, and its curve/point numbers.
POINT = """([name, rank]) => {
  const gd = GD; if (!gd || !gd._fullData) return null;
  const curve = gd._fullData.findIndex(t => t.name === name);
  if (curve < 0) return null;
  const t = gd._fullData[curve], point = [...t.x].findIndex(x => Math.round(Number(x)) === rank);
  if (point < 0) return null;
  const L = gd._fullLayout, xa = L[t.xaxis.replace('x', 'xaxis')], ya = L[t.yaxis.replace('y', 'yaxis')];
  const svg = gd.querySelector('.main-svg').getBoundingClientRect();
  const px = xa._offset + xa.l2p(xa.c2l(Number(t.x[point]))), py = ya._offset + ya.l2p(ya.c2l(Number(t.y[point])));
  return {x: svg.left + px, y: svg.top + py, curve, point, value: Number(t.y[point]), xtype: xa.type, ytype: ya.type};
}""".replace("GD", GD)

# Whether plotly's hover data holds the point (a click acts on the hovered points).
HOVERED = """(p) => { const gd = GD; return !!(gd && gd._hoverdata && gd._hoverdata.some(
  h => h.curveNumber === p.curve && h.pointNumber === p.point)); }""".replace("GD", GD)

# The figure shows `want`: a trace named "mode R of ..." with points, or (want "hidden") the prediction again.
SHOWN = """(want) => {
  const gd = GD, d = gd && gd._fullData; if (!d) return false;
  const named = p => d.some(t => typeof t.name === 'string' && t.name.startsWith(p) && t.x && t.x.length > 0);
  if (want === 'hidden') return !named('mode ') && named('prediction û') && named('λ·K_rr');
  const t = d.find(t => typeof t.name === 'string' && t.name.startsWith(want) && t.x && t.x.length > 0);
  return t ? t.name : false;
}""".replace("GD", GD)

KERNEL_IDLE = "() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;" \
              " return !k || k.status === 'idle'; }"

INSTRUMENT = """
import time as _bt, pinnlab as _bp
_bench_calls = []
_bench_orig = lab.show_mode
def _bench_show(block, rank=1):
    t = _bt.time()
    try:
        return _bench_orig(block, rank)
    finally:
        _bench_calls.append({"enter": t, "exit": _bt.time(), "block": block, "rank": rank,
                             "shown": lab.shown_mode})
lab.show_mode = _bench_show
print("instrumented", lab.step, lab.shown_mode, _bp.__file__)
"""
DUMP = "import json as _bj; print(_bj.dumps(_bench_calls, default=str))"


def cell_source(preset: str, steps: int) -> str:
    return f'import pinnlab\n\nlab = pinnlab.Lab("{preset}")\nlab.run({steps})\nlab'


def open_lab(browser, url: str, root: Path, rev: str, args) -> dict:
    """A page with the lab's notebook run and the kernel instrumented."""
    name = f"eigen_{rev}.ipynb"
    nb = bc.notebook(args.preset)
    nb["cells"][0]["source"] = cell_source(args.preset, args.steps)
    (root / name).write_text(json.dumps(nb))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append("pageerror: " + str(e)[:300]))
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text[:300]}") if m.type == "error" else None)
    t_open = time.time()
    bc.run_notebook(page, url, name)
    page.wait_for_selector(f"{OUT} .js-plotly-plot", timeout=240_000)
    page.wait_for_function(KERNEL_IDLE, timeout=240_000)
    bc.wait_page(page, SHOWN, "hidden", 60)
    info = page.evaluate(bc.KERNEL_EXEC, INSTRUMENT).strip()
    bc.log(rev, f"lab shown after {time.time() - t_open:.1f} s;", info)
    page.locator(f"{OUT} .js-plotly-plot").first.scroll_into_view_if_needed()
    return {"page": page, "errors": errors, "kernel_info": info, "open_s": round(time.time() - t_open, 1),
            "rounds": []}


def click_point(page, name: str, rank: int, want: str, timeout_s: float) -> dict:
    """Hover point ``rank`` of trace ``name``, click it, wait until the figure shows ``want``."""
    p = page.evaluate(POINT, [name, rank])
    if p is None:
        return {"want": want, "error": f"no point {rank} of {name!r}", "figure_s": None}
    page.mouse.move(p["x"] + 25, p["y"] + 25)  # off the point, so that moving onto it is a fresh hover
    page.mouse.move(p["x"], p["y"], steps=3)
    hovered = bc.wait_page(page, HOVERED, p, 2.0) is not None
    t0 = bc.click_at(page, (p["x"], p["y"]))
    shown = bc.wait_page(page, SHOWN, want, timeout_s)
    rec = {"want": want, "rank": rank, "hovered": hovered, "t_click": t0,
           "figure_s": None if shown is None else shown["t"] / 1e3 - t0,
           "name": None if shown is None else shown["r"], "px": [round(p["x"], 1), round(p["y"], 1)]}
    idle = bc.wait_page(page, KERNEL_IDLE, None, timeout_s)  # the kernel is done before the next click
    rec["kernel_idle_seen_s"] = None if idle is None else idle["t"] / 1e3 - t0
    return rec


def one_round(lab: dict, args) -> list[dict]:
    page = lab["page"]
    page.bring_to_front()
    trace = args.trace
    steps = [("first", args.first, f"mode {args.first} of"), ("other", args.other, f"mode {args.other} of"),
             ("hide", args.other, "hidden")]
    out = []
    for step, rank, want in steps:
        rec = click_point(page, trace, rank, want, args.click_timeout_s)
        rec["step"] = step
        out.append(rec)
        time.sleep(args.gap_s)
    if out[-1]["figure_s"] is None:  # left showing a mode: hide it through the kernel, so the next round starts clean
        page.evaluate(bc.KERNEL_EXEC, "lab.show_mode(None)")
        bc.wait_page(page, SHOWN, "hidden", 30)
    return out


def match_kernel(recs: list[dict], calls: list[dict]) -> None:
    """Attach to each click the first ``show_mode`` call after it (and before the next click)."""
    recs = sorted(recs, key=lambda r: r["t_click"])
    for k, r in enumerate(recs):
        end = recs[k + 1]["t_click"] if k + 1 < len(recs) else float("inf")
        hits = [c for c in calls if r["t_click"] - 0.05 <= c["enter"] < end]
        r["kernel_calls"] = len(hits)
        r["kernel_enter_s"] = hits[0]["enter"] - r["t_click"] if hits else None
        r["kernel_done_s"] = hits[0]["exit"] - r["t_click"] if hits else None
        r["kernel_shown"] = hits[0]["shown"] if hits else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--revs", nargs="+", default=["d458831", "a43e2a5"],
                   help="git revisions to measure (default: d458831, the in-place restyle, and a43e2a5, before it); "
                   "the ratios are the first over each other")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds per revision (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="rounds before them, not summarised (default 1)")
    p.add_argument("--preset", default="poisson")
    p.add_argument("--steps", type=int, default=300, help="lab.run(STEPS) in the cell before the clicks")
    p.add_argument("--trace", default="λ·K_rr (residual)", help="the spectra trace clicked")
    p.add_argument("--first", type=int, default=3, help="rank of the first click (default 3)")
    p.add_argument("--other", type=int, default=5, help="rank of the second and third clicks (default 5)")
    p.add_argument("--gap-s", type=float, default=1.0, help="seconds between clicks (after the kernel is idle)")
    p.add_argument("--click-timeout-s", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_eigen_click_cpu.json")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    revs = [git("rev-parse", "--short", r) for r in args.revs]
    load_before = os.getloadavg()
    homes, servers, labs = {}, {}, {}
    try:
        for rev in revs:
            home = homes[rev] = Path(tempfile.mkdtemp(prefix=f"bench_eigen_{rev}_"))
            (home / "root").mkdir()
            (home / "src").mkdir()
            archive = subprocess.run(["git", "archive", rev, "pinnlab"], cwd=REPO, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(home / "src")], input=archive.stdout, check=True)
            servers[rev] = bc.start_jupyter(home, home / "src")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=bc.CHROMIUM,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                               "--disable-renderer-backgrounding",
                                               "--disable-background-timer-throttling",
                                               "--disable-backgrounding-occluded-windows"])
            for rev in revs:
                labs[rev] = open_lab(browser, servers[rev][1], homes[rev] / "root", rev, args)
            for i in range(args.warmup + args.rounds):
                order = revs if i % 2 == 0 else revs[::-1]
                for rev in order:
                    recs = one_round(labs[rev], args)
                    for r in recs:
                        r["round"] = i - args.warmup  # negative: warm-up
                    labs[rev]["rounds"].append(recs)
                    bc.log(rev, f"round {i - args.warmup}:", ", ".join(
                        f"{r['step']} " + ("missed" if r["figure_s"] is None else f"{r['figure_s']:.3f} s")
                        for r in recs))
            for rev in revs:
                page = labs[rev]["page"]
                dump = page.evaluate(bc.KERNEL_EXEC, DUMP).strip()
                calls = json.loads(dump.splitlines()[-1]) if dump.startswith("[") else []
                labs[rev]["kernel_dump_ok"] = dump.startswith("[")
                match_kernel([r for rs in labs[rev]["rounds"] for r in rs], calls)
                labs[rev]["visibility"] = page.evaluate("() => document.visibilityState")
                try:
                    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
                except Exception as e:  # noqa: BLE001 - the server's shutdown stops the kernel anyway
                    bc.log("kernel shutdown:", e)
                page.close()
            browser.close()
    finally:
        for proc, _ in servers.values():
            bc.stop(proc)
        for home in homes.values():
            shutil.rmtree(home, ignore_errors=True)

    results = {}
    for rev in revs:
        lab = labs[rev]
        recs = [r for rs in lab["rounds"] for r in rs]
        measured = [r for r in recs if r["round"] >= 0]
        entry = {"git": {"measured": f"git archive {rev}", "commit": rev}, "kernel_info": lab["kernel_info"],
                 "open_to_lab_s": lab["open_s"], "page_errors": lab["errors"][:10],
                 "page_visibility_at_end": lab.get("visibility")}
        for step in ("first", "other", "hide"):
            rs = [r for r in measured if r["step"] == step]
            entry[step] = {"figure": bc.summary([r["figure_s"] for r in rs]),
                           "kernel_enter": bc.summary([r.get("kernel_enter_s") for r in rs]),
                           "kernel_done": bc.summary([r.get("kernel_done_s") for r in rs]),
                           "not_hovered_before_click": sum(not r["hovered"] for r in rs),
                           "kernel_calls_not_one": sum(r.get("kernel_calls") != 1 for r in rs)}
        entry["raw"] = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "t_click"}
                        for r in recs]
        results[rev] = entry

    base = revs[0]
    ratios = {}
    for rev in revs[1:]:
        ratios[f"{base}/{rev}"] = {}
        for step in ("first", "other", "hide"):
            a, b = results[base][step]["figure"]["median_s"], results[rev][step]["figure"]["median_s"]
            ratios[f"{base}/{rev}"][step] = round(a / b, 3) if a and b else None
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "command": " ".join(["python", "benchmarks/bench_eigen_click.py", *sys.argv[1:]]),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "cell": cell_source(args.preset, args.steps),
           "machine": {"nproc": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                       "load_average_after": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform()},
           "versions": bc.versions(), "revisions": revs, "median_ratio_figure": ratios, "results": results}

    print(f"\nclick -> figure shows it (s), {args.rounds} rounds after {args.warmup} warm-up; median / worst (missed)")
    print(f"{'step':8}" + "".join(f"{rev:>26}" for rev in revs))
    for step in ("first", "other", "hide"):
        cells = []
        for rev in revs:
            s = results[rev][step]["figure"]
            k = results[rev][step]["kernel_done"]
            cells.append(f"{s['median_s']} / {s['worst_s']} ({s['missed']}) k{k['median_s']}")
        print(f"{step:8}" + "".join(f"{c:>26}" for c in cells))
    print("kN: median click -> kernel's show_mode returned;", "ratios of medians:", json.dumps(ratios))
    if not args.no_save:
        args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        bc.log("saved", args.out)


if __name__ == "__main__":
    main()
