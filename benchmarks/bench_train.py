"""Training speed of pinnlab's Trainer against a minimal plain-JAX PINN doing the same step.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_train.py [--quick] [--widths 100 500]``.
Prints one JSON object. For each case (paper E3 Poisson; wave at each width) it reports steps per
second of

* ``pinnlab``: ``Trainer.advance(n)`` with ``weighting="none"``, ``ntk_every=0`` (no NTK work); its
  loss takes the Taylor-stream residuals of :mod:`pinnlab.residuals` where they pay (wave: the
  residual term ``r``; ``loss_path`` says which, per term),
* ``plain_scan``: the same step in plain JAX (params a list of ``(W, b)``, no Flax, no pinnlab),
  derivatives by nested ``jax.jvp``, ``jax.lax.scan`` over ``chunk`` steps per jitted call, per-step
  losses fetched after each call,
* ``plain_step``: the same step jitted alone (carry donated) and called from a Python loop,
* ``plain_grad_scan`` (wave only): ``plain_scan`` with the derivatives by nested ``jax.grad``
  (reverse over reverse, as the released TF code's ``tf.gradients``),
* ``pinnlab_nested`` (wave only, a diagnosis; ``--no-nested`` skips it): ``pinnlab`` on the same
  problem with the terms' operators removed, so its loss takes the nested-``jvp`` residuals,
* ``plain_scan_cond`` (E3 only, a diagnosis): ``plain_scan`` plus what pinnlab's step adds for its
  live NTK controls: a ``lax.cond`` on a traced rule whose branch would recompute the traces and
  weights (never taken here), a loss weighted by the carried weights, and per-step weights/traces.

Candidates are measured interleaved in this process (A, B, C, A, B, C, ...). ``*_steps_per_s`` use
median wall time. Each ratio (speed of the first over the second; goals for pinnlab over
plain_scan: >= 0.9 on E3, >= 1.25 on wave) comes three ways: ``ratio_*`` from median wall times,
``best_ratio_*`` from the fastest repeats, ``cpu_ratio_*`` from median process CPU time; on a busy
machine the wall times of neighbouring repeats can differ several-fold, and the last two are the
steadier ones.
Before timing, both implementations evaluate loss and gradient on pinnlab's initial params (copied
into the plain layout) and pinnlab's first batch: ``check`` (``check_plain_grad`` for the nested-grad
variant) reports the relative differences.
``ntk_cost`` compares wave training with ``weighting="ntk"`` (update_every=100) against ``"none"``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _util import environment, interleaved, median, print_json

# ---------------------------------------------------------------------------------------------
# The plain-JAX reference. Nothing in this section uses pinnlab or Flax.
# ---------------------------------------------------------------------------------------------

PlainParams = list[tuple[jax.Array, jax.Array]]


def plain_init(key: jax.Array, sizes: list[int], init: str) -> PlainParams:
    """Weights as the released code: LeCun normal W with N(0, 1) b, or Glorot normal W with b = 0."""
    params = []
    layer_sizes = zip(sizes[:-1], sizes[1:], strict=True)
    for k, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1), layer_sizes, strict=True):
        kw, kb = jax.random.split(k)
        if init == "lecun_normal":
            w_std, b_std = 1.0 / np.sqrt(fan_in), 1.0
        else:
            w_std, b_std = np.sqrt(2.0 / (fan_in + fan_out)), 0.0
        params.append((w_std * jax.random.normal(kw, (fan_in, fan_out)), b_std * jax.random.normal(kb, (fan_out,))))
    return params


def plain_mlp(params: PlainParams, x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Scalar output of a tanh MLP at one point ``x`` (d,), inputs z-scored first."""
    h = (x - mean) / std
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = params[-1]
    return (h @ w + b)[0]


def directional(f: Callable, e: jax.Array) -> Callable:
    """x -> the derivative of f at x along e (forward mode; nest it for second derivatives)."""
    return lambda x: jax.jvp(f, (x,), (e,))[1]


