"""The progress checks, after the alarms: is the run done, stuck, bouncing, slow, or still falling?

Each check asks one question of a :class:`Run` (through its :class:`Trend`) and answers a
Diagnosis, or None to pass the run on; :data:`adaopt.diagnostics.verdict.CHECKS` orders them.
Several checks share a condition: ``t.stopped`` (the loss stopped falling between the last two
windows) and ``t.slow`` (it falls, too slowly) each open a run of checks that ends in a verdict.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from .verdict_causes import crawl, lr_too_low, oscillation, state_cause
from .verdict_noise import MEDIAN_SE, above_first, falling, rise_from_best, sigma
from .verdict_record import LR_FIND, Diagnosis, fmt, with_cause
from .verdict_signals import Run, early_spike, lr_at, lr_jump_before, noise, rate_collapse, reversing, too_slow
from .verdict_thresholds import (BOUNCE_PROGRESS, CONSISTENT_COS, CONVERGED_GAP, GRAD_VANISHED, GROWTH_BEFORE_OVERFLOW,
                                 HEALTHY_UPDATE_RATIO, LITTLE_PROGRESS, MIN_JUDGED, MIN_WINDOW, NOT_SLOWING, PLATEAU, RATE_COLLAPSE,
                                 RISE_FROM_BEST, RISE_MIN_SHARE, RISE_SIGNIFICANT, RISE_Z, STALL_IMPROVEMENT, ANNEALED,
                                 DECAY_BALANCE, TINY_UPDATE_RATIO)


class Trend:
    """The loss over the last two windows, and what the progress checks read beside it.

    The levels are computed at once; the rest when a check first asks for it, so a run is read
    no further than the checks up to its verdict need. ``evidence`` and ``signals`` are what
    every verdict from here on reports.
    """

    @classmethod
    def of(cls, run: Run) -> Trend:
        """The run's Trend, computed once."""
        if "trend" not in run.memo:
            run.memo["trend"] = cls(run)
        return run.memo["trend"]

    def __init__(self, run: Run):
        self.run = run
        gap, w, n = run.gap, run.w, len(run.gap)
        self.recent = float(np.median(gap[-w:]))
        self.previous = float(np.median(gap[-2 * w:-w])) if n >= 2 * w else float(gap[0])
        self.gap0 = float(gap[0])
        self.improvement = (self.previous - self.recent) / self.previous if self.previous > 0 else 0.0
        self.noise = noise(gap[-2 * w:], w)
        self.total = 1 - self.recent / self.gap0 if self.gap0 > 0 else 0.0  # the share of the first gap removed
        self.steps = run.recent_steps
        self.level = f"{run.quantity} {fmt(self.recent + run.floor)} (median of steps {self.steps[0]}-{self.steps[1]})"
        self.level_signals = {"recent": self.recent + run.floor, "improvement": self.improvement,
                              "total_improvement": self.total}

    @property
    def stopped(self) -> bool:
        """The loss fell less than 1% between the last two windows, or by no more than the noise, or
        it fell only back to where it had been (:attr:`back_where_it_was`)."""
        return ((self.improvement < PLATEAU or self.previous - self.recent <= self.noise or self.back_where_it_was)
                and not self.still_descending)

    @cached_property
    def back_where_it_was(self) -> bool:
        """Whether the last window, though below the one before, is no lower (by the noise between
        windows) than the best of the windows before those two: a fall that only undid a rise, the
        loss wandering on a plateau. A GRU LM at an lr too high sat at 1.72 from step 60, rose to
        1.83 and came back to 1.745 by step 300: read as a fall, it was told "early in its descent:
        try lr x 3"."""
        gap, w = self.run.gap, self.run.w
        n = len(gap)
        if n < 3 * w or w < MIN_WINDOW:
            return False
        best = min(float(np.median(gap[a:a + w])) for a in range(n - 3 * w, -1, -w))
        return self.recent >= best - self.noise

    @cached_property
    def still_descending(self) -> bool:
        """Whether the last three windows step down and the last sits significantly (``RISE_Z``
        standard errors of the two medians, from their own noise, and 2%) below the first of them: a
        slow descent whose window-to-window fall hides in the noise, over two windows does not."""
        gap, w = self.run.gap, self.run.w
        if len(gap) < 3 * w or w < MIN_WINDOW:
            return False
        a, b, c = gap[-3 * w:-2 * w], gap[-2 * w:-w], gap[-w:]
        ma, mb, mc = (float(np.median(x)) for x in (a, b, c))
        se = MEDIAN_SE * math.hypot(sigma(a), sigma(c)) / math.sqrt(w)
        return ma > mb > mc and ma - mc > max(RISE_Z * se, 2 * PLATEAU * ma)  # and by 2% at least

    @cached_property
    def cos_grad(self):
        return self.run.median("cos_grad")

    @cached_property
    def consistent(self):
        """Whether the gradient keeps its direction (None: no cosines logged)."""
        return self.cos_grad >= CONSISTENT_COS if self.cos_grad is not None else None

    @cached_property
    def cause(self):
        """The optimizer cause its state shows, or None."""
        return state_cause(self.run, self.consistent)

    @cached_property
    def collapse(self):
        return rate_collapse(self.run.gap, max(MIN_WINDOW, len(self.run.gap) // 10))

    @cached_property
    def reversal(self) -> tuple[bool, str]:
        """(whether successive steps reverse, the sentence that says how it shows)."""
        return reversing(self.run)

    @property
    def reversing(self) -> bool:
        return self.reversal[0]

    @cached_property
    def spike(self):
        return early_spike(self.run)

    @cached_property
    def slow(self) -> str | None:
        """The evidence that the present rate will not do, or None."""
        return too_slow(self.run, self.recent, self.previous, self.consistent)

    @cached_property
    def seen(self) -> list[str]:
        """The level, the window-to-window change, and what the gradient and update cosines show."""
        t, run = self, self.run
        if run.floor < 0 and not run.floor_known:  # shares of a gap above the lowest value say nothing: differences
            d, d0 = t.previous - t.recent, t.gap0 - t.recent
            seen = [f"{t.level}; {fmt(abs(d))} {'lower' if d >= 0 else 'higher'} than the window before; "
                    f"{fmt(abs(d0))} {'below' if d0 >= 0 else 'above'} the first value ({fmt(t.gap0 + run.floor)})"]
        else:
            seen = [f"{t.level}; {abs(t.improvement):.1%} {'lower' if t.improvement >= 0 else 'higher'} than the "
                    f"window before; {abs(t.total):.1%} {'below' if t.total >= 0 else 'above'} the first value"]
        if t.cos_grad is not None:
            seen.append(f"median cosine between successive gradients {t.cos_grad:.2f}")
        if t.reversal[1]:
            seen.append(t.reversal[1])
        return seen

    @cached_property
    def evidence(self) -> list[str]:
        """:attr:`seen`, and the early spike if there was one."""
        if self.spike is None:
            return self.seen
        factor, at = self.spike
        return self.seen + [f"the {self.run.quantity} spiked {factor:.3g}x above its first value at step {at}"]

    @property
    def stopped_evidence(self) -> list[str]:
        """:attr:`evidence`, and why a fall above 1% still counts as stopped: within the noise, or
        only back to where the loss had been (:attr:`back_where_it_was`); and, for a rise above 1%,
        that it is not significant (a CONVERGED verdict beside "142.7% higher than the window
        before", unexplained, read as a contradiction to a trial's user)."""
        if self.improvement <= -PLATEAU:
            rise = self.recent - self.previous
            if rise <= self.noise:
                return self.evidence + [f"the rise is within the noise (+-{fmt(self.noise)} between windows)"]
            w = max(MIN_WINDOW, self.run.w // 2)
            if rise_from_best(self.run.gap, w) is None:
                return self.evidence + [f"the rise is not significant: the last {w} steps are not {RISE_Z:g} standard "
                                        "errors (noise estimated from the run) and "
                                        f"{RISE_MIN_SHARE:.0%} above the best {w} before"]
            if falling(self.run.gap[-self.run.w:]):
                return self.evidence + [f"the rise is coming back down: the last {self.run.w} steps fall significantly"]
            return self.evidence  # a significant rise, told by a check before the rise tests: nothing to excuse
        if self.improvement < PLATEAU:
            return self.evidence
        if self.previous - self.recent <= self.noise:
            return self.evidence + [f"the fall is within the noise (+-{fmt(self.noise)} between windows)"]
        return self.evidence + ["the fall only took it back to where it had been: no lower than the best window "
                                "before (within the noise between windows)"]

    @cached_property
    def signals(self) -> dict:
        signals = {**self.level_signals, "cos_grad": self.cos_grad}
        if self.collapse is not None:
            signals["rate_collapse"] = self.collapse
        return signals


# ---------------------------------------------------------------------- done (or too short to tell)


def too_short(run: Run) -> Diagnosis | None:
    """Fewer than ``MIN_JUDGED`` (6) finite values: TOO_SHORT. The verdicts compare the medians
    of two windows, and a window of 3 is the shortest whose median ignores a single spike; 2 or 3
    rows would get a confident verdict from nothing (the alarms, before, still fire on a
    non-finite value or a loss 1.5x its first)."""
    n = len(run.gap)
    if n >= MIN_JUDGED:
        return None
    return Diagnosis(
        "TOO_SHORT", f"too short to judge: {n} logged value{'s' if n != 1 else ''} of the {run.quantity}; the "
        f"verdicts compare two windows of at least 3, so they need {MIN_JUDGED}", "too_short",
        evidence=[f"{n} finite {run.quantity} value{'s' if n != 1 else ''}" +
                  (f" (steps {int(run.steps[0])}-{int(run.steps[-1])})" if n else "")],
        advice=[f"log the {run.quantity} at every step (or more often), or diagnose again after "
                f"{MIN_JUDGED - n} more logged values"],
        steps=(int(run.steps[0]), int(run.steps[-1])) if n else None, signals={"logged": n})


def _converged(t: Trend, cause: str, code: str) -> Diagnosis:
    return Diagnosis("CONVERGED", cause, code, evidence=[t.level], steps=t.steps, signals={**t.level_signals})


def reached_target(run: Run) -> Diagnosis | None:
    t = Trend.of(run)
    if run.target is not None and t.recent + run.floor <= run.target:
        return _converged(t, f"reached the target {run.quantity} {fmt(run.target)}", "reached_target")
    return None


def at_optimum(run: Run) -> Diagnosis | None:
    """The gap to the floor shrank 1e6-fold, from the first value and from the median of the first
    three (the lower of them): from the first alone, a first row that holds a blow-up counted (a
    per-epoch log whose first epoch's mean was 8e10, the rest 1.2e5 to 7.2e4, worse than
    predicting the mean, was "at the optimum: its gap shrank 1.12e+06x"); from the median alone,
    a blow-up at step 2 or 3 would."""
    t = Trend.of(run)
    if not run.floor_known and run.floor != 0:  # the floor is the lowest loss seen: the gap to it says nothing
        return None
    start = min(float(run.gap[0]), float(np.median(run.gap[:3])))
    if start > 0 and t.recent <= CONVERGED_GAP * start:
        return _converged(t, f"the {run.quantity} is at the optimum: its gap shrank "
                          f"{start / max(t.recent, 1e-300):.3g}x", "optimum")
    return None


def gradient_vanished(run: Run) -> Diagnosis | None:
    """The recent gradient norm is 1e-6 of the first."""
    t = Trend.of(run)
    g0, g = run.first("grad_norm"), run.median("grad_norm")
    if g0 and g is not None and g <= GRAD_VANISHED * g0:
        return _converged(t, f"the gradient vanished: {fmt(g)} against {fmt(g0)} at the start", "gradient_vanished")
    return None


# ---------------------------------------------------------------------- blown up, or rising


def bouncing(run: Run) -> Diagnosis | None:
    """With a known optimum: noisy gradients, and less than halfway there over two windows:
    OSCILLATING. Not with steps under a tenth of a healthy size (update/parameter ratio < 1e-4),
    which are not too large to settle: a trial's label-smoothing MLPs at Adam lr 1e-5 and 1e-6,
    given ``floor=``, were told "lr x 0.3" with ratios of 7.6e-5 and 1e-6 (without the floor, lr
    too low or still falling)."""
    t = Trend.of(run)
    ratio = run.median("update_ratio")
    if ratio is not None and ratio < HEALTHY_UPDATE_RATIO / 10:
        return None
    if run.floor_known and t.consistent is False and t.total < BOUNCE_PROGRESS and len(run.gap) >= 2 * run.w:
        return with_cause(oscillation(run, t.reversing, t.total), "OSCILLATING", t.seen, t.steps, t.signals)
    return None


def spike_not_recovered(run: Run) -> Diagnosis | None:
    """A 10x spike before the recent window, which is not even 10% below the first value: DIVERGING.
    (A first row 1000x the next ones is no such spike: a per-epoch mean that holds a blow-up, or
    a descent from a huge loss on unscaled targets done inside the first epoch, which the loss
    alone cannot tell apart; it only keeps higher-lr advice away, :meth:`.Run.blew_up`.)"""
    t = Trend.of(run)
    if t.spike is None or t.total >= LITTLE_PROGRESS:
        return None
    factor, at = t.spike
    # Stuck there (dead or saturated units), or moving about there (a chaotic run at too high an lr,
    # whose fall between two windows is no progress while the level has not come back down).
    how = "(dead or saturated units keep it stuck)" if t.stopped else \
        f"(its recent window is {abs(t.total):.1%} {'below' if t.total >= 0 else 'above'} the first value)"
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} blew up at step {at} and never "
        f"recovered {how}", "lr_too_high", evidence=t.evidence,
        advice=run.down_advice(), steps=(at, t.steps[1]),
        signals={**t.signals, "spike": factor})


def blew_up_late(run: Run) -> Diagnosis | None:
    """A 10x spike inside the recent window (the first of the run), after which the loss sits 3x
    above its best window before the spike (by 5% of the first value): DIVERGING. The windows' medians hide it (a
    recent window of 80 steps ends with 10 at 1e19 and 10 at chance), and so does its spread,
    which the blow-up inflates; the level it came back to does not."""
    gap, w = run.gap, run.w
    if len(gap) < 2 * w or not gap[0] > 0 or Trend.of(run).spike is not None:
        return None  # (a run that spiked 10x before as well bounces: its spikes are its regime)
    high = np.flatnonzero(gap[-w:] >= GROWTH_BEFORE_OVERFLOW * gap[0])
    if not len(high):
        return None
    first, last = len(gap) - w + int(high[0]), len(gap) - w + int(high[-1])
    after = gap[last + 1:]
    b = max(MIN_WINDOW, w // 2)
    k = first // b
    if len(after) < MIN_WINDOW or k < 2:
        return None
    best = float(np.median(gap[first - k * b:first].reshape(k, b), axis=1).min())
    level = float(np.median(after))
    if not (level > RISE_FROM_BEST * best and level - best > RISE_SIGNIFICANT * gap[0]):
        return None
    t, at = Trend.of(run), int(run.steps[first])
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} blew up at step {at} "
        f"({float(gap[first:last + 1].max() / gap[0]):.3g}x its first value) and came back only to "
        f"{level / best if best > 0 else math.inf:.3g}x the best it had reached", "lr_too_high",
        evidence=t.evidence + [f"best {b}-step window before step {at}: median {fmt(best + run.floor)}; the "
                               f"{len(after)} steps after the blow-up: median {fmt(level + run.floor)}"],
        advice=[run.lr_advice(0.1), "or clip gradients; roll back to a checkpoint from before step " f"{at}"],
        steps=(at, t.steps[1]), signals={**t.signals, "best": best + run.floor, "after": level + run.floor})


