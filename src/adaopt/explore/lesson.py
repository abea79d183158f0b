"""The lesson's worked examples and practice problems 1-4 as presets the page can show.

Each preset is computed by adaopt, as ``adaopt trace`` and ``tests/test_lesson.py`` do:
:func:`adaopt.minimize` with the lesson's settings (``conventions="lesson"`` where it
matters), or, for practice 2's long runs, the Adam rule itself on plain numbers. A preset
returns the step tables, a series per run for the page's plot, and ``checks``: each
number the lesson prints beside adaopt's exact value, with a note where the lesson
rounds or estimates (the README's "Where the lesson and the measurements differ").
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import hyper, registry, rules
from ..expr import parse
from ..optim import get
from ..trace import _fmt, minimize
from .problems import InputError

#: Rows of a long run's table: the first and last few steps.
HEAD, TAIL = 5, 3
#: Points of a run's series the page plots at most.
MAX_POINTS = 500


def _table(tr, head=HEAD, tail=TAIL) -> dict:
    cols = ["t", "x[t-1]", "grad", *tr.state, "lr_eff", "x[t]", "f(x[t])"]
    picked = list(range(1, tr.steps + 1))
    if len(picked) > head + tail:
        picked = picked[:head] + [None] + picked[-tail:]
    rows = []
    for t in picked:
        if t is None:
            rows.append(["..."] * len(cols))
            continue
        rows.append([str(t), _fmt(tr.x[t - 1]), _fmt(tr.grad[t - 1]), *(_fmt(v[t - 1]) for v in tr.state.values()),
                     _fmt(tr.eff_lr[t - 1]), _fmt(tr.x[t]), _fmt(tr.f[t])])
    return {"columns": cols, "rows": rows}


def _run(label: str, tr, **extra) -> dict:
    x = np.asarray(tr.x, dtype=np.float64).reshape(len(tr.x), -1)[:, 0]
    eff = np.asarray(tr.eff_lr, dtype=np.float64).reshape(tr.steps, -1)[:, 0]
    every = max(1, tr.steps // MAX_POINTS)  # long runs: every k-th step, the last one kept
    keep = np.unique(np.r_[np.arange(0, tr.steps + 1, every), tr.steps])
    series = {"t": keep.tolist(), "x": x[keep].tolist(),  # x[t] from the start; step t's lr_eff (none at t = 0)
              "eff_lr": [None, *eff[keep[1:] - 1].tolist()]}
    return {"label": label, "optimizer": tr.optimizer, **_table(tr), "series": series, **extra}


def _check(what: str, lesson: str, value, digits: str, note: str = "") -> dict:
    """The lesson's printed ``lesson`` beside adaopt's ``value``, shown with format ``digits``."""
    value = int(value) if digits == "d" else float(value)
    return {"what": what, "lesson": lesson, "adaopt": format(value, digits), "exact": repr(value), "note": note}


def _opt(name: str, **hp):
    """The optimizer on the reference path: these runs are scalars, where numba's kernels only add calls."""
    return get(name)(backend="reference", **hp)


def _f(text: str):
    return parse(text)


def example1() -> dict:
    opt = _opt("adagrad", lr=0.5, eps=0.0, conventions="lesson")
    tr = minimize(_f("10*x**2"), 5.0, opt, 3)
    G = tr.state["G"]
    return {"title": "Example 1: AdaGrad step by step",
            "setup": "AdaGrad on f(x) = 10x^2 from x0 = 5, lr 0.5, eps 0, 3 steps",
            "runs": [_run("AdaGrad", tr)],
            "checks": [
                _check("x1", "4.5", tr.x[1], ".6g"),
                _check("G2", "18100", G[1], ".6g"),
                _check("x2", "4.165", tr.x[2], ".6g", "the lesson rounds 0.33448 to 0.335; exact 4.16552"),
                _check("G3", "25039", G[2], ".6g", "the lesson squares the rounded gradient 83.3; exact 83.3104^2"),
                _check("x3", "3.902", tr.x[3], ".4g", "as printed"),
                _check("lr_eff at step 3", "0.0032", tr.eff_lr[2], ".2g", "0.5/sqrt(G3) = 0.0031597"),
            ]}


