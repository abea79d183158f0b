"""What the verdict checks read from a run: its windows (Run) and the statistics computed from them."""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes, registry
from .history import History
from .verdict_record import fmt
from .verdict_thresholds import (ABOVE_FIRST_MIN, ABOVE_FIRST_Z, ALTERNATING, DIVERGE_FACTOR, GROWTH_BEFORE_OVERFLOW,
                                 HUGE_UPDATE_RATIO, LITTLE_PROGRESS, MIN_WINDOW, REVERSING_COS, RISE_SIGNIFICANT,
                                 ROUNDING_STEPS, TINY_UPDATE_RATIO, WINDOW)


class Run:
    """A run as the checks see it: the loss (or gradient norm) up to the first non-finite row, as
    gaps above a floor, with its recent window and the options :func:`diagnose` was given."""

    def __init__(self, h: History, meta: dict, target, floor, budget):
        self.h, self.meta, self.target, self.budget = h, meta, target, budget
        self.baseline = None  # the loss of knowing nothing (chance), when diagnose() is told it
        self.live = False  # asked by the live check, at every step (diagnose sets it)
        self.memo: dict = {}  # what the checks derive from the run, computed once (Trend.of)
        self.n_steps = int(h.steps[-1]) if len(h) else 0
        name = "loss" if h.has("loss") else "grad_norm"
        self.quantity = "loss" if name == "loss" else "gradient norm"
        steps, values = h.series(name)
        skipped = skipped_rows(h, meta)
        self.skipped = h.steps[skipped]  # steps the optimizer skipped (on_nonfinite='skip'): they changed nothing
        if skipped.any():
            keep = ~np.isin(steps, self.skipped)
            steps, values = steps[keep], values[keep]
        self.bad = first_bad(h, meta)
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

    def tiny_steps(self) -> bool:
        """Whether the recent steps are too small to take the loss up (a median update/parameter
        ratio under TINY_UPDATE_RATIO): a rise under 3x the first value is then a low first draw
        (an lr 1000x too low fired 'lr too high' on 2 of 10 minibatch runs)."""
        ratio = self.median("update_ratio")
        return ratio is not None and ratio < TINY_UPDATE_RATIO

    def first(self, name: str):
        _, values = self.h.series(name)
        values = values[np.isfinite(values)]
        return float(values[0]) if len(values) else None

    @property
    def recent_steps(self) -> tuple[int, int]:
        return int(self.steps[-self.w]), int(self.steps[-1])

    def lr_advice(self, factor: float) -> str:
        """``lr x factor`` from the last recorded lr (as a scheduler left it); after a schedule
        decayed the lr, of its peak either way (x 3 of OneCycle's last 1.6e-6 says nothing, and
        x 0.1 of an annealed 1.1e-5 neither, when the peak blew the run up). A raise the run
        speaks against (:meth:`against_a_raise`) becomes the way down, saying why."""
        why = self.against_a_raise() if factor > 1 else None
        if why is not None:
            r = self.raise_to_undo()
            down = (f"keep the lr at {fmt(r[0])}, where it was before the raise at step {r[3]}" if r is not None
                    else f"{self.lr_advice(0.3)}, or warm it up over the first steps")
            return f"not a higher lr ({why}): {down}"
        _, recorded = self.h.series("lr")  # the last recorded lr: as a scheduler left it
        recorded = recorded[np.isfinite(recorded)]
        lr = float(recorded[-1]) if len(recorded) else self.meta.get("lr")
        decayed = self.lr_decayed()
        if decayed is not None:
            peak, at, last, when = decayed
            if factor < 1:  # a lower lr than the decayed one is no news: the peak is what was too high
                return (f"the schedule's peak lr x {factor:g}: {fmt(peak)} (step {at}) -> {fmt(peak * factor)} (it "
                        f"decayed to {fmt(last)} by step {when})")
            return (f"the schedule's peak lr x {factor:g}: {fmt(peak)} (step {at}) -> {fmt(peak * factor)}, or more "
                    f"steps before its decay (it took the lr to {fmt(last)} by step {when})")
        if lr:
            return f"lr x {factor:g}: lr = {fmt(float(lr))} -> {fmt(float(lr) * factor)}"
        return f"lr x {factor:g}"

    def lr_raised(self):
        """``(lr before, lr after, last step before, first step after)`` of a raise (:func:`lr_raised`)."""
        return lr_raised(self.h)

    def best_block(self, w: int):
        """``(median, index of its first value)`` of the block of ``w`` gaps with the lowest median,
        the blocks cut from the last value back (:func:`.verdict_noise.blocks`); None under two."""
        from .verdict_noise import blocks

        cut = blocks(self.gap, w)
        if len(cut) < 2:
            return None
        medians = np.median(cut, axis=1)
        i = int(np.argmin(medians))
        return float(medians[i]), len(self.gap) - len(cut) * w + i * w

    def raise_to_undo(self):
        """The raise of the lr (:func:`lr_raises`) to undo when the lr is too high: the first one
        after the run's best window, where the loss still did well (a StepLR with gamma=10 took
        0.05 to 0.5 at step 401, where the loss blew up, and to 5 at step 801; "keep the lr at
        0.5" named the second), else the last. ``(lr before, lr after, last step before, first
        step after, the highest lr recorded from the raise on)``, or None."""
        raises = lr_raises(self.h)
        if not raises:
            return None
        w = max(MIN_WINDOW, self.w // 4)  # windows of a fifth of the run are too coarse here
        best = self.best_block(w)
        # the first raise after the best block began (a loss that still fell for some steps after
        # the raise that broke it puts that raise inside its best block)
        after = -1 if best is None else int(self.steps[best[1]])
        r = next((r for r in raises if r[3] > after), raises[-1])
        steps, lr = self.h.series("lr")
        since = np.isfinite(lr) & (steps >= r[3])
        return r + (float(lr[since].max()) if since.any() else r[1],)

    def against_a_raise(self) -> str | None:
        """Why a higher lr would not help, or None: the steps were too large at some point
        (:meth:`blew_up`), or the recent median sits more than RISE_SIGNIFICANT above the first
        value (unless the steps are too small to take a loss up: a low first draw). (A CNN whose
        lr was raised 30x mid-run spiked 10.7x, fell back and was told SLOW, "lr x 3: 0.09 ->
        0.27".)"""
        blew = self.blew_up()
        if blew is not None:
            return blew
        above = None if self.tiny_steps() else self.above_first()  # (steps that small do not take a loss up)
        return None if above is None else f"the {self.quantity} sits {above:.1%} above its first value"

    def blew_up(self) -> str | None:
        """Why the run's steps were too large at some point, or None: a spike 10x above its first
        value before the recent window (:func:`early_spike`), a first logged row that holds a
        blow-up (:func:`first_row_spike`), or the live check firing, on the loss at 1.5x its first
        value (:meth:`alarmed_early`) or on a rise above its best window (:meth:`rose_live`)."""
        spike = early_spike(self)
        if spike is not None:
            return f"the {self.quantity} spiked {spike[0]:.3g}x above its first value at step {spike[1]}"
        first = first_row_spike(self)
        if first is not None:
            return (f"the first logged {self.quantity}, {fmt(float(self.values[0]))}, is {first:.3g}x the ones after "
                    "it: a blow-up inside the first row (an averaged or per-epoch log hides when)")
        early = self.alarmed_early()
        if early is not None:
            return (f"at step {early} the {self.quantity} was {DIVERGE_FACTOR:g}x its first value (check() would "
                    "have said DIVERGING)")
        rose = self.rose_live()
        return None if rose is None else (f"at step {rose} the {self.quantity} rose significantly above its best "
                                          "window (check() would have said DIVERGING)")

    def alarmed_early(self) -> int | None:
        """The first step at which the loss's running median of 5 passed DIVERGE_FACTOR x its first
        value, when the live checks at that step said DIVERGING (as check() asks them there), or
        None; not asked live. A GRU LM at lr 0.3 went from 2.78 to 7.5 at step 3 and sat at chance
        from step 40 on, 0.9% below its first loss after 800 steps: check() fired at step 8, and
        diagnose said "lr x 500" without gradient columns, "lr x 3" with them."""
        if "alarmed_early" in self.memo:
            return self.memo["alarmed_early"]
        found = None
        if not self.live and self.quantity == "loss" and len(self.steps) <= LIVE_REPLAY_MAX:
            from .verdict_watch import first_alarm

            h = self.h if self.bad is None else self.h.take(self.h.steps < self.h.steps[self.bad])
            found = first_alarm(h, rise=False)
        self.memo["alarmed_early"] = found
        return found

    def rose_live(self) -> int | None:
        """The first step at which the live check's rise test (:class:`.verdict_watch.RiseWatch`,
        the lr read as check() reads it) fired on this run's loss, or None; not asked live, nor on
        logs of more than LIVE_REPLAY_MAX losses (about 30 us a loss). A GRU at OneCycle's
        max_lr 0.2, whose loss rose 1.6x at the peak, was told "the schedule's peak lr x 3: 0.2
        -> 0.6", which took its test accuracy from 0.94 to 0.35."""
        if "rose_live" in self.memo:
            return self.memo["rose_live"]
        found = None
        if not self.live and self.quantity == "loss" and len(self.steps) <= LIVE_REPLAY_MAX:
            from .verdict_watch import RiseWatch, losses

            steps, loss, lrs = losses(self.h, finite=True)
            watch = RiseWatch()
            for step, x, lr in zip(steps.tolist(), loss.tolist(), lrs):
                watch.push(x, lr)
                if watch.rise() is not None:
                    found = int(step)
                    break
        self.memo["rose_live"] = found
        return found

    def above_first(self) -> float | None:
        """How far the recent window's median sits above the first value, as a share of it, when
        that is more than RISE_SIGNIFICANT and either more than ABOVE_FIRST_Z times the noise of
        one value (the first value is one draw: a flat minibatch run whose first batch came out
        low is no rise) or the steps are huge (a median update/parameter ratio of at least
        HUGE_UPDATE_RATIO); else None. Not for the live check, nor under ABOVE_FIRST_MIN values."""
        if self.live or len(self.gap) < ABOVE_FIRST_MIN or not self.gap[0] > 0:
            return None  # (asked at every step, a one-value test would fire on a flat run's wobble)
        recent = self.gap[-self.w:]
        excess = float(np.median(recent)) - self.gap[0]
        if excess <= RISE_SIGNIFICANT * self.gap[0]:
            return None
        ratio = self.median("update_ratio")
        sigma = max(value_noise(recent, self.w), value_noise(self.gap, self.w))
        if excess <= ABOVE_FIRST_Z * sigma and not (ratio and ratio >= HUGE_UPDATE_RATIO):
            return None
        return excess / self.gap[0]

    def down_advice(self, default: str = "or warm the lr up over the first steps") -> list[str]:
        """Advice for an lr too high: ``lr x 0.1`` and ``default`` (a warmup), or, when the lr was
        raised at once during the run, first to undo that (x0.1 of a raised lr of 1e6 is 1e5, still
        far from the lr that trained), then a warmup to the higher lr if it is wanted."""
        r = self.raise_to_undo()
        if r is None:
            return [self.lr_advice(0.1), default]
        later = f" (and on to {fmt(r[4])} later)" if r[4] > 1.01 * r[1] else ""
        return [f"keep the lr at {fmt(r[0])}: it was raised {r[1] / r[0]:.3g}x to {fmt(r[1])} between steps "
                f"{r[2]} and {r[3]}{later}", f"or, to train at {fmt(r[1])}, raise it gradually (a warmup over some "
                "hundreds of steps)"]

    def lr_decayed(self):
        """``(peak lr, its step, last lr, its step)`` when the recorded lr (the log's lr column, a
        Monitor's summaries) fell below half its peak: a schedule already decayed it. Else None."""
        steps, lr = self.h.series("lr")
        keep = np.isfinite(lr) & (lr > 0)
        steps, lr = steps[keep], lr[keep]
        if len(lr) < 2:
            return None
        peak = int(np.argmax(lr))
        if not lr[-1] < 0.5 * lr[peak]:
            return None
        return float(lr[peak]), int(steps[peak]), float(lr[-1]), int(steps[-1])

    def decayed_words(self) -> str:
        """"the lr was decayed from A (step a) to B" for the advice, or "" when it was not."""
        d = self.lr_decayed()
        return "" if d is None else f"the lr was already decayed from {fmt(d[0])} (step {d[1]}) to {fmt(d[2])}"


def lr_raises(h: History) -> list[tuple]:
    """Every time the recorded lr rose at once, at least 2x within one logged interval after it
    had held within 1% over the two values before (a user's or a schedule's jump, not a warmup,
    which rises all along): ``(lr before, lr after, last step before, first step after)`` each,
    in order."""
    steps, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr > 0)
    steps, lr = steps[keep], lr[keep]
    return [(float(lr[i - 1]), float(lr[i]), int(steps[i - 1]), int(steps[i])) for i in range(2, len(lr))
            if lr[i] >= 2 * lr[i - 1] and abs(lr[i - 1] - lr[i - 2]) <= 0.01 * lr[i - 1]]