def rising(run: Run) -> Diagnosis | None:
    """5% above the first value, by more than the noise (:func:`.verdict_noise.above_first`), and
    not coming down (too slow a climb for the checks above): DIVERGING."""
    t = Trend.of(run)
    if not (t.total < -RISE_SIGNIFICANT and t.improvement < PLATEAU):
        return None
    if not above_first(run.gap, run.w) or (-t.total < RISE_FROM_BEST - 1 and run.tiny_steps()):
        return None
    return Diagnosis(
        "DIVERGING", f"the {run.quantity} is rising: {-t.total:.1%} above its first value and not coming "
        "down; a learning rate too high for this problem does that", "lr_too_high", evidence=t.evidence,
        advice=[run.lr_advice(0.1), "if it rises at every lr, check the loss and the gradient's sign "
                "(maximize=)"], steps=t.steps, signals=t.signals)


# ---------------------------------------------------------------------- stopped: why


def stopped_by_the_optimizer(run: Run) -> Diagnosis | None:
    """Stopped, and the optimizer's state shows why: STALLED with that cause."""
    t = Trend.of(run)
    if t.stopped and t.cause is not None:
        return with_cause(t.cause, "STALLED", t.stopped_evidence, t.steps, t.signals)
    return None


def stopped_reversing(run: Run) -> Diagnosis | None:
    """Stopped, while successive steps reverse: OSCILLATING."""
    t = Trend.of(run)
    if t.stopped and t.reversing:
        return with_cause(oscillation(run, True, t.total), "OSCILLATING", t.stopped_evidence, t.steps, t.signals)
    return None


