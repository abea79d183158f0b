"""The alarm checks, first in the chain: a non-finite value (NONFINITE), a loss that grew (DIVERGING).

Each check asks one question of a :class:`Run` and answers a Diagnosis, or None to pass the run on.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from .verdict_record import Diagnosis, fmt
from .verdict_noise import above_first
from .verdict_signals import Run, bad_rows, eps_underflows, growth_before
from .verdict_thresholds import (DIVERGE_FACTOR, HEALTHY_UPDATE_RATIO, MIN_WINDOW, RISE_FROM_BEST, RISE_SIGNIFICANT,
                                 WINDOW)


def _ratio_evidence(run: Run) -> list[str]:
    ratio = run.median("update_ratio")
    return [f"update/parameter ratio {fmt(ratio)} (healthy runs sit near {HEALTHY_UPDATE_RATIO:g})"] \
        if ratio is not None else []


def _first_nonfinite(run: Run) -> tuple[int, str]:
    """The first bad step, and a line that says it and how many logged steps after it are bad:
    one stray value in a run that went on finite is another story than a run that stayed NaN."""
    h = run.h
    step = int(h.steps[run.bad])
    bad = bad_rows(h, run.meta)[run.bad:]
    n, count = len(bad), int(bad.sum())
    where = f"first non-finite value at step {step}"
    if n == 1:
        return step, f"{where}, the last logged step"
    if count == 1:
        return step, f"{where}, the only one: the {n - 1} logged steps after it are finite"
    if count == n:
        return step, f"{where}; every logged step from there on ({n}) is non-finite"
    last = int(h.steps[run.bad + int(np.flatnonzero(bad)[-1])])
    tail = "finite again at the end" if not bad[-1] else "non-finite at the end"
    return step, f"{where}; {count} of the {n} logged steps from there on are non-finite, the last at step {last} ({tail})"


# ---------------------------------------------------------------------- a non-finite value


def overflow_after_growth(run: Run) -> Diagnosis | None:
    """A non-finite value after the loss (or a norm, while the loss did not fall) grew 10x: DIVERGING."""
    if run.bad is None:
        return None
    growth = growth_before(run)
    if growth is None:
        return None
    step, where = _first_nonfinite(run)
    what, factor, s0, s1 = growth
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {what} grew {factor:.3g}x, then overflowed",
        "lr_too_high",
        evidence=[f"{what} grew {factor:.3g}x between steps {s0} and {s1}", where] + _ratio_evidence(run),
        advice=run.down_advice("or clip gradients / warm the lr up"),
        steps=(s0, step), signals={"growth": factor, "first_nonfinite_step": step})


def eps_rounds_to_zero(run: Run) -> Diagnosis | None:
    """A non-finite value, and eps is 0 in the state dtype: the step is 0/0 where sqrt(v-hat) is 0."""
    if run.bad is None or not eps_underflows(run.meta):
        return None
    step, where = _first_nonfinite(run)
    meta = run.meta
    dtype = meta.get("state_dtype") or meta.get("dtype")
    good = dtypes.default_eps(dtype, 1e-8)
    return Diagnosis(
        "NONFINITE", f"eps = {fmt(float(meta['eps']))} rounds to 0 in {dtype}: where sqrt(v-hat) is 0 "
        "the step is 0/0", "eps_precision",
        evidence=[where, f"eps = {fmt(float(meta['eps']))} stored in {dtype} is exactly 0 "
                  f"(the smallest normal {dtype} is {fmt(dtypes.smallest_normal(dtype))})"],
        advice=[f"eps = {fmt(good)} for {dtype} (adaopt's default there)",
                "or keep the optimizer state in float32 (state_dtype='float32')"],
        steps=(step, step), signals={"first_nonfinite_step": step})


def nonfinite_value(run: Run) -> Diagnosis | None:
    """Any other non-finite value: NONFINITE, from the gradient, the update or the loss itself."""
    if run.bad is None:
        return None
    h, k = run.h, run.bad
    step, where = _first_nonfinite(run)
    if h.present("grad_norm")[k] and not math.isfinite(h["grad_norm"][k]):
        cause = f"the gradient at step {step} is non-finite while the parameters were finite"
        code, advice = "nonfinite_gradient", [
            f"look at the batch and the loss at step {step} (a log(0), a division by zero, an overflow)",
            *([] if run.meta.get("on_nonfinite") else ["skip such steps: adaopt.torch optimizers take "
                                                       "on_nonfinite='skip'"]),
            "clip gradients (torch.nn.utils.clip_grad_norm_)"]
    elif h.present("update_norm")[k] and not math.isfinite(h["update_norm"][k]):
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


def skipping_every_step(run: Run) -> Diagnosis | None:
    """The optimizer skips steps with a non-finite gradient (on_nonfinite='skip'), and it skipped
    at least half of the recent window: NONFINITE (the run no longer trains; skipping is already on)."""
    if not len(run.skipped):
        return None
    h = run.h
    recent = h.steps[-max(MIN_WINDOW, int(len(h) * WINDOW)):]
    share = float(np.isin(recent, run.skipped).mean())
    if share < 0.5:
        return None
    first = int(run.skipped[0])
    return Diagnosis(
        "NONFINITE", f"the gradient is non-finite on {share:.0%} of the recent steps: the optimizer skips them "
        "(on_nonfinite='skip'), so the run no longer trains", "nonfinite_gradient",
        evidence=[f"{len(run.skipped)} steps skipped, the first at step {first}",
                  f"{share:.0%} of steps {int(recent[0])}-{int(recent[-1])} skipped"],
        advice=[f"look at the batches and the loss from step {first} on (a log(0), a division by zero, an overflow)",
                "clip gradients (torch.nn.utils.clip_grad_norm_), or lower the lr if the loss grew before"],
        steps=(first, int(recent[-1])), signals={"skipped": len(run.skipped), "skipped_share": share})


def skipped_note(run: Run) -> list[str]:
    """The note a verdict gets when the optimizer skipped some steps (on_nonfinite='skip')."""
    n = len(run.skipped)
    if not n:
        return []
    shown = ", ".join(str(int(s)) for s in run.skipped[:5]) + (", ..." if n > 5 else "")
    return [f"note: {n} step{'s' if n > 1 else ''} with a non-finite gradient {'were' if n > 1 else 'was'} skipped "
            f"(on_nonfinite='skip': they changed nothing; steps {shown}); the verdict is on the others"]


# ---------------------------------------------------------------------- a loss that grew


def _level(run: Run) -> tuple[float, str]:
    """The recent window's median gap, and the words for it."""
    recent = float(np.median(run.gap[-run.w:]))
    lo, hi = run.recent_steps
    return recent, f"median {fmt(recent + run.floor)} over steps {lo}-{hi}"


