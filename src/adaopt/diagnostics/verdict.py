"""The verdict: from a run's history to one word, its cause, the evidence and a fix.

:func:`diagnose` reads a :class:`~adaopt.diagnostics.History` in a fixed order and
stops at the first rule that fires:

1. **NONFINITE** / **DIVERGING** on the first non-finite value: DIVERGING when the
   loss (or, while the loss did not fall, the gradient or parameters) had grown 10x
   before it, else NONFINITE with where it came from (the gradient, the update, eps
   rounding to 0).
2. **DIVERGING**: the loss over the last window is more than 1.5x the first loss, or 3x
   its best window's. Also, before 4: a loss that spiked 10x and never came back 10%
   below its first value, or one that sits 5% above it and stopped falling.
3. **CONVERGED**: the target was reached, the gap to the optimum shrank 1e6-fold,
   or the gradient vanished (1e-6 of its first size).
4. The loss stopped improving (under 1% between the last two windows):
   **STALLED** when an optimizer cause shows in its state (AdaGrad's accumulator,
   beta2's memory, eps dominating) or the gradient still points one way and the
   loss barely moved (lr too low); **OSCILLATING** when successive updates
   reverse; else **CONVERGED** (a minimum, or the gradient noise floor).
5. The loss still improves: **SLOW** when, at its present rate, halving it would
   take longer than the run so far while the gradient keeps one direction (or
   the ``target`` is out of reach within the ``budget``); else **CONVERGING**.

Every threshold is a module constant below; ``docs/diagnostics.md`` says where each
comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes
from .history import History, read_log

VERDICTS = ("DIVERGING", "NONFINITE", "OSCILLATING", "STALLED", "SLOW", "CONVERGING", "CONVERGED")
#: The verdicts a live check (and ``stop_on``) reacts to.
ALARMS = ("DIVERGING", "NONFINITE")

WINDOW = 0.2  # the recent window: the last fifth of the run ...
MIN_WINDOW = 5  # ... and at least this many logged steps
DIVERGE_FACTOR = 1.5  # recent loss above this multiple of the first loss: diverging
RISE_FROM_BEST = 3.0  # ... or above this multiple of its best window's median,
RISE_SIGNIFICANT = 0.05  # ... by more than this share of the first loss
GROWTH_BEFORE_OVERFLOW = 10.0  # growth before a non-finite value that makes it a divergence
RATE_COLLAPSE = 10.0  # the loss falling this many times slower than at its fastest, with a cause: stalled
STALL_IMPROVEMENT = 0.05  # ... and improving less than this between the last two windows
BOUNCE_PROGRESS = 0.5  # noisy gradients and less than this share of the way to a known optimum: bouncing
PLATEAU = 0.01  # relative improvement between the last two windows below which the loss has stopped
LITTLE_PROGRESS = 0.1  # a run that removed less than this share of its first loss has barely moved
CONSISTENT_COS = 0.5  # median cosine of successive gradients above which the gradient keeps its direction
REVERSING_COS = -0.5  # median cosine of successive updates below which the updates reverse
ALTERNATING = 0.8  # share of loss differences that change sign: oscillation, when cosines are not logged
ADAGRAD_DROP = 10.0  # fall of AdaGrad's median effective lr that counts as its accumulator taking over
BETA2_STALE = 0.01  # median g^2 / v-hat below which v-hat remembers gradients >= 10x larger than today's
EPS_DOMINANT = 0.5  # share of coordinates where eps outweighs sqrt(v-hat) that makes eps the cause
CONVERGED_GAP = 1e-6  # gap to the optimum, as a share of the first gap, that counts as converged
GRAD_VANISHED = 1e-6  # gradient norm, as a share of the first, that counts as converged
HEALTHY_UPDATE_RATIO = 1e-3  # update/param ratio of a healthy run (a widely used rule of thumb)


@dataclass
class Diagnosis:
    """A verdict with its cause, the evidence it rests on and what to change."""

    verdict: str
    cause: str
    code: str  # a short key for the cause: "lr_too_high", "adagrad_accumulator", ...
    evidence: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    steps: tuple[int, int] | None = None  # the step range the verdict rests on
    signals: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.verdict}: {self.cause}"]
        if self.steps:
            lines[0] += f"  (steps {self.steps[0]}-{self.steps[1]})"
        if self.evidence:
            lines += ["  evidence:"] + [f"    - {e}" for e in self.evidence]
        if self.advice:
            lines += ["  advice:"] + [f"    - {a}" for a in self.advice]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "cause": self.cause, "code": self.code, "evidence": self.evidence,
                "advice": self.advice, "steps": list(self.steps) if self.steps else None,
                "signals": {k: _plain(v) for k, v in self.signals.items()}}


def diagnose(history, *, target=None, floor=None, budget=None, meta=None) -> Diagnosis:
    """The verdict on a run.

    ``history`` is a :class:`History`, a path to a CSV/JSONL log, a dict of columns or
    a list of per-step dicts. ``target`` is a loss to reach and ``budget`` the steps the
    run may take in all; together they make SLOW mean "will not get there in time".
    ``floor`` is the best loss attainable, if known (default 0, or the lowest loss seen
    when losses go negative). ``meta`` adds what the log does not say (``optimizer``,
    ``lr``, ``betas``, ``eps``, ``dtype``, ``state_dtype``).
    """
    h = as_history(history)
    if len(h) == 0:
        raise ValueError("the history is empty: nothing to diagnose")
    if budget is not None and (not isinstance(budget, (int, np.integer)) or budget < 1):
        raise ValueError(f"budget={budget!r}: the step budget must be an integer >= 1")
    run = _Run(h, {**h.meta, **(meta or {})}, target, floor, budget)
    return _nonfinite(run) or _diverging(run) or _progress(run)


def as_history(obj) -> History:
    if isinstance(obj, History):
        return obj
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        return read_log(obj)
    if isinstance(obj, dict):
        return History(obj)
    if isinstance(obj, (list, tuple)):
        names = sorted({k for row in obj for k in row})
        return History({k: [row.get(k) for row in obj] for k in names})
    raise TypeError(f"cannot diagnose a {type(obj).__name__}: give a History, a log path, "
                    "a dict of columns or a list of per-step dicts")


def eps_underflows(meta: dict) -> bool:
    """Whether the run's eps rounds to 0 in its state dtype (the lesson's pitfall 5)."""
    eps, state_dtype = meta.get("eps"), meta.get("state_dtype") or meta.get("dtype")
    if eps is None or state_dtype is None or meta.get("optimizer") in (None, "sgd"):
        return False
    try:
        return bool(dtypes.rounds_to_zero(float(eps), state_dtype))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------- the run, as the rules see it


class _Run:
    def __init__(self, h: History, meta: dict, target, floor, budget):
        self.h, self.meta, self.target, self.budget = h, meta, target, budget
        self.n_steps = int(h.steps[-1]) if len(h) else 0
        name = "loss" if h.has("loss") else "grad_norm"
        self.quantity = "loss" if name == "loss" else "gradient norm"
        steps, values = h.series(name)
        self.bad = _first_bad(h)
        if self.bad is not None:  # the verdict on the finite part, before the first bad row
            keep = steps < h.steps[self.bad]
            steps, values = steps[keep], values[keep]
        self.steps, self.values = steps, values
        self.floor_known = floor is not None
        if floor is None:
            floor = 0.0 if (len(values) == 0 or values.min() >= 0) else float(values.min())
        self.floor = floor
        self.gap = values - floor
        n = len(values)
        self.w = max(MIN_WINDOW, int(n * WINDOW)) if n >= 2 * MIN_WINDOW else max(1, n // 2)

    def window(self, name: str, which: str = "recent") -> np.ndarray:
        """Column ``name`` over the recent window's steps (measured rows only)."""
        if len(self.steps) == 0:
            return np.zeros(0)
        lo = self.steps[-self.w] if which == "recent" else self.steps[0]
        hi = self.steps[-1] if which == "recent" else self.steps[min(self.w, len(self.steps)) - 1]
        steps, values = self.h.series(name)
        keep = (steps >= lo) & (steps <= hi) & np.isfinite(values)
        return values[keep]

    def median(self, name: str, which: str = "recent"):
        values = self.window(name, which)
        return float(np.median(values)) if len(values) else None

    def first(self, name: str):
        _, values = self.h.series(name)
        values = values[np.isfinite(values)]
        return float(values[0]) if len(values) else None

    @property
    def recent_steps(self) -> tuple[int, int]:
        return int(self.steps[-self.w]), int(self.steps[-1])

    def lr_advice(self, factor: float) -> str:
        _, recorded = self.h.series("lr")  # the last recorded lr: as a scheduler left it
        recorded = recorded[np.isfinite(recorded)]
        lr = float(recorded[-1]) if len(recorded) else self.meta.get("lr")
        if lr:
            return f"lr x {factor:g}: lr = {_fmt(float(lr))} -> {_fmt(float(lr) * factor)}"
        return f"lr x {factor:g}"


