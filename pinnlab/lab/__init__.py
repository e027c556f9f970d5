"""The live Jupyter dashboard: ``pinnlab.Lab("poisson")``. Imports ipywidgets and plotly; the core never imports it.

Modules, one idea each: :mod:`~pinnlab.lab.state` (every control in one serialisable state, presets),
:mod:`~pinnlab.lab.run` (a trainer as the dashboard drives it), :mod:`~pinnlab.lab.view` (the one
figure: the panels of :mod:`pinnlab.panels` on a grid, and its per-frame data), :mod:`~pinnlab.lab.widget`
(the FigureWidget that acknowledges what it drew), :mod:`~pinnlab.lab.controls` (the widgets and the two
layouts), :mod:`~pinnlab.lab.scheduler` (the training loop, its budget and its callers),
:mod:`~pinnlab.lab.tasks` (one training task per kernel), :mod:`~pinnlab.lab.cache` (what persists
between kernel starts) and :mod:`~pinnlab.lab.dashboard` (the :class:`Lab` facade that wires them).
"""

from pinnlab.lab.dashboard import Lab
from pinnlab.lab.state import PRESETS, LabState, preset

__all__ = ["PRESETS", "Lab", "LabState", "preset"]
