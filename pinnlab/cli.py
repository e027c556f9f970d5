"""The ``pinnlab`` command: train a PINN headless and write metrics, history and an HTML report.

    pinnlab train --problem poisson --out runs/e3          # paper E3: NTK weights at init, 40k SGD steps
    pinnlab train --problem wave --steps 5000 --out runs/w  # Algorithm 1 on the wave equation
    pinnlab ntk-weights --problem poisson                   # lambda per term at init, as JSON
    pinnlab report runs/e3                                  # rebuild report.html from a saved history
    pinnlab reproduce fig4 --scale cpu --out runs/paper     # a paper figure as HTML + JSON
    pinnlab lecture wave                                    # the live dashboard as a Voila page, code hidden

Exit codes: 0 done, 1 training diverged (files are still written), 2 bad input (one line on stderr),
3 an output file could not be written (one line on stderr; no temporary files are left), 130 interrupted
by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (in each case what exists is written).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pinnlab import optimizers
from pinnlab.cache import enable_compilation_cache
from pinnlab.files import DirectoryLock, OutputBusy, WriteError, check_writable, to_json, write_files
from pinnlab.history import History
from pinnlab.nets import ACTIVATIONS, CONVENTIONS, INITS, PARAMETERIZATIONS, convention
from pinnlab.problems import ENTRIES, PROBLEMS, make_problem
from pinnlab.provenance import versions
from pinnlab.training import OPTIMIZERS, TrainConfig, Trainer, check_size, ntk_weights_at_init
from pinnlab.weighting import RULES

# Every problem's defaults, parameters and --batch names come from its registry entry (pinnlab.problems).
FLOAT_PARAMS = tuple(dict.fromkeys(p for e in ENTRIES.values() for p in e.floats))


def _epilog() -> str:
    lines = ["per-problem defaults (any option overrides them):"]
    for name, entry in ENTRIES.items():
        lines.append(textwrap.fill(entry.summary, 110, initial_indent=f"  {name:<10} ", subsequent_indent=" " * 13))
    return "\n".join([*lines, """\
NTK spectra are recorded at steps 0 and the last step unless --spectra-at says otherwise.
Writes OUT/metrics.json, OUT/history.json + history.npz and OUT/report.html (needs plotly:
pip install pinnlab[report]). Exit codes: 0 done, 1 diverged, 2 bad input, 3 write failed,
130/143/129 interrupted by Ctrl-C/SIGTERM/SIGHUP (what exists is written).
"""])


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


WRITE_FAILED = 3


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be, so the run is saved the same way."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_heard: list[int] = []
"""The ending signals this command received (:func:`main` clears it). A handler's exception can be lost (JAX's gc
callback prints and drops exceptions), this record cannot: :func:`check_heard` raises it again."""


def _interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


@contextlib.contextmanager
def interruptible():
    """SIGTERM and SIGHUP (a scheduler, ``timeout``, a closed ssh session) act like Ctrl-C inside the block."""

    def handler(signum, frame):
        _heard.append(signum)
        raise _interrupt(signum)

    with _handlers(handler, _ENDING):
        yield


def check_heard() -> None:
    """Raise the interrupt of a signal whose exception was lost; called between chunks of work."""
    if _heard:
        raise _interrupt(_heard[0])


def as_interrupt(error: BaseException) -> KeyboardInterrupt | None:
    """The interrupt inside ``error``: itself, or the cause of the SystemError that C code raises when a signal
    handler's exception lands in a Python callback it makes (numpy calling JAX's dtype hook)."""
    if isinstance(error, KeyboardInterrupt):
        return error
    cause = error.__cause__ if isinstance(error, SystemError) else None
    return cause if isinstance(cause, KeyboardInterrupt) else None


def _quiet_lost_interrupts(hook):
    """``sys.unraisablehook`` while a command runs: a lost interrupt is recorded in ``_heard``, not printed."""

    def quiet(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    return quiet


@contextlib.contextmanager
def deferred(caught: list[int]):
    """Ctrl-C, SIGTERM and SIGHUP wait until the block ends (the final save); their numbers go in ``caught``."""

    def handler(signum, frame):
        if not caught:
            print("pinnlab: saving the run first; it stops when the files are written", file=sys.stderr)
        caught.append(signum)

    with _handlers(handler, _ENDING):
        yield


_ENDING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _handlers(handler, signums):
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    # an ignored signal (SIGINT of a shell's background job, SIGHUP under nohup) stays ignored
    old = {s: signal.signal(s, handler) for s in signums if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_code(interrupt: KeyboardInterrupt | None) -> int:
    """128 + the signal number, as a shell reports a process ended by it (130 for Ctrl-C)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