def poisson_residuals(a: float, mean, std) -> tuple[Callable, Callable]:
    """``(params, x) -> residual`` of the boundary and interior terms of u'' = f, u = sin(a pi x)."""
    e = jnp.ones(1)

    def boundary(params, x):
        return plain_mlp(params, x, mean, std) - jnp.sin(a * jnp.pi * x[0])

    def interior(params, x):
        uxx = directional(directional(lambda y: plain_mlp(params, y, mean, std), e), e)
        return uxx(x) + (a * jnp.pi) ** 2 * jnp.sin(a * jnp.pi * x[0])

    return boundary, interior


def mse(residual: Callable, params, x: jax.Array) -> jax.Array:
    return jnp.mean(jax.vmap(lambda p: residual(params, p))(x) ** 2)


def poisson_losses(a: float, mean, std) -> Callable:
    """Per-term losses [boundary, interior] of the released Poisson code."""
    boundary, interior = poisson_residuals(a, mean, std)
    return lambda params, x_b, x_r: jnp.stack([mse(boundary, params, x_b), mse(interior, params, x_r)])


def poisson_traces(a: float, mean, std) -> Callable:
    """``[Tr K_bb, Tr K_rr]``: summed squared norms of the per-point parameter gradients."""
    residuals = poisson_residuals(a, mean, std)

    def trace(residual, params, x):
        grads = jax.vmap(jax.grad(residual), (None, 0))(params, x)
        return sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))

    return lambda params, x_b, x_r: jnp.stack([trace(r, params, x) for r, x in zip(residuals, (x_b, x_r), strict=True)])


def wave_exact(c: float, a: float) -> Callable:
    """The exact wave solution at one point (t, x)."""

    def exact(p):
        t, x = p[0], p[1]
        slow = jnp.sin(jnp.pi * x) * jnp.cos(c * jnp.pi * t)
        return slow + a * jnp.sin(2 * c * jnp.pi * x) * jnp.cos(2 * c**2 * jnp.pi * t)

    return exact


def wave_losses(c: float, a: float, mean, std) -> Callable:
    """Per-term losses [u, ut, r] of the released wave code; ``u`` sums three means (t=0, x=0, x=1).

    u_t, u_tt and u_xx by nested forward mode (``jax.jvp`` of ``jax.jvp``).
    """
    e_t, e_x = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    exact = wave_exact(c, a)

    def losses(params, x_ic, x_b0, x_b1, x_ut, x_r):
        u = lambda p: plain_mlp(params, p, mean, std)
        u_t = directional(u, e_t)
        res = lambda p: directional(u_t, e_t)(p) - c**2 * directional(directional(u, e_x), e_x)(p)
        mse_u = lambda x: jnp.mean((jax.vmap(u)(x) - jax.vmap(exact)(x)) ** 2)
        loss_u = mse_u(x_ic) + mse_u(x_b0) + mse_u(x_b1)
        return jnp.stack([loss_u, jnp.mean(jax.vmap(u_t)(x_ut) ** 2), jnp.mean(jax.vmap(res)(x_r) ** 2)])

    return losses


def wave_losses_grad(c: float, a: float, mean, std) -> Callable:
    """:func:`wave_losses` with the derivatives by nested reverse mode, as the released TF code
    (``tf.gradients`` of ``tf.gradients``): u_t = grad(u)[0], u_tt = grad(u_t)[0], u_xx = grad(u_x)[1]."""
    exact = wave_exact(c, a)

    def losses(params, x_ic, x_b0, x_b1, x_ut, x_r):
        u = lambda p: plain_mlp(params, p, mean, std)
        u_t = lambda p: jax.grad(u)(p)[0]
        u_x = lambda p: jax.grad(u)(p)[1]
        res = lambda p: jax.grad(u_t)(p)[0] - c**2 * jax.grad(u_x)(p)[1]
        mse_u = lambda x: jnp.mean((jax.vmap(u)(x) - jax.vmap(exact)(x)) ** 2)
        loss_u = mse_u(x_ic) + mse_u(x_b0) + mse_u(x_b1)
        return jnp.stack([loss_u, jnp.mean(jax.vmap(u_t)(x_ut) ** 2), jnp.mean(jax.vmap(res)(x_r) ** 2)])

    return losses