def _stopped_above_the_start(run: Run, t: Trend) -> Diagnosis:
    """Stopped above its first value (by RISE_SIGNIFICANT): DIVERGING, lr too high. Adam at lr 1
    on a logistic regression sat 36% above its first loss and was told CONVERGED at the noise
    floor with gradient columns, STALLED "lr too low, lr x 10" without."""
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} rose {run.above_first():.1%} above its "
        "first value and stopped there", "lr_too_high", evidence=t.stopped_evidence,
        advice=run.down_advice(), steps=t.steps, signals=t.signals)


def stopped_without_direction(run: Run) -> Diagnosis | None:
    """Stopped, and the gradient has no steady direction (or, unlogged, 10% is gone): CONVERGED."""
    t = Trend.of(run)
    if t.stopped and t.consistent is False and run.above_first() is not None:
        return _stopped_above_the_start(run, t)  # a noise floor is below where the run began
    if t.stopped and (t.consistent is False or (t.consistent is None and t.total >= LITTLE_PROGRESS)):
        why = "the gradient has no direction left to follow (a minimum, or the noise floor of stochastic " \
            "gradients)" if t.consistent is False else "it came down from its start (the log has no gradient " \
            "columns to tell a minimum from a noise floor)"
        # a floor this close to the start is a fine-tune's, or an lr far too low (a CNN at lr 3e-5 sat at
        # 1.36, chance 1.39, while lr 3e-3 reached 0.006): the gradient's noise cannot tell them apart
        barely = ([f"it removed only {max(t.total, 0):.1%} of its first loss: if the model should learn more than "
                   f"this (from scratch, not a fine-tune), the lr may be far too low: a range test ({LR_FIND})"]
                  if t.total < LITTLE_PROGRESS else [])
        return Diagnosis(
            "CONVERGED", f"the loss stopped improving: {why}", "noise_floor",
            evidence=t.stopped_evidence, advice=spike_advice(run, t) + barely + [
                f"to go lower: larger batches, or more steps at the low lr ({run.decayed_words()})"
                if run.lr_decayed() else "to go lower: decay the lr or use larger batches"],
            steps=t.steps, signals=t.signals)
    return None


