"""Overfitting, and what a log can and cannot say: notes added to a verdict.

:func:`annotate` is called on every :class:`~.verdict_record.Diagnosis` ``diagnose``
gives. It adds:

* **overfitting** (the lesson's pitfall 4: a minimum that fits the training data and
  not the rest): the training loss falls while a held-out loss (a column of
  :data:`~.logs.columns.EVAL`: ``eval_loss``, ``val_loss``, ...) rises. With ``n`` eval
  points and windows of ``k = max(2, n // 5)`` of them, let ``best`` be the lowest mean
  of ``k`` successive evals that ends before the last ``k`` begin, and ``last`` the mean
  of the last ``k``. The eval loss rose when

  .. math:: \\text{last} - \\text{best} > Z \\, \\sigma \\sqrt{2/k}
            \\quad\\text{and}\\quad \\text{last} > (1 + r)\\,\\text{best},

  ``sigma`` the eval's own noise, from its second differences
  (:math:`\\sigma = 1.4826\\,\\mathrm{median}|e_{i+1} - 2e_i + e_{i-1}| / \\sqrt 6`, which a
  straight trend does not move), ``Z`` = :data:`RISE_SIGMAS`, ``r`` = :data:`MIN_RISE`.
  The training loss fell over the same steps by the same test (its mean over the steps of
  the last window below its mean over those of the best). The verdict stays the training
  run's (it says how the optimizer does); the note says where to stop: the eval loss's best,
  robustly: of the windows whose mean is within 2 standard errors of the lowest, the last
  (on a flat eval loss that then rises, the end of the flat part), and its lowest eval; step 0
  only when the eval loss was best there.
* what a log **without gradient columns** cannot give: the verdicts that rest on the
  gradient (a vanished gradient, reversing updates, the optimizer-state causes).
* a logged **learning-rate schedule**: a warmup, a decay (its steps and values).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .logs.columns import EVAL
from .verdict_record import fmt
from .verdict_signals import lr_raises

#: How many standard errors the eval loss must rise by (and the training loss fall by).
RISE_SIGMAS = 4.0
#: And by at least this share of its best (a rise of 0.1% is no reason to stop).
MIN_RISE = 0.02
#: The fewest eval points the overfitting check looks at.
MIN_EVALS = 6
#: The columns that make up the gradient evidence (a Monitor records them).
GRADIENT_COLUMNS = ("grad_norm", "cos_grad", "cos_update", "update_norm")


def annotate(diagnosis, h):
    """``diagnosis`` with the notes on ``h`` added (evidence, advice, signals)."""
    evidence, advice, signals = list(diagnosis.evidence), list(diagnosis.advice), dict(diagnosis.signals)
    over = overfitting(h)
    if over is not None:
        evidence.append(
            f"overfitting: the eval loss ({over['column']}) rose from a mean of {fmt(over['best'])} over steps "
            f"{over['best_steps'][0]}-{over['best_steps'][1]} (its best {over['k']} evals in a row) to "
            f"{fmt(over['last'])} over steps {over['last_steps'][0]}-{over['last_steps'][1]} ({over['rise']:+.0%}) "
            f"while the training loss fell from {fmt(over['train_best'])} to {fmt(over['train_last'])} (means over "
            "the same steps; lesson pitfall 4)")
        advice.append(f"stop near step {over['best_step']} (the eval loss's best), or regularise: more weight "
                      "decay (AdamW), more data or augmentation; SGD with momentum may generalise better")
        signals["overfitting"] = over
    evidence += _lr_notes(h) + _missing_notes(h)
    return replace(diagnosis, evidence=evidence, advice=advice, signals=signals)


def eval_column(h):
    """The name of ``h``'s held-out loss column, or None."""
    lower = {name.lower(): name for name in h.columns[1:]}
    return next((lower[a] for a in EVAL if a in lower and h.has(lower[a])), None)


def noise(values: np.ndarray) -> float:
    """The noise of a series about its trend, from second differences (see the module)."""
    if len(values) < 3:
        return math.nan
    d2 = values[2:] - 2 * values[1:-1] + values[:-2]
    return float(1.4826 * np.median(np.abs(d2)) / math.sqrt(6))


