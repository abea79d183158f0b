"""The corpus's NumPy runs: adaopt's NumPy optimizers on the lab's problems, and two made-up
problems with a known story (the lesson's RMSprop example, a gradient scale that drops 100x)."""

from __future__ import annotations

import math

import numpy as np

import adaopt
from adaopt.diagnostics import Monitor
from adaopt.lab.problems import get_problem

from .case import Result

CLASSES = {"sgd": adaopt.SGD, "adam": adaopt.Adam, "adamw": adaopt.AdamW, "rmsprop": adaopt.RMSprop,
           "adagrad": adaopt.AdaGrad}


def _loop(opt, steps, value_and_grad, grad_hook=None):
    """Step ``opt`` ``steps`` times on ``value_and_grad(t) -> (f, g)``, logging f; check() every step."""
    mon, fired = Monitor(opt), None
    with np.errstate(all="ignore"):  # the diverging runs overflow on purpose
        for t in range(steps):
            f, g = value_and_grad(t)
            if grad_hook is not None:
                g = grad_hook(t, g)
            mon.log(float(f))
            opt.step([g])
            if fired is None and mon.check() is not None:
                fired = t + 1
    return mon, fired


def lab(problem: str, opt: str, *, steps=None, floor=False, grad_hook=None, onset=None, **hp):
    """A case's ``run(seed)``: ``opt`` on the lab problem from ``x0(seed)`` on the seed's minibatches."""
    def run(seed):
        P = get_problem(problem)
        x = P.x0(seed).copy()
        o = CLASSES[opt]([x], **hp)
        mon, fired = _loop(o, steps or P.default_steps, lambda t: P.value_and_grad(x, step=t, seeds=seed), grad_hook)
        with np.errstate(all="ignore"):
            final = float(np.asarray(P.loss(x))) if hasattr(P, "loss") else math.nan
        final = final if math.isfinite(final) else math.inf
        return Result(mon.history, fired, final, onset, {"floor": P.f_opt} if floor else {})
    return run


def nan_at(step):
    """A grad_hook that puts a NaN into one coordinate of the gradient at loop index ``step``."""
    def hook(t, g):
        if t == step:
            g = g.copy()
            g[3] = np.nan
        return g
    return hook


def _perturbed(x0, seed):
    x = np.array(x0, dtype=np.float64)
    if seed:
        x += 0.1 * np.random.default_rng(seed).standard_normal(x.shape)
    return x


def lesson_rmsprop(steps=1000):
    """The lesson's example 2: f(x) = x^2 from x0 = 10, RMSprop lr = 0.1, alpha = 0.9."""
    def run(seed):
        x = _perturbed([10.0], seed)
        opt = adaopt.RMSprop([x], lr=0.1, alpha=0.9, conventions="lesson")
        mon, fired = _loop(opt, steps, lambda t: (float(x @ x), 2 * x))
        return Result(mon.history, fired, float(x @ x))
    return run


def scale_drop(betas, steps=1500, drop_at=200, lr=1e-3):
    """Adam on s(t) * 0.5 * sum h (x - 1)^2, h = logspace(-2, 2, 10): s = 100 before ``drop_at``,
    then 1 (a loss reweighted mid-run): v-hat remembers the large gradients for ~1/(1-beta2) steps."""
    h = np.logspace(-2, 2, 10)

    def run(seed):
        x = _perturbed(np.zeros(10), seed)
        opt = adaopt.Adam([x], lr=lr, betas=betas)

        def vg(t):
            s = 100.0 if t < drop_at else 1.0
            return float(s * 0.5 * np.sum(h * (x - 1) ** 2)), s * h * (x - 1)
        mon, fired = _loop(opt, steps, vg)
        return Result(mon.history, fired, float(0.5 * np.sum(h * (x - 1) ** 2)), kwargs={"floor": 0.0})
    return run
