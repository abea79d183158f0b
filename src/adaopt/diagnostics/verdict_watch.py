"""The live check's early warning: a sustained, significant rise of the loss above its best window.

:class:`RiseWatch` sees each logged loss once (``push``, O(1) amortised) and keeps the medians
and noise (:func:`~adaopt.diagnostics.verdict_noise.sigma`) of closed blocks of
``WATCH_WINDOW`` values. ``rise()`` compares the median of the last ``WATCH_WINDOW`` values with
the best block that ended before them, by the test of :mod:`~adaopt.diagnostics.verdict_noise`
(``RISE_Z`` standard errors and ``RISE_MIN_SHARE`` of the level). The median of the last 20
passes the threshold once about 10 of them are above it: a blow-up is told within 20 logged
steps of its onset, and a creep once it is clearly out of the noise, not only when it passes
1.5x the first loss.

Beside it, a sequential test: Page's one-sided CUSUM of the log loss's residuals against the
best block, each standardised by the noise of one value (:meth:`RiseWatch._page`), which adds up
a sustained shift value by value instead of waiting for a block's median to move. Its drift
``CUSUM_K``, threshold ``CUSUM_H`` and clip ``CUSUM_CLIP`` are calibrated on the corpus's
healthy runs (docs/diagnostics.md).
"""

from __future__ import annotations

import math
from array import array
from statistics import NormalDist

import numpy as np

from .verdict_noise import MEDIAN_SE, between, between_detrended, inflation, sigma
from .verdict_record import Diagnosis, fmt
from .verdict_thresholds import (CUSUM_CLIP, CUSUM_EPS, CUSUM_H, CUSUM_K, CUSUM_RECENT, PLATEAU_BLOCKS, RISE_ALPHA,
                                 RISE_MIN_SHARE, RISE_Z, WATCH_WINDOW)


#: The values whose correlation sets the block test's noise (:meth:`RiseWatch._between`), and the
#: blocks whose detrended spread bounds it from below.
INFLATION_VALUES, BETWEEN_BLOCKS = 200, 16