def _first_bad(h: History):
    bad = np.zeros(len(h), bool)
    for name in ("loss", "grad_norm", "update_norm", "param_norm"):
        bad |= h.present(name) & ~np.isfinite(h[name])
    bad |= h.present("nonfinite") & (np.nan_to_num(h["nonfinite"], nan=1.0) > 0)
    return int(np.argmax(bad)) if bad.any() else None


# ---------------------------------------------------------------------- 1. non-finite values


def _nonfinite(run: _Run) -> Diagnosis | None:
    if run.bad is None:
        return None
    h, k = run.h, run.bad
    step = int(h.steps[k])
    where = f"first non-finite value at step {step}"
    growth = _growth_before(run)
    if growth is not None:
        what, factor, s0, s1 = growth
        return Diagnosis(
            "DIVERGING", f"the learning rate is too high: the {what} grew {factor:.3g}x, then overflowed",
            "lr_too_high",
            evidence=[f"{what} grew {factor:.3g}x between steps {s0} and {s1}", where]
            + _ratio_evidence(run),
            advice=[run.lr_advice(0.1), "or clip gradients / warm the lr up"],
            steps=(s0, step), signals={"growth": factor, "first_nonfinite_step": step})
    meta = run.meta
    if eps_underflows(meta):
        dtype = meta.get("state_dtype") or meta.get("dtype")
        good = dtypes.default_eps(dtype, 1e-8)
        return Diagnosis(
            "NONFINITE", f"eps = {_fmt(float(meta['eps']))} rounds to 0 in {dtype}: where sqrt(v-hat) is 0 "
            "the step is 0/0", "eps_precision",
            evidence=[where, f"eps = {_fmt(float(meta['eps']))} stored in {dtype} is exactly 0 "
                      f"(the smallest normal {dtype} is {_fmt(dtypes.smallest_normal(dtype))})"],
            advice=[f"eps = {_fmt(good)} for {dtype} (adaopt's default there)",
                    "or keep the optimizer state in float32 (state_dtype='float32')"],
            steps=(step, step), signals={"first_nonfinite_step": step})
    grad_bad = h.present("grad_norm")[k] and not math.isfinite(h["grad_norm"][k])
    update_bad = h.present("update_norm")[k] and not math.isfinite(h["update_norm"][k])
    if grad_bad:
        cause = f"the gradient at step {step} is non-finite while the parameters were finite"
        code, advice = "nonfinite_gradient", [
            f"look at the batch and the loss at step {step} (a log(0), a division by zero, an overflow)",
            "skip such steps: adaopt.torch optimizers take on_nonfinite='skip'",
            "clip gradients (torch.nn.utils.clip_grad_norm_)"]
    elif update_bad:
        cause = f"the update at step {step} is non-finite although the gradient was finite"
        code, advice = "nonfinite_update", [
            "a zero denominator: raise eps (it must be representable in the state dtype)",
            "or keep the optimizer state in float32"]
    else:
        cause = f"the {run.quantity} became non-finite at step {step}"
        code, advice = "nonfinite_loss", [f"check the data and the loss computation at step {step}",
                                          "log grad_norm too, to tell a bad gradient from a bad update"]
    return Diagnosis("NONFINITE", cause, code, evidence=[where], advice=advice, steps=(step, step),
                     signals={"first_nonfinite_step": step})