def example2() -> dict:
    ada = minimize(_f("x**2"), 10.0, _opt("adagrad", lr=0.1, conventions="lesson"), 1000)
    rms = minimize(_f("x**2"), 10.0, _opt("rmsprop", lr=0.1, alpha=0.9, conventions="lesson"), 1000)
    return {"title": "Example 2: RMSprop vs AdaGrad on a long run",
            "setup": "f(x) = x^2 from x0 = 10, lr 0.1, 1000 steps; RMSprop rho 0.9",
            "runs": [_run("AdaGrad", ada), _run("RMSprop", rms)],
            "checks": [
                _check("AdaGrad lr_eff at step 1000", "0.00016", ada.eff_lr[-1], ".3g",
                       "the lesson estimates 0.1/sqrt(400000) assuming |g| = 20 throughout; g shrinks with x"),
                _check("AdaGrad x1000", "barely moves", ada.x[-1], ".4g", "still 4.6 from the minimum"),
                _check("RMSprop |x1000|", "much closer to 0", abs(rms.x[-1]), ".5g", "within 0.05 of the minimum"),
            ]}


def example3() -> dict:
    raw = minimize(_f("x**2"), 1.0, _opt("adam", lr=0.1, bias_correction=False), 3)
    fixed = minimize(_f("x**2"), 1.0, _opt("adam", lr=0.1), 3)
    first = abs(raw.x[1] - raw.x[0])
    return {"title": "Example 3: Adam's bias correction",
            "setup": "Adam on f(x) = x^2 from x0 = 1, beta1 0.9, lr 0.1, with and without bias correction",
            "runs": [_run("Adam, no bias correction", raw), _run("Adam", fixed)],
            "checks": [
                _check("m1 (no correction)", "0.2", raw.state["m"][0], ".6g", "10x smaller than the gradient 2"),
                _check("m_hat1 (corrected)", "2", fixed.state["m_hat"][0], ".6g"),
                _check("first step, corrected", "lr", abs(fixed.x[1] - fixed.x[0]), ".6g", "exactly lr = 0.1"),
                _check("first step, uncorrected", "too small (a crawl)", first, ".3g",
                       "v1 is uncorrected too: 0.1*0.2/sqrt(0.004) = 3.16 lr, too large, not small"),
                _check("1/(1-beta1^1)", "10", hyper.bias_correction_factor(0.9, 1), ".6g"),
            ]}


def _stream(values):
    """An objective whose gradient is the next of ``values`` whatever x is (the practice problems)."""
    it = iter(values)
    return lambda x: (0.0, float(next(it)))


def practice1() -> dict:
    lr, b1, g = 0.01, 0.9, 3.0
    # v-hat is g^2 from step 1 (|g| is constant) and m-hat settles within ~100 steps (0.9^100 = 3e-5)
    tr = minimize(_stream(np.tile([g, -g], 1001)), 0.0, _opt("adam", lr=lr, betas=(b1, 0.999)), 2000)
    settled = float(np.median(np.abs(np.diff(tr.x[-100:]))))
    return {"title": "Practice 1: Adam on a gradient that flips sign",
            "setup": "gradients +3, -3, +3, ... for 2000 steps, Adam lr 0.01, beta1 0.9",
            "runs": [_run("Adam", tr)],
            "checks": [
                _check("step size at the end / lr", "about 0", settled / lr, ".4g",
                       "m-hat does not cancel: it alternates with amplitude g(1-b1)/(1+b1), so steps of "
                       "lr(1-b1)/(1+b1) = 0.0526 lr"),
                _check("sqrt(v_hat) at the end", "|g| = 3", math.sqrt(tr.state["v_hat"][-1]), ".4g"),
            ]}


def _recovery_steps(beta2, warmup=20000, drop=100.0, lr=1e-3) -> int:
    """Steps Adam's step stays below lr/2 after the gradient drops ``drop``x (the rule on plain numbers)."""
    hp = dict(registry.ADAM.defaults_for("torch"), betas=(0.9, beta2), lr=lr, eps=1e-8)
    state, p, fell = {"exp_avg": 0.0, "exp_avg_sq": 0.0}, 0.0, None
    for t in range(1, 10**6):
        g = 1.0 if t <= warmup else 1.0 / drop
        new_p, state = rules.adam.update(p, g, state, hp, rules.adam.scalars(t, hp))
        small = abs(new_p - p) < lr / 2
        if t > warmup and small and fell is None:
            fell = t
        if fell is not None and not small:
            return t - fell
        p = new_p
    raise RuntimeError("Adam's step never recovered")  # pragma: no cover