def wave_sample(key: jax.Array, n: int = 100, n_r: int = 300) -> tuple[jax.Array, ...]:
    """Fresh batches (t, x): n at t=0, n at x=0, n at x=1 (for u), n at t=0 (for u_t), n_r inside."""
    k = jax.random.split(key, 5)
    zeros = jnp.zeros((n, 1))
    line = lambda kk: jax.random.uniform(kk, (n, 1))
    return (jnp.hstack([zeros, line(k[0])]), jnp.hstack([line(k[1]), zeros]), jnp.hstack([line(k[2]), zeros + 1.0]),
            jnp.hstack([zeros, line(k[3])]), jax.random.uniform(k[4], (n_r, 2)))


def plain_runners(losses: Callable, sample: Callable, optimizer, chunk: int):
    """``(scan_fn, step_fn)``: jitted ``chunk`` steps via ``lax.scan``, and one jitted step.

    Both map a carry ``(params, opt_state, key)`` to ``(carry, losses)``.
    """

    def total(params, batch):
        parts = losses(params, *batch)
        return jnp.sum(parts), parts

    def step(carry, _=None):
        params, opt_state, key = carry
        key, k_batch = jax.random.split(key)
        grads, parts = jax.grad(total, has_aux=True)(params, sample(k_batch))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), parts

    scan_fn = jax.jit(lambda carry: jax.lax.scan(step, carry, None, length=chunk))
    return scan_fn, jax.jit(step, donate_argnums=0)


def plain_scan_with_cond(losses: Callable, traces: Callable, sample: Callable, optimizer, chunk: int):
    """``plain_runners``' scan plus a traced-rule ``lax.cond`` refresh of weights and traces per step.

    The carry is ``(params, opt_state, key, weights, traces, step)``; ``rule`` is a traced int (0 here:
    the branch exists in the compiled loop but never runs), as pinnlab's live controls are.
    """

    def step(carry, rule):
        params, opt_state, key, weights, tr, i = carry
        key, k_batch = jax.random.split(key)
        batch = sample(k_batch)

        def refresh(_):
            new = traces(params, *batch)
            return new, jnp.sum(new) / new

        tr, weights = jax.lax.cond((rule > 0) & (i % 100 == 0), refresh, lambda _: (tr, weights), None)
        total = lambda p: (jnp.sum(weights * losses(p, *batch)), losses(p, *batch))
        grads, parts = jax.grad(total, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key, weights, tr, i + 1), (parts, weights, tr)

    return jax.jit(lambda carry, rule: jax.lax.scan(lambda c, _: step(c, rule), carry, None, length=chunk))


# ---------------------------------------------------------------------------------------------
# pinnlab side and the comparison
# ---------------------------------------------------------------------------------------------


def to_plain(params) -> PlainParams:
    """pinnlab's ``{"layers": {i: {"w", "b"}}}`` params as the plain list of ``(W, b)``."""
    layers = params["layers"]
    return [(jnp.asarray(layers[i]["w"]), jnp.asarray(layers[i]["b"])) for i in sorted(layers)]


def rel_diff(a, b) -> float:
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]).astype(np.float64) for t in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_same_step(trainer, plain_losses: Callable, split_batch: Callable) -> dict:
    """Loss and gradient of both implementations at step 0 on the same params and points."""
    from pinnlab.training import total_loss

    problem, params = trainer.problem, trainer.state.params
    batch = problem.sample(jax.random.key(123))
    ones = jnp.ones(len(problem.terms))
    (lp, parts_p), grad_p = jax.value_and_grad(
        lambda p: total_loss(trainer.apply, problem, p, batch, ones), has_aux=True)(params)
    plain_total = lambda q: (jnp.sum(plain_losses(q, *split_batch(batch))), plain_losses(q, *split_batch(batch)))
    (lq, parts_q), grad_q = jax.value_and_grad(plain_total, has_aux=True)(to_plain(params))
    return {
        "loss_pinnlab": float(lp), "loss_plain": float(lq),
        "terms_pinnlab": [float(v) for v in parts_p], "terms_plain": [float(v) for v in parts_q],
        "loss_rel_diff": abs(float(lp) - float(lq)) / abs(float(lq)),
        "grad_rel_diff": rel_diff(to_plain(grad_p), grad_q),
    }