class RiseWatch:
    """The losses of a run as the live check sees them, and whether they rose from their best."""

    def __init__(self, window: int = WATCH_WINDOW):
        self.w = window
        self.values = array("d")
        self.closed = []  # per closed block: (median, sigma, first index, last index)
        self.best = None  # the best block among those that ended a window before the last value
        self._eligible = 0  # blocks already considered for best
        self._log_closed = []  # per closed block: (median, sigma) of log(value + eps)
        self._best_log = None  # the best block's (median, sigma) in logs
        self._level_log = None  # the CUSUM's reference: the plateau's median log (_plateau_log)
        self.cusum = 0.0  # Page's one-sided CUSUM of the log residuals against the best block

    def _log(self, value: float) -> float:
        return math.log(max(value, 0.0) + CUSUM_EPS * abs(self.values[0]))

    def push(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.values.append(value)
        n, w = len(self.values), self.w
        if n % w == 0:
            block = np.frombuffer(self.values, dtype=np.float64)[n - w:]
            self.closed.append((float(np.median(block)), sigma(block), n - w, n - 1))
            logs = np.log(np.maximum(block, 0.0) + CUSUM_EPS * abs(self.values[0]))
            self._log_closed.append((float(np.median(logs)), sigma(logs)))
        grew = False
        while self._eligible < len(self.closed) and self.closed[self._eligible][3] < n - w:
            b = self.closed[self._eligible]
            if self.best is None or b[0] < self.best[0]:
                self.best, self._best_log, self.cusum = b, self._log_closed[self._eligible], 0.0
            self._eligible += 1
            grew = True
        if grew:
            self._level_log = self._plateau_log()
        self._page(value)

    def _plateau_log(self) -> float:
        """The CUSUM's reference: the median log of the eligible blocks within RISE_Z standard errors
        of the best (a plateau's level), when there are PLATEAU_BLOCKS of them; else the best block's.
        Against the best block alone, the lowest draw of a long plateau, the sum drifted up by
        chance: a flat plateau of 4000 values with iid noise fired in 7 of 40 seeds."""
        best = self.best
        se = MEDIAN_SE * math.sqrt(2) * max(best[1], self._pooled()) / math.sqrt(self.w)
        near = [lg[0] for b, lg in zip(self.closed[:self._eligible], self._log_closed)
                if b[0] <= best[0] + RISE_Z * se]
        return float(np.median(near)) if len(near) >= PLATEAU_BLOCKS else self._best_log[0]

    def _page(self, value: float) -> None:
        """One step of the CUSUM: ``S = max(0, S + min(z, CUSUM_CLIP) - CUSUM_K)``, z the log of
        the value less the level's median log (:meth:`_plateau_log`; clipped to +-CUSUM_CLIP), over
        the noise of one value in logs (the best block's, or the spread between blocks' medians
        scaled to one value, whichever is larger)."""
        if self._best_log is None or len(self.values) < 3 * self.w:
            return
        m, s_best = self._level_log, self._best_log[1]
        if getattr(self, "_between_log_at", -1) != len(self._log_closed):
            self._between_log_at = len(self._log_closed)
            medians = [b[0] for b in self._log_closed[:-1]]
            self._between_log = between(medians) * math.sqrt(self.w) / (MEDIAN_SE * math.sqrt(2)) \
                if len(medians) > 4 else 0.0
        tau = max(s_best, self._between_log, 1e-3)
        z = max(-CUSUM_CLIP, min((self._log(value) - m) / tau, CUSUM_CLIP))
        self.cusum = max(0.0, self.cusum + z - CUSUM_K)

    def _between(self) -> float:
        """The noise of a difference of two blocks' medians beyond the independent figure (cached per
        block): the larger of (a) that figure, ``1.2533 sqrt 2 pooled / sqrt w``, times the values'
        :func:`~adaopt.diagnostics.verdict_noise.inflation` over the last ``INFLATION_VALUES`` (an
        AR(1) fit of their correlation), and (b)
        :func:`~adaopt.diagnostics.verdict_noise.between_detrended` of the last
        ``BETWEEN_BLOCKS`` blocks' medians (from 8 blocks on), which sees a wander slower than
        the fit does. Both ignore a trend. The spread of consecutive medians' first differences,
        used before, took a slow descent's curve for noise (a GRU's gradual lr jump: 0.10-0.15
        against 0.04 from its values), and was told after 59-61 logged steps. On 200 synthetic
        healthy runs each (a descent, then noise of 3% of the level: AR(1) with phi 0.8 or
        0.95, iid plus a slow AR(1) part, Student t3), that test fired in 13, 46, 3 and 0; this
        one in 1, 21, 4 and 0."""
        at = len(self.closed)
        if getattr(self, "_between_at", -1) != at:
            end = self.closed[-1][3] + 1 if self.closed else 0  # closed blocks only: the same whenever asked
            values = np.frombuffer(self.values, dtype=np.float64)[max(0, end - INFLATION_VALUES):end]
            fit = MEDIAN_SE * math.sqrt(2) * self._pooled() / math.sqrt(self.w) * inflation(values)
            meds = [b[0] for b in self.closed[-BETWEEN_BLOCKS:]]
            self._between_at = at
            self._between_se = max(fit, between_detrended(meds) if len(meds) >= 8 else 0.0)
        return self._between_se

    def _pooled(self) -> float:
        """The median noise of the last 64 closed blocks (cached per block): a floor under one window's
        own noise, which from 20 values is off by a third either way. Read alone, a window whose
        spread came out low made a flat run's wobble a rise: a flat noisy run of 300 values fired
        in 10-12 of 200 seeds, 3-5 with the floor."""
        if getattr(self, "_pooled_at", -1) != len(self.closed):
            self._pooled_at, self._pooled_sigma = len(self.closed), float(np.median([b[1] for b in self.closed[-64:]]))
        return self._pooled_sigma

    def rise(self):
        """``(recent median, best block, se)`` when the last window sits significantly above the
        best block, else None."""
        if self.best is None or len(self.values) < 3 * self.w:
            return None
        best = self.best
        scale = max(abs(best[0]), 0.01 * abs(self.values[0]))
        if self.cusum > CUSUM_H:  # the sequential test: a sustained shift of the log loss
            med = float(np.median(self.values[-CUSUM_RECENT:]))
            if med - best[0] > RISE_MIN_SHARE * scale:
                return med, best, None
        # a cheap gate first (a check runs every step): the median can pass the bar only when
        # half the window is above it
        bar = best[0] + RISE_MIN_SHARE * scale
        if sum(1 for x in self.values[-self.w:] if x > bar) * 2 < self.w:
            return None
        recent = np.frombuffer(self.values, dtype=np.float64)[-self.w:]
        med = float(np.median(recent))
        pooled = self._pooled()
        se = max(MEDIAN_SE * math.hypot(max(sigma(recent), pooled), max(best[1], pooled)) / math.sqrt(self.w),
                 self._between())
        # the level the run reached: the median of the blocks that could have been the best by
        # chance (within RISE_Z se of it), when there are 3 or more. On a plateau the best block is
        # only its lowest draw: a healthy logistic regression's plateau at 0.687 had a best block
        # at 0.6705, and a window at 0.704 read as 4.6 se above it (check() stopped it)
        level = best[0]
        near = [b[0] for b in self.closed[:self._eligible] if b[0] <= best[0] + RISE_Z * se]
        if len(near) >= PLATEAU_BLOCKS:
            level = float(np.median(near))
        # a run that never fell measurably below its first block: its best block is the lowest
        # draw of a flat series, and sits below the level by chance (a falling run's is real)
        z = self._z() + (self._selection() if level == best[0] and self.closed[0][0] - best[0] <= RISE_Z * se else 0.0)
        if med - level > z * se and med - best[0] > RISE_MIN_SHARE * scale:
            return med, best, se
        return None

    def _z(self) -> float:
        """The standard errors a rise must pass: RISE_Z, or more in a long run. The test is asked at
        every value, and a window of w values is a new draw every w values, so over n values it is
        asked about n / w times: the z whose one-sided tail is RISE_ALPHA w / n keeps the chance of
        a false alarm over the whole run near RISE_ALPHA (a flat plateau of 4000 values with iid
        noise fired in 7 of 40 seeds at a fixed 3 se)."""
        n = len(self.values)
        if getattr(self, "_z_at", -1) != n // self.w:
            self._z_at = n // self.w
            self._z_value = max(RISE_Z, NormalDist().inv_cdf(1 - RISE_ALPHA * self.w / max(n, self.w)))
        return self._z_value

    def _selection(self) -> float:
        """How far below the blocks' level the best of them sits by chance alone, in standard
        errors of a difference of two medians: the expected minimum of k eligible blocks'
        medians is c_k times one median's noise (Blom's c_k = -inv_cdf(0.625 / (k + 0.25))),
        and one median's noise is that se over sqrt 2. On a flat, noisy run (dead units at
        chance, minibatch noise +-10%) a window 1.6 of its noise above the level read as a
        3-standard-error rise from the best of 8 blocks."""
        k = self._eligible
        if k < 2:
            return 0.0
        return -NormalDist().inv_cdf(0.625 / (k + 0.25)) / math.sqrt(2)


def rise_diagnosis(found, steps_of, lr) -> Diagnosis:
    """The DIVERGING verdict of a live rise: ``found`` from :meth:`RiseWatch.rise`, ``steps_of``
    maps a loss index to its step, ``lr`` the optimizer's lr now (or None)."""
    med, (best, _, lo, hi), se = found
    a, b = steps_of(lo), steps_of(hi)
    advice = [f"lr x 0.1: lr = {fmt(lr)} -> {fmt(lr * 0.1)}" if lr else "lr x 0.1",
              "or roll back to a checkpoint from steps " + f"{a}-{b} and continue at the lower lr"]
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the loss rose {med / best:.3g}x above its best window "
        f"and stays there" if best > 0 else "the learning rate is too high: the loss rose above its best window",
        "lr_too_high",
        evidence=[f"median of the last {WATCH_WINDOW} logged losses {fmt(med)}; best window {fmt(best)} "
                  f"(steps {a}-{b}); the rise is {(med - best) / se if se > 0 else math.inf:.3g} standard errors"
                  if se is not None else
                  f"median of the last {CUSUM_RECENT} logged losses {fmt(med)}; best window {fmt(best)} (steps "
                  f"{a}-{b}); the losses since have sat above it, in logs, by more than the noise for long "
                  f"enough (a one-sided CUSUM past {CUSUM_H:g})"],
        advice=advice, steps=(a, steps_of(-1)), signals={"recent": med, "best": best, "rise_se": se,
                                                         "test": "block" if se is not None else "cusum"})


def first_alarm(history) -> int | None:
    """The first step at which the live check (:meth:`Monitor.check`) would fire, replayed on a
    whole history: a non-finite value, the loss 1.5x its first value (when diagnose agrees),
    or a significant rise from its best window."""
    from .verdict import ALARMS, DIVERGE_FACTOR, LIVE_CHECKS, diagnose
    from .verdict_signals import first_bad

    bad = first_bad(history)
    steps, loss = history.series("loss")
    watch, first, fired = RiseWatch(), None, None
    for i, (step, x) in enumerate(zip(steps, loss)):
        if bad is not None and step >= history.steps[bad]:
            return int(history.steps[bad])
        watch.push(float(x))
        first = float(x) if first is None else first
        if first > 0 and i >= 2 and float(np.median(loss[max(0, i - 4):i + 1])) > DIVERGE_FACTOR * first:
            if diagnose(history.take(history.steps <= step), _checks=LIVE_CHECKS).verdict in ALARMS:
                return int(step)
        if watch.rise() is not None:
            return int(step)
    return fired