def lr_raised(h: History):
    """The last raise of the lr (:func:`lr_raises`), else None."""
    raises = lr_raises(h)
    return raises[-1] if raises else None


#: Logs up to this many losses are replayed through the live check's rise test for the advice
#: (:meth:`Run.rose_live`).
LIVE_REPLAY_MAX = 50_000


def lr_jump_before(h: History, step: int, within: int):
    """The last time the recorded lr rose 2x or more at once (held before or not: a warm restart,
    a bug at one) in the ``within`` steps up to ``step``: ``(lr before, lr after, last step before,
    first step after, the highest lr before)``, else None."""
    steps, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr > 0)
    steps, lr = steps[keep], lr[keep]
    for i in range(int(np.searchsorted(steps, step, side="right")) - 1, 0, -1):
        if steps[i] < step - within:
            break
        if lr[i] >= 2 * lr[i - 1]:
            return float(lr[i - 1]), float(lr[i]), int(steps[i - 1]), int(steps[i]), float(lr[:i].max())
    return None


def warm_restarts(h: History) -> list[int]:
    """The steps at which the recorded lr went back up at once to an lr the run had trained at
    (SGDR): 2x or more over the reading before, after it had held or fallen (not a warmup's climb),
    adding 10% of the highest lr so far (not a climb from near 0)."""
    steps, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr > 0)
    steps, lr = steps[keep], lr[keep]
    top = np.maximum.accumulate(lr) if len(lr) else lr
    return [int(steps[i]) for i in range(2, len(lr)) if lr[i] >= 2 * lr[i - 1] and lr[i - 1] <= 1.01 * lr[i - 2]
            and lr[i] - lr[i - 1] >= 0.1 * top[i] and lr[i] <= 1.01 * top[i - 1]]