def scan_runner(fn: Callable, carry, chunks: int, *extra) -> Callable[[], None]:
    """A repeat of ``chunks`` calls of a jitted scan, fetching each call's per-step outputs to the
    host as pinnlab does; the carry persists across repeats."""
    state = {"carry": jax.block_until_ready(fn(carry, *extra)[0])}  # compile + warm-up

    def run():
        carry = state["carry"]
        for _ in range(chunks):
            carry, outputs = fn(carry, *extra)
            jax.device_get(outputs)
        state["carry"] = carry

    return run


def trainer_runner(trainer, n: int) -> Callable[[], None]:
    """A repeat of ``trainer.advance(n)``, after one untimed call (compile + warm-up)."""
    trainer.advance(n)
    return lambda: trainer.advance(n)


def step_runner(step_fn: Callable, carry, n: int) -> Callable[[], None]:
    """A repeat of ``n`` calls of a jitted single step from Python, blocking once at the end."""
    state = {"carry": jax.block_until_ready(step_fn(jax.tree.map(lambda x: x.copy(), carry))[0])}

    def run():
        carry = state["carry"]
        for _ in range(n):
            carry, _parts = step_fn(carry)
        state["carry"] = jax.block_until_ready(carry)

    return run


def ratios(a: str, b: str, wall: dict, cpu: dict, label: str) -> dict:
    """Speed of ``a`` over ``b`` (> 1: ``a`` faster) from median wall, best (min) wall and median CPU time."""
    return {
        f"ratio_{label}": median(wall[b]) / median(wall[a]),
        f"best_ratio_{label}": min(wall[b]) / min(wall[a]),
        f"cpu_ratio_{label}": median(cpu[b]) / median(cpu[a]),
    }


def summarise(candidates: dict[str, Callable[[], None]], n: int, repeats: int) -> dict:
    """Interleaved timing of the candidates (each doing ``n`` steps) as steps/s and ratios."""
    wall, cpu = interleaved(candidates, repeats)
    rate = {k: n / median(v) for k, v in wall.items()}
    out = {f"{k}_steps_per_s": r for k, r in rate.items()}
    for ref in ("plain_scan", "plain_step", "plain_grad_scan", "pinnlab_nested"):
        if ref in rate:
            out.update(ratios("pinnlab", ref, wall, cpu, f"pinnlab_over_{ref}"))
    if "pinnlab_nested" in rate:
        out.update(ratios("pinnlab_nested", "plain_scan", wall, cpu, "pinnlab_nested_over_plain_scan"))
    if "plain_scan_cond" in rate:
        out.update(ratios("plain_scan_cond", "plain_scan", wall, cpu, "plain_scan_cond_over_plain_scan"))
    out["wall_s"] = {k: [round(s, 4) for s in v] for k, v in wall.items()}
    out["cpu_s"] = {k: [round(s, 4) for s in v] for k, v in cpu.items()}
    out["cpu_s_median"] = {k: median(v) for k, v in cpu.items()}
    return out


def compare(trainer, runners: dict[str, Callable[[int], Callable[[], None]]], chunk: int, args) -> dict:
    """Steps/s of pinnlab and the plain references, measured interleaved.

    A repeat is a whole number of chunks, chosen so that one pinnlab repeat takes about
    ``args.target_s`` (one chunk in ``--quick``); ``runners`` build each reference for n steps.
    """
    trainer.advance(chunk)  # compile + warm-up
    t0 = time.perf_counter()
    trainer.advance(chunk)
    t_chunk = time.perf_counter() - t0
    chunks = 1 if args.quick else max(1, round(args.target_s / t_chunk))
    n = chunks * chunk
    candidates = {"pinnlab": lambda: trainer.advance(n)}
    candidates.update({name: build(chunks) for name, build in runners.items()})
    repeats = args.repeats or max(3, min(15, int(args.budget_s / (len(candidates) * max(t_chunk * chunks, 1e-3)))))
    if args.quick:
        repeats = 2
    result = summarise(candidates, n, repeats)
    return {"steps_per_repeat": n, "chunk": chunk, "repeats": repeats, **result,
            "compilations": trainer.compilations}