class Parser(argparse.ArgumentParser):
    """argparse, but an error is ONE line ``pinnlab: error: ...`` (no usage block), exit code 2."""

    def error(self, message: str):  # noqa: D102 (argparse API)
        self.exit(2, f"pinnlab: error: {message} (see '{self.prog} --help')\n")


# -- argument types -------------------------------------------------------------------------------
def _int_at_least(minimum: int, kind: str):
    """An argparse type: an integer >= ``minimum`` (errors name the value and what was expected)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
nonnegative_int = _int_at_least(0, "an integer >= 0")


def port_number(text: str) -> int:
    """A TCP port, 1..65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port in 1..65535, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """A finite float (no NaN, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """A float in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


# -- the parser -----------------------------------------------------------------------------------
def _problem_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("problem")
    g.add_argument("--problem", required=True, choices=sorted(PROBLEMS), help="the PDE to solve")
    for p in FLOAT_PARAMS:
        owners = "; ".join(e.params_help[p] for e in ENTRIES.values() if p in e.floats)
        g.add_argument(f"--{p}", type=finite_float, help=owners)
    g.add_argument("--batch", metavar="TERM=N,...", help="training points per term, e.g. u=300,ut=100,r=300 "
                   "(poisson: u=100,r=100), or the problem's n_* keywords, e.g. n_b=100,n_r=100")
    own = ", ".join(name for name, e in ENTRIES.items() if e.own_probe_points)
    g.add_argument("--ntk-points", type=positive_int, metavar="N", help=f"points per term for the NTK blocks "
                   f"({own}; the others use their training points)")


def _net_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("network")
    g.add_argument("--width", type=positive_int, help="neurons per hidden layer (default: per problem)")
    g.add_argument("--depth", type=positive_int, help="hidden layers (default: per problem)")
    g.add_argument("--convention", choices=CONVENTIONS, default="paper_code",
                   help="paper_code: standard param., the code's init, z-scored inputs (default); "
                        "paper_text: NTK param., N(0,1) init, raw inputs")
    g.add_argument("--param", choices=PARAMETERIZATIONS, help="override the parameterization of the convention")
    g.add_argument("--init", choices=INITS, help="override the initialiser of the convention")
    g.add_argument("--activation", choices=sorted(ACTIVATIONS), help="hidden activation (default tanh)")
    g.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                   help="z-score the inputs (default: per convention)")
    g.add_argument("--seed", type=int, default=0, help="seeds init, points and NTK probe points (default 0)")


def _train_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: per problem)")
    g.add_argument("--lr", type=positive_float, help="learning rate (default: per problem)")
    g.add_argument("--decay-steps", type=positive_int, help="lr decays by --decay-rate every this many steps "
                   "(continuously; default: per problem)")
    g.add_argument("--decay-rate", type=positive_float, help="lr decay factor (default: per problem)")
    g.add_argument("--steps", type=positive_int, help="optimiser steps (default: per problem)")
    g.add_argument("--chunk", type=positive_int, help="steps per jitted call (default: per problem, at most --steps)")
    g.add_argument("--weighting", choices=RULES, help="loss weights: none, ntk (Algorithm 1) or ntk_mean "
                   "(mean-diagonal EMA) (default: ntk)")
    g.add_argument("--update-every", type=positive_int, metavar="M", help="refresh weights every M steps "
                   "(default: poisson once at step 0, others 100)")
    g.add_argument("--ntk-every", type=nonnegative_int, default=100, metavar="N",
                   help="also log the NTK traces every N steps (0: only with weight refreshes; default 100)")
    g.add_argument("--momentum", type=unit_float, default=0.9, help="EMA factor of ntk_mean (default 0.9)")
    g.add_argument("--initial-weights", metavar="ntk|TERM=W,...", help="starting weights: 'ntk' (Algorithm 1 at "
                   "init) or values, e.g. u=100,r=1 (default all 1)")
    g.add_argument("--spectra-at", metavar="STEPS", help="steps at which to record full NTK spectra, e.g. "
                   "0,1000,end, or 'none' (default 0,end)")
    g.add_argument("--eval-every", type=nonnegative_int, default=0, metavar="N",
                   help="steps between rel. L2 evaluations (0: about 50 per run; default 0)")
    g.add_argument("--x64", action="store_true", help="train in float64 (jax x64; the kernel solve 'lm' "
                   "reaches ~100x smaller errors than in float32)")