def settled_as_the_lr_decayed(run: Run) -> Diagnosis | None:
    """Within 10% of its start at the end of an lr decay (the last recorded lr at most
    :data:`ANNEALED` of its peak): CONVERGED, the schedule settling the run, not an lr too low. (A
    run resumed from a checkpoint and watched from there, its loss flat while OneCycle took the lr
    from 2.7e-3 to 1.2e-8, had been STALLED with "lr x 100".) Not when the steps were tiny while
    the lr was still near its peak (an update/parameter ratio below TINY_UPDATE_RATIO there):
    then the peak itself was too low."""
    d = run.lr_decayed()
    if d is None or d[2] > ANNEALED * d[0]:
        return None
    t = Trend.of(run)
    if not abs(t.total) < LITTLE_PROGRESS or t.spike is not None:  # (further down: noise_floor and the rest)
        return None
    lr_steps, lr = run.h.series("lr")
    near_peak = lr_steps[np.isfinite(lr) & (lr >= 0.5 * d[0])]
    r_steps, ratio = run.h.series("update_ratio")
    at_peak = ratio[np.isin(r_steps, near_peak) & np.isfinite(ratio)]
    if len(at_peak) and float(np.median(at_peak)) < TINY_UPDATE_RATIO:
        return None
    return Diagnosis(
        "CONVERGED", f"the {run.quantity} settled as a schedule decayed the lr {fmt(d[0] / d[2])}-fold: small steps "
        "at the end of a decay are the schedule's, not an lr too low",
        "lr_annealed", evidence=t.stopped_evidence if t.stopped else t.evidence,
        advice=["to go lower: more steps before the decay, or larger batches"],
        steps=t.steps, signals={**t.signals, "lr_peak": d[0], "lr_last": d[2]})