def _lr_too_high(run: Run, what: str, factor, evidence: list[str], first: int = 0) -> Diagnosis:
    """DIVERGING, lr too high, on the steps from the ``first``-th value to the end: a warmup for
    a rise from the start, a lower lr before then for one from later (a blow-up at step 646 of
    1290 was told "or warm the lr up over the first steps")."""
    later = first >= max(run.w, len(run.steps) // 10)  # (rows: a resumed log's steps start far from 1)
    advice = run.down_advice(f"or a schedule that lowers it before step {int(run.steps[first + run.w - 1])}, or "
                             "clip gradients" if later else "or warm the lr up over the first steps")
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} {what}", "lr_too_high",
        evidence=evidence + _ratio_evidence(run), advice=advice,
        steps=(int(run.steps[first]), run.recent_steps[1]), signals={"rise": factor})


def rose_above_start(run: Run) -> Diagnosis | None:
    """The recent window sits above 1.5x the first value: DIVERGING. Below 3x
    (``RISE_FROM_BEST``) the first value may be a low draw of a noisy loss: the rise must also
    stand out of the noise (:func:`.verdict_noise.above_first`). A loss that tripled is a blow-up
    at once."""
    if len(run.gap) < 2:
        return None
    gap0 = run.gap[0]
    recent, level = _level(run)
    if not (gap0 > 0 and recent > DIVERGE_FACTOR * gap0):
        return None
    if recent < RISE_FROM_BEST * gap0 and not above_first(run.gap, run.w):
        return None
    if recent < RISE_FROM_BEST * gap0 and run.tiny_steps():
        return None  # steps this small do not take a loss up: a low first minibatch
    how = f"rose {fmt(recent - gap0)}" if run.floor < 0 and not run.floor_known else f"rose {recent / gap0:.3g}x"
    return _lr_too_high(run, f"{how} above its first value instead of falling", recent / gap0,
                        [f"{run.quantity} {fmt(run.values[0])} at step {int(run.steps[0])}, {level}"])


def rose_above_best(run: Run) -> Diagnosis | None:
    """The recent window sits above 3x the best window's median, by 5% of the first value: DIVERGING."""
    if len(run.gap) < 2:
        return None
    gap, w = run.gap, run.w
    recent, level = _level(run)
    found = run.best_block(w)
    if found is None:
        return None
    best, at = found
    if not (best > 0 and recent > RISE_FROM_BEST * best and recent - best > RISE_SIGNIFICANT * gap[0]):
        return None
    lo, hi = int(run.steps[at]), int(run.steps[at + w - 1])
    if run.floor < 0 and not run.floor_known:  # gaps above the lowest value: their ratio says nothing
        how = f"rose {fmt(recent - best)} above the best it had reached"
    else:
        how = f"rose {recent / best:.3g}x above the best it had reached"
    return _lr_too_high(run, how, recent / best,
                        [f"{run.quantity} reached {fmt(best + run.floor)} (median of steps {lo}-{hi}), now {level}"],
                        first=at)