def bench_e3(args) -> dict:
    """Paper E3: Poisson sin(4 pi x), width 100, depth 1, SGD 1e-5, fixed full batches 100/100."""
    from pinnlab import TrainConfig, Trainer, convention, make_problem

    problem = make_problem("poisson", a=4)
    net_config = convention("paper_code", problem.default_init, width=100, depth=1)
    chunk = 100 if args.quick else 1000
    trainer = Trainer(problem, net_config, TrainConfig(optimizer="sgd", lr=1e-5, weighting="none",
                                                       ntk_every=0, chunk=chunk, steps=10**6))
    mean, std = (jnp.asarray(v, jnp.float32) for v in (problem.mean, problem.std))
    losses = poisson_losses(4.0, mean, std)
    check = check_same_step(trainer, losses, lambda batch: batch)
    x_b, x_r = (jnp.asarray(x) for x in trainer.data)
    sample = lambda key: (x_b, x_r)
    optimizer = optax.sgd(1e-5)
    scan_fn, step_fn = plain_runners(losses, sample, optimizer, chunk)
    cond_fn = plain_scan_with_cond(losses, poisson_traces(4.0, mean, std), sample, optimizer, chunk)
    params = plain_init(jax.random.key(1), [1, 100, 1], "lecun_normal")
    carry = (params, optimizer.init(params), jax.random.key(2))
    cond_carry = (*carry, jnp.ones(2), jnp.zeros(2), jnp.asarray(0, jnp.int32))
    runners = {
        "plain_scan": lambda chunks: scan_runner(scan_fn, carry, chunks),
        "plain_step": lambda chunks: step_runner(step_fn, carry, chunks * chunk),
        "plain_scan_cond": lambda chunks: scan_runner(cond_fn, cond_carry, chunks, jnp.asarray(0, jnp.int32)),
    }
    return {"loss_path": loss_path(trainer), "check": check, **compare(trainer, runners, chunk, args)}


def without_operators(problem):
    """The problem with no term declaring its operator: pinnlab's loss then takes the nested-jvp path."""
    import dataclasses

    terms = tuple(dataclasses.replace(t, operator=None) for t in problem.terms)
    return dataclasses.replace(problem, terms=terms)


def wave_trainer(width: int, weighting: str, chunk: int, update_every: int = 100, nested: bool = False):
    from pinnlab import TrainConfig, Trainer, convention, make_problem

    problem = make_problem("wave")
    problem = without_operators(problem) if nested else problem
    net_config = convention("paper_code", problem.default_init, width=width, depth=3)
    config = TrainConfig(optimizer="adam", lr=1e-3, decay_steps=1000, decay_rate=0.9, weighting=weighting,
                         update_every=update_every, ntk_every=0, chunk=chunk, steps=10**6)
    return Trainer(problem, net_config, config)


def wave_chunk(args, width: int) -> int:
    """Steps per jitted call: 100 (pinnlab's default), 10 for wide nets so a repeat stays short."""
    if args.quick:
        return 10
    return args.wave_chunk or (100 if width <= 200 else 10)


def bench_wave(args, width: int) -> dict:
    """Wave (c=2), 3 hidden layers, Adam with exponential decay; fresh 300/100/300 points every step."""
    chunk = wave_chunk(args, width)
    trainer = wave_trainer(width, "none", chunk)
    problem = trainer.problem
    mean, std = (jnp.asarray(v, jnp.float32) for v in (problem.mean, problem.std))
    losses = wave_losses(problem.params["c"], problem.params["a"], mean, std)
    n = problem.terms[0].n // 3
    split = lambda batch: (batch[0][:n], batch[0][n : 2 * n], batch[0][2 * n :], batch[1], batch[2])
    grad_losses = wave_losses_grad(problem.params["c"], problem.params["a"], mean, std)
    check = check_same_step(trainer, losses, split)
    check_grad = check_same_step(trainer, grad_losses, split)
    optimizer = optax.adam(optax.exponential_decay(1e-3, 1000, 0.9))
    scan_fn, step_fn = plain_runners(losses, wave_sample, optimizer, chunk)
    grad_scan_fn, _ = plain_runners(grad_losses, wave_sample, optimizer, chunk)
    params = plain_init(jax.random.key(1), [2, width, width, width, 1], "glorot_normal")
    carry = (params, optimizer.init(params), jax.random.key(2))
    runners = {
        "plain_scan": lambda chunks: scan_runner(scan_fn, carry, chunks),
        "plain_step": lambda chunks: step_runner(step_fn, carry, chunks * chunk),
        "plain_grad_scan": lambda chunks: scan_runner(grad_scan_fn, carry, chunks),
    }
    if not args.no_nested:
        nested = wave_trainer(width, "none", chunk, nested=True)
        runners["pinnlab_nested"] = lambda chunks: trainer_runner(nested, chunks * chunk)
    result = compare(trainer, runners, chunk, args)
    return {"width": width, "num_params": trainer.net.num_params, "loss_path": loss_path(trainer),
            "check": check, "check_plain_grad": check_grad, **result}