def lr_per_row(h: History, steps: np.ndarray) -> np.ndarray:
    """The lr at each of ``steps``: the reading at that row, else the next row's (an lr logged
    every k rows), else the last; NaN without any."""
    at, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr > 0)
    at, lr = at[keep], lr[keep]
    if len(lr) == 0:
        return np.full(len(steps), np.nan)
    return lr[np.minimum(np.searchsorted(at, steps), len(lr) - 1)]


def lr_at(h: History, step: int) -> float | None:
    """The lr recorded at or last before ``step`` (None if none is)."""
    steps, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr > 0) & (steps <= step)
    return float(lr[keep][-1]) if keep.any() else None


#: Columns a user may record an optimizer's count of skipped steps in (``opt.skipped_steps``).
SKIP_COLUMNS = ("skipped_steps", "skipped")


def _bad_rows(h: History) -> np.ndarray:
    bad = np.zeros(len(h), bool)
    for name in ("loss", "grad_norm", "update_norm", "param_norm"):
        bad |= h.present(name) & ~np.isfinite(h[name])
    bad |= h.present("nonfinite") & (np.nan_to_num(h["nonfinite"], nan=1.0) > 0)
    return bad


def skips(h: History, meta: dict | None = None) -> bool:
    """Whether the run skips steps with a non-finite gradient: ``on_nonfinite='skip'`` in its meta
    (a Monitor records it), or a column of skipped steps (``mon.log(skipped=opt.skipped_steps)``)."""
    meta = h.meta if meta is None else meta
    return meta.get("on_nonfinite") == "skip" or any(h.has(c) for c in SKIP_COLUMNS)


