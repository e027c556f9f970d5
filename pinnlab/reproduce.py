"""``pinnlab reproduce``: run the paper presets and the lessons' presets and write each figure as HTML plus
its numbers as JSON."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pinnlab import lessons, paper
from pinnlab.files import to_json, write_file
from pinnlab.provenance import machine

# name -> (experiment, run(scale, progress)): the paper's figures, then the lessons' (pinnlab.lessons)
REGISTRY = {**paper.FIGURES, **lessons.LESSONS}
FIGURE_NAMES = tuple(REGISTRY)


def experiments_for(figures: list[str]) -> dict[str, list[str]]:
    """Group requested figures by the experiment that produces them, so each experiment runs once."""
    groups: dict[str, list[str]] = {}
    for fig in figures:
        groups.setdefault(REGISTRY[fig][0], []).append(fig)
    return groups


def reproduce(figures: list[str], scale: str, out: Path, progress=None) -> dict[str, dict]:
    """Run the experiments behind ``figures`` at ``scale``; write ``NAME.html`` and ``NAME.json`` in ``out``."""
    results = {}
    for _, figs in experiments_for(figures).items():
        t0 = time.perf_counter()
        exp = REGISTRY[figs[0]][1](scale, progress)
        seconds = time.perf_counter() - t0
        built = _figures(exp)
        for fig in figs:
            record = {"figure": fig, "experiment": exp.name, "scale": scale, "seconds": seconds,
                      "command": f"pinnlab reproduce {fig} --scale {scale}", "machine": machine(),
                      "numbers": exp.numbers}
            write_file(out / f"{fig}.json", to_json(record))
            if built is not None:
                html = built[fig].to_html(include_plotlyjs=True, full_html=True)
                write_file(out / f"{fig}.html", html.encode())
            results[fig] = record
    return results


def _figures(exp):
    try:
        return exp.figures()
    except ImportError:
        print("pinnlab: note: figures need plotly (pip install pinnlab[report]); wrote the JSON only",
              file=sys.stderr)
        return None