def _growth_before(run: _Run):
    """(what, factor, step0, step1) when something grew 10x before the first non-finite row.

    The gradient or parameter norm counts only when no loss was logged or the loss did not
    fall: parameters that grow 10x from a start near 0 on the way to a minimum far from it,
    or a gradient that steepens while the loss falls, are no divergence.
    """
    h, k = run.h, run.bad
    loss_fell = False
    for name, what in (("loss", "loss"), ("grad_norm", "gradient norm"), ("param_norm", "parameter norm")):
        mask = h.present(name).copy()
        mask[k:] = False
        values = h[name][mask]
        values = values[np.isfinite(values)]
        if name == "loss":
            loss_fell = len(values) >= 2 and values[-1] < values[0]
        elif loss_fell:
            break
        if len(values) >= 2 and values[0] > 0 and values.max() > GROWTH_BEFORE_OVERFLOW * values[0]:
            steps = h.steps[mask]
            return what, float(values.max() / values[0]), int(steps[0]), int(steps[int(np.argmax(values))])
    return None


# ---------------------------------------------------------------------- 2. divergence


def _diverging(run: _Run) -> Diagnosis | None:
    if len(run.gap) < 2:
        return None
    gap, w = run.gap, run.w
    gap0, recent = gap[0], float(np.median(gap[-w:]))
    k = len(gap) // w
    best = float(np.median(gap[len(gap) - k * w:].reshape(k, w), axis=1).min()) if k >= 2 else recent
    lo, hi = run.recent_steps
    level = f"median {_fmt(recent + run.floor)} over steps {lo}-{hi}"
    if gap0 > 0 and recent > DIVERGE_FACTOR * gap0:
        factor, what = recent / gap0, f"rose {recent / gap0:.3g}x above its first value instead of falling"
        evidence = [f"{run.quantity} {_fmt(run.values[0])} at step {int(run.steps[0])}, {level}"]
    elif best > 0 and recent > RISE_FROM_BEST * best and recent - best > RISE_SIGNIFICANT * gap0:
        factor, what = recent / best, f"rose {recent / best:.3g}x above the best it had reached"
        evidence = [f"{run.quantity} reached {_fmt(best + run.floor)} (median of a {w}-step window), now {level}"]
    else:
        return None
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} {what}", "lr_too_high",
        evidence=evidence + _ratio_evidence(run),
        advice=[run.lr_advice(0.1), "or warm the lr up over the first steps"],
        steps=(int(run.steps[0]), hi), signals={"rise": factor})


