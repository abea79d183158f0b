"""What the monitor's records become when its history is read: the norms and cosines, from
the dot products of the sampled vectors, and the state summaries, from the copied state.

Nothing here runs during a step: the monitor keeps raw numbers and copies per step, and
this works them out, for all steps at once, when :attr:`Monitor.history
<adaopt.diagnostics.Monitor.history>` is read.
"""

from __future__ import annotations

import math

import numpy as np

from .. import registry, rules
from . import state
from .history import History, _column_order

STATE = "__state__"  # the key under which a step's copied state waits until the history is read


def build_history(raw: np.ndarray, extra: list, scale: float, family: str, meta: dict,
                  first_step: int = 1) -> History:
    """The history of the rows ``raw`` (per step: g.g, u.u, p.p, g.g_prev, u.u_prev, the
    non-finite count, the shares of zero gradients and of lost updates; ``scale`` turns a sampled
    square norm into the whole model's) and ``extra`` (per step: None, or a dict of logged values
    and a state copy under STATE), its steps numbered from ``first_step``."""
    cols = {"step": np.arange(first_step, first_step + len(raw)), **_signals(raw, scale)}
    extra = [None if e is None else _row(family, e) for e in extra]
    keys = sorted({k for e in extra if e for k in e}, key=_column_order)
    for key in keys:
        cols[key] = [None if e is None else e.get(key) for e in extra]
    return History(cols, meta)


def _row(family: str, e: dict) -> dict:
    """One row's logged values and its state summary; an lr logged beside the loss (the first
    parameter group's, as the live check read it) stands over the summary's (the first sampled
    tensor's group)."""
    row = {k: v for k, v in e.items() if k != STATE}
    if STATE in e:
        summary = summarise(family, *e[STATE])
        if row.get("lr") is not None:
            summary.pop("lr", None)
        row = {**row, **summary}
    return row


def _signals(raw: np.ndarray, scale: float) -> dict:
    """The norms, the update ratio, the cosines with the previous step, the non-finite count, and
    the shares of zero gradients and of updates that rounded away."""
    gg, uu, pp, gdot, udot, nonfinite, zero_g, lost = raw.T
    cols = {}
    with np.errstate(all="ignore"):
        cols["grad_norm"] = np.sqrt(gg * scale)
        cols["update_norm"] = np.sqrt(uu * scale)
        cols["param_norm"] = np.sqrt(pp * scale)
        cols["update_ratio"] = _masked(np.sqrt(uu / pp), pp > 0)
        for name, dots, sq in (("cos_grad", gdot, gg), ("cos_update", udot, uu)):
            prev = np.concatenate([[np.nan], sq[:-1]])
            den = np.sqrt(sq * prev)
            cols[name] = _masked(dots / den, np.isfinite(den) & (den > 0) & np.isfinite(dots))
    cols["nonfinite"] = nonfinite.copy()
    cols["grad_zero"] = zero_g.copy()
    cols["update_lost"] = _masked(lost, np.isfinite(lost))
    return cols


def summarise(family: str, taken, g: np.ndarray) -> dict:
    """Percentiles of the effective lr, eps's share of the denominator, g^2 / v-hat and the
    bias-correction factors, through the rule's own math (:mod:`.state`). ``taken`` is a
    step's state copy, ``(hyperparameters, step, buffers)`` per tensor; ``g`` the thinned
    gradient."""
    rule = registry.FAMILIES[family].rule
    eff, vhat, lr, factors = [], [], None, {}
    for hp, step, buffers in taken:
        s = rules.step_scalars(rule, step, hp)
        lr = float(hp["lr"]) if lr is None else lr  # the first sampled tensor's group
        sample = next(iter(buffers.values()))
        eff.append(state.effective_lr(rule, buffers, hp, s, sample))
        v = state.second_moment(rule, buffers, hp, s)
        if v is not None:
            vhat.append((v, state.eps_dominates(rule, v, hp)))
        factors = state.bias_factors(rule, hp, s) or factors
    eff = np.concatenate(eff)
    p5, p50, p95 = _quantiles(eff, (0.05, 0.5, 0.95))
    out = {"lr": lr, "eff_lr_p5": p5, "eff_lr_p50": p50, "eff_lr_p95": p95, **factors}
    if vhat:
        v = np.concatenate([x for x, _ in vhat])
        out["eps_frac"] = float(np.count_nonzero(np.concatenate([d for _, d in vhat]))) / max(len(v), 1)
        out["vhat_p50"] = _quantiles(v, (0.5,))[0]
        if len(v) == len(g):
            ratio = state.g2_over_vhat(g, v)
            ratio = ratio[~np.isnan(ratio)]
            if len(ratio):
                # a sum (AdaGrad's G) is compared with today's g^2 as t g^2 / G: today's against the
                # average of all so far
                key, times = ("g2_mean", taken[0][1]) if state.remembers_a_sum(family) else ("g2_vhat", 1)
                out[key] = times * _quantiles(ratio, (0.5,))[0]
    return out


def _quantiles(x: np.ndarray, qs) -> list[float]:
    """Quantiles with linear interpolation (NumPy's default), from one partial sort; NaN when empty."""
    n = x.size
    if n == 0:
        return [math.nan] * len(qs)
    pos = [q * (n - 1) for q in qs]
    ks = sorted({math.floor(p) for p in pos} | {math.ceil(p) for p in pos})
    part = np.partition(x, ks)
    return [float(part[math.floor(p)] + (part[math.ceil(p)] - part[math.floor(p)]) * (p - math.floor(p)))
            for p in pos]


def _masked(values: np.ndarray, present: np.ndarray):
    return [float(v) if ok else None for v, ok in zip(values, present)]