def stopped_near_the_start(run: Run) -> Diagnosis | None:
    """Stopped less than 10% below the first value, the gradient still pointing one way: STALLED, lr too low."""
    t = Trend.of(run)
    if t.stopped and t.total < LITTLE_PROGRESS and t.spike is None:  # after a blow-up, a higher lr is no fix
        if run.above_first() is not None:  # steps too small do not take a loss up
            return _stopped_above_the_start(run, t)
        if t.total < -RISE_SIGNIFICANT:  # above its first value, but within one value's noise of it
            return Diagnosis(
                "STALLED", f"no progress: the {run.quantity} sits {-t.total:.1%} above its first value, which "
                "one draw's noise could explain: too high an lr that keeps it up, or too low a one after a "
                "first batch that came out low", "no_progress", evidence=t.stopped_evidence,
                advice=[f"a range test tells them apart: {LR_FIND}", "or a few hundred steps at lr x 0.1 and at "
                        "lr x 10 each"], steps=t.steps, signals=t.signals)
        return with_cause(lr_too_low(run, t.total), "STALLED", t.stopped_evidence, t.steps, t.signals)
    return None


def decay_can_hold(run: Run) -> bool:
    """Whether the weight decay is strong enough to hold the run where it stopped: over the recent
    window its pull, ``lr * weight_decay * ||p||`` a step for a decoupled decay (AdamW) and
    ``weight_decay * ||p||`` against the gradient for an L2 one, is within :data:`DECAY_BALANCE` of
    what it must cancel (the update; the gradient). True when the log lacks the columns to tell.
    A Lightning run under OneCycle, stopped as the lr ran out, moved 10-100x its decay's pull a step
    and had been told "weight_decay = 0.01 sets this point"."""
    wd = float(run.meta.get("weight_decay") or 0.0)
    param = run.median("param_norm")
    decoupled = bool(run.meta.get("decoupled_weight_decay")) or run.meta.get("optimizer") == "adamw"
    if not wd or not param:
        return True
    if not decoupled:
        grad = run.median("grad_norm")
        return grad is None or grad <= DECAY_BALANCE * wd * param
    steps, update = run.h.series("update_norm")
    lr_steps, lr = run.h.series("lr")
    keep, lr_keep = np.isfinite(update) & (steps >= run.steps[-run.w]), np.isfinite(lr) & (lr > 0)
    if not keep.any() or not lr_keep.any():
        return True
    pull = np.interp(steps[keep], lr_steps[lr_keep], lr[lr_keep]) * wd * param  # the lr of each step
    return float(np.median(update[keep] / pull)) <= DECAY_BALANCE


