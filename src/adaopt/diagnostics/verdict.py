"""The verdict: from a run's history to one word, its cause, the evidence and a fix.

:func:`diagnose` puts a run through :data:`CHECKS` in order and stops at the first check
that answers. Each check asks one question and answers a :class:`Diagnosis` or None; a new
check is one function and one entry in :data:`CHECKS`. In words:

1. **NONFINITE** / **DIVERGING** on the first non-finite value: DIVERGING when the
   loss (or, while the loss did not fall, the gradient or parameters) had grown 10x
   before it, else NONFINITE with where it came from (the gradient, the update, eps
   rounding to 0).
2. **DIVERGING**: the loss over the last window is more than 1.5x the first loss, or 3x
   its best window's. Also, before 4: a loss that spiked 10x and never came back 10%
   below its first value, one that rose after the lr was raised at once and stays there,
   or one that sits 5% above its first value and stopped falling.
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

The checks live in :mod:`~adaopt.diagnostics.verdict_alarms` (1-2) and
:mod:`~adaopt.diagnostics.verdict_progress` (3-5); what they read of a run in
:mod:`~adaopt.diagnostics.verdict_signals`, the optimizer causes in
:mod:`~adaopt.diagnostics.verdict_causes`, the records in
:mod:`~adaopt.diagnostics.verdict_record`. Every threshold is a constant of
:mod:`~adaopt.diagnostics.verdict_thresholds` (all importable from here too);
``docs/diagnostics.md`` says where each comes from.
"""

from __future__ import annotations

import numpy as np

from . import verdict_alarms as alarms
from . import verdict_progress as progress
from . import verdict_stuck as stuck
from .history import History, read_log
from .overfit import annotate
from .verdict_record import Diagnosis
from .verdict_signals import Run, bad_rows, eps_underflows
from .verdict_thresholds import (
    ADAGRAD_DROP, ALTERNATING, BETA2_STALE, BOUNCE_PROGRESS, CONSISTENT_COS, CONVERGED_GAP, DIVERGE_FACTOR,
    EPS_DOMINANT, GRAD_VANISHED, GROWTH_BEFORE_OVERFLOW, HEALTHY_UPDATE_RATIO, LITTLE_PROGRESS, MIN_WINDOW,
    PLATEAU, RATE_COLLAPSE, REVERSING_COS, RISE_FROM_BEST, RISE_SIGNIFICANT, STALL_IMPROVEMENT, WINDOW)

#: The verdict's names, the thresholds among them (as before the checks moved to their own modules).
__all__ = [
    "ALARMS", "CHECKS", "VERDICTS", "Diagnosis", "as_history", "diagnose", "eps_underflows",
    "ADAGRAD_DROP", "ALTERNATING", "BETA2_STALE", "BOUNCE_PROGRESS", "CONSISTENT_COS", "CONVERGED_GAP",
    "DIVERGE_FACTOR", "EPS_DOMINANT", "GRAD_VANISHED", "GROWTH_BEFORE_OVERFLOW", "HEALTHY_UPDATE_RATIO",
    "LITTLE_PROGRESS", "MIN_JUDGED", "MIN_WINDOW", "PLATEAU", "RATE_COLLAPSE", "REVERSING_COS", "RISE_FROM_BEST",
    "RISE_SIGNIFICANT", "STALL_IMPROVEMENT", "WINDOW"]

VERDICTS = ("DIVERGING", "NONFINITE", "OSCILLATING", "STALLED", "SLOW", "CONVERGING", "CONVERGED", "TOO_SHORT")
#: The verdicts a live check (and ``stop_on``) reacts to.
ALARMS = ("DIVERGING", "NONFINITE")

#: Verdicts that the live check's rise test, replayed on the whole loss, overrules when it fires at
#: the last step (:func:`.verdict_stuck.risen_as_the_live_check_sees_it`): a run that check() calls
#: DIVERGING is not told it converges or is slow; an OSCILLATING or STALLED verdict names a fault already.
_OVERRULED = ("CONVERGING", "CONVERGED", "SLOW")

