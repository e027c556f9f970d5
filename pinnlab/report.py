"""A run as ONE self-contained HTML file: a summary header and every figure of :mod:`pinnlab.plots`.

plotly.js is embedded once (with the first figure), so the file opens offline and never fetches
anything. :func:`summary` (no plotly needed) gives the numbers of the header; the CLI writes the same
numbers to ``metrics.json``.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from pinnlab.files import write_file
from pinnlab.history import History

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 16px 8px 0; display: inline-table; vertical-align: top; }
th, td { border: 1px solid #ddd; padding: 3px 10px; text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; text-align: left; }
.status { display: inline-block; padding: 2px 10px; border-radius: 10px; color: white; font-weight: 600; }
.completed { background: #2e7d32; } .diverged { background: #c62828; } .interrupted, .running { background: #ef6c00; }
.message { margin: 6px 0; color: #555; }
.figure { margin-top: 18px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.85em; }
"""


def _finite(value):
    """JSON-safe number: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def summary(history: History) -> dict:
    """Final numbers of a run: steps, seconds, speed, rel. L2, per-term weights/traces/losses, status, config."""
    final = history.final
    seconds = float(final["seconds"])
    return _finite({
        "status": final["status"], "message": final["message"], "steps": final["steps"],
        "seconds": seconds, "steps_per_second": final["steps"] / seconds if seconds > 0 else None,
        "rel_l2": None if final["rel_l2"] is None else float(final["rel_l2"]),
        "rel_l2_step": history.eval_step[-1] if history.eval_step else None,
        "weights": final["weights"], "traces": final["traces"], "losses": final["losses"],
        "ntk_drift": float(history.ntk_drift[-1]) if history.ntk_drift else None,
        "param_drift": float(history.param_drift[-1]) if history.param_drift else None,
        "config": history.config, "events": history.events,
    })


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _terms_table(history: History, numbers: dict) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for t in history.terms)
    rows = "".join(
        f"<tr><th>{label}</th>" + "".join(f"<td>{_fmt(numbers[key].get(t))}</td>" for t in history.terms) + "</tr>"
        for label, key in (("weight λ", "weights"), ("trace Tr K", "traces"), ("loss (last step)", "losses"))
    )
    return f"<table><tr><th>term</th>{head}</tr>{rows}</table>"


def _optimizer(train: dict) -> str:
    decay = f", decay {train['decay_rate']} per {train['decay_steps']} steps" if train.get("decay_steps") else ""
    return f"{train.get('optimizer')}, lr {train.get('lr')}{decay}"


def _weighting(train: dict) -> str:
    rule, every, steps = train.get("weighting"), train.get("update_every"), train.get("steps")
    if rule in (None, "none"):
        return "none"
    when = "once, at step 0" if every is not None and steps is not None and every >= steps else f"every {every} steps"
    return f"{rule}, {when}"


def _changes(history: History) -> str:
    """Live control changes in step order (e.g. "step 40,000: rule → ntk"), or "none"."""
    parts = [f"step {e['step']:,}: {e['field']} → {e['value']}" for e in history.events]
    return "; ".join(parts) if parts else "none"


def _header(history: History, numbers: dict) -> str:
    cfg = history.config
    net, train = cfg.get("net", {}), cfg.get("train", {})
    problem = ", ".join(f"{k}={v}" for k, v in cfg.get("problem_params", {}).items())
    status = html.escape(numbers["status"])
    run = [("steps", numbers["steps"]), ("seconds", numbers["seconds"]), ("steps / s", numbers["steps_per_second"]),
           ("relative L2", numbers["rel_l2"]), ("at step", numbers["rel_l2_step"]),
           ("param drift", numbers["param_drift"]), ("NTK drift", numbers["ntk_drift"])]
    setup = [("problem", f"{cfg.get('problem')} ({problem})"),
             ("net", f"{net.get('depth')}×{net.get('width')} {net.get('activation')}, {net.get('parameterization')}, "
                     f"{net.get('init')}, standardize={net.get('standardize')}"),
             ("parameters", cfg.get("num_params")),
             ("optimizer", _optimizer(train)), ("weighting at step 0", _weighting(train)),
             ("changed during the run", _changes(history)), ("seed", train.get("seed"))]
    message = f'<div class="message">{html.escape(numbers["message"])}</div>' if numbers["message"] else ""
    config = html.escape(json.dumps(cfg, indent=2))
    return (f"<h1>pinnlab run: {html.escape(str(cfg.get('problem')))}</h1>"
            f'<span class="status {status}">{status}</span>{message}'
            f"<div>{_table(setup)}{_table(run)}{_terms_table(history, numbers)}</div>"
            f"<details><summary>full config</summary><pre>{config}</pre></details>")


def render(history: History) -> str:
    """The report as an HTML string (plotly.js embedded once, with the first figure)."""
    from pinnlab import plots  # plotly is optional: imported only when a report is made

    divs = [
        f'<div class="figure">{fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"fig-{name}")}</div>'
        for i, (name, fig) in enumerate(plots.figures(history).items())
    ]
    title = html.escape(f"pinnlab: {history.config.get('problem')}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body>{_header(history, summary(history))}{''.join(divs)}</body></html>\n")


def write_report(history: History, path) -> Path:
    """Write the report to ``path`` atomically (temporary file + rename) and return the path."""
    return write_file(path, render(history))