def skipped_rows(h: History, meta: dict | None = None) -> np.ndarray:
    """The rows of steps the optimizer skipped (a mask): when it :func:`skips`, a row with a
    non-finite value whose update is 0 (or not logged) and whose parameters are finite (or not
    logged): the step changed nothing."""
    if not skips(h, meta):
        return np.zeros(len(h), bool)
    unchanged = ~h.present("update_norm") | (np.nan_to_num(h["update_norm"], nan=1.0) == 0)
    finite = ~h.present("param_norm") | np.isfinite(h["param_norm"])
    return _bad_rows(h) & unchanged & finite


def bad_rows(h: History, meta: dict | None = None) -> np.ndarray:
    """The rows with a non-finite loss or norm (or a nonzero ``nonfinite``), a mask; the steps an
    optimizer skipped (:func:`skipped_rows`) are not counted."""
    return _bad_rows(h) & ~skipped_rows(h, meta)


def first_bad(h: History, meta: dict | None = None):
    """The index of the first of :func:`bad_rows`, or None."""
    bad = bad_rows(h, meta)
    return int(np.argmax(bad)) if bad.any() else None


def eps_underflows(meta: dict) -> bool:
    """Whether the run's eps rounds to 0 in its state dtype (the lesson's pitfall 5)."""
    eps, state_dtype = meta.get("eps"), meta.get("state_dtype") or meta.get("dtype")
    family = registry.FAMILIES.get(meta.get("optimizer")) if isinstance(meta.get("optimizer"), str) else None
    if eps is None or state_dtype is None or family is None or "eps" not in family.defaults:
        return False
    try:
        return bool(dtypes.rounds_to_zero(float(eps), state_dtype))
    except (TypeError, ValueError):
        return False


