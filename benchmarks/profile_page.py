"""Where the JupyterLab page's time goes while the lab trains: a CDP sampling profile of chromium's main thread.

Run from the repository root: ``python benchmarks/profile_page.py [--preset poisson] [--busy 2] [--rev REV]``.
It opens the lab as ``bench_click.py`` does (JupyterLab, Debian chromium, the preset's step budget lifted),
presses Run, waits until training flows, then records ``--window-s`` seconds of the page with the V8
sampling profiler (``Profiler.start``, one sample per ``--interval-us``) while counting the figure's
redraws (``plotly_afterplot`` events on the figure's div) and the page's long tasks. No click is made.

For each function name in ``WATCH`` it reports the inclusive time (every sample whose stack holds it,
counted once per sample), in ms over the window and per redraw; and the top ``--top`` functions by self
time. Function names are plotly.js's and chromium's own (``getBoundingClientRect`` is a forced layout);
a name that does not occur is reported as 0, so a renamed function shows as a gap, not as a saving.
Results are printed and merged into ``--out`` under ``(label, preset, busy)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from _util import CHROMIUM, busy_loops  # benchmarks/ is on sys.path when run as a script
from bench_click import (
    BROWSER_ARGS,
    KERNEL_EXEC,
    NO_BUDGET,
    OUT,
    PROBES,
    REPO,
    git_info,
    lab_server,
    log,
    notebook,
    open_lab,
    run_until_flowing,
    versions,
)

# plotly.js's replot path and the calls that force a layout of the page (see benchmarks/README.md)
WATCH = ("do_update", "plot", "doAutoMargin", "_adjustTickLabelsOverflow", "getBoundingClientRect",
         "supplyDefaults", "drawMarginPushers", "draw", "(garbage collector)",
         # plotly's widget view after each edit: it diffs the full data and layout against its model
         "_sendTraceDeltas", "_sendLayoutDelta", "getFullData", "getFullLayout")
# the bundle is minified: a method keeps its property name behind its object's short name ("U.draw")
watched = lambda fn, name: name == fn or name.endswith("." + fn)  # noqa: E731

LAYOUT_CHAIN = 12

COUNT_REDRAWS = f"""() => {{ const gd = document.querySelector('{OUT} .js-plotly-plot');
  window.__redraws = 0; gd.on('plotly_afterplot', () => {{ window.__redraws += 1; }});
  window.__longFrom = window.__bench.long.length; return true; }}"""
READ_COUNTS = """() => ({redraws: window.__redraws,
  long: window.__bench.long.slice(window.__longFrom).map(e => e[1])})"""


def inclusive_and_self(profile: dict) -> tuple[Counter, Counter, Counter]:
    """Milliseconds per function name: inclusive (once per sample whose stack holds it), self, and the
    self time of ``getBoundingClientRect`` (a forced layout) by its callers (``LAYOUT_CHAIN`` names up)."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", ())}
    name = {i: n["callFrame"]["functionName"] or "(anonymous)" for i, n in nodes.items()}
    incl, self_, layout_callers = Counter(), Counter(), Counter()
    for node, dt_us in zip(profile["samples"], profile["timeDeltas"]):
        ms = dt_us / 1e3
        self_[name[node]] += ms
        if name[node] == "getBoundingClientRect":
            chain, i = [], parent.get(node)
            while i is not None and len(chain) < LAYOUT_CHAIN:
                chain.append(name[i])
                i = parent.get(i)
            layout_callers[" < ".join(chain)] += ms
        seen, i = set(), node
        while i is not None:
            seen.add(name[i])
            i = parent.get(i)
        for fn in seen:
            incl[fn] += ms
    return incl, self_, layout_callers


def profile_preset(browser, url: str, root: Path, args) -> dict:
    name = f"profile_{args.preset}.ipynb"
    (root / name).write_text(json.dumps(notebook(args.preset)))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(PROBES)
    try:
        shown = open_lab(page, url, name)
        setup = page.evaluate(KERNEL_EXEC, args.kernel_setup).strip()
        log(args.preset, "dashboard after", shown, "s;", setup)
        page.locator(f"{OUT} .widget-toggle-buttons").filter(has_text="NTK (Alg. 1)").first.scroll_into_view_if_needed()
        first = run_until_flowing(page, args.warmup_s)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": args.interval_us})
        page.evaluate(COUNT_REDRAWS)
        cdp.send("Profiler.start")
        t0 = time.monotonic()
        time.sleep(args.window_s)
        profile = cdp.send("Profiler.stop")["profile"]
        window = time.monotonic() - t0
        counts = page.evaluate(READ_COUNTS)
    finally:
        page.close()
    incl, self_, layout_callers = inclusive_and_self(profile)
    redraws = max(counts["redraws"], 1)
    watch = {fn: sum(ms for name, ms in incl.items() if watched(fn, name)) for fn in WATCH}
    return {"preset": args.preset, "open_to_dashboard_s": shown, "first_run_to_counter_s": first,
            "window_s": round(window, 2), "redraws": counts["redraws"],
            "long_tasks": len(counts["long"]), "long_task_ms": round(sum(counts["long"])),
            "longest_task_ms": round(max(counts["long"], default=0)),
            "sampled_ms": round(sum(profile["timeDeltas"]) / 1e3),
            "idle_ms": round(self_.get("(idle)", 0.0)),
            "watch_ms": {fn: round(ms, 1) for fn, ms in watch.items()},
            "watch_ms_per_redraw": {fn: round(ms / redraws, 1) for fn, ms in watch.items()},
            "watch_names": {fn: sorted(n for n in incl if watched(fn, n))[:8] for fn in WATCH},
            "forced_layout_ms_by_caller": [[fn, round(ms, 1)] for fn, ms in layout_callers.most_common(8)],
            "top_self_ms": [[fn, round(ms, 1)] for fn, ms in self_.most_common(args.top)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="poisson")
    p.add_argument("--busy", type=int, default=2, help="busy-loop processes running beside it (default 2)")
    p.add_argument("--window-s", type=float, default=8.0, help="seconds profiled while it trains")
    p.add_argument("--interval-us", type=int, default=500, help="sampling interval (microseconds)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="training seconds before the profile")
    p.add_argument("--top", type=int, default=25, help="functions listed by self time")
    p.add_argument("--rev", help="profile pinnlab as committed at this git revision (default: this checkout)")
    p.add_argument("--kernel-setup", default=NO_BUDGET, help="code run in the kernel after the lab is shown "
                   "(default: lift the preset's step budget); e.g. a layout change to profile")
    p.add_argument("--label", default="current")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_profile_page_cpu.json")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    with busy_loops(args.busy):
        load_before = os.getloadavg()
        with lab_server(args.rev) as (url, root), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            result = profile_preset(browser, url, root, args)
            browser.close()
    entry = {"label": args.label, "busy": args.busy, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
             "command": " ".join(["python", "benchmarks/profile_page.py", *sys.argv[1:]]),
             "load_average_before": [round(x, 2) for x in load_before], "versions": versions(),
             "git": git_info(args.rev), **result}
    print(json.dumps(entry, indent=1))
    if not args.no_save:
        old = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
        key = (args.label, args.preset, args.busy)
        old["runs"] = [r for r in old["runs"] if (r["label"], r["preset"], r["busy"]) != key] + [entry]
        args.out.write_text(json.dumps(old, indent=1) + "\n")
        log("saved", args.out)


if __name__ == "__main__":
    main()
