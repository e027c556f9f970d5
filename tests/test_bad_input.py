"""Every bad input is one clear error, before anything is allocated: a table of CLI and API cases.

Each CLI case runs ``pinnlab.cli.main`` in-process and must exit with code 2 and ONE line on stderr
that names the problem; each API case must raise ``ValueError`` with a message naming the bad value.
Malformed history files are in ``test_history_files.py``; signals, concurrent writers and full disks in
``test_faults.py``.
"""

from __future__ import annotations

import contextlib
import io

import jax.numpy as jnp
import numpy as np
import pytest

from pinnlab import TrainConfig, Trainer, cli, convention, make_problem, ntk
from pinnlab.lab.state import build as state_build
from pinnlab.lab.state import resolve
from pinnlab.nets import NetConfig

NAN, INF = float("nan"), float("inf")
TRAIN = ["train", "--problem", "poisson", "--no-progress", "--no-report"]
WAVE = ["train", "--problem", "wave", "--no-progress", "--no-report"]

# (arguments after TRAIN/WAVE or a full argv, a fragment the one-line message must contain)
CLI_CASES = [
    (TRAIN + ["--steps", "0"], "--steps: must be a positive integer"),
    (TRAIN + ["--steps", "-5"], "--steps: must be a positive integer"),
    (TRAIN + ["--steps", "abc"], "expected a positive integer, got 'abc'"),
    (TRAIN + ["--steps", "1.5"], "expected a positive integer, got '1.5'"),
    (TRAIN + ["--steps", "3000000000"], "steps must be in 1..2,147,483,647"),
    (TRAIN + ["--seed", str(2**70)], "seed must be in 0..4,294,967,295"),
    (TRAIN + ["--seed", "-1"], "seed must be in 0..4,294,967,295"),
    (TRAIN + ["--seed", "1.5"], "--seed: invalid int value"),
    (TRAIN + ["--width", "0"], "--width: must be a positive integer"),
    (TRAIN + ["--width", "8.5"], "expected a positive integer, got '8.5'"),
    (TRAIN + ["--width", "1000000000"], "needs about"),
    (TRAIN + ["--width", "200000", "--depth", "3"], "needs about"),
    (TRAIN + ["--depth", "0"], "--depth: must be a positive integer"),
    (TRAIN + ["--depth", "1000"], "depth must be in 1..64"),
    (TRAIN + ["--batch", "r=10000000000000"], "n_r must be in 1..10,000,000"),
    (TRAIN + ["--batch", "r=0"], "bad --batch 'r=0'"),
    (TRAIN + ["--batch", "r=1"], "n_r must be at least 2"),
    (TRAIN + ["--batch", "zz=5"], "has no term 'zz'"),
    (TRAIN + ["--batch", "r"], "expected NAME=VALUE pairs"),
    (TRAIN + ["--batch", "r=1.5"], "bad --batch 'r=1.5'"),
    (TRAIN + ["--a", "1e300"], "a = 1e+300 is past float32's largest number"),
    (TRAIN + ["--a", "1e20"], "term 'r' overflows float32"),  # (a pi)^2 in the forcing
    (["train", "--problem", "burgers", "--no-progress", "--nu", "1e300"], "nu = 1e+300 is past float32's largest"),
    (TRAIN + ["--a", "nan"], "--a: must be a finite number"),
    (TRAIN + ["--a", "inf"], "--a: must be a finite number"),
    (TRAIN + ["--a", "x"], "--a: expected a number"),
    (TRAIN + ["--c", "2"], "--c 2.0 does not apply to problem poisson"),
    (WAVE + ["--c", "0"], "c must be a positive number, got 0.0"),
    (WAVE + ["--c", "-1"], "c must be a positive number, got -1.0"),
    (["train", "--problem", "convection", "--no-progress", "--beta", "nan"], "--beta: must be a finite number"),
    (WAVE + ["--a", "1e300"], "past float32's largest number"),
    (WAVE + ["--a", "3e38"], "term 'u' overflows float32"),  # the amplitude, squared in the loss
    (WAVE + ["--ntk-points", "0"], "--ntk-points: must be a positive integer"),
    (WAVE + ["--ntk-points", "100000000"], "n_ntk must be in 1..10,000,000"),
    (WAVE + ["--ntk-points", "300000"], "needs about"),
    (WAVE + ["--batch", "ut=0"], "bad --batch 'ut=0'"),
    (TRAIN + ["--ntk-points", "5"], "computes its NTK on its training points"),
    (["train", "--problem", "heat", "--no-progress", "--k", "0"], "k must be a positive number, got 0.0"),
    (["train", "--problem", "heat", "--no-progress", "--a", "1"], "does not apply to problem heat"),
    (TRAIN + ["--lr", "0"], "--lr: must be a positive number"),
    (TRAIN + ["--lr", "-1"], "--lr: must be a positive number"),
    (TRAIN + ["--lr", "nan"], "--lr: must be a finite number"),
    (TRAIN + ["--lr", "inf"], "--lr: must be a finite number"),
    (TRAIN + ["--decay-rate", "0"], "--decay-rate: must be a positive number"),
    (TRAIN + ["--decay-steps", "0"], "--decay-steps: must be a positive integer"),
    (TRAIN + ["--chunk", "0"], "--chunk: must be a positive integer"),
    (TRAIN + ["--update-every", "0"], "--update-every: must be a positive integer"),
    (TRAIN + ["--ntk-every", "-1"], "--ntk-every: must be an integer >= 0"),
    (TRAIN + ["--eval-every", "-1"], "--eval-every: must be an integer >= 0"),
    (TRAIN + ["--momentum", "1"], "--momentum: must be in [0, 1)"),
    (TRAIN + ["--momentum", "-0.1"], "--momentum: must be in [0, 1)"),
    (TRAIN + ["--momentum", "nan"], "--momentum: must be a finite number"),
    (TRAIN + ["--initial-weights", "u=0"], "bad --initial-weights 'u=0'"),
    (TRAIN + ["--initial-weights", "u=nan"], "bad --initial-weights 'u=nan'"),
    (TRAIN + ["--initial-weights", "u=-1"], "bad --initial-weights 'u=-1'"),
    (TRAIN + ["--initial-weights", "zz=1"], "has no term 'zz'"),
    (TRAIN + ["--initial-weights", "u"], "expected NAME=VALUE pairs"),
    (TRAIN + ["--spectra-at", "5000000"], "outside 0..40000"),
    (TRAIN + ["--spectra-at", "-1"], "outside 0..40000"),
    (TRAIN + ["--spectra-at", "x"], "bad --spectra-at 'x'"),
    (TRAIN + ["--optimizer", "foo"], "--optimizer: invalid choice: 'foo'"),
    (TRAIN + ["--weighting", "foo"], "--weighting: invalid choice: 'foo'"),
    (TRAIN + ["--convention", "foo"], "--convention: invalid choice: 'foo'"),
    (TRAIN + ["--activation", "foo"], "--activation: invalid choice: 'foo'"),
    (TRAIN + ["--param", "foo"], "--param: invalid choice: 'foo'"),
    (["train", "--problem", "nope", "--out", "x"], "--problem: invalid choice: 'nope'"),
    (["train", "--problem", "poisson"], "the following arguments are required: --out"),
    (["train", "--out", "x"], "the following arguments are required: --problem"),
    (["train", "--problem", "poisson", "--out", "x", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required"),
    (["ntk-weights", "--problem", "poisson", "--seed", str(2**70)], "seed must be in 0..4,294,967,295"),
    (["ntk-weights", "--problem", "poisson", "--width", "0"], "--width: must be a positive integer"),
    (["ntk-weights", "--problem", "poisson", "--width", "1000000000"], "needs about"),
    (["ntk-weights", "--problem", "wave", "--c", "nan"], "--c: must be a finite number"),
    (TRAIN + ["--update-every", "3000000000"], "--update-every: update_every must be in 1..2,147,483,647"),
    (TRAIN + ["--decay-steps", "3000000000"], "decay_steps must be in 1..2,147,483,647"),
    (TRAIN + ["--initial-weights", "u=1e40"], "--initial-weights: initial_weights must be in 0.0..3.4"),
    (TRAIN + ["--out", ""], "--out is empty"),  # an unset $OUT: not the current directory
    (["reproduce", "fig99"], "invalid choice: 'fig99'"),
    (["reproduce", "fig1", "--scale", "huge"], "--scale: invalid choice: 'huge'"),
    (["lecture", "--port", "0"], "--port: must be a positive integer"),
    (["lecture", "--port", "70000"], "--port: must be a port in 1..65535"),
    (["lecture", "nope"], "unknown preset 'nope'"),
    (["lecture", "--layout", "slides"], "--layout: invalid choice: 'slides'"),
]


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, fragment", CLI_CASES, ids=[" ".join(a[1:]) or "no-args" for a, _ in CLI_CASES])
def test_cli_bad_input_is_one_line_and_exit_code_2(argv, fragment, tmp_path):
    if "--out" not in argv and "--no-progress" in argv:  # the cases meant to fail on their options
        argv = [*argv, "--out", str(tmp_path / "out")]
    code, out, err = _main(argv)
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("pinnlab: error: "), err
    assert fragment in err, err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing was written


def test_cli_out_that_is_a_file_or_unwritable_is_refused(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    for out in (afile, afile / "below", "/proc/pinnlab-cannot-write-here"):
        code, _, err = _main([*TRAIN, "--out", str(out)])
        assert code == 2 and "cannot write to --out" in err and err.count("\n") == 1, err
    assert not [p for p in tmp_path.iterdir() if p.name != "file"]


def test_report_of_a_missing_directory_is_one_line(tmp_path):
    code, _, err = _main(["report", str(tmp_path / "nothing")])
    assert code == 2 and "cannot load a history" in err and err.count("\n") == 1, err


# -- the Python API ------------------------------------------------------------------------------
API_CASES = [
    (lambda: make_problem("wave", a=NAN), "a must be a finite number, got nan"),
    (lambda: make_problem("wave", a=INF), "a must be a finite number, got inf"),
    (lambda: make_problem("wave", c=INF), "c must be a finite number, got inf"),
    (lambda: make_problem("wave", c=0.0), "c must be a positive number"),
    (lambda: make_problem("wave", c="2"), "c must be a finite number, got '2'"),
    (lambda: make_problem("wave", n_u=0), "n_u must be in 1..10,000,000, got 0"),
    (lambda: make_problem("wave", n_ntk=-5), "n_ntk must be in 1..10,000,000, got -5"),
    (lambda: make_problem("wave", n_r=True), "n_r must be an integer, got True"),
    (lambda: make_problem("wave", n_r=2.5), "n_r must be an integer, got 2.5"),
    (lambda: make_problem("wave", n_eval=10**8), "n_eval must be in 1..10,000,000"),
    (lambda: make_problem("wave", a=1e300), "a = 1e+300 is past float32's largest number (3.4e38)"),
    (lambda: make_problem("poisson", a=1e300), "a = 1e+300 is past float32's largest number (3.4e38)"),
    (lambda: make_problem("poisson", a=3e38), "non-finite exact solution"),
    (lambda: make_problem("poisson", a=1e20), "term 'r' overflows float32"),
    (lambda: make_problem("wave", c=1e20), "non-finite exact solution"),  # cos(2 c^2 pi t)
    (lambda: make_problem("poisson", n_b=1), "n_b must be at least 2"),
    (lambda: make_problem("poisson", zzz=1), "has no parameter 'zzz'"),
    (lambda: make_problem("nope"), "unknown problem 'nope'"),
    (lambda: make_problem("heat", k=0.0), "k must be a positive number"),
    (lambda: make_problem("heat", k=NAN), "k must be a finite number"),
    (lambda: TrainConfig(steps=True), "steps must be an integer, got True"),
    (lambda: TrainConfig(steps=0), "steps must be in 1..2,147,483,647, got 0"),
    (lambda: TrainConfig(steps=2**31), "steps must be in 1..2,147,483,647"),
    (lambda: TrainConfig(steps=1.5), "steps must be an integer, got 1.5"),
    (lambda: TrainConfig(steps="10"), "steps must be an integer, got '10'"),
    (lambda: TrainConfig(chunk=0), "chunk must be in 1..2,147,483,647, got 0"),
    (lambda: TrainConfig(update_every=False), "update_every must be an integer, got False"),
    (lambda: TrainConfig(ntk_every=-1), "ntk_every must be in 0..2,147,483,647, got -1"),
    (lambda: TrainConfig(eval_every=1.5), "eval_every must be an integer, got 1.5"),
    (lambda: TrainConfig(decay_steps=0), "decay_steps must be in 1..2,147,483,647, got 0"),
    (lambda: TrainConfig(decay_rate=INF), "decay_rate must be a finite number, got inf"),
    (lambda: TrainConfig(seed="abc"), "seed must be an integer, got 'abc'"),
    (lambda: TrainConfig(seed=2**70), "seed must be in 0..4,294,967,295"),
    (lambda: TrainConfig(seed=-1), "seed must be in 0..4,294,967,295, got -1"),
    (lambda: TrainConfig(seed=True), "seed must be an integer, got True"),
    (lambda: TrainConfig(lr=NAN), "lr must be a finite number, got nan"),
    (lambda: TrainConfig(lr=True), "lr must be a finite number, got True"),
    (lambda: TrainConfig(lr=0.0), "lr must be a positive number, got 0.0"),
    (lambda: TrainConfig(momentum=1.0), "momentum must be in [0, 1), got 1.0"),
    (lambda: TrainConfig(momentum=NAN), "momentum must be a finite number"),
    (lambda: TrainConfig(initial_weights=(NAN, 1.0)), "initial_weights must be a finite number, got nan"),
    (lambda: TrainConfig(initial_weights=(0.0, 1.0)), "initial_weights must be a positive number, got 0.0"),
    (lambda: TrainConfig(initial_weights="ab"), "initial_weights must be a sequence of numbers"),
    (lambda: TrainConfig(initial_weights=5.0), "initial_weights must be a sequence of numbers"),
    (lambda: TrainConfig(spectra_at=(-1,)), "spectra_at step must be in 0..1,000, got -1"),
    (lambda: TrainConfig(spectra_at=(10,), steps=5), "spectra_at step must be in 0..5, got 10"),  # past the end
    (lambda: TrainConfig(spectra_at=5), "spectra_at must be a sequence of steps"),
    (lambda: TrainConfig(update_every=3_000_000_000), "update_every must be in 1..2,147,483,647"),  # int32 counter
    (lambda: TrainConfig(ntk_every=3_000_000_000), "ntk_every must be in 0..2,147,483,647"),
    (lambda: TrainConfig(decay_steps=3_000_000_000), "decay_steps must be in 1..2,147,483,647"),
    (lambda: TrainConfig(initial_weights=(1e40, 1.0)), "initial_weights must be in 0.0..3.4"),  # inf in float32
    (lambda: make_problem("wave", c=1e300), "c = 1e+300 is past float32's largest number"),
    (lambda: state_build(resolve("problem=wave&param=1e300"), chunk=1), "past float32's largest"),  # the lab's path
    (lambda: state_build(resolve("width=8&param=1e20"), chunk=1), "term 'r' overflows float32"),
    (lambda: TrainConfig(spectra_at=(1.5,)), "spectra_at step must be an integer, got 1.5"),
    (lambda: TrainConfig(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
    (lambda: TrainConfig(weighting="magic"), "magic"),
    (lambda: NetConfig(width=0), "width must be in 1..inf, got 0"),
    (lambda: NetConfig(width=8.5), "width must be an integer, got 8.5"),
    (lambda: NetConfig(width=True), "width must be an integer, got True"),
    (lambda: NetConfig(depth=0), "depth must be in 1..64, got 0"),
    (lambda: NetConfig(depth=1000), "depth must be in 1..64, got 1000"),
    (lambda: NetConfig(parameterization="x"), "unknown parameterization 'x'"),
    (lambda: NetConfig(init="x"), "unknown init 'x'"),
    (lambda: NetConfig(activation="x"), "unknown activation 'x'"),
    (lambda: NetConfig(standardize="yes"), "standardize must be True or False, got 'yes'"),
    (lambda: convention("paper_notes"), "unknown convention 'paper_notes'"),
    (lambda: resolve("width=100000&depth=3"), "width must be in 1..8,192, got 100000"),
    (lambda: resolve("width=8.5"), "width must be an integer, got 8.5"),
    (lambda: resolve("width=1e400"), "width must be an integer"),
    (lambda: resolve("seed=-1"), "seed must be in 0..2,147,483,647, got -1"),
    (lambda: resolve("lr=nan"), "lr must be a finite number"),
    (lambda: resolve("lr=0"), "lr must be a positive number"),
    (lambda: resolve("param=inf"), "param must be a finite number"),
    (lambda: resolve("depth=True"), "depth must be an integer, got 'True'"),
    (lambda: resolve("depth=33"), "depth must be in 1..32, got 33"),
    (lambda: resolve("n_b=1"), "n_b must be in 2..1,000,000, got 1"),
    (lambda: resolve("chunk=5000"), "chunk must be in 0..4,096, got 5000"),
    (lambda: resolve("rule=magic"), "unknown rule 'magic'"),
    (lambda: resolve("problem=nope"), "unknown problem 'nope'"),
    (lambda: resolve("colour=red"), "unknown lab setting(s) ['colour']"),
    (lambda: resolve("depth=2&width"), "config string parts look like key=value, got 'width'"),
    (lambda: resolve("nopreset"), "unknown preset 'nopreset'"),
]


@pytest.mark.parametrize("call, fragment", API_CASES, ids=[str(i) for i in range(len(API_CASES))])
def test_api_bad_input_raises_a_value_error_naming_it(call, fragment):
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


# -- cases that need a built network -----------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    problem = make_problem("poisson", n_b=10, n_r=12)
    return problem, Trainer(problem, convention("paper_code", width=8), TrainConfig(chunk=5))


def test_a_trainer_refuses_params_of_another_net(small):
    problem, trainer = small
    with pytest.raises(ValueError, match=r"params do not fit the 1x9 net"):
        Trainer(problem, convention("paper_code", width=9), TrainConfig(), params=trainer.state.params)
    with pytest.raises(ValueError, match=r"params do not fit the 2x8 net"):
        Trainer(problem, convention("paper_code", width=8, depth=2), TrainConfig(), params=trainer.state.params)


@pytest.mark.parametrize("args, fragment", [
    (lambda p, n, c: ("poisson", n, c), "problem must be a Problem (e.g. pinnlab.make_problem('poisson'))"),
    (lambda p, n, c: (p, "paper_code", c), "net_config must be a NetConfig"),
    (lambda p, n, c: (p, n, {"steps": 5}), "config must be a TrainConfig"),
])
def test_a_trainer_names_an_argument_of_the_wrong_type(small, args, fragment):
    problem, trainer = small
    with pytest.raises(TypeError) as info:
        Trainer(*args(problem, trainer.net_config, trainer.config))
    assert fragment in str(info.value)


def test_a_lab_config_string_starts_from_its_problems_own_preset():
    wave = resolve("problem=wave&width=8")
    assert (wave.param, wave.optimizer, wave.width) == (resolve("wave").param, "adam", 8)  # not Poisson's a, SGD
    assert resolve("width=8").problem == "poisson"


def test_a_trainer_refuses_sizes_beyond_memory_before_allocating(small):
    problem, _ = small
    with pytest.raises(ValueError, match=r"needs about .* of memory; this machine has"):
        Trainer(problem, convention("paper_code", width=10**9), TrainConfig())


def test_a_trainer_refuses_weights_of_the_wrong_length(small):
    problem, _ = small
    with pytest.raises(ValueError, match=r"initial_weights needs 2 values"):
        Trainer(problem, convention("paper_code", width=8), TrainConfig(initial_weights=(1.0, 2.0, 3.0)))


@pytest.mark.parametrize("points, fragment", [
    (lambda p: p[:1], "2 terms (u, r) need 2 point sets, got 1"),
    (lambda p: [*p, p[0]], "2 terms (u, r) need 2 point sets, got 3"),
    (lambda p: [p[0], jnp.zeros((0, 1))], "term 'r' needs points of shape (n, d) with n >= 1, got shape (0, 1)"),
    (lambda p: [p[0], p[1][:, 0]], "term 'r' needs points of shape (n, d)"),
    (lambda p: [p[0], jnp.zeros((3, 2))], "point sets of one kernel need one dimension"),
])
def test_ntk_refuses_point_sets_that_do_not_match_the_terms(small, points, fragment):
    problem, trainer = small
    for fn in (ntk.kernel, ntk.traces):
        with pytest.raises(ValueError) as info:
            fn(trainer.apply, trainer.state.params, problem.terms, points(trainer.probe))
        assert fragment in str(info.value)


def test_ntk_refuses_a_bad_batch_size_and_a_non_square_kernel(small):
    problem, trainer = small
    with pytest.raises(ValueError, match=r"batch_size must be in 1..inf, got 0"):
        ntk.diagonal(trainer.apply, trainer.state.params, problem.terms[1], trainer.probe[1], batch_size=0)
    with pytest.raises(ValueError, match=r"eigenvalues need a square kernel, got shape \(3, 2\)"):
        ntk.eigenvalues(np.ones((3, 2)))


def test_ntk_block_and_diagonal_refuse_empty_point_sets(small):
    problem, trainer = small
    empty = jnp.zeros((0, 1))
    with pytest.raises(ValueError, match=r"term 'u' needs points of shape \(n, d\) with n >= 1"):
        ntk.block(trainer.apply, trainer.state.params, problem.terms[0], empty)
    with pytest.raises(ValueError, match=r"term 'r' needs points"):
        ntk.diagonal(trainer.apply, trainer.state.params, problem.terms[1], empty)


@pytest.mark.parametrize("call, fragment", [
    (lambda t: t.set_weights((NAN, 1.0)), "weights must be 2 positive finite numbers"),
    (lambda t: t.set_weights((1.0,)), "weights must be 2 positive finite numbers"),
    (lambda t: t.set_weights((1e40, 1.0)), "weights must be 2 positive finite numbers"),  # inf in float32
    (lambda t: t.advance(-1), "steps to advance must be in 0..2,147,483,647, got -1"),
    (lambda t: t.run(2.5), "steps must be an integer, got 2.5"),  # would never stop
    (lambda t: t.run(True), "steps must be an integer, got True"),
    (lambda t: t.set_rule("magic"), "magic"),
    (lambda t: t.set_chunk(0), "chunk must be a positive integer, got 0"),
    (lambda t: t.set_chunk(True), "chunk must be a positive integer, got True"),
])
def test_live_controls_refuse_bad_values_and_change_nothing(small, call, fragment):
    _, trainer = small
    before = (np.asarray(trainer.state.weights).copy(), trainer.rule, trainer.config.chunk)
    with pytest.raises(ValueError) as info:
        call(trainer)
    assert fragment in str(info.value)
    after = (np.asarray(trainer.state.weights), trainer.rule, trainer.config.chunk)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1:] == after[1:]