#: The checks in the order :func:`diagnose` asks them; the first that answers gives the verdict.
CHECKS = (
    # 1. the first non-finite value
    alarms.overflow_after_growth,         # DIVERGING: the loss (or a norm) grew 10x, then overflowed
    alarms.eps_rounds_to_zero,            # NONFINITE: eps is 0 in the state dtype
    alarms.nonfinite_value,               # NONFINITE: the gradient, the update or the loss
    alarms.skipping_every_step,           # NONFINITE: on_nonfinite='skip' skips most recent steps
    # 2. a loss that grew
    alarms.rose_above_start,              # DIVERGING: recent window > 1.5x the first value
    alarms.rose_above_best,               # DIVERGING: > 3x the best window's
    # 3. done, or nothing to judge
    progress.too_short,                   # TOO_SHORT: fewer than MIN_JUDGED values
    progress.reached_target,              # CONVERGED
    progress.at_optimum,                  # CONVERGED: the gap shrank 1e6-fold
    progress.gradient_vanished,           # CONVERGED: the gradient is 1e-6 of its first size
    # blown up and never back, held back by the configuration, above its best, rising, bouncing
    progress.spike_not_recovered,         # DIVERGING: a 10x spike, never 10% below the start since
    progress.blew_up_late,                # DIVERGING: a 10x spike in the recent window, not back to its best
    stuck.rose_after_a_raise,             # DIVERGING: the lr was raised at once, and the loss rose after it
    stuck.rose_across_restarts,           # DIVERGING: after warm restarts, above where it was at the same lr
    stuck.limited_by_configuration,       # STALLED/SLOW: bias correction off, updates round away, dead units
    progress.bouncing,                    # OSCILLATING: noisy gradients far from a known optimum
    stuck.above_its_best,                 # DIVERGING: significantly above its best window, not coming down
    stuck.held_at_baseline,               # STALLED: held at chance (baseline=) with large steps: lr too high
    progress.rising,                      # DIVERGING: 5% above the start, not coming down
    progress.settled_as_the_lr_decayed,   # CONVERGED: flat at the end of an lr decay (not an lr too low)
    stuck.stopped_with_tiny_steps,        # STALLED/SLOW: lr too low, told by the update/param ratio
    # 4. the loss stopped falling: why
    progress.stopped_by_the_optimizer,    # STALLED: a cause in the optimizer's state
    progress.stopped_reversing,           # OSCILLATING: successive updates reverse
    progress.stopped_without_direction,   # CONVERGED: the gradient is noise (a minimum, the noise floor)
    progress.stopped_near_the_start,      # STALLED: lr too low
    progress.stopped_at_weight_decay,     # CONVERGED: balanced by weight decay
    progress.stopped_as_the_lr_ran_out,   # CONVERGED: a schedule took the lr away mid-descent
    progress.stopped_crawling,            # SLOW: a crawl (ill-conditioning for SGD)
    # 5. the loss still falls: fast enough?
    progress.rate_collapsed,              # STALLED: a cause, and 10x slower than at its fastest
    progress.slow_reversing,              # OSCILLATING
    progress.slow_by_the_optimizer,       # SLOW: a cause in the optimizer's state
    progress.slow_near_the_start,         # SLOW: lr too low
    progress.slow_crawling,               # SLOW: a crawl (ill-conditioning for SGD)
    progress.slow_for_no_known_reason,    # SLOW
    stuck.cause_limits_the_step,          # SLOW: a state cause, the gradient keeping its direction
    progress.still_falling,               # CONVERGING: always answers
)
#: The checks the live check asks when the loss passed 1.5x its first value: all but the rise
#: above the best window, which the live check tests itself, sequentially, at a rate calibrated
#: for a test at every step. Asked at every step that a flat noisy run passed 1.5x a low first
#: draw, that one-shot test fired in 52 of 200 such runs (300 steps, chi-square 16 noise).
LIVE_CHECKS = tuple(c for c in CHECKS if c is not stuck.above_its_best)