def build_parser() -> argparse.ArgumentParser:
    """The ``pinnlab`` parser with its subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="pinnlab", formatter_class=formatter,
                    description="Physics-informed neural networks and their neural tangent kernel.",
                    epilog="Run 'pinnlab SUBCOMMAND --help' for its options, e.g. 'pinnlab train --help'.")
    parser.add_argument("--version", action="version", version=f"pinnlab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,ntk-weights,report,reproduce,lecture}")

    train = sub.add_parser("train", help="train a PINN; write metrics.json, history.json/.npz and report.html",
                           description="Train a PINN and write metrics, history and an HTML report.",
                           epilog=_epilog(), formatter_class=formatter)
    _problem_options(train)
    _net_options(train)
    _train_options(train)
    out = train.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    out.add_argument("--no-report", action="store_true", help="skip report.html")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    train.set_defaults(func=cmd_train)

    weights = sub.add_parser("ntk-weights", help="print the NTK weights (Algorithm 1) at initialisation as JSON",
                             description="Print lambda_i = sum_j Tr K_jj / Tr K_ii per term for the initial network, "
                                         "as JSON (network defaults per problem, as for train).",
                             formatter_class=formatter)
    _problem_options(weights)
    _net_options(weights)
    weights.set_defaults(func=cmd_ntk_weights)

    report = sub.add_parser("report", help="rebuild report.html from a saved history",
                            description="Rebuild the HTML report from DIR/history.json + history.npz.")
    report.add_argument("dir", metavar="DIR", help="directory with history.json and history.npz")
    report.add_argument("--out", metavar="FILE", help="report path (default DIR/report.html)")
    report.set_defaults(func=cmd_report)

    from pinnlab.paper import SCALES
    from pinnlab.reproduce import FIGURE_NAMES

    repro = sub.add_parser("reproduce", help="reproduce a figure of the paper or a lesson (or all) as HTML + JSON",
                           description="Run the preset behind a figure and write OUT/NAME.html (self-contained "
                                       "plotly page) and OUT/NAME.json (the numbers, the command and the machine). "
                                       "Figures 6-8 come from one pair of wave runs, which runs once for all three.\n\n"
                                       "The lessons' figures are included:\n"
                                       "  linearized      the linearised network vs the real one as the width grows\n"
                                       "  infinite-width  the empirical NTK vs its infinite-width limit\n"
                                       "  stability       Fig. 5 as a map over learning rate and lambda_b, with the "
                                       "bound 2 / lambda_max(K-tilde)",
                           formatter_class=formatter)
    repro.add_argument("figure", nargs="+", choices=[*FIGURE_NAMES, "all"],
                       help="one or more figures (fig6 fig7 fig8 share one pair of runs) or lessons "
                            "(linearized, infinite-width, stability), or all")
    repro.add_argument("--scale", choices=SCALES, default="cpu",
                       help="smoke: seconds (tests); cpu: about 10 minutes per figure on a 2-core laptop; "
                            "full: the paper's exact setup (a GPU helps). Default: cpu")
    repro.add_argument("--out", default="paper", metavar="DIR", help="output directory (default ./paper)")
    repro.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    repro.set_defaults(func=cmd_reproduce)

    from pinnlab.lecture import DEFAULT_PORT, LAYOUTS  # a light module: Voila is imported only to serve

    # The preset is checked when the command runs: listing the presets here would import the dashboard
    # (ipywidgets, the jupyter extra) for every pinnlab command.
    lecture = sub.add_parser("lecture", help="open the live dashboard as a Voila page, code hidden "
                             "(needs pinnlab[jupyter])",
                             description="Serve the live dashboard as a Voila page with the code hidden, for a "
                                         "lecture room. Nothing trains until Run is pressed. The page's URL picks "
                                         "a preset too: http://127.0.0.1:PORT/?preset=wave (&layout=notebook).",
                             formatter_class=formatter)
    lecture.add_argument("preset", nargs="?", default="poisson", metavar="PRESET",
                         help="a dashboard preset (pinnlab.lab.state.PRESETS), e.g. poisson, wave, fig4 "
                              "(default poisson)")
    lecture.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                         help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; Voila tries the next ones if taken)")
    lecture.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lecture.add_argument("--layout", choices=LAYOUTS, default=LAYOUTS[0],
                         help="presentation: one row of big controls above the figure, inside 1280x720; "
                              "notebook: every control on show (default presentation)")
    lecture.set_defaults(func=cmd_lecture, stops_on_ctrl_c=True)  # its normal end
    return parser


def _version() -> str:
    from pinnlab import __version__

    return __version__


# -- building the run from the arguments ----------------------------------------------------------
def _pairs(text: str, option: str, example: str, cast, kind: str) -> dict[str, Any]:
    """``"a=1,b=2"`` -> ``{"a": cast("1"), ...}``; a one-line UsageError naming the bad part otherwise."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = cast(value.strip())
        except (ValueError, argparse.ArgumentTypeError):
            raise UsageError(f"bad {option} {text!r} at {part!r}: expected NAME=VALUE pairs separated by commas, "
                             f"each VALUE a {kind}, e.g. {option} {example}") from None
    return out