def stopped_at_weight_decay(run: Run) -> Diagnosis | None:
    """Stopped, with weight decay on, strong enough to hold it there (:func:`decay_can_hold`):
    CONVERGED where the gradient balances it."""
    t = Trend.of(run)
    if not (t.stopped and run.meta.get("weight_decay") and decay_can_hold(run)):
        return None
    return Diagnosis(
        "CONVERGED", "the loss stopped where the gradient balances the weight decay", "weight_decay",
        evidence=t.stopped_evidence, advice=[f"weight_decay = {fmt(run.meta['weight_decay'])} sets this point; "
                                             "lower it to get closer to the unregularised optimum"],
        steps=t.steps, signals=t.signals)


def stopped_as_the_lr_ran_out(run: Run) -> Diagnosis | None:
    """Stopped at the end of an lr decay (the last recorded lr at most :data:`ANNEALED` of its
    peak), the gradient still pointing one way: CONVERGED, the schedule ended the descent before the
    loss ran out of it (:func:`settled_as_the_lr_decayed` is the case of a run that barely moved)."""
    d = run.lr_decayed()
    t = Trend.of(run)
    if not t.stopped or d is None or d[2] > ANNEALED * d[0]:
        return None
    still = ", the gradient still pointing one way" if t.consistent else ""
    return Diagnosis(
        "CONVERGED", f"the {run.quantity} stopped as a schedule decayed the lr {fmt(d[0] / d[2])}-fold{still}: the "
        "schedule ended the descent", "lr_annealed", evidence=t.stopped_evidence,
        advice=["to go lower: more steps before the decay (or a later one); the loss was still falling as the "
                "lr ran out"], steps=t.steps, signals={**t.signals, "lr_peak": d[0], "lr_last": d[2]})