def diagnose(history, *, target=None, floor=None, baseline=None, budget=None, meta=None,
             _checks: tuple = CHECKS) -> Diagnosis:
    """The verdict on a run.

    ``history`` is a :class:`History`, a path to a CSV/JSONL log, a dict of columns or
    a list of per-step dicts. ``target`` is a loss to reach and ``budget`` the steps the
    run may take in all; together they make SLOW mean "will not get there in time".
    ``floor`` is the best loss attainable, if known (default 0, or the lowest loss seen
    when losses go negative). ``baseline`` is the loss of knowing nothing of the input
    (ln K for K-class cross-entropy, the variance for a squared error), if known: a run
    held there is named stuck at chance. ``meta`` adds what the log does not say (``optimizer``,
    ``lr``, ``betas``, ``eps``, ``dtype``, ``state_dtype``). (``_checks``: the live check's
    :data:`LIVE_CHECKS`.)
    """
    h = as_history(history)
    if len(h) == 0:
        raise ValueError("the history is empty: nothing to diagnose")
    if budget is not None and (not isinstance(budget, (int, np.integer)) or budget < 1):
        raise ValueError(f"budget={budget!r}: the step budget must be an integer >= 1")
    for name, value in (("floor", floor), ("baseline", baseline), ("target", target)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                  or not np.isfinite(value)):
            raise ValueError(f"{name}={value!r}: must be a finite number")
    run = Run(h, {**h.meta, **(meta or {})}, target, floor, budget)
    run.baseline = None if baseline is None else float(baseline)
    run.live = _checks is not CHECKS  # the live check asks at every step: its one-shot tests are fewer
    for check in _checks:
        found = check(run)
        if found is not None:
            if found.verdict in _OVERRULED and _checks is CHECKS:  # where check() says DIVERGING, this does too
                found = stuck.risen_as_the_live_check_sees_it(run) or found
            if len(run.skipped) and found.code != "nonfinite_gradient":
                found.evidence = found.evidence + alarms.skipped_note(run)
            if found.code in ("nonfinite_loss", "nonfinite_gradient", "nonfinite_update"):
                found.evidence = found.evidence + _without_the_bad_steps(run, target, floor, baseline, budget)
            found.evidence = found.evidence + run.memo.get("notes", [])  # what a check saw and passed on
            found.evidence = found.evidence + _late_start(h)
            return annotate(found, h)  # notes: overfitting, what the log cannot show, an lr schedule
    raise AssertionError("the last check, still_falling, always answers")


def _late_start(h: History) -> list[str]:
    """A note when the log begins later than its own logging interval explains (its first step
    more than twice the median gap between steps): a resumed run's second part, read alone (a
    Lightning resume writes a new ``version_N``), whose "first value" is not the run's."""
    if len(h) < 3:
        return []
    first, gap = int(h.steps[0]), float(np.median(np.diff(h.steps)))
    if first <= max(1.0, 2 * gap):
        return []
    return [f"note: the log begins at step {first}: \"the first value\" is that step's, and the verdict covers "
            "the steps from there (a run resumed into a new log? pass the earlier part too)"]


def _without_the_bad_steps(run: Run, target, floor, baseline, budget) -> list[str]:
    """For a run that went on finite after a few non-finite steps (a bad batch): the verdict on
    the other steps, so a user can tell a stray NaN in a healthy run from a run in trouble."""
    bad = bad_rows(run.h, run.meta)
    if not bad.any():
        return []
    first = int(np.argmax(bad))
    after = bad[first:]
    if bad[-1] or after.sum() > max(1, 0.1 * len(after)):
        return []
    rest = diagnose(run.h.take(~bad), target=target, floor=floor, baseline=baseline, budget=budget,
                    meta=run.meta)
    n = int(bad.sum())
    without = "that step" if n == 1 else f"those {n} steps"
    return [f"without {without}, the run reads {rest.verdict}: {rest.cause}"]


def as_history(obj) -> History:
    """``obj`` as a :class:`History`: a History, a log path, a dict of columns or a list of per-step dicts."""
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