def problem_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of the problem factory from --a/--c/--k/--batch/--ntk-points."""
    name, kwargs = args.problem, {}
    accepted = inspect.signature(PROBLEMS[name]).parameters
    for p in FLOAT_PARAMS:
        value = getattr(args, p)
        if value is None:
            continue
        if p not in accepted:
            own = ", ".join(f"--{q}" for q in ENTRIES[name].floats) or "none"
            raise UsageError(f"--{p} {value} does not apply to problem {name} (its parameters: {own})")
        kwargs[p] = value
    if args.batch is not None:
        kwargs.update(_batch(name, args.batch, accepted))
    if args.ntk_points is not None:
        if "n_ntk" not in accepted:
            raise UsageError(f"--ntk-points {args.ntk_points}: problem {name} computes its NTK on its training points; "
                             "set them with --batch")
        kwargs["n_ntk"] = args.ntk_points
    return kwargs


def _batch(name: str, text: str, accepted) -> dict[str, int]:
    """--batch ``u=300,r=300`` (term names) or ``n_b=100`` (factory keywords) -> factory keywords."""
    sizes = [k for k in accepted if k.startswith("n_")]
    example = ",".join(f"{t.name}={t.n}" for t in PROBLEMS[name]().terms)  # numpy only: cheap
    pairs = _pairs(text, "--batch", example, positive_int, "positive integer")
    out = {}
    for key, n in pairs.items():
        keyword = key if key in sizes else ENTRIES[name].aliases.get(key, f"n_{key}")
        if keyword not in sizes:
            terms = ", ".join(PROBLEMS[name]().term_names)
            raise UsageError(f"bad --batch {text!r}: problem {name} has no term {key!r}; its terms are {terms} "
                             f"(keywords {', '.join(sizes)}), e.g. --batch {example}")
        out[keyword] = n
    return out


def net_config(args: argparse.Namespace, problem, preset: dict):
    """The NetConfig of the convention, overridden by the options given."""
    return convention(args.convention, problem.default_init, width=args.width or preset["width"],
                      depth=args.depth or preset["depth"], parameterization=args.param, init=args.init,
                      standardize=args.standardize, activation=args.activation)


def spectra_steps(text: str | None, steps: int) -> tuple[int, ...]:
    """--spectra-at: comma-separated steps, 'end' for the last step, 'none' for no spectra."""
    if text is None:
        return (0, steps)
    if text.strip().lower() in ("", "none"):
        return ()
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            value = steps if part == "end" else int(part)
        except ValueError:
            raise UsageError(f"bad --spectra-at {text!r} at {part!r}: expected steps like 0,1000,end "
                             "or 'none'") from None
        if not 0 <= value <= steps:
            raise UsageError(f"--spectra-at step {value} is outside 0..{steps} (--steps {steps})")
        out.append(value)
    return tuple(sorted(set(out)))


def initial_weights(text: str | None, problem, net, seed: int) -> tuple[float, ...] | None:
    """--initial-weights: 'ntk' (Algorithm 1 at init) or TERM=W pairs (unnamed terms keep 1)."""
    if text is None:
        return None
    if text.strip().lower() == "ntk":
        return tuple(float(w) for w in ntk_weights_at_init(problem, net, seed))
    pairs = _pairs(text, "--initial-weights", ",".join(f"{t}=1" for t in problem.term_names), positive_float,
                   "positive number")
    unknown = sorted(set(pairs) - set(problem.term_names))
    if unknown:
        raise UsageError(f"--initial-weights {text!r}: problem {problem.name} has no term {unknown[0]!r}; "
                         f"its terms: {', '.join(problem.term_names)}")
    return tuple(pairs.get(t, 1.0) for t in problem.term_names)


def train_config(args: argparse.Namespace, preset: dict, weights) -> TrainConfig:
    """The TrainConfig from the options and the problem's preset."""
    optimizer = args.optimizer or preset["optimizer"]
    preset = {**preset, **optimizers.PRESETS.get(optimizer, {})}  # e.g. lm: a step scale of 1, no decay
    pick = lambda name: preset[name] if getattr(args, name) is None else getattr(args, name)  # noqa: E731
    steps = pick("steps")
    # The engine runs a remainder shorter than a chunk as single steps: keep the chunk <= steps.
    chunk = args.chunk if args.chunk is not None else min(preset["chunk"], steps)
    update_every = args.update_every or preset["update_every"] or steps
    decay_steps = args.decay_steps if args.decay_steps is not None else preset["decay_steps"]
    try:
        return TrainConfig(optimizer=pick("optimizer"), lr=pick("lr"), decay_steps=decay_steps,
                           decay_rate=pick("decay_rate"), steps=steps, weighting=pick("weighting"),
                           update_every=update_every, ntk_every=args.ntk_every, momentum=args.momentum,
                           initial_weights=weights, chunk=chunk, eval_every=args.eval_every,
                           spectra_at=spectra_steps(args.spectra_at, steps), seed=args.seed)
    except ValueError as e:  # name the option the user typed ("update_every ..." -> "--update-every: ...")
        field = str(e).split(" ", 1)[0]
        if field in vars(args):
            raise UsageError(f"--{field.replace('_', '-')}: {e}") from None
        raise