def loss_path(trainer) -> dict[str, str]:
    """Per term, the residual code pinnlab's loss runs (``pinnlab.residuals.should_stream``)."""
    from pinnlab import residuals

    return {t.name: "streams" if residuals.should_stream(trainer.apply, t) else "nested jvp"
            for t in trainer.problem.terms}


def bench_ntk_cost(args, width: int = 100) -> dict:
    """Wave training with Algorithm 1 (weights from 3 x 300-point traces every 100 steps) vs none.

    A repeat is 200 steps (two refreshes), so ``refresh_cpu_s`` = extra CPU seconds per refresh.
    """
    chunk = 10 if args.quick else 100
    trainers = {"none": wave_trainer(width, "none", chunk), "ntk": wave_trainer(width, "ntk", chunk, 100)}
    for t in trainers.values():
        t.advance(chunk if args.quick else 100)  # compile; keeps the trainers on a refresh boundary
    n = chunk if args.quick else 200
    repeats = 2 if args.quick else (args.repeats or 9)
    wall, cpu = interleaved({k: (lambda t=t: t.advance(n)) for k, t in trainers.items()}, repeats)
    rate = {k: n / median(v) for k, v in wall.items()}
    refreshes = max(1, n // 100)
    return {"width": width, "update_every": 100, "steps_per_repeat": n, "none_steps_per_s": rate["none"],
            "ntk_steps_per_s": rate["ntk"], **ratios("ntk", "none", wall, cpu, "ntk_over_none"),
            "refresh_cpu_s": (median(cpu["ntk"]) - median(cpu["none"])) / refreshes, "repeats": repeats,
            "wall_s": {k: [round(s, 4) for s in v] for k, v in wall.items()},
            "cpu_s": {k: [round(s, 4) for s in v] for k, v in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps per case (CI smoke test)")
    parser.add_argument("--widths", type=int, nargs="+", default=[100, 500], help="wave widths")
    parser.add_argument("--repeats", type=int, default=0, help="interleaved repeats (default: from --budget-s)")
    parser.add_argument("--target-s", type=float, default=0.5, help="seconds per pinnlab repeat (sets steps)")
    parser.add_argument("--budget-s", type=float, default=60.0, help="timed seconds per case (sets repeats)")
    parser.add_argument("--wave-chunk", type=int, default=0, help="wave chunk (default 100; 10 for width > 200)")
    parser.add_argument("--no-nested", action="store_true", help="wave: skip the pinnlab_nested candidate")
    parser.add_argument("--skip", nargs="*", default=[], choices=["e3", "wave", "ntk_cost"])
    args = parser.parse_args()
    t0 = time.perf_counter()
    out: dict = {"env": environment(), "quick": args.quick}
    if "e3" not in args.skip:
        out["e3_poisson"] = bench_e3(args)
    if "wave" not in args.skip:
        out["wave"] = [bench_wave(args, w) for w in args.widths]
    if "ntk_cost" not in args.skip:
        out["ntk_cost"] = bench_ntk_cost(args)
    out["env"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out["total_seconds"] = time.perf_counter() - t0
    print_json(out)


if __name__ == "__main__":
    main()