def overfitting(h):
    """The overfitting test of the module's docstring: a dict of what it found, or None."""
    column = eval_column(h)
    if column is None or not h.has("loss"):
        return None
    steps, e = h.series(column)
    keep = np.isfinite(e)
    steps, e = steps[keep], e[keep]
    n = len(e)
    if n < MIN_EVALS:
        return None
    k = max(2, n // 5)
    means = np.convolve(e, np.ones(k) / k, mode="valid")[: n - 2 * k + 1]  # windows ending before the last k
    b = int(np.argmin(means))
    best, last = float(means[b]), float(e[-k:].mean())
    margin = RISE_SIGMAS * noise(e) * math.sqrt(2 / k)
    if not (last - best > margin and last > best + MIN_RISE * abs(best)):
        return None
    train_steps, train = h.series("loss")
    ok = np.isfinite(train)
    train_steps, train = train_steps[ok], train[ok]
    before = train[(train_steps >= steps[b]) & (train_steps <= steps[b + k - 1])]
    after = train[train_steps >= steps[n - k]]
    if len(before) == 0 or len(after) == 0:
        return None
    t_margin = RISE_SIGMAS * noise(train) * math.sqrt(1 / len(before) + 1 / len(after))
    if not after.mean() < before.mean() - t_margin:
        return None
    best_step = _best_step(steps, e, means, k, margin / RISE_SIGMAS)
    return {"column": column, "best": best, "best_step": best_step, "last": last, "last_step": int(steps[-1]),
            "k": k, "best_steps": (int(steps[b]), int(steps[b + k - 1])), "last_steps": (int(steps[n - k]), int(steps[-1])),
            "rise": last / best - 1 if best else math.inf, "train_best": float(before.mean()),
            "train_last": float(after.mean())}


def _best_step(steps, e, means, k: int, se: float) -> int:
    """Where to stop: the eval loss's best, robustly. Every window of ``k`` evals whose mean is
    within 2 standard errors (``se``, of a difference of two window means) of the lowest is as good
    as the best; of those, the last one (on a plateau that then rises, its end: the training went
    on without the eval getting worse), and in it, its lowest eval."""
    tied = np.flatnonzero(means <= means.min() + 2 * se)
    j = int(tied[-1])
    return int(steps[j + int(np.argmin(e[j:j + k]))])


def _missing_notes(h) -> list[str]:
    if any(h.has(c) for c in GRADIENT_COLUMNS):
        return []
    return ["note: the log has no gradient columns (grad_norm, cos_grad, cos_update, update_norm), so it cannot "
            "show a vanished gradient (CONVERGED), reversing updates (OSCILLATING is then read from the loss's own "
            "ups and downs) or a cause in the optimizer's "
            "state (STALLED/SLOW by AdaGrad's accumulator, beta2 or eps); a Monitor or a DiagnosisCallback "
            "records them"]


def _lr_notes(h) -> list[str]:
    """A warmup (the lr rose 2x to its peak), a raise or a jump above the lr before, warm restarts,
    and a decay (it ended under half its peak)."""
    steps, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr > 0)
    steps, lr = steps[keep], lr[keep]
    if len(lr) < 3 or lr.max() == lr.min():
        return []
    notes = []
    peak = int(np.argmax(lr))
    # back to an lr it had trained at is a warm restart (below), no raise
    raised = [r for r in lr_raises(h) if r[1] > 1.01 * lr[steps <= r[2]].max()]
    # jumps: 2x or more at once after the lr had held or fallen (not a warmup's climb), adding 10% of
    # the highest lr so far (not a climb from near 0)
    jumps = [i for i in range(2, len(lr)) if lr[i] >= 2 * lr[i - 1] and lr[i - 1] <= 1.01 * lr[i - 2]
             and lr[i] - lr[i - 1] >= 0.1 * max(lr[:i].max(), lr[i])]
    restarts = [i for i in jumps if lr[i] <= 1.01 * lr[:i].max()]
    if raised:
        said = [f"{r[1] / r[0]:.3g}x from {fmt(r[0])} to {fmt(r[1])} between steps {r[2]} and {r[3]}" for r in raised]
        if len(said) > 5:
            said = said[:3] + [f"... ({len(said)} raises in all)"] + said[-2:]
        notes.append("lr schedule: raised " + "; ".join(said))
    elif peak in jumps:  # the peak came at once, above any lr before: not a warmup
        notes.append(f"lr schedule: jumped to {fmt(lr[peak])} at step {int(steps[peak])}, "
                     f"{lr[peak] / lr[:peak].max():.3g}x the highest lr before ({fmt(lr[:peak].max())})")
    elif peak > 0 and lr[peak] > 2 * lr[0]:
        notes.append(f"lr schedule: warmup from {fmt(lr[0])} to {fmt(lr[peak])} until step {int(steps[peak])}")
    if restarts:
        shown = ", ".join(str(int(steps[i])) for i in restarts[:5]) + (", ..." if len(restarts) > 5 else "")
        notes.append(f"lr schedule: {len(restarts)} warm restart{'s' if len(restarts) > 1 else ''} (the lr back up "
                     f"2x or more at once, to an lr it had trained at) at step{'s' if len(restarts) > 1 else ''} "
                     f"{shown}")
    if lr[-1] < 0.5 * lr[peak]:
        notes.append(f"lr schedule: decayed from {fmt(lr[peak])} (step {int(steps[peak])}) to {fmt(lr[-1])} "
                     f"(step {int(steps[-1])})")
    return notes