def stopped_crawling(run: Run) -> Diagnosis | None:
    """Stopped after real progress, the gradient still pointing one way: SLOW, a crawl."""
    t = Trend.of(run)
    if t.stopped:
        return with_cause(crawl(run), "SLOW", t.stopped_evidence, t.steps, t.signals)
    return None


# ---------------------------------------------------------------------- still falling: fast enough?


def rate_collapsed(run: Run) -> Diagnosis | None:
    """An optimizer cause, and the loss falls 10x slower than at its fastest, by < 5% a window: STALLED."""
    t = Trend.of(run)
    if not (t.cause is not None and t.collapse is not None and t.collapse >= RATE_COLLAPSE
            and t.improvement < STALL_IMPROVEMENT):
        return None
    evidence = t.evidence + [f"the {run.quantity} now falls {t.collapse:.3g}x slower than at its fastest"]
    return with_cause(t.cause, "STALLED", evidence, t.steps, t.signals)


def slow_reversing(run: Run) -> Diagnosis | None:
    """Too slow, while successive steps reverse: OSCILLATING."""
    t = Trend.of(run)
    if t.slow is not None and t.reversing:
        return with_cause(oscillation(run, True, t.total), "OSCILLATING", t.evidence + [t.slow], t.steps, t.signals)
    return None


def slow_by_the_optimizer(run: Run) -> Diagnosis | None:
    """Too slow, and the optimizer's state shows why: SLOW with that cause."""
    t = Trend.of(run)
    if t.slow is not None and t.cause is not None:
        return with_cause(t.cause, "SLOW", t.evidence + [t.slow], t.steps, t.signals)
    return None


def slow_near_the_start(run: Run) -> Diagnosis | None:
    """Too slow, less than 10% below the first value, gradients not noise or steps under a tenth
    of a healthy size (update/parameter ratio < 1e-4): SLOW, lr too low. A trial's digits MLPs at
    Adam lr 1e-5 (100x too low; ratio 7.6e-5, gradient cosine 0.48) were told CONVERGING, "lr x
    3", with the Monitor's columns, and "lr x 50" from their losses alone."""
    t = Trend.of(run)
    if t.total >= LITTLE_PROGRESS:
        return None
    if t.slow is not None and t.consistent is not False:
        return with_cause(lr_too_low(run, t.total), "SLOW", t.evidence + [t.slow], t.steps, t.signals)
    ratio = run.median("update_ratio")
    if ratio is not None and 0 < ratio < HEALTHY_UPDATE_RATIO / 10:  # the rate, whatever the gradient's direction
        slow = too_slow(run, t.recent, t.previous, None)
        if slow is not None:
            return with_cause(lr_too_low(run, t.total), "SLOW", t.evidence + [slow], t.steps, t.signals)
    return None


def slow_crawling(run: Run) -> Diagnosis | None:
    """Too slow after real progress, gradients not noise: SLOW, a crawl."""
    t = Trend.of(run)
    if t.slow is not None and t.consistent is not False:
        return with_cause(crawl(run), "SLOW", t.evidence + [t.slow], t.steps, t.signals)
    return None


def slow_for_no_known_reason(run: Run) -> Diagnosis | None:
    """Too slow, and nothing says why: SLOW."""
    t = Trend.of(run)
    if t.slow is None:
        return None
    return Diagnosis("SLOW", f"the {run.quantity} falls too slowly", "slow_progress", evidence=t.evidence + [t.slow],
                     advice=[run.lr_advice(3), f"or find it with a range test: {LR_FIND}"], steps=t.steps, signals=t.signals)