def practice2() -> dict:
    fast, slow = _recovery_steps(0.999), _recovery_steps(0.9999)
    return {"title": "Practice 2: beta2 too close to 1",
            "setup": "Adam, lr 1e-3, gradient 1 for 20000 steps, then 0.01: how long does the step stay below lr/2?",
            "runs": [],
            "checks": [
                _check("window 1/(1-beta2), beta2 = 0.999", "~1000", hyper.ema_window(0.999), ".4g"),
                _check("window 1/(1-beta2), beta2 = 0.9999", "10,000", hyper.ema_window(0.9999), ".5g"),
                _check("steps with step < lr/2, beta2 = 0.999", "thousands", fast, "d"),
                _check("steps with step < lr/2, beta2 = 0.9999", "thousands", slow, "d",
                       f"{slow / fast:.1f}x longer than with 0.999"),
            ]}


def _adagrad_lr_after(steps: int, hp: dict) -> tuple[float, float]:
    """AdaGrad's G and effective lr after ``steps`` gradients of +-1: the rule on plain numbers."""
    state, p = {"sum": 0.0}, 0.0
    for t in range(1, steps + 1):
        p, state = rules.adagrad.update(p, (-1.0) ** (t + 1), state, hp, rules.adagrad.scalars(t, hp))
    return state["sum"], rules.adagrad.effective_lr(state, hp, rules.adagrad.scalars(steps, hp))


def practice3() -> dict:
    opt = _opt("adagrad", lr=0.1, eps=1e-8, conventions="lesson")
    tr = minimize(_stream(np.tile([1.0, -1.0], 51)), 0.0, opt, 100)
    G, late = _adagrad_lr_after(10000, opt.defaults)
    return {"title": "Practice 3: AdaGrad's effective learning rate",
            "setup": "every gradient +-1, lr 0.1, eps 1e-8: 100 steps, and on to 10000",
            "runs": [_run("AdaGrad", tr)],
            "checks": [
                _check("G100", "100", tr.state["G"][99], ".6g"),
                _check("lr_eff at step 100", "0.01", tr.eff_lr[99], ".4g"),
                _check("G10000", "10000", G, ".6g"),
                _check("lr_eff at step 10000", "0.001", late, ".4g"),
            ]}


def practice4() -> dict:
    checks = []
    for rho, life, window in ((0.9, "6.6", "10"), (0.99, "69", "100")):
        checks.append(_check(f"half-life ln 0.5 / ln rho, rho = {rho}", life, hyper.half_life(rho), ".4g"))
        checks.append(_check(f"window 1/(1-rho), rho = {rho}", window, hyper.ema_window(rho), ".4g"))
    k = np.arange(0, 201)
    return {"title": "Practice 4: how long a moving average remembers",
            "setup": "the weight rho^k of a gradient k steps old, for RMSprop's rho 0.9 and 0.99",
            "runs": [{"label": f"rho = {rho}", "series": {"t": k.tolist(), "weight": (rho ** k).tolist()}}
                     for rho in (0.9, 0.99)],
            "checks": checks}


PRESETS = {"example1": example1, "example2": example2, "example3": example3, "practice1": practice1,
           "practice2": practice2, "practice3": practice3, "practice4": practice4}


#: preset -> its title on the page.
TITLES = {"example1": "Example 1: AdaGrad step by step", "example2": "Example 2: RMSprop vs AdaGrad, 1000 steps",
          "example3": "Example 3: Adam's bias correction", "practice1": "Practice 1: a gradient that flips sign",
          "practice2": "Practice 2: beta2 too close to 1", "practice3": "Practice 3: AdaGrad's effective lr",
          "practice4": "Practice 4: a moving average's memory"}


@functools.lru_cache(maxsize=None)
def preset(name: str) -> dict:
    """The preset called ``name`` (computed once); :class:`InputError` listing the choices."""
    if name not in PRESETS:
        raise InputError(f"unknown lesson preset {hyper.short_repr(name)}; choose one of: {', '.join(PRESETS)}")
    return {"id": name, **PRESETS[name]()}
