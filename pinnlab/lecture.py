"""``pinnlab lecture``: the live dashboard as a Voila page, code hidden, for a lecture room.

    pinnlab lecture              # the Poisson lab in the presentation layout, opened in the browser
    pinnlab lecture wave         # another preset (pinnlab.lab.state.PRESETS)
    http://127.0.0.1:8866/?preset=fig4&layout=notebook   # the URL picks the preset and layout too

The page is ``lecture.ipynb`` (next to this module): one cell that builds the dashboard and nothing more,
so Voila shows it as soon as it is built and nothing trains until the lecturer presses Run. The preset
comes from the URL's query string (Voila puts it into the kernel's environment as ``QUERY_STRING``),
else from the command line (passed to the kernel as ``PINNLAB_LECTURE_PRESET``), else ``poisson``.

Import-light: Voila and the dashboard are imported only when they are used, so ``pinnlab --help``
stays fast and works without the ``jupyter`` extra.
"""

from __future__ import annotations

import html
import inspect
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

NOTEBOOK = Path(__file__).with_name("lecture.ipynb")
PRESET_ENV = "PINNLAB_LECTURE_PRESET"
LAYOUT_ENV = "PINNLAB_LECTURE_LAYOUT"
DEFAULT_PRESET = "poisson"
LAYOUTS = ("presentation", "notebook")
DEFAULT_PORT = 8866  # Voila's own default
INSTALL = 'pip install "pinnlab[jupyter]"'


class LectureError(ValueError):
    """A preset or layout that does not exist, or a missing dependency: one line for the user."""


def preset_names() -> tuple[str, ...]:
    """The dashboard's presets (:data:`pinnlab.lab.state.PRESETS`), in their documented order."""
    try:
        from pinnlab.lab.state import PRESETS
    except ImportError as e:  # pinnlab.lab needs ipywidgets and plotly: the jupyter extra
        raise LectureError(f"the lecture mode needs the dashboard's packages ({e}): {INSTALL}") from None
    return tuple(PRESETS)


def check_preset(name: str) -> str:
    """``name`` if it is a preset, else a LectureError naming the valid ones."""
    names = preset_names()
    if name not in names:
        raise LectureError(f"unknown preset {name!r}; choose one of {', '.join(names)}")
    return name


def check_layout(name: str) -> str:
    """``name`` if it is a layout, else a LectureError naming the valid ones."""
    if name not in LAYOUTS:
        raise LectureError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    return name


def choose(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The ``(preset, layout)`` a lecture kernel shows: the URL's ``?preset=&layout=`` first, then the
    command line's choice (in the environment), then the defaults. Raises LectureError for unknown names."""
    env = os.environ if environ is None else environ
    query = parse_qs(env.get("QUERY_STRING", ""))
    # The last value wins, as in most web frameworks, when a parameter is repeated.
    pick = lambda key, fallback: query[key][-1] if query.get(key) else fallback  # noqa: E731
    preset = pick("preset", env.get(PRESET_ENV) or DEFAULT_PRESET)
    layout = pick("layout", env.get(LAYOUT_ENV) or LAYOUTS[0])
    return check_preset(preset), check_layout(layout)


class _Message:
    """A line of HTML shown in place of the dashboard (Voila renders ``text/html`` outputs)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_html_(self) -> str:
        return (f"<div style='font-size:18px;color:#c62828;padding:1em'><b>pinnlab lecture:</b> "
                f"{html.escape(self.text)}</div>")

    def __repr__(self) -> str:
        return f"pinnlab lecture: {self.text}"


def lecture_lab(environ: Mapping[str, str] | None = None) -> Any:
    """What the lecture page shows: the dashboard for :func:`choose`'s preset and layout, not trained yet.

    An unknown preset or layout in the URL gives a message naming the valid ones instead of a traceback
    (Voila hides tracebacks; the room should see what to type).
    """
    try:
        preset, layout = choose(environ)
    except LectureError as e:
        return _Message(str(e))
    from pinnlab.lab import Lab

    # ``layout`` is a constructor option of recent labs; an older Lab shows its only (notebook) layout.
    options = {"layout": layout} if "layout" in inspect.signature(Lab).parameters else {}
    return Lab(preset, **options)


def voila_app() -> type:
    """Voila's application class, or a LectureError saying how to install it."""
    try:
        from voila.app import Voila
    except ImportError:
        raise LectureError(f"the lecture mode needs Voila, which is not installed: {INSTALL}") from None
    return Voila


def voila_argv(notebook: Path, port: int, open_browser: bool) -> list[str]:
    """Voila's command line for the lecture page."""
    argv = [str(notebook), f"--port={port}", "--Voila.ip=127.0.0.1", "--VoilaConfiguration.strip_sources=True"]
    if not open_browser:
        argv.append("--no-browser")
    return argv


def serve(preset: str = DEFAULT_PRESET, *, port: int = DEFAULT_PORT, open_browser: bool = True,
          layout: str = LAYOUTS[0]) -> int:
    """Serve the lecture page with Voila until Ctrl-C; returns the exit code (0).

    Raises LectureError (before anything starts) for an unknown preset or layout or a missing Voila.
    """
    check_preset(preset)
    check_layout(layout)
    app = voila_app()
    # Voila runs a notebook's kernel in the notebook's directory: a copy in a fresh directory keeps the
    # package's own modules (cache.py, plots.py, ...) off the kernel's import path and writes nothing
    # next to the installed package.
    workdir = Path(tempfile.mkdtemp(prefix="pinnlab-lecture-"))
    try:
        notebook = Path(shutil.copy(NOTEBOOK, workdir / NOTEBOOK.name))
        # Kernels inherit the server's environment; the URL's query string, when given, overrides these.
        os.environ[PRESET_ENV], os.environ[LAYOUT_ENV] = preset, layout
        print(f"pinnlab lecture: preset {preset}, {layout} layout; Voila prints the page's address below "
              "(Ctrl-C stops)", flush=True)
        app.launch_instance(argv=voila_argv(notebook, port, open_browser))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