def prepare_out(path: str) -> Path:
    """Create the output directory and prove it is writable (a unique probe file), before any training."""
    if not str(path).strip():  # an unset shell variable: the run would land in the current directory
        raise UsageError("--out is empty; name an output directory (e.g. --out runs/first)")
    try:
        return check_writable(path)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(f"cannot write to --out {path!r} ({reason}); choose a writable directory") from None


@contextlib.contextmanager
def locked(out: Path):
    """Hold ``out`` for this run: a second run on the same directory is refused at once (exit code 2)."""
    try:
        lock = DirectoryLock(out).__enter__()
    except OutputBusy as e:
        raise UsageError(f"{e} (--out)") from None
    try:
        yield out
    finally:
        lock.__exit__(None, None, None)


# -- progress -------------------------------------------------------------------------------------
class Progress:
    """A dependency-free progress bar on stderr: live on a TTY, else one line every ~10%."""

    def __init__(self, total: int, terms: tuple[str, ...], stream: TextIO = sys.stderr, enabled: bool = True):
        self.total, self.terms, self.stream, self.enabled = total, terms, stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start, self.last_draw, self.next_tenth, self.open = time.perf_counter(), 0.0, 1, False
        self.mark: tuple[int, float] | None = None  # first update: the rate excludes compile time before it

    def _rate(self, step: int) -> float:
        now = time.perf_counter()
        first, t0 = self.mark if self.mark and step > self.mark[0] else (0, self.start)
        return (step - first) / (now - t0) if now > t0 else 0.0

    def _line(self, step: int, losses, weights) -> str:
        rate = self._rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        frac = min(step / self.total, 1.0)
        bar = "#" * int(frac * 20) + "." * (20 - int(frac * 20))
        terms = lambda v: " ".join(f"{t} {x:.2e}" for t, x in zip(self.terms, v, strict=True))  # noqa: E731
        return (f"[{bar}] {100 * frac:3.0f}% {step}/{self.total} {rate:.0f} it/s ETA {eta:.0f}s"
                f" | L {terms(losses)} | λ {terms(weights)}")

    def update(self, step: int, losses, weights) -> None:
        """Show the state after ``step`` (losses and weights of the last step, one per term)."""
        if not self.enabled:
            return
        if self.mark is None:
            self.mark = (step, time.perf_counter())
        if self.tty:
            now = time.perf_counter()
            if now - self.last_draw < 0.1 and step < self.total:
                return
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.stream.write("\r" + self._line(step, losses, weights)[:width].ljust(width))
            self.last_draw, self.open = now, True
        elif step * 10 >= self.next_tenth * self.total:
            self.stream.write(self._line(step, losses, weights) + "\n")
            self.next_tenth = step * 10 // self.total + 1
        self.stream.flush()

    def close(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


# -- commands -------------------------------------------------------------------------------------
def check_backend() -> None:
    """JAX's devices, or a UsageError saying why there are none (e.g. ``JAX_PLATFORMS=cuda`` without CUDA)."""
    import jax

    try:
        jax.devices()
    except Exception as e:  # jax 0.10 raises a bare AssertionError for a platform it has no plugin for
        wanted = os.environ.get("JAX_PLATFORMS")
        raise UsageError(f"JAX cannot start a backend ({type(e).__name__}{': ' + str(e) if str(e) else ''}) with "
                         f"JAX_PLATFORMS={wanted!r}; unset it to use the CPU, or install the JAX plugin for that "
                         "platform") from None


def _setup(args: argparse.Namespace):
    """Problem, net config and preset from the options; engine ValueErrors become UsageErrors."""
    check_backend()
    try:
        problem = make_problem(args.problem, **problem_kwargs(args))
        preset = ENTRIES[args.problem].train
        net = net_config(args, problem, preset)
        check_size(problem, net)
        return problem, net, preset
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_train(args: argparse.Namespace) -> int:
    """``pinnlab train``: returns the exit code."""
    problem, net, preset = _setup(args)
    try:
        train_config(args, preset, None)  # validate cheap options before NTK weights or output checks
    except ValueError as e:
        raise UsageError(str(e)) from None
    with locked(prepare_out(args.out)) as out:
        enable_compilation_cache()
        if args.x64:
            import jax

            jax.config.update("jax_enable_x64", True)
        trainer, stop, caught = None, None, []
        with deferred(caught):  # a signal between training and the final save waits for the save
            try:
                with interruptible():
                    try:
                        config = train_config(args, preset, initial_weights(args.initial_weights, problem, net,
                                                                            args.seed))
                        trainer = Trainer(problem, net, config)
                    except ValueError as e:
                        raise UsageError(str(e)) from None
                    _run(trainer, config, not args.no_progress)
            except (KeyboardInterrupt, SystemError) as e:
                stop = as_interrupt(e)
                if stop is None:
                    raise
            if trainer is None:
                print("pinnlab: interrupted before training started; nothing written", file=sys.stderr)
                return exit_code(stop)
            code = _finish(trainer, stop, out, args)
        if caught and stop is None:
            print(f"pinnlab: {signal.Signals(caught[0]).name} arrived during the final save, which was finished "
                  "first", file=sys.stderr)
        return code


def _run(trainer: Trainer, config: TrainConfig, progress: bool) -> str:
    """Drive the snapshot generator with a progress bar; returns the final status."""
    bar = Progress(config.steps, trainer.problem.term_names, enabled=progress)
    try:
        for snap in trainer.snapshots():
            check_heard()
            if len(snap.steps):
                bar.update(trainer.step, snap.losses[-1], snap.weights[-1])
    finally:
        bar.close()
    return trainer.history.status


def _problem_params(trainer: Trainer) -> str:
    params = {k: v for k, v in trainer.problem.params.items() if not k.startswith("n_")}
    return ", ".join(f"--{k} {v:g}" if isinstance(v, float) else f"--{k} {v}" for k, v in params.items()) or "none"


def _finish(trainer: Trainer, stop: KeyboardInterrupt | None, out: Path, args: argparse.Namespace) -> int:
    """Close the history (if cut short), write every file as one set, print the summary; returns the exit code."""
    from pinnlab.report import summary

    history = trainer.history
    if trainer.step and (not history.eval_step or history.eval_step[-1] != trainer.step):
        trainer.evaluate()  # the final numbers belong to the final (last finite) parameters
    if stop is not None:
        how = f"by {stop.args[0]}" if isinstance(stop, Interrupted) else "(Ctrl-C)"
        history.finish(trainer.prediction(), trainer.seconds, "interrupted",
                       f"interrupted {how} at step {trainer.step} of {trainer.config.steps}")
    metrics = summary(history)
    metrics.update(num_params=history.config.get("num_params"), compilations=trainer.compilations,
                   precision=str(np.dtype(trainer.dtype)), versions=versions(),
                   files=["metrics.json", "history.json", "history.npz"])
    if trainer.solver_state() is not None:  # the kernel solve: its damping and step counts
        metrics["lm"] = trainer.solver_state()
    files, report_note = history.files(), None
    if not args.no_report:
        report, report_note = _report(history)
        if report is not None:
            files["report.html"] = report
            metrics["files"].append("report.html")
    files["metrics.json"] = to_json(metrics)
    try:
        write_files(out, files)
    except WriteError as e:
        _print_summary(metrics, None, report_note)
        print(f"pinnlab: error: {e}; the run above was not saved and {out} is unchanged", file=sys.stderr)
        return WRITE_FAILED
    stale = out / "report.html"
    if "report.html" not in files and stale.is_file():  # an earlier run's page beside this run's files
        with contextlib.suppress(OSError):
            stale.unlink()
            report_note = (report_note + "; " if report_note else "") + "removed the report.html of an earlier run"
    _print_summary(metrics, out, report_note)
    if history.status == "diverged":
        if history.message.startswith("loss became non-finite at step 0;"):  # before any update: not the lr
            hint = ("The loss is not finite at the initial parameters, before any update: the problem's parameters "
                    f"({_problem_params(trainer)}) overflow float32 in the PDE's terms; choose smaller ones, or --x64")
        else:
            hint = f"Try a smaller --lr (was {trainer.config.lr:g})."
        print(f"pinnlab: training diverged: {history.message}. {hint}", file=sys.stderr)
        return 1
    if history.status == "interrupted":
        print(f"pinnlab: {history.message}; wrote what exists to {out}", file=sys.stderr)
        return exit_code(stop)
    if history.message:  # completed, with a note (the kernel solve stopped early at rounding)
        print(f"pinnlab: {history.message}", file=sys.stderr)
    return 0


def _report(history: History) -> tuple[str | None, str | None]:
    """The report's HTML, or ``None`` and a one-line note when plotly is missing."""
    from pinnlab.report import render

    try:
        return render(history), None
    except ImportError:
        return None, "note: report.html needs plotly: pip install pinnlab[report] (metrics and history were written)"


def _print_summary(m: dict, out: Path | None, note: str | None) -> None:
    terms = lambda d: "  ".join(f"{t} {v:.4g}" for t, v in d.items())  # noqa: E731
    rel = "n/a" if m["rel_l2"] is None else f"{m['rel_l2']:.3e}"
    speed = "" if m["steps_per_second"] is None else f" ({m['steps_per_second']:.0f} steps/s)"
    print(f"pinnlab {m['config']['problem']}: {m['status']} after {m['steps']} steps in {m['seconds']:.1f} s{speed}")
    print(f"  relative L2 error  {rel}")
    print(f"  weights            {terms(m['weights'])}")
    print(f"  NTK traces         {terms(m['traces'])}")
    if out is not None:
        print(f"  wrote {out}/{{{','.join(m['files'])}}}")
    if note:
        print(note)


def cmd_ntk_weights(args: argparse.Namespace) -> int:
    """``pinnlab ntk-weights``: Algorithm 1's weights at initialisation, as JSON on stdout."""
    problem, net, _ = _setup(args)
    enable_compilation_cache()
    try:
        w = np.asarray(ntk_weights_at_init(problem, net, args.seed))
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(json.dumps({"problem": problem.name, "problem_params": problem.params, "seed": args.seed,
                      "net": {"width": net.width, "depth": net.depth, "parameterization": net.parameterization,
                              "init": net.init, "standardize": net.standardize, "activation": net.activation},
                      "weights": {t: float(v) for t, v in zip(problem.term_names, w, strict=True)}}, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``pinnlab report DIR``: rebuild the report from a saved history."""
    try:
        history = History.load(args.dir)
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"cannot load a history from {args.dir!r} ({e}); "
                         "pass a directory written by pinnlab train") from None
    try:
        from pinnlab.report import write_report
    except ImportError:
        raise UsageError("the report needs plotly: pip install pinnlab[report]") from None
    try:
        print(write_report(history, args.out or Path(args.dir) / "report.html"))
    except WriteError as e:
        print(f"pinnlab: error: {e}", file=sys.stderr)
        return WRITE_FAILED
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``pinnlab reproduce``: run the presets behind the requested figures."""
    from pinnlab.reproduce import FIGURE_NAMES, reproduce

    out = prepare_out(args.out)
    check_backend()
    enable_compilation_cache()
    figures = list(FIGURE_NAMES) if "all" in args.figure else list(dict.fromkeys(args.figure))
    bars: dict[str, Progress] = {}

    def progress(label, trainer, snap):
        check_heard()
        if label not in bars:
            for bar in bars.values():
                bar.close()
            if not args.no_progress:
                print(f"{label}:", file=sys.stderr)
            bars[label] = Progress(trainer.config.steps, trainer.problem.term_names, enabled=not args.no_progress)
        if len(snap.steps):
            bars[label].update(trainer.step, snap.losses[-1], snap.weights[-1])

    try:
        results = reproduce(figures, args.scale, out, progress)
    except KeyboardInterrupt as stop:
        print("pinnlab: interrupted; figures already finished are written", file=sys.stderr)
        return exit_code(stop)
    finally:
        for bar in bars.values():
            bar.close()
    for fig, record in results.items():
        print(f"{fig}: {out / (fig + '.json')} ({record['seconds']:.0f} s)")
    return 0


def cmd_lecture(args: argparse.Namespace) -> int:
    """``pinnlab lecture``: serve the dashboard with Voila until Ctrl-C."""
    from pinnlab.lecture import LectureError, serve  # Voila itself is imported only in serve()

    try:
        return serve(args.preset, port=args.port, open_browser=not args.no_browser, layout=args.layout)
    except LectureError as e:
        raise UsageError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pinnlab`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and argparse errors (already printed)
        return e.code if isinstance(e.code, int) else 2
    _heard.clear()
    hook, sys.unraisablehook = sys.unraisablehook, _quiet_lost_interrupts(sys.unraisablehook)
    try:
        with interruptible():
            code = args.func(args)
        # a signal lost inside a callback, with no chunk boundary left to act on it
        if _heard and code == 0 and not getattr(args, "stops_on_ctrl_c", False):
            print(f"pinnlab: {signal.Signals(_heard[0]).name} arrived while JAX was busy and did not stop the command, "
                  "which ran to its end", file=sys.stderr)
            return exit_code(_interrupt(_heard[0]))
        return code
    except UsageError as e:
        print(f"pinnlab: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemError) as e:  # commands that save on Ctrl-C catch it themselves
        stop = as_interrupt(e)
        if stop is None:
            raise
        print("pinnlab: interrupted; nothing written", file=sys.stderr)
        return exit_code(stop)
    except BrokenPipeError:  # `pinnlab ... | head`: the reader left; what it read was written whole
        with contextlib.suppress(OSError):  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a pipe's writer
    except OSError as e:  # files are written through WriteError: this is the terminal's stream (`> /dev/full`)
        if e.filename is not None:
            raise
        with contextlib.suppress(OSError):  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"pinnlab: error: cannot write to standard output ({e.strerror or e}); its output files, if any, "
              "were written before it printed", file=sys.stderr)
        return WRITE_FAILED
    finally:
        sys.unraisablehook = hook


if __name__ == "__main__":
    sys.exit(main())