def growth_before(run: Run):
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


def early_spike(run: Run):
    """(factor, step) when the loss, before the recent window, rose 10x above its first value."""
    before = run.gap[: max(len(run.gap) - run.w, 0)]
    if len(before) < 2 or not run.gap[0] > 0:
        return None
    i = int(np.argmax(before))
    factor = float(before[i] / run.gap[0])
    return (factor, int(run.steps[i])) if factor >= GROWTH_BEFORE_OVERFLOW else None


#: A first logged value this many times the median of the next three holds a blow-up
#: (:func:`first_row_spike`); a per-epoch mean of a fast descent on unscaled targets is 10-100x.
FIRST_ROW_SPIKE = 1000.0


def first_row_spike(run: Run) -> float | None:
    """How many times the first value is the median of the next three, when FIRST_ROW_SPIKE or
    more, else None. A per-epoch log of a regression at lr 10 began with a mean of 8e10 and sat at
    1.2e5 to 7.2e4 after it (worse than predicting the mean), and was told "lr x 3"."""
    if len(run.gap) < 4 or not run.gap[0] > 0:
        return None
    after = float(np.median(run.gap[1:4]))
    return float(run.gap[0] / after) if after > 0 and run.gap[0] >= FIRST_ROW_SPIKE * after else None


def noise(values: np.ndarray, w: int) -> float:
    """How far apart two windows' medians can land by noise alone (about two standard errors).

    The noise level comes from differences ``w/4`` steps apart (a robust MAD), which a
    smooth trend barely moves: a deterministic run has none, and a noisy one, even one
    whose loss wanders slowly (momentum), is not mistaken for progress.
    """
    return 2 * 1.2533 * value_noise(values, w) * math.sqrt(2 / w)


