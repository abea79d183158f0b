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

Both read the lr when it is given (``push(value, lr)``: the Monitor reads the optimizer's, a
replay the history's lr column). When the lr rose 2x or more at once, a warm restart's bump
is measured against the blocks trained at a comparable lr (:meth:`RiseWatch._candidates`), not
the best block of the cycle before, reached at an lr near 0; and a raise to an lr higher than
any before is tested on its own, the values since against those just before it
(:meth:`RiseWatch._raised`), which needs no best block after the raise.
"""

from __future__ import annotations

import math
from array import array
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from .verdict_noise import MEDIAN_SE, between, between_detrended, inflation, median, sigma
from .verdict_record import Diagnosis, fmt
from .verdict_thresholds import (ALARM_REASK, CUSUM_CLIP, CUSUM_EPS, CUSUM_H, CUSUM_K, CUSUM_RECENT, PLATEAU_BLOCKS,
                                 RISE_ALPHA, RISE_MIN_SHARE, RISE_Z, WATCH_WINDOW)


#: The values whose correlation sets the block test's noise (:meth:`RiseWatch._between`), and the
#: blocks whose detrended spread bounds it from below.
INFLATION_VALUES, BETWEEN_BLOCKS = 200, 16
#: The raise test (:meth:`RiseWatch._raised`): the values before the raise it compares with, the
#: values since that it needs first, and how long after the raise it is asked (later, the block
#: test goes on from the blocks since the raise).
RAISE_BEFORE, RAISE_MIN, RAISE_HORIZON = 40, 10, 100
#: Windows after a warm restart whose blocks are no reference (:meth:`RiseWatch._candidates`).
RESTART_LAG = 2
#: A jump of the lr must add this share of the highest lr so far: an lr that climbs from 0 step by
#: step (CyclicLR with base_lr 0, cosine annealing past T_max) doubles at once near 0, no restart.
JUMP_SHARE = 0.1
#: After a warm restart whose like-lr blocks are fewer than PLATEAU_BLOCKS, a rise must also take
#: the last window this many times above the best of them (:meth:`RiseWatch.rise`).
FEW_LIKE_LR_RISE = 2.0
#: A rise from the best block must also be this share of the run's fall to it, in logs (from its
#: first value or its first block's median, whichever is higher), to be told: a loss near a floor
#: far from 0 (label smoothing's 0.50) that bumps 5% up is significant in its tiny noise and of
#: no account: a trial's 3 healthy digits MLPs with label smoothing 0.1 fired on bumps from 0.51
#: to 0.54-0.55, 3.2-5.1% of their fall from 2.3 in logs (stop_on would have stopped them). A
#: loss 1.5x up from a plateau at 0.05 after a fall from 2.3 is 11% of it.
FALL_SHARE = 0.07
#: The standard error of a 20%-trimmed mean, in sigma / sqrt(n): 1.03 for normal noise, rounded up.
TRIMMED_SE = 1.06


class Rise(NamedTuple):
    """What :meth:`RiseWatch.rise` found: the recent level (a median, or the trimmed mean since an
    lr raise), the reference block ``(median, sigma, first index, last index)``, the standard error
    of their difference (None: the CUSUM fired), and ``raised`` = ``(lr before, lr after, index of
    the first value after, values in the recent level)`` when the reference is the values before
    an lr raise."""

    recent: float
    best: tuple
    se: float | None
    raised: tuple | None = None


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
        self._lrs = array("d")  # per value: the lr it was taken at, as far as known (nan: unknown)
        self._block_lr = array("d")  # per closed block: the lowest lr among its values
        self._medians = array("d")  # per closed block: its median (as in closed), for numpy
        self._log_medians = array("d")  # ... and its logs' (as in _log_closed)
        self._lr = None  # the last lr given, the index of the value it came with, and how many
        self._lr_at, self._lr_held = -1, 0  # lrs before it held within 1% of the one before
        self._lr_peak = 0.0  # the highest lr given
        self._jump = None  # the first value after the last warm restart (the lr up 2x or more at once)
        self._restarts = []  # the first value after each of them
        self._lr_edits = 0  # times a closed block's lr was backdated (the reference's cache key)
        self._raise = None  # (lr before, lr after, first value after) of a raise to a new highest lr
        self._ref_key = self._ref = None  # the reference blocks (_reference), cached

    def _log(self, value: float) -> float:
        return math.log(max(value, 0.0) + CUSUM_EPS * abs(self.values[0]))

    def push(self, value: float, lr: float | None = None) -> None:
        """One logged loss, and the lr it was taken at when known (None: as before)."""
        if not math.isfinite(value):
            return
        if lr is not None and math.isfinite(lr) and lr >= 0:
            self._see_lr(float(lr), len(self.values))
        self.values.append(value)
        self._lrs.append(math.nan if self._lr is None else self._lr)
        n, w = len(self.values), self.w
        if n % w == 0:
            block = np.frombuffer(self.values, dtype=np.float64)[n - w:]
            self.closed.append((median(block), sigma(block), n - w, n - 1))
            self._medians.append(self.closed[-1][0])
            logs = np.log(np.maximum(block, 0.0) + CUSUM_EPS * abs(self.values[0]))
            self._log_closed.append((median(logs), sigma(logs)))
            self._log_medians.append(self._log_closed[-1][0])
            self._block_lr.append(float(np.min(np.frombuffer(self._lrs, dtype=np.float64)[n - w:])))
        while self._eligible < len(self.closed) and self.closed[self._eligible][3] < n - w:
            self._eligible += 1
        ref = self._reference()
        if ref is None:
            self.best = self._best_log = self._level_log = None
        elif ref[0] is not self.best:  # a new reference block: the sum starts again
            self.best, self._best_log, self._level_log, self.cusum = ref[0], ref[1], ref[2], 0.0
        else:
            self._level_log = ref[2]
        self._page(value)

    def _see_lr(self, lr: float, i: int) -> None:
        """The lr given with value ``i``. A rise of 2x or more over the last lr given, adding
        JUMP_SHARE of the highest lr or more, is a jump: the values since that lr are backdated to
        the new one (an lr logged every k steps is known late), their closed blocks' lrs with
        them. A jump to an lr above the run's highest is a raise (:meth:`_raised`) when the
        lr had held within 1% over the two readings before (not a warmup: the raise is from that
        lr), or when it is twice the highest or more (a x30 at a warm restart: the raise is from
        the highest), with RAISE_BEFORE / 2 values before it; it holds while the lr stays at
        twice the old one or more. Any other jump is a warm restart (:meth:`_candidates`)."""
        last = self._lr
        if last is not None and lr >= 2 * last and lr - last >= JUMP_SHARE * max(self._lr_peak, lr):
            start = self._lr_at + 1
            for j in range(start, i):
                self._lrs[j] = lr
            lrs, w = np.frombuffer(self._lrs, dtype=np.float64), self.w
            for b in range(start // w, min(len(self._block_lr), -(-i // w))):  # closed blocks in [start, i)
                self._block_lr[b] = float(np.min(lrs[b * w:(b + 1) * w]))
                self._lr_edits += 1
            del lrs  # (a view: the array grows next)
            peak, held = self._lr_peak, self._lr_held >= 1
            old = last if held else peak
            if lr > 1.01 * peak and (held or lr >= 2 * peak):
                self._raise = (old, lr, start) if old > 0 and start >= RAISE_BEFORE // 2 else None
            else:  # back up to (or near) an lr the run trained at
                self._raise = None
                self._jump = start
                self._restarts.append(start)
            self._lr_held = 0
        else:
            self._lr_held = self._lr_held + 1 if last is not None and abs(lr - last) <= 0.01 * last else 0
        if self._raise is not None and lr < 2 * self._raise[0]:
            self._raise = None
        self._lr, self._lr_at, self._lr_peak = lr, i, max(self._lr_peak, lr)

    def _candidates(self) -> tuple[np.ndarray | None, bool]:
        """The eligible blocks a rise is measured from (None: all of them), and whether they are
        too few to have a level (below). After a warm restart
        (the lr back up 2x or more at once, to an lr the run had trained at), a block before it
        counts only if all its values were taken at the lr now or higher (1% slack); the blocks
        since do. SGDR's lr, near 0 at a cycle's end, jumps back to its peak, and the loss
        follows it up: against the best block of the cycle before, the live check called every
        one of 36 synthetic runs DIVERGING at a restart (cycles of 300-1000 steps, 10% noise);
        with the blocks at half the lr now or more, 20 of them (a loss made mostly of the lr's
        noise rises with it); with these, none. A raise to a new highest lr adds no restriction
        (it has its own test, :meth:`_raised`); an lr that ramps up step by step (a warmup that
        never ends) has no jump, and its creep is measured from the best block as before.

        The blocks that start within RESTART_LAG windows after a restart do not count: the loss
        follows the lr up some tens of steps late, so the first block after a restart still sits
        at the cycle before's low (a trial's SGD runs with SGDR fired against it 30-50 steps
        after 4 of 40 healthy restarts, and AdamW's after 5 of 6 with a high peak).

        SGDR's lr stays within 1% of its peak for a few steps a cycle, all within that lag, so
        early in a cycle there may be only one or two blocks since the restart. Fewer than
        PLATEAU_BLOCKS have no level, only draws, and a rise from them must also take the last
        window FEW_LIKE_LR_RISE times above the best of them: against one block since the
        restart, 3 of a trial's 18 healthy high-peak runs (AdamW and SGD on a regression MLP,
        SGDR with T_mult=2, in a cycle of 800 steps) fired on a one-block bump of 1.4-1.6x; 5 of
        them still fire, on rises of 1.4-1.6x over 2-3 blocks against 4-5 like-lr blocks. (Nor is
        there a block to compare with before the first one since a restart: a blow-up that starts
        within RESTART_LAG + 1 windows of a restart waits for the lr to decay to where older
        blocks trained; in the trial's cycle of 800 steps, a loss 10x up from 50 steps after the
        restart was told 80 steps later. Measured against the blocks at half the lr now or more,
        with a 2x rise, it was told in 13 steps, but 15 of the 18 healthy runs fired.)"""
        k = self._eligible
        if self._jump is None or k == 0:
            return None, False
        lo = np.arange(k) * self.w  # block j holds values j w to j w + w - 1
        lr = np.frombuffer(self._block_lr, dtype=np.float64)[:k]
        restarts = np.asarray(self._restarts)
        before = np.searchsorted(restarts, lo, side="right") - 1  # the last restart at or before each block
        lagging = (before >= 0) & (lo - restarts[np.maximum(before, 0)] < RESTART_LAG * self.w)
        like = np.flatnonzero(((lo >= self._jump) | (lr >= self._lr / 1.01)) & ~lagging)
        return like, len(like) < PLATEAU_BLOCKS

    def _reference(self):
        """``(best block, its logs' (median, sigma), the CUSUM's level, the candidates' medians,
        sorted too, whether they are a chosen few)`` among the :meth:`_candidates` (cached; None
        while there are none)."""
        k = self._eligible
        key = (k,)
        if self._jump is not None:  # the candidates at a given k change with the lr only as it passes
            lr = np.frombuffer(self._block_lr, dtype=np.float64)[:k]  # a block's lr: their count says it
            key = (k, len(self._restarts), self._lr_edits, int(np.count_nonzero(lr >= self._lr / 1.01)))
            del lr
        if key == self._ref_key:
            return self._ref
        self._ref_key = key
        cand, loose = self._candidates()
        medians = np.frombuffer(self._medians, dtype=np.float64)[:k]
        medians = medians.copy() if cand is None else medians[cand]  # (a view would hold the array)
        if len(medians) == 0:
            self._ref = None
            return None
        at = int(np.argmin(medians))  # the first of equal medians, as before
        j = at if cand is None else int(cand[at])
        best, best_log = self.closed[j], self._log_closed[j]
        logs = np.frombuffer(self._log_medians, dtype=np.float64)[:k]
        logs = logs if cand is None else logs[cand]
        self._ref = (best, best_log, self._plateau_log(best, best_log, medians, logs), medians, np.sort(medians),
                     cand is not None, loose)
        return self._ref

    def _plateau_log(self, best, best_log, medians, logs) -> float:
        """The CUSUM's reference: the median log of the candidate blocks within RISE_Z standard
        errors of the best (a plateau's level), when there are PLATEAU_BLOCKS of them; else the
        best block's. Against the best block alone, the lowest draw of a long plateau, the sum
        drifted up by chance: a flat plateau of 4000 values with iid noise fired in 7 of 40 seeds."""
        se = MEDIAN_SE * math.sqrt(2) * max(best[1], self._pooled()) / math.sqrt(self.w)
        near = logs[medians <= best[0] + RISE_Z * se]
        return median(near) if len(near) >= PLATEAU_BLOCKS else best_log[0]

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
            self._pooled_at, self._pooled_sigma = len(self.closed), median([b[1] for b in self.closed[-64:]])
        return self._pooled_sigma

    def rise(self) -> Rise | None:
        """A :class:`Rise` when the last window sits significantly above the reference block (or,
        after an lr raise, above the values before it: :meth:`_raised`), else None."""
        if len(self.values) < 3 * self.w:
            return None
        raised = self._raised()
        if raised is not None:
            return raised
        if self.best is None:
            return None
        best = self.best
        scale = max(abs(best[0]), 0.01 * abs(self.values[0]))
        least = RISE_MIN_SHARE * scale  # a rise worth telling: 5% of the level, and FALL_SHARE of the fall in logs
        start = max(self.values[0], self.closed[0][0])  # (a fast first descent takes the first block's median down)
        if best[0] > 0 and start > best[0]:
            least = max(least, best[0] * ((start / best[0]) ** FALL_SHARE - 1))
        few = self._ref[5] and self._ref[6]  # after a restart, fewer like-lr blocks than make a level
        if self.cusum > CUSUM_H:  # the sequential test: a sustained shift of the log loss
            med = median(self.values[-CUSUM_RECENT:])
            if med - best[0] > least and not (few and med < FEW_LIKE_LR_RISE * best[0]):
                return self._attributed(Rise(med, best, None))
        # a cheap gate first (a check runs every step): the median can pass the bar only when
        # half the window is above it
        bar = best[0] + least
        if sum(1 for x in self.values[-self.w:] if x > bar) * 2 < self.w:
            return None
        recent = np.frombuffer(self.values, dtype=np.float64)[-self.w:]
        med = median(recent)
        pooled = self._pooled()
        se = max(MEDIAN_SE * math.hypot(max(sigma(recent), pooled), max(best[1], pooled)) / math.sqrt(self.w),
                 self._between())
        # the level the run reached: the median of the blocks that could have been the best by
        # chance (within RISE_Z se of it), when there are 3 or more. On a plateau the best block is
        # only its lowest draw: a healthy logistic regression's plateau at 0.687 had a best block
        # at 0.6705, and a window at 0.704 read as 4.6 se above it (check() stopped it)
        medians, ordered = self._ref[3], self._ref[4]
        level = best[0]
        near = int(np.searchsorted(ordered, best[0] + RISE_Z * se, side="right"))  # the first `near` of them
        if near >= PLATEAU_BLOCKS:
            m = near // 2
            level = float(ordered[m]) if near % 2 else float((ordered[m - 1] + ordered[m]) / 2)
        # a run that never fell measurably below its first block: its best block is the lowest
        # draw of a flat series, and sits below the level by chance (a falling run's is real)
        flat = level == best[0] and medians[0] - best[0] <= RISE_Z * se
        # after a restart the candidates are a few blocks at the lr now, not the run's descent: the
        # lowest of them sits below their level by chance as a flat run's does (a trial's SGD
        # run fired on a block 1.5 se below its like-lr neighbours)
        chosen = self._ref[5] and level == best[0]
        z = self._z() + (self._selection(len(medians)) if flat or chosen else 0.0)
        if med - level > z * se and med - best[0] > least:
            if few and level == best[0] and med < FEW_LIKE_LR_RISE * best[0]:
                return None  # too few blocks at the lr now to have a level: a larger rise than chance's
            return self._attributed(Rise(med, best, se))
        return None

    def _attributed(self, found: Rise) -> Rise:
        """A rise from a reference before an lr raise still in force is the raise's: its verdict
        says so and advises the old lr, whichever test told it first."""
        if self._raise is not None and found.best[3] < self._raise[2]:
            old, new, r = self._raise
            return found._replace(raised=(old, new, r, None))
        return found

    def _raised(self) -> Rise | None:
        """After a raise of the lr to a level higher than any before (:meth:`_see_lr`), from
        RAISE_MIN to RAISE_HORIZON values after it: the 20%-trimmed mean of the values since (the
        last w of them) against that of the RAISE_BEFORE values before, RISE_Z standard errors
        (``TRIMMED_SE sqrt(sb^2 / nb + sa^2 / na)``, each sigma at least the pooled one, the
        recent one at least the one before, times the AR(1) :func:`inflation` of the values
        before) and RISE_MIN_SHARE of the level above it. The raise names the moment, so the
        test needs no best block, which after a raise is not there yet: a GRU whose Adam lr was
        raised 20x, its loss drifting up from 1.8 to 2.4, was told 21-44 logged steps after the
        raise by the block test and 20-33 by this one (the corpus, 3 seeds). A trimmed mean
        keeps a median's indifference to a few spikes at nearly a mean's noise."""
        if self._raise is None:
            return None
        old, new, r = self._raise
        n = len(self.values)
        if not (RAISE_MIN <= n - r <= RAISE_HORIZON) or r < self.w:
            return None
        values = np.frombuffer(self.values, dtype=np.float64)
        before, after = values[max(0, r - RAISE_BEFORE):r], values[max(r, n - self.w):n]
        b, m = _trimmed_mean(before), _trimmed_mean(after)
        scale = max(abs(b), 0.01 * abs(self.values[0]))
        if m - b <= RISE_MIN_SHARE * scale:
            return None
        pooled = self._pooled() if self.closed else 0.0
        sb = max(sigma(before[-self.w:]), pooled)
        sa = max(sigma(after), sb) if len(after) >= 8 else sb
        se = TRIMMED_SE * math.sqrt(sb ** 2 / len(before) + sa ** 2 / len(after)) \
            * inflation(values[max(0, r - INFLATION_VALUES):r])
        if m - b > RISE_Z * se:
            return Rise(m, (b, sb, max(0, r - RAISE_BEFORE), r - 1), se, (old, new, r, len(after)))
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

    def _selection(self, k: int) -> float:
        """How far below the blocks' level the best of them sits by chance alone, in standard
        errors of a difference of two medians: the expected minimum of k eligible blocks'
        medians is c_k times one median's noise (Blom's c_k = -inv_cdf(0.625 / (k + 0.25))),
        and one median's noise is that se over sqrt 2. On a flat, noisy run (dead units at
        chance, minibatch noise +-10%) a window 1.6 of its noise above the level read as a
        3-standard-error rise from the best of 8 blocks."""
        if k < 2:
            return 0.0
        return -NormalDist().inv_cdf(0.625 / (k + 0.25)) / math.sqrt(2)


def _trimmed_mean(x: np.ndarray, share: float = 0.2) -> float:
    """The mean of ``x`` without its lowest and highest ``share``."""
    k = int(len(x) * share)
    return float(np.mean(np.sort(x)[k:len(x) - k]))


def rise_diagnosis(found: Rise, steps_of, lr, groups: int = 1) -> Diagnosis:
    """The DIVERGING verdict of a live rise: ``found`` from :meth:`RiseWatch.rise`, ``steps_of``
    maps a loss index to its step, ``lr`` the optimizer's lr now (or None: the first parameter
    group's; ``groups``: how many groups with different lrs there are, named in the advice). The
    evidence is the test's that told it; after an lr raise the cause and advice are the raise's."""
    med, (best, _, lo, hi), se, raised = found
    a, b = steps_of(lo), steps_of(hi)
    test = "raise" if raised is not None and raised[3] is not None else "block" if se is not None else "cusum"
    z = f"{(med - best) / se if se > 0 else math.inf:.3g}" if se is not None else None
    evidence = {
        "raise": lambda: f"trimmed mean of the last {raised[3]} logged losses {fmt(med)}; of the {hi - lo + 1} "
                         f"before the raise (steps {a}-{b}) {fmt(best)}: {z} standard errors higher",
        "block": lambda: f"median of the last {WATCH_WINDOW} logged losses {fmt(med)}; best window {fmt(best)} "
                         f"(steps {a}-{b}); the rise is {z} standard errors",
        "cusum": lambda: f"median of the last {CUSUM_RECENT} logged losses {fmt(med)}; best window {fmt(best)} "
                         f"(steps {a}-{b}); the losses since have sat above it, in logs, by more than the noise "
                         f"for long enough (a one-sided CUSUM past {CUSUM_H:g})"}[test]()
    signals = {"recent": med, "best": best, "rise_se": se, "test": test}
    rose = f"the loss rose {med / best:.3g}x" if best > 0 else "the loss rose"
    if raised is not None:
        old, new, r, _ = raised
        last, first = steps_of(r - 1), steps_of(r)
        when = f"at step {first}" if first == last + 1 else f"between steps {last} and {first}"
        return Diagnosis(
            "DIVERGING", f"the learning rate is too high: {rose} after the lr was raised {new / old:.3g}x {when}",
            "lr_too_high", evidence=[evidence],
            advice=[f"keep the lr at {fmt(old)}: it was raised {new / old:.3g}x to {fmt(new)} {when}",
                    f"or roll back to a checkpoint from step {last} or earlier and go on at {fmt(old)}",
                    f"or, to train at {fmt(new)}, raise it gradually (a warmup over some hundreds of steps)"],
            steps=(first, steps_of(-1)), signals={**signals, "lr_raised": new / old})
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: {rose} above its best window and stays there", "lr_too_high",
        evidence=[evidence],
        advice=[(f"lr x 0.1: lr = {fmt(lr)} -> {fmt(lr * 0.1)}" if lr else "lr x 0.1") + (
                    f" (in each of the {groups} parameter groups; the first's shown)" if groups > 1 and lr else ""),
                f"or roll back to a checkpoint from steps {a}-{b} and continue at the lower lr"],
        steps=(a, steps_of(-1)), signals=signals)


def first_alarm(history, rise: bool = True) -> int | None:
    """The first step at which the live check (:meth:`Monitor.check`) would fire, replayed on a
    whole history: a non-finite value, the loss 1.5x its first value (when diagnose agrees),
    or (unless ``rise=False``) a significant rise from its best window."""
    from .verdict import ALARMS, DIVERGE_FACTOR, LIVE_CHECKS, as_history, diagnose
    from .verdict_signals import first_bad

    history = as_history(history)  # (a log's path, a dict of columns: as diagnose takes them)
    bad = first_bad(history)
    steps, loss, lrs = losses(history)
    watch, first, fired, asked = RiseWatch(), None, None, None
    for i, (step, x, lr) in enumerate(zip(steps, loss, lrs)):
        if bad is not None and step >= history.steps[bad]:
            return int(history.steps[bad])
        watch.push(float(x), lr)
        first = float(x) if first is None else first
        if first > 0 and i >= 2 and median(loss[max(0, i - 4):i + 1]) > DIVERGE_FACTOR * first:
            seen = len(watch.values)  # as check() asks: at once, then once ALARM_REASK more losses came
            if asked is None or seen - asked >= max(1, ALARM_REASK * asked):
                asked = seen
                if diagnose(history.take(history.steps <= step), _checks=LIVE_CHECKS).verdict in ALARMS:
                    return int(step)
        else:
            asked = None
        if rise and watch.rise() is not None:
            return int(step)
    return fired


def losses(history, finite: bool = False) -> tuple[np.ndarray, np.ndarray, list]:
    """``(steps, losses, lrs)`` of a history's rows with a loss (``finite``: a finite one), each
    with the lr recorded in its row, else in the next row that records one, else None: as a
    replay of the live check pushes them."""
    mask = history.present("loss")
    if finite:
        mask &= np.isfinite(history["loss"])
    lr = np.where(history.present("lr"), history["lr"], np.nan)
    known = np.flatnonzero(np.isfinite(lr))
    if len(known):  # a row without one takes the next row's that has one (an lr logged every k steps:
        nxt = np.searchsorted(known, np.arange(len(lr)))  # the live check read it at every step)
        fill = nxt < len(known)
        lr[fill] = lr[known[nxt[fill]]]
    lrs = [float(v) if np.isfinite(v) else None for v in lr[mask]]
    return history.steps[mask], history["loss"][mask], lrs


def replayed(history) -> tuple[RiseWatch, np.ndarray]:
    """A :class:`RiseWatch` fed a history's finite losses with their recorded lr, and their steps."""
    steps, loss, lrs = losses(history, finite=True)
    watch = RiseWatch()
    for x, lr in zip(loss.tolist(), lrs):
        watch.push(x, lr)
    return watch, steps