def pace(run: Run) -> float | None:
    """The loss's fall per step over the last window, as a share of its average fall per step
    since the first window (medians of the gap to the floor), or None for a run too short or not
    falling. A healthy run slows down as it nears where it settles (below 0.4 in most of the
    corpus's healthy runs; 0.3-0.8 in its LMs, early in their descent, and up to 1.24 in a
    per-epoch log of 20 rows); a digits MLP at an lr 10x too low measured 1.06-1.23."""
    gap, w = run.gap, run.w
    n = len(gap)
    if n < 3 * w or w < MIN_WINDOW:
        return None
    first, before, recent = (float(np.median(x)) for x in (gap[:w], gap[-2 * w:-w], gap[-w:]))
    average = (first - recent) / (n - w)
    return (before - recent) / w / average if average > 0 and before > recent else None


def spike_advice(run: Run, t: Trend) -> list[str]:
    """For a run that recovered from an early 10x spike (:func:`.verdict_signals.early_spike`; no
    healthy run of the corpus has one): its lr is too high for the first steps. RMSprop at 5x its lr
    on a digits MLP spiked 287x at step 2, recovered, and ended at 0.83 where lr / 5 reached 0.027."""
    if t.spike is None:
        return []
    factor, at = t.spike
    r = run.lr_raised()
    if r is not None and r[3] <= at:  # the spike came with a raise of the lr during the run
        return [f"the {factor:.3g}x spike at step {at} came after the lr was raised {r[1] / r[0]:.3g}x at step "
                f"{r[3]}: keep the lr at {fmt(r[0])}, or raise it gradually; the run recovered, but from further up"]
    jump = lr_jump_before(run.h, at, 2 * run.w)
    if jump is not None:  # a jump just before it (a warm restart, or a bug at one): sized from the lr then
        before, after, _, first, peak = jump
        if after > 1.01 * peak:
            return [f"the {factor:.3g}x spike at step {at} came after the lr jumped to {fmt(after)} at step {first}, "
                    f"{after / peak:.3g}x the highest it had trained at ({fmt(peak)}): keep it at or below "
                    f"{fmt(peak)}; the run recovered, but from further up"]
        return [f"the {factor:.3g}x spike at step {at} came after the lr jumped {after / before:.3g}x back to "
                f"{fmt(after)} at step {first} (a warm restart): a lower peak for the restarts (x 0.3: "
                f"{fmt(after)} -> {fmt(after * 0.3)}); the run recovered, but from further up"]
    row = int(np.searchsorted(run.steps, at))  # (rows: a resumed log's steps start far from 1)
    if row > max(run.w // 2, len(run.steps) // 10):  # mid-run: the lr then, not the decayed lr now
        lr = lr_at(run.h, at)
        down = f"lr x 0.3: lr = {fmt(lr)} (at step {at}) -> {fmt(lr * 0.3)}" if lr else "lr x 0.3"
        return [f"the {factor:.3g}x spike at step {at} says the lr is too high there: {down}, or a schedule "
                "that lowers it before then; the run recovered, but from further up"]
    return [f"the {factor:.3g}x spike at step {at} says the lr is too high for the first steps: "
            f"{run.lr_advice(0.3)}, or warm it up; the run recovered, but from further up"]


def still_falling(run: Run) -> Diagnosis:
    """Everything else: CONVERGING, with an optimizer cause as a note. The last check: it always
    answers. A run that is not slowing down (:func:`pace` >= NOT_SLOWING) is early in its
    descent: the advice says that more steps or a higher lr would take it further (unless an
    early spike says the lr is too high: :func:`spike_advice`)."""
    t = Trend.of(run)
    notes = [f"note: {t.cause.cause}"] if t.cause is not None else []
    p = pace(run)
    if p is None or p < NOT_SLOWING or t.spike is not None:
        return Diagnosis("CONVERGING", f"the {run.quantity} is still falling at a healthy rate", "progress",
                         evidence=t.evidence + notes, advice=spike_advice(run, t), steps=t.steps, signals=t.signals)
    return Diagnosis(
        "CONVERGING", f"the {run.quantity} is still falling, and not slowing down: it is early in its descent",
        "progress", evidence=t.evidence + [
            f"over the last {run.w} logged steps it fell {p:.2g}x as fast per step as on average since the "
            "first window; a run nearing where it settles slows down"] + notes,
        advice=["more steps will take it further", (
            f"if it should be further by now, the lr may be low: try {run.lr_advice(3.0)} ({LR_FIND} sizes it)"
            if run.against_a_raise() is None else f"if it should be further by now: {run.lr_advice(3.0)}")],
        steps=t.steps, signals={**t.signals, "pace": p})