def value_noise(values: np.ndarray, w: int) -> float:
    """The noise of one value: a robust MAD of differences ``w/4`` steps apart, over sqrt 2 (0
    when there are fewer than 4 differences)."""
    lag = max(1, w // 4)
    d = values[lag:] - values[:-lag]
    if len(d) < 4:
        return 0.0
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)


def rate_collapse(gap: np.ndarray, w: int):
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


def rounding_at_fixed_point(run: Run) -> float | None:
    """The median update/param ratio when the recent updates reverse (cosine <= REVERSING_COS)
    at a size within ROUNDING_STEPS machine epsilons of float32 or float64: a run at its fixed
    point, whose steps are the rounding of a sum that is 0 (the gradient against the weight
    decay); else None."""
    cos_update, ratio, dtype = run.median("cos_update"), run.median("update_ratio"), run.meta.get("dtype")
    if cos_update is None or ratio is None or dtype not in ("float32", "float64") or cos_update > REVERSING_COS:
        return None
    return ratio if ratio < ROUNDING_STEPS * float(np.finfo(dtype).eps) else None


def reversing(run: Run) -> tuple[bool, str]:
    """Whether successive steps reverse over the recent window, and the sentence that says how it shows."""
    cos_update = run.median("cos_update")
    if cos_update is not None:
        said = f"median cosine between successive updates {cos_update:.2f}"
        ratio = rounding_at_fixed_point(run)
        if ratio is not None:
            return False, (f"{said}, of steps {ratio:.2g} of the parameters' size: the rounding of "
                           f"{run.meta['dtype']} at a fixed point, not a bounce")
        return cos_update <= REVERSING_COS, said
    # without cosines: sign changes of the loss, more often than independent noise makes them
    # (2 in 3), so a short or flat noisy log is not called oscillating
    from .verdict_noise import alternating

    flips, share = alternating(run.values[-run.w:], ALTERNATING)
    return flips, (f"the {run.quantity} changes direction on {share:.0%} of steps" if share else "")


def too_slow(run: Run, recent: float, previous: float, consistent) -> str | None:
    """Evidence that the present rate will not do, or None."""
    if not (previous > recent > 0):
        return None
    rate = math.log(previous / recent) / run.w  # per step, on a log scale
    target_gap = None if run.target is None else run.target - run.floor
    if target_gap is not None and run.budget is not None and target_gap > 0:
        needed = math.log(recent / target_gap) / rate
        left = run.budget - run.n_steps
        if needed > left:
            return (f"at the present rate the target {fmt(run.target)} takes about {needed:.3g} more steps; "
                    f"the budget leaves {max(left, 0)}")
        return None
    half_life = math.log(2) / rate
    if half_life > run.n_steps and consistent:
        return f"at the present rate halving the {run.quantity} takes about {half_life:.3g} steps, " \
               f"longer than the run so far ({run.n_steps})"
    if half_life > run.n_steps and consistent is None and (1 - recent / run.gap[0]) < LITTLE_PROGRESS:
        return f"at the present rate halving the {run.quantity} takes about {half_life:.3g} steps"
    return None
