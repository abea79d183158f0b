"""Why a run makes slow or no progress: the optimizer causes read from its state, and the lr's.

Each function answers one cause with a :class:`Cause` (its words, evidence, advice and signals)
or None; a check of :mod:`adaopt.diagnostics.verdict_progress` attaches the verdict.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes, registry
from .verdict_noise import MEDIAN_SE, sigma
from .verdict_record import LR_FIND, Cause, fmt
from .verdict_signals import Run
from .verdict_thresholds import (ADAGRAD_DROP, ADAGRAD_STALE, BETA2_STALE, CONSISTENT_COS, EPS_DOMINANT,
                                 HEALTHY_UPDATE_RATIO, RISE_Z)


def family_of(run: Run) -> registry.Family | None:
    """The registry entry of the optimizer that wrote the run (meta "optimizer"), or None."""
    name = run.meta.get("optimizer")
    return registry.FAMILIES.get(name) if isinstance(name, str) else None


def adagrad_accumulator(run: Run) -> Cause | None:
    """AdaGrad (a family that sums every g^2) whose accumulator holds gradients far larger than
    today's: its median effective lr fell 10x, or today's g^2 is at most a tenth of the average of
    all so far (median t g^2 / G <= 0.1: the early gradients hold the step >= 3x below what a
    fresh accumulator would take)."""
    family = family_of(run)
    if family is None or not family.sums:
        return None
    _, eff = run.h.series("eff_lr_p50")
    eff = eff[np.isfinite(eff) & (eff > 0)]
    drop = float(eff[0] / eff[-1]) if len(eff) >= 2 else 1.0
    mean = run.median("g2_mean")
    stale = mean is not None and 0 < mean <= ADAGRAD_STALE
    if not (drop >= ADAGRAD_DROP or stale):
        return None
    g0, g = run.first("grad_norm"), run.median("grad_norm")
    grad = [f"the gradient is still {g / g0:.0%} of its first size"] if g0 and g is not None else []
    how = f"its effective lr fell {drop:.3g}x" if drop >= ADAGRAD_DROP else \
        f"today's g^2 is {mean:.2g} of the average it has summed"
    factor = round(drop, -1) if drop >= ADAGRAD_DROP else 10.0
    return Cause(
        f"{family.name}'s accumulator is dominated by early gradients: {how}", "adagrad_accumulator",
        [f"median effective lr {fmt(eff[0])} at the start, {fmt(eff[-1])} now" if len(eff) else ""] + grad +
        ([f"median t g^2 / G {fmt(mean)} over the recent window"] if mean is not None else []),
        ["AdaGrad -> RMSprop (alpha=0.99) or Adam: their averages forget old gradients",
         run.lr_advice(factor) + " to undo the fall (for now)"],
        {"eff_lr_drop": drop, "g2_mean": mean})


def beta2_memory(run: Run) -> Cause | None:
    """A family with a moving average of g^2 (Adam's beta2, RMSprop's alpha, Adadelta's rho)
    whose v-hat remembers gradients 10x larger than today's (g^2 / v-hat <= 0.01). The advice is
    a shorter memory, never a higher lr: v-hat catches up within its memory, and a raised lr then
    takes steps that much too large (a trial's regression MLP, whose MSE fell from 8.8e4 to 693,
    was told "or raise lr about 246x"; raised at step 1000 or 1500 its held-out MSE went from 945
    to 5.6e4 and 1.3e6, where beta2 = 0.99 took it to 651)."""
    family = family_of(run)
    if family is None or family.memory is None:
        return None
    ratio = run.median("g2_vhat")
    if not (ratio is not None and 0 < ratio <= BETA2_STALE):
        return None
    larger = 1 / math.sqrt(ratio)
    name, beta = family.memory, family.memory_of(run.meta)
    memory = f" (it averages about {1 / (1 - beta):.0f} steps)" if beta is not None and beta < 1 else ""
    value = f"{name} = {fmt(beta)}" if beta is not None else name
    better = 0.999 if beta is not None and beta > 0.999 else 0.99
    within = f" within about {1 / (1 - beta):.0f} steps" if beta is not None and beta < 1 else ""
    return Cause(
        f"{value} remembers gradients {larger:.3g}x larger than today's{memory}: the step is about "
        f"{1 / larger:.2g} of lr", "beta2_memory",
        [f"median g^2 / v-hat {fmt(ratio)} over the recent window"],
        [f"{name} = {better:g}", f"not a higher lr: v-hat catches up{within}, and an lr raised {larger:.3g}x "
         f"then takes steps {larger:.3g}x too large"],
        {"g2_vhat": ratio})


def eps_dominates(run: Run) -> Cause | None:
    """A family with a second moment where eps outweighs sqrt(v-hat) on most coordinates: a
    plain SGD step there."""
    meta, family = run.meta, family_of(run)
    if family is None or family.memory is None or "eps" not in family.defaults:
        return None
    frac = run.median("eps_frac")
    eps = meta.get("eps")
    if not (frac is not None and frac >= EPS_DOMINANT and eps):
        return None
    dtype = meta.get("state_dtype") or meta.get("dtype") or "float32"
    floor = dtypes.default_eps(dtype, 1e-8)
    smaller = max(float(eps) * 0.01, floor)
    return Cause(
        f"eps = {fmt(float(eps))} outweighs sqrt(v-hat) on {frac:.0%} of coordinates: there the step is "
        f"lr*g/eps, a plain SGD step", "eps_dominates",
        [f"{frac:.0%} of sampled coordinates have sqrt(v-hat) below eps"],
        [f"eps = {fmt(smaller)}" + (f" (the smallest safe value in {dtype})" if smaller == floor else ""),
         "or keep the optimizer state in float32 to allow a smaller eps"],
        {"eps_frac": frac})


#: The optimizer causes in the order they are looked for; the first that shows is the cause.
STATE_CAUSES = (adagrad_accumulator, beta2_memory, eps_dominates)


def state_cause(run: Run, consistent) -> Cause | None:
    """An optimizer-made reason for slow progress, read from the state summaries."""
    if consistent is False:  # the gradient has no steady direction: small steps are not the problem
        return None
    for cause in STATE_CAUSES:
        found = cause(run)
        if found is not None:
            return found
    return None


def crawl(run: Run) -> Cause:
    """Fast early progress, then a crawl along a direction the gradient keeps pointing to."""
    family = family_of(run)
    if family is not None and not family.adaptive:  # one lr for every coordinate: SGD
        momentum = float(run.meta.get("momentum") or 0.0)
        advice = ["momentum = 0.9 (or Nesterov)"] if momentum < 0.9 else \
            [f"momentum is already {fmt(momentum)}: nesterov=True" if not run.meta.get("nesterov") else
             f"momentum {fmt(momentum)} with Nesterov is already set"]
        return Cause("ill-conditioning: the loss fell fast along steep directions and crawls along flat ones, "
                     "because one lr must suit the steepest curvature", "ill_conditioned", [],
                     advice + ["or a per-coordinate method: RMSprop or Adam"], {})
    cos = run.median("cos_grad")
    why = "(the log has no gradient columns to say why)" if cos is None else \
        "although the gradient still points one way" if cos >= CONSISTENT_COS else \
        f"(successive gradients have a median cosine of {cos:.2f}: too little direction to say why)"
    up = run.lr_advice(3)
    return Cause(f"progress slowed to a crawl {why}", "crawl", [],
                 [up] + ([] if run.against_a_raise() else ["or a schedule with warm restarts"]), {})


def unmoved(run: Run) -> tuple[float, float] | None:
    """The medians of the first and last windows' gaps when they differ by no more than their
    noise (the run did not move measurably), else None."""
    w = run.w
    first, last = run.gap[:w], run.gap[-w:]
    if len(run.gap) >= 2 * w >= 6:
        se = MEDIAN_SE * math.hypot(sigma(first), sigma(last)) / math.sqrt(w)
        a, b = float(np.median(first)), float(np.median(last))
        if abs(b - a) <= RISE_Z * se:
            return a, b
    return None


def moved(run: Run, total: float) -> str:
    """How far the run moved from its first value, in words that follow the sign of ``total``
    (the share of the first gap removed): "fell only 1.6%", "rose 1.6%", "did not move"."""
    still = unmoved(run)  # a change within the noise of the first and last windows is none
    if still is not None:
        a, b = still
        return (f"the {run.quantity} did not move measurably in {run.n_steps} steps (median "
                f"{fmt(a + run.floor)} over the first {run.w} logged values, {fmt(b + run.floor)} over the last)")
    if total > 0:
        return f"the {run.quantity} fell only {total:.1%} in {run.n_steps} steps"
    if total < 0:
        return f"the {run.quantity} rose {-total:.1%} in {run.n_steps} steps instead of falling"
    return f"the {run.quantity} did not move in {run.n_steps} steps"


#: The share of the gap a well-set lr closes in the run's steps, to size the lr from the loss alone.
CLOSE_SHARE = 0.9
#: The lr factor for a log without an update/parameter ratio whose loss did not move measurably:
#: the corpus's such runs (CNN, GRU, MLP at Adam lr 1e-6) train at 1000x their lr.
UNMOVED_FACTOR = 100.0


def _round_up_125(x: float) -> float:
    """The least of 1, 2, 5 times a power of 10 that is >= ``x`` (within a part in 1e9), e.g. 31.4 -> 50."""
    decade = 10.0 ** math.floor(math.log10(x))
    return next(m * decade for m in (1, 2, 5, 10) if m * decade >= x * (1 - 1e-9))


def _factor_from_rate(run: Run, total: float) -> tuple[float, str]:
    r"""The lr factor when the log has no update/parameter ratio: for small steps the loss's gap
    shrinks as :math:`e^{-c\,\eta t}`, so a run that closed the share ``f`` of it closes
    ``F`` = :data:`CLOSE_SHARE` in as many steps at :math:`\ln(1-F)/\ln(1-f)` times the lr;
    rounded up to 1, 2 or 5 times a power of 10, 10 to 1000. (x10 had been the answer to every
    such log, and a trial's x10 ended at 1.25 where 0.49 was reachable; rounding to the nearest
    power of 10 turned an estimate of 31x into x10, which reached 0.30 where x100 reached 0.05.)"""
    need = math.log(1 - CLOSE_SHARE) / math.log1p(-total)
    factor = min(1000.0, max(10.0, _round_up_125(need)))
    gap = "the gap to " + (f"its floor {fmt(run.floor)}" if run.floor_known else "0")
    return factor, (f"at the rate it fell, closing {CLOSE_SHARE:.0%} of {gap} in {run.n_steps} steps takes "
                    f"about {need:.3g}x the lr (the log has no update/parameter ratio to size it from)")


def lr_too_low(run: Run, total: float) -> Cause:
    """Steps too small for the gradient they follow; the advice sizes the lr from the update/param
    ratio. Unless its first steps blew up (:meth:`.Run.blew_up`: a 10x spike, a first row that
    holds one, the live check firing at 1.5x the first loss) and its steps are not far below a
    healthy size (an update/parameter ratio under a tenth of it says the lr is too low, whatever
    came before): then the loss has barely moved since (a GRU LM at lr 0.3 went to 2.7x its first
    loss at step 3 and sat at chance, and was told "lr x 500: 0.3 -> 150")."""
    ratio = run.median("update_ratio")
    cos_grad = run.median("cos_grad")
    evidence = [moved(run, total)]
    against = run.blew_up() if ratio is None or ratio >= HEALTHY_UPDATE_RATIO / 10 else None
    if against is not None:
        return Cause(f"the learning rate is too high for the first steps: {against}, and the {run.quantity} has "
                     "barely moved since (the first steps wrecked what it had: dead units, a collapse to chance)",
                     "lr_too_high", evidence, run.down_advice(), {})
    factor = 10.0
    if ratio is not None and ratio > 0:
        evidence.append(f"update/parameter ratio {fmt(ratio)} (healthy runs sit near {HEALTHY_UPDATE_RATIO:g})")
        factor = float(min(1000.0, max(10.0, 10 ** round(math.log10(HEALTHY_UPDATE_RATIO / ratio)))))
    elif unmoved(run) is not None:  # no rate to size it from, and x10 of nothing may still be nothing
        factor = UNMOVED_FACTOR
    elif 0 < total < 1:
        factor, line = _factor_from_rate(run, total)
        evidence.append(line)
    why = "the gradient keeps its direction but the steps are too small to follow it" \
        if cos_grad is not None and cos_grad >= CONSISTENT_COS else "the steps are too small"
    advice = [run.lr_advice(factor), f"or find it with a range test: {LR_FIND}"]
    if ratio is None and unmoved(run) is not None:  # the loss alone cannot tell far too low from far too high
        advice.append(f"or, if the {run.quantity} jumped in its first steps (a smoothed or per-epoch log hides "
                      f"that), the lr is far too high instead: {run.lr_advice(0.01)}; record the update/parameter "
                      "ratio (a Monitor) to tell which")
    return Cause(f"lr too low: {why}", "lr_too_low", evidence, advice, {"suggested_lr_factor": factor})


def oscillation(run: Run, reversing: bool, total: float) -> Cause:
    """Steps too large to settle: they reverse across a valley, or bounce at a floor far from the optimum."""
    if reversing:
        cause = ("the steps bounce across a valley instead of settling: the lr is too high for its "
                 "curvature, and at a constant lr the iterate keeps bouncing")
    else:
        cause = (f"the {run.quantity} bounces at a floor only {total:.0%} of the way from its start to the "
                 "optimum while the gradients are mostly noise: at this lr the steps are too large to settle")
    decayed = run.decayed_words()
    advice = [run.lr_advice(0.3) + (f" ({decayed}, not enough to settle)" if decayed else ""),
              *([] if decayed else ["or decay the lr (cosine, or 1/sqrt(t))"])]
    return Cause(cause, "oscillation", [], advice, {})