def _ratio_evidence(run: _Run) -> list[str]:
    ratio = run.median("update_ratio")
    return [f"update/parameter ratio {_fmt(ratio)} (healthy runs sit near {HEALTHY_UPDATE_RATIO:g})"] \
        if ratio is not None else []


# ---------------------------------------------------------------------- 3-5. progress


def _progress(run: _Run) -> Diagnosis:
    n = len(run.gap)
    if n < 2:
        return Diagnosis("CONVERGING", f"too few steps to judge ({n} with a {run.quantity})", "too_short",
                         steps=(int(run.steps[0]), int(run.steps[-1])) if n else None)
    w, gap = run.w, run.gap
    recent = float(np.median(gap[-w:]))
    previous = float(np.median(gap[-2 * w:-w])) if n >= 2 * w else float(gap[0])
    gap0 = float(gap[0])
    improvement = (previous - recent) / previous if previous > 0 else 0.0
    noise = _noise(gap[-2 * w:], w)
    total = 1 - recent / gap0 if gap0 > 0 else 0.0
    lo, hi = run.recent_steps
    level = f"{run.quantity} {_fmt(recent + run.floor)} (median of steps {lo}-{hi})"
    signals = {"recent": recent + run.floor, "improvement": improvement, "total_improvement": total}

    done = _converged(run, recent, gap0, level)
    if done is not None:
        done.signals.update(signals)
        return done

    spike = _early_spike(run)
    cos_grad = run.median("cos_grad")
    consistent = cos_grad >= CONSISTENT_COS if cos_grad is not None else None
    cause = _state_cause(run, consistent)
    evidence = [f"{level}; {abs(improvement):.1%} {'lower' if improvement >= 0 else 'higher'} than the "
                f"window before; {abs(total):.1%} {'below' if total >= 0 else 'above'} the first value"]
    if cos_grad is not None:
        evidence.append(f"median cosine between successive gradients {cos_grad:.2f}")
    signals.update(cos_grad=cos_grad)

    collapse = _rate_collapse(gap, max(MIN_WINDOW, len(gap) // 10))
    if collapse is not None:
        signals["rate_collapse"] = collapse
    reversing, how = _reversing(run)
    if how:
        evidence.append(how)
    # bouncing at a noise floor set by the lr: judged only when the optimum's value is known
    bouncing = run.floor_known and consistent is False and total < BOUNCE_PROGRESS and n >= 2 * w
    if bouncing:
        return _oscillating(run, evidence, (lo, hi), signals, reversing, total)

    if spike is not None:
        factor, at = spike
        evidence.append(f"the {run.quantity} spiked {factor:.3g}x above its first value at step {at}")
        # Not recovered: the recent window is not even LITTLE_PROGRESS below the first value. Stuck
        # there (dead or saturated units), or moving about there (a chaotic run at too high an lr,
        # whose fall between two windows is no progress while the level has not come back down).
        if total < LITTLE_PROGRESS:
            stuck = improvement < PLATEAU or previous - recent <= noise
            how = "(dead or saturated units keep it stuck)" if stuck else \
                f"(its recent window is {abs(total):.1%} {'below' if total >= 0 else 'above'} the first value)"
            return Diagnosis(
                "DIVERGING", f"the learning rate is too high: the {run.quantity} blew up at step {at} and never "
                f"recovered {how}", "lr_too_high", evidence=evidence,
                advice=[run.lr_advice(0.1), "or warm the lr up over the first steps"], steps=(at, hi),
                signals={**signals, "spike": factor})

    if total < -RISE_SIGNIFICANT and improvement < PLATEAU:
        # above where it started and not coming down: too slow a climb for the blow-up test above
        return Diagnosis(
            "DIVERGING", f"the {run.quantity} is rising: {-total:.1%} above its first value and not coming "
            "down; a learning rate too high for this problem does that", "lr_too_high", evidence=evidence,
            advice=[run.lr_advice(0.1), "if it rises at every lr, check the loss and the gradient's sign "
                    "(maximize=)"], steps=(lo, hi), signals=signals)

    if improvement < PLATEAU or previous - recent <= noise:
        if improvement >= PLATEAU:
            evidence.append(f"the fall is within the noise (+-{_fmt(noise)} between windows)")
        if cause is not None:
            return _with(cause, "STALLED", evidence, (lo, hi), signals)
        if reversing:
            return _oscillating(run, evidence, (lo, hi), signals, reversing, total)
        if consistent is False or (consistent is None and total >= LITTLE_PROGRESS):
            return Diagnosis(
                "CONVERGED", "the loss stopped improving and the gradient has no direction left to follow "
                "(a minimum, or the noise floor of stochastic gradients)", "noise_floor",
                evidence=evidence, advice=["to go lower: decay the lr or use larger batches"],
                steps=(lo, hi), signals=signals)
        if total < LITTLE_PROGRESS:
            return _with(_lr_too_low(run, total), "STALLED", evidence, (lo, hi), signals)
        if run.meta.get("weight_decay"):
            return Diagnosis(
                "CONVERGED", "the loss stopped where the gradient balances the weight decay", "weight_decay",
                evidence=evidence, advice=[f"weight_decay = {_fmt(run.meta['weight_decay'])} sets this point; "
                                           "lower it to get closer to the unregularised optimum"],
                steps=(lo, hi), signals=signals)
        return _with(_crawl(run), "SLOW", evidence, (lo, hi), signals)

    if cause is not None and collapse is not None and collapse >= RATE_COLLAPSE and improvement < STALL_IMPROVEMENT:
        evidence.append(f"the {run.quantity} now falls {collapse:.3g}x slower than at its fastest")
        return _with(cause, "STALLED", evidence, (lo, hi), signals)

    slow = _too_slow(run, recent, previous, consistent)
    if slow is not None:
        evidence.append(slow)
        if reversing:
            return _oscillating(run, evidence, (lo, hi), signals, reversing, total)
        if cause is None and consistent is not False:
            cause = _lr_too_low(run, total) if total < LITTLE_PROGRESS else _crawl(run)
        if cause is not None:
            return _with(cause, "SLOW", evidence, (lo, hi), signals)
        return Diagnosis("SLOW", f"the {run.quantity} falls too slowly", "slow_progress", evidence=evidence,
                         advice=[run.lr_advice(3), "or run adaopt lr-find"], steps=(lo, hi), signals=signals)
    notes = [f"note: {cause.cause}"] if cause is not None else []
    return Diagnosis("CONVERGING", f"the {run.quantity} is still falling at a healthy rate", "progress",
                     evidence=evidence + notes, steps=(lo, hi), signals=signals)


def _oscillating(run: _Run, evidence, steps, signals, reversing: bool, total: float) -> Diagnosis:
    if reversing:
        cause = ("the steps bounce across a valley instead of settling: the lr is too high for its "
                 "curvature, and at a constant lr the iterate keeps bouncing")
    else:
        cause = (f"the {run.quantity} bounces at a floor only {total:.0%} of the way from its start to the "
                 "optimum while the gradients are mostly noise: at this lr the steps are too large to settle")
    return Diagnosis("OSCILLATING", cause, "oscillation", evidence=evidence,
                     advice=[run.lr_advice(0.3), "or decay the lr (cosine, or 1/sqrt(t))"],
                     steps=steps, signals=signals)


def _early_spike(run: _Run):
    """(factor, step) when the loss, before the recent window, rose 10x above its first value."""
    before = run.gap[: max(len(run.gap) - run.w, 0)]
    if len(before) < 2 or not run.gap[0] > 0:
        return None
    i = int(np.argmax(before))
    factor = float(before[i] / run.gap[0])
    return (factor, int(run.steps[i])) if factor >= GROWTH_BEFORE_OVERFLOW else None


def _converged(run: _Run, recent: float, gap0: float, level: str) -> Diagnosis | None:
    lo, hi = run.recent_steps
    if run.target is not None and recent + run.floor <= run.target:
        return Diagnosis("CONVERGED", f"reached the target {run.quantity} {_fmt(run.target)}", "reached_target",
                         evidence=[level], steps=(lo, hi))
    if gap0 > 0 and recent <= CONVERGED_GAP * gap0:
        return Diagnosis("CONVERGED", f"the {run.quantity} is at the optimum: its gap shrank "
                         f"{gap0 / max(recent, 1e-300):.3g}x", "optimum", evidence=[level], steps=(lo, hi))
    g0, g = run.first("grad_norm"), run.median("grad_norm")
    if g0 and g is not None and g <= GRAD_VANISHED * g0:
        return Diagnosis("CONVERGED", f"the gradient vanished: {_fmt(g)} against {_fmt(g0)} at the start",
                         "gradient_vanished", evidence=[level], steps=(lo, hi))
    return None


def _noise(values: np.ndarray, w: int) -> float:
    """How far apart two windows' medians can land by noise alone (about two standard errors).

    The noise level comes from differences ``w/4`` steps apart (a robust MAD), which a
    smooth trend barely moves: a deterministic run has none, and a noisy one, even one
    whose loss wanders slowly (momentum), is not mistaken for progress.
    """
    lag = max(1, w // 4)
    d = values[lag:] - values[:-lag]
    if len(d) < 4:
        return 0.0
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)
    return 2 * 1.2533 * sigma * math.sqrt(2 / w)


def _rate_collapse(gap: np.ndarray, w: int):
    """How many times slower the loss falls in the last block than in the fastest one.

    Rates are log-ratios of the medians of consecutive blocks of ``w`` steps; None
    when there are fewer than three windows or the fastest window did not fall.
    """
    k = len(gap) // w
    if k < 3:
        return None
    blocks = gap[len(gap) - k * w:].reshape(k, w)
    med = np.median(blocks, axis=1)
    if not (med > 0).all():
        return None
    rates = np.log(med[:-1] / med[1:])
    peak, last = rates.max(), rates[-1]
    if peak <= 0:
        return None
    return float(peak / last) if last > 0 else math.inf


def _reversing(run: _Run) -> tuple[bool, str]:
    cos_update = run.median("cos_update")
    if cos_update is not None:
        return cos_update <= REVERSING_COS, f"median cosine between successive updates {cos_update:.2f}"
    diffs = np.diff(run.values[-run.w:])
    diffs = diffs[diffs != 0]
    if len(diffs) < 4:
        return False, ""
    flips = float(np.mean(np.sign(diffs[1:]) != np.sign(diffs[:-1])))
    return flips >= ALTERNATING, f"the {run.quantity} changes direction on {flips:.0%} of steps"


def _too_slow(run: _Run, recent: float, previous: float, consistent) -> str | None:
    """Evidence that the present rate will not do, or None."""
    if not (previous > recent > 0):
        return None
    rate = math.log(previous / recent) / run.w  # per step, on a log scale
    target_gap = None if run.target is None else run.target - run.floor
    if target_gap is not None and run.budget is not None and target_gap > 0:
        needed = math.log(recent / target_gap) / rate
        left = run.budget - run.n_steps
        if needed > left:
            return (f"at the present rate the target {_fmt(run.target)} takes about {needed:.3g} more steps; "
                    f"the budget leaves {max(left, 0)}")
        return None
    half_life = math.log(2) / rate
    if half_life > run.n_steps and consistent:
        return f"at the present rate halving the {run.quantity} takes about {half_life:.3g} steps, " \
               f"longer than the run so far ({run.n_steps})"
    if half_life > run.n_steps and consistent is None and (1 - recent / run.gap[0]) < LITTLE_PROGRESS:
        return f"at the present rate halving the {run.quantity} takes about {half_life:.3g} steps"
    return None


# ---------------------------------------------------------------------- causes found in the optimizer's state


@dataclass
class _Cause:
    cause: str
    code: str
    evidence: list[str]
    advice: list[str]
    signals: dict


def _with(cause: _Cause, verdict: str, evidence: list[str], steps, signals) -> Diagnosis:
    return Diagnosis(verdict, cause.cause, cause.code, evidence=evidence + cause.evidence, advice=cause.advice,
                     steps=steps, signals={**signals, **cause.signals})


def _state_cause(run: _Run, consistent) -> _Cause | None:
    """An optimizer-made reason for slow progress, read from the state summaries."""
    if consistent is False:  # the gradient has no steady direction: small steps are not the problem
        return None
    meta, family = run.meta, run.meta.get("optimizer")
    if family == "adagrad":
        _, eff = run.h.series("eff_lr_p50")
        eff = eff[np.isfinite(eff) & (eff > 0)]
        if len(eff) >= 2 and eff[0] / eff[-1] >= ADAGRAD_DROP:
            drop = eff[0] / eff[-1]
            g0, g = run.first("grad_norm"), run.median("grad_norm")
            grad = [f"the gradient is still {g / g0:.0%} of its first size"] if g0 and g is not None else []
            return _Cause(
                f"AdaGrad's accumulator is dominated by early gradients: its effective lr fell {drop:.3g}x",
                "adagrad_accumulator",
                [f"median effective lr {_fmt(eff[0])} at the start, {_fmt(eff[-1])} now"] + grad,
                ["AdaGrad -> RMSprop (alpha=0.99) or Adam: their averages forget old gradients",
                 run.lr_advice(round(drop, -1) if drop >= 10 else round(drop)) + " to undo the fall (for now)"],
                {"eff_lr_drop": drop})
    if family in ("adam", "adamw", "rmsprop"):
        ratio = run.median("g2_vhat")
        if ratio is not None and 0 < ratio <= BETA2_STALE:
            larger = 1 / math.sqrt(ratio)
            name, beta = ("alpha", meta.get("alpha")) if family == "rmsprop" else \
                ("beta2", (meta.get("betas") or [None, None])[1])
            memory = f" (it averages about {1 / (1 - beta):.0f} steps)" if beta is not None and beta < 1 else ""
            value = f"{name} = {_fmt(beta)}" if beta is not None else name
            better = 0.999 if beta is not None and beta > 0.999 else 0.99
            return _Cause(
                f"{value} remembers gradients {larger:.3g}x larger than today's{memory}: the step is about "
                f"{1 / larger:.2g} of lr", "beta2_memory",
                [f"median g^2 / v-hat {_fmt(ratio)} over the recent window"],
                [f"{name} = {better:g}", f"or raise lr about {larger:.3g}x until v-hat catches up"],
                {"g2_vhat": ratio})
        frac = run.median("eps_frac")
        eps = meta.get("eps")
        if frac is not None and frac >= EPS_DOMINANT and eps:
            dtype = meta.get("state_dtype") or meta.get("dtype") or "float32"
            floor = dtypes.default_eps(dtype, 1e-8)
            smaller = max(float(eps) * 0.01, floor)
            return _Cause(
                f"eps = {_fmt(float(eps))} outweighs sqrt(v-hat) on {frac:.0%} of coordinates: there the step is "
                f"lr*g/eps, a plain SGD step", "eps_dominates",
                [f"{frac:.0%} of sampled coordinates have sqrt(v-hat) below eps"],
                [f"eps = {_fmt(smaller)}" + (f" (the smallest safe value in {dtype})" if smaller == floor else ""),
                 "or keep the optimizer state in float32 to allow a smaller eps"],
                {"eps_frac": frac})
    return None


def _crawl(run: _Run) -> _Cause:
    """Fast early progress, then a crawl along a direction the gradient keeps pointing to."""
    if run.meta.get("optimizer") == "sgd":
        return _Cause("ill-conditioning: the loss fell fast along steep directions and crawls along flat ones, "
                      "because one lr must suit the steepest curvature", "ill_conditioned", [],
                      ["momentum = 0.9 (or Nesterov)", "or a per-coordinate method: RMSprop or Adam"], {})
    why = "although the gradient still points one way" if run.median("cos_grad") is not None else \
        "(the log has no gradient columns to say why)"
    return _Cause(f"progress slowed to a crawl {why}", "crawl", [],
                  [run.lr_advice(3), "or a schedule with warm restarts"], {})


def _lr_too_low(run: _Run, total: float) -> _Cause:
    ratio = run.median("update_ratio")
    cos_grad = run.median("cos_grad")
    evidence = [f"the {run.quantity} fell only {total:.1%} in {run.n_steps} steps"]
    factor = 10.0
    if ratio is not None and ratio > 0:
        evidence.append(f"update/parameter ratio {_fmt(ratio)} (healthy runs sit near {HEALTHY_UPDATE_RATIO:g})")
        factor = float(min(1000.0, max(10.0, 10 ** round(math.log10(HEALTHY_UPDATE_RATIO / ratio)))))
    why = "the gradient keeps its direction but the steps are too small to follow it" \
        if cos_grad is not None else "the steps are too small"
    return _Cause(f"lr too low: {why}", "lr_too_low", evidence,
                  [run.lr_advice(factor), "or find it: adaopt lr-find"], {"suggested_lr_factor": factor})


# ---------------------------------------------------------------------- formatting


def _fmt(x) -> str:
    if x is None:
        return "?"
    x = float(x)
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
