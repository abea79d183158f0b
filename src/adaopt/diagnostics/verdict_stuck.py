"""Checks for runs held back by something other than the rate: dead units, updates that round
away, Adam without bias correction, steps too small to move, and a loss above its best.

These read what the monitor measures whatever the gradient's direction (the share of exactly-zero
gradients, of updates that left the parameter unchanged, the update/parameter ratio, the
hyperparameters), so they hold under minibatch noise, where successive gradients are nearly
orthogonal. A cause found here is the verdict's cause, even while the loss still falls
("cause before rate"): STALLED when the loss stopped or barely moved, else SLOW.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from .verdict_causes import family_of, lr_too_low, unmoved
from .verdict_noise import MEDIAN_SE, blocks, falling, inflation, rise_from_best, sigma
from .verdict_progress import Trend
from .verdict_record import LR_FIND, Cause, Diagnosis, fmt, with_cause
from .verdict_signals import Run, lr_per_row, rounding_at_fixed_point, warm_restarts
from .verdict_thresholds import (BIAS_INFLATION, BIAS_OFF_FINE, DEAD_SHARE, DIED_RISE, HEALTHY_UPDATE_RATIO,
                                 LITTLE_PROGRESS, LOST_SHARE, MIN_WINDOW, RISE_MIN_SHARE, RISE_SIGNIFICANT, RISE_Z,
                                 TINY_UPDATE_RATIO, WATCH_WINDOW)
from .verdict_watch import RESTART_LAG, replayed, rise_diagnosis

LOW_PRECISION = ("bfloat16", "float16")


def dead_progress(run: Run) -> float:
    """The share of the loss the run removed, for the dead-units test: against the first value, or,
    when the units were dead from the first window on, against that window's median (the loss a
    dead network starts from: one minibatch's first loss is a noisy draw of it, 0.78 beside a
    level of 0.69 on breast cancer, which made the output bias's fall to the class prior look like
    17% of progress)."""
    t = Trend.of(run)
    first = run.median("grad_zero", "first")
    if first is None or first < DEAD_SHARE or len(run.gap) < 2 * run.w:
        return t.total
    start = float(np.median(run.gap[:run.w]))
    return 1 - t.recent / start if start > 0 else t.total


#: A share of exactly-zero gradient coordinates that leaves the loss only the last layer's biases
#: to move: when the units died as the run trained, the loss's fall since says nothing of the net.
NEARLY_ALL_DEAD = 0.99


def dead_units(run: Run) -> Cause | None:
    """Most sampled gradient coordinates exactly 0 while the loss barely moved: dead (ReLU) units.
    Or nearly all of them (NEARLY_ALL_DEAD), where the first step had most alive, whatever the
    loss did: a regression MLP at SGD lr 0.5 spiked 140x at step 8, 99.9% of its gradient was 0
    from then on, and the output bias took the loss 10.5% below its first window to the target's
    variance; it was told SLOW, ill-conditioning."""
    share = run.median("grad_zero")
    if share is None or share < DEAD_SHARE:
        return None
    first, at_start = run.median("grad_zero", "first"), run.first("grad_zero")
    # far more zeros now than at the first step: units died as it trained, which a too large step
    # does (an autoencoder at 47% zeros until a 30x raise of its lr, 96% after, was told to
    # re-initialise; a ReLU net may start near 50%, so the rise tells it, not the level)
    died = at_start is not None and share - at_start >= DIED_RISE
    all_dead = died and share >= NEARLY_ALL_DEAD and at_start < DEAD_SHARE
    if dead_progress(run) >= LITTLE_PROGRESS and not all_dead:
        return None
    since = (f", up from {at_start:.0%} at the first step" if died
             else " from the first steps" if first is not None and first >= DEAD_SHARE else "")
    remedies = ["re-initialise: zero biases and He/Kaiming weights keep ReLU units alive",
                "or LeakyReLU/GELU, whose gradient is never exactly 0"]
    advice = ([run.down_advice()[0] + " (units alive at the first step that die as the run trains are the mark "
               "of too large a step)"] + remedies if died
              else remedies + ["if they died in a blow-up: lower the lr or warm it up"])
    return Cause(
        f"dead units: {_share(share)} of the gradient is exactly 0{since}, so those weights never move",
        "dead_units", [f"median share of exactly-zero gradient coordinates {_share(share)} over the recent window"]
        + _at_baseline(run), advice, {"grad_zero": share, "all_dead": all_dead})


def _share(x: float) -> str:
    """A share in percent that says 100% only when it is all (0.999 is 99.9%)."""
    return f"{x:.0%}" if x == 1 or round(x * 100) < 100 else f"{min(x, 0.999):.1%}"


def updates_round_away(run: Run) -> Cause | None:
    """Most updates left the parameter unchanged although its gradient was not 0: each step is
    below half an ulp of the parameter's dtype and rounds away. Not in float64, where a step
    below 1.1e-16 of the parameter is a run at its fixed point (SGD with weight decay at the
    minimum its decay sets: the gradient is not 0, the update is), nor where the updates
    reverse at the dtype's rounding size (that fixed point in float32)."""
    share = run.median("update_lost")
    meta = run.meta
    if share is None or share < LOST_SHARE or meta.get("kahan") or meta.get("stochastic_rounding"):
        return None
    dtype = meta.get("dtype") or "the parameters' dtype"
    if dtype == "float64" or rounding_at_fixed_point(run) is not None:
        return None
    if dtype in LOW_PRECISION:
        advice = ["kahan=True (adaopt.torch): each update's rounding error is kept and added back, so the run "
                  "trains as in float32", "or stochastic_rounding=True (bfloat16), or float32 master weights"]
    else:
        advice = [f"the steps are below the resolution of {dtype}: the parameters in float64, "
                  f"or a higher lr ({LR_FIND} finds one)"]
    return Cause(
        f"updates round away: {share:.0%} of the steps are below half an ulp of {dtype} and leave the "
        "parameter unchanged", "updates_round_away",
        [f"median share of coordinates with a nonzero gradient that did not move {share:.0%}"], advice,
        {"update_lost": share})


def bias_correction_off(run: Run) -> Cause | None:
    """Adam without bias correction, at a beta2 whose bias has not faded: v (and so sqrt(v)) is
    still (1 - beta2^t) of its average, the step 1/sqrt(1 - beta2^t) too large."""
    family, meta = family_of(run), run.meta
    if family is None or family.memory != "beta2" or "bias_correction" not in family.defaults:
        return None
    betas = meta.get("betas")
    if meta.get("bias_correction") is not False or not betas:
        return None
    beta2 = float(betas[1])
    inflation = 1 / math.sqrt(1 - beta2 ** max(run.n_steps, 1)) if beta2 < 1 else math.inf
    if inflation < BIAS_INFLATION:
        return None
    return Cause(
        f"bias correction is off with beta2 = {fmt(beta2)}: v is still {1 / inflation ** 2:.2g} of its "
        f"average after {run.n_steps} steps, so each step is {inflation:.3g}x what lr says", "bias_correction_off",
        [f"1/sqrt(1 - beta2^t) = {inflation:.3g} at step {run.n_steps} (the bias fades after ~"
         f"{1 / (1 - beta2):.0f} steps)"],
        [f"bias_correction=True (at this lr the steps become {inflation:.3g}x smaller, what lr says; lr x "
         f"{inflation:.3g} would keep today's)", "or beta2 = 0.999, whose bias fades within ~1000 steps"],
        {"step_inflation": inflation})


def _at_baseline(run: Run) -> list[str]:
    if run.baseline is None:
        return []
    t = Trend.of(run)
    return [f"the {run.quantity} {fmt(t.recent + run.floor)} is at the baseline {fmt(run.baseline)} "
            "(what predicting without the input gives: chance)"] if t.recent + run.floor >= 0.98 * run.baseline else []


#: The causes read from the run's configuration and its zero gradients and updates, in order.
CONFIG_CAUSES = (bias_correction_off, updates_round_away, dead_units)


def limited_by_configuration(run: Run) -> Diagnosis | None:
    """A cause in the configuration or the zero counts: STALLED (stopped or barely moved) or SLOW.

    Bias correction off makes the steps larger than lr says, which holds a run back only where
    those steps are too large: a run that removed :data:`BIAS_OFF_FINE` of its first loss and
    still falls gets its verdict from the progress checks, with the inflation as a note (turning
    the correction on at the same lr would shrink the steps: a trial's digits MLP went from 0.01
    to 0.14)."""
    for find in CONFIG_CAUSES:
        cause = find(run)
        if cause is not None:
            t = Trend.of(run)
            if cause.code == "bias_correction_off" and not t.stopped and t.total >= BIAS_OFF_FINE:
                k = cause.signals["step_inflation"]
                run.memo.setdefault("notes", []).append(
                    f"note: {cause.cause}. The run does well with those steps ({t.total:.1%} of its first loss "
                    f"removed, still falling): bias_correction=True at lr x {k:.3g} keeps them; at this lr it "
                    f"makes them {k:.3g}x smaller")
                continue
            moved = dead_progress(run) if cause.code == "dead_units" else t.total
            verdict = "STALLED" if t.stopped or moved < LITTLE_PROGRESS or cause.signals.get("all_dead") else "SLOW"
            return with_cause(cause, verdict, t.evidence, t.steps, t.signals)
    return None


def risen_as_the_live_check_sees_it(run: Run) -> Diagnosis | None:
    """The live check's test (:class:`~adaopt.diagnostics.verdict_watch.RiseWatch`: the last 20
    losses, or a CUSUM, significantly above the best block of 20), replayed on the whole loss: when
    :meth:`Monitor.check` would say DIVERGING at the last step, so does diagnose. An RMSprop run at
    5x its lr sat at 0.5 and jumped to 1.0 in its last 20 steps: check() said so, diagnose, whose
    windows are 60 steps, said CONVERGING."""
    if run.quantity != "loss" or not run.h.has("loss"):
        return None
    watch, steps = replayed(run.h)  # finite values only, as check() sees them
    found = watch.rise()
    # coming back down (from a spike), as above_its_best; and by RISE_SIGNIFICANT of the first loss, as the
    # alarms: check() also tells smaller rises from a low level (Adam at the lab's best lr on digits went
    # from 0.003 to 0.025, first 0.68), which diagnose leaves to the progress checks
    if found is None or falling(run.gap[-run.w:]) or found[0] - found[1][0] <= RISE_SIGNIFICANT * abs(watch.values[0]):
        return None
    return rise_diagnosis(found, lambda i: int(steps[i]), run.meta.get("lr"))


def above_its_best(run: Run) -> Diagnosis | None:
    """The recent window sits significantly above the best window and is not coming back down:
    DIVERGING (a creep, a late blow-up, a collapse to a plateau above what the run had reached).
    A run above its best is never CONVERGED."""
    w = max(MIN_WINDOW, run.w // 2)
    found = rise_from_best(run.gap, w)
    if found is None or falling(run.gap[-run.w:]):
        return None
    recent, best, i, se = found
    t = Trend.of(run)
    start = len(run.gap) - (len(run.gap) // w) * w + i * w
    a, b = int(run.steps[start]), int(run.steps[start + w - 1])
    evidence = t.evidence + [
        f"the best window (steps {a}-{b}) had a median of {fmt(best + run.floor)}; the last {w} steps "
        f"sit {(recent - best) / se if se > 0 else math.inf:.3g} standard errors above it "
        f"(noise estimated from the run: +-{fmt(se)} between windows)"]
    rise = recent / best if best > 0 else math.inf
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} rose {rise:.3g}x above the best it had "
        "reached and stays there", "lr_too_high", evidence=evidence,
        advice=run.down_advice("or warm the lr up" if run.lr_decayed() else
                               "or warm the lr up / decay it before this point"),
        steps=(a, t.steps[1]), signals={**t.signals, "best": best + run.floor, "rise_se": (recent - best) / se
                                        if se > 0 else math.inf})


def rose_after_a_raise(run: Run) -> Diagnosis | None:
    """The lr was raised at once (:func:`~adaopt.diagnostics.verdict_signals.lr_raised`: 2x or
    more within one logged interval, not a warmup), the raised lr is still in force over the
    recent window, and the recent window sits significantly above the window just before the
    raise: DIVERGING, lr too high, keep the lr where it was. The raise names the moment, so the
    test needs no best window: the two windows' medians differ by more than ``RISE_Z`` standard
    errors (their noise, times the run's :func:`~adaopt.diagnostics.verdict_noise.inflation`
    before the raise) and ``RISE_MIN_SHARE`` of the level. A GRU classifier whose AdamW lr was
    raised 30x at step 200 went from 0.45 to chance (0.71) and sat there; the state check read
    v-hat's memory of the blow-up's gradients as the cause and advised raising the lr 1000x. The
    raised lr must be higher than any the run had before: a warm restart (SGDR with eta_min > 0
    holds the lr flat at a cycle's end, then jumps back to its peak) returns to an lr the run
    trained at, and its bump is part of the schedule. The raise must lie two windows back, and
    every lr recorded since must be at least twice the old one (logged every k steps or not)."""
    r = run.lr_raised()
    if r is None or run.quantity != "loss":
        return None
    steps, lr = run.h.series("lr")
    keep = np.isfinite(lr)
    steps, lr = steps[keep], lr[keep]
    if lr[steps <= r[2]].max() >= r[1] / 1.01 or lr[steps >= r[3]].min() < 2 * r[0]:
        return None  # back to an lr it had run at (a warm restart), or not in force to the end
    gap, w = run.gap, max(MIN_WINDOW, run.w // 2)
    last_before = int(np.searchsorted(run.steps, r[2], side="right"))  # losses up to the last step at the old lr
    if last_before < w or len(gap) - last_before < 2 * w:
        return None
    before, recent = gap[last_before - w:last_before], gap[-w:]
    b, m = float(np.median(before)), float(np.median(recent))
    se = MEDIAN_SE * math.hypot(sigma(before), sigma(recent)) / math.sqrt(w) * inflation(gap[:last_before])
    if not (m - b > RISE_Z * se and m - b > RISE_MIN_SHARE * max(abs(b), 0.01 * abs(float(gap[0])))):
        return None
    if falling(gap[-run.w:]):
        return None
    t = Trend.of(run)
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} rose {m / b if b > 0 else math.inf:.3g}x "
        f"after the lr was raised {r[1] / r[0]:.3g}x between steps {r[2]} and {r[3]}, and stays there", "lr_too_high",
        evidence=t.evidence + [
            f"median of the {w} steps to step {r[2]} (before the raise) {fmt(b + run.floor)}; of the last {w} "
            f"{fmt(m + run.floor)}: {(m - b) / se if se > 0 else math.inf:.3g} standard errors higher (noise from "
            f"the run: +-{fmt(se)})"],
        advice=run.down_advice() + [f"or roll back to a checkpoint from step {r[2]} or earlier"],
        steps=(r[3], t.steps[1]), signals={**t.signals, "before_raise": b + run.floor, "lr_raised": r[1] / r[0]})


def rose_across_restarts(run: Run) -> Diagnosis | None:
    """With warm restarts (:func:`~adaopt.diagnostics.verdict_signals.warm_restarts`), the last
    window sits significantly above the best earlier window trained at the lr now or higher
    (each window's lowest lr; no window that starts within RESTART_LAG live windows of a restart,
    where the loss has not yet followed the lr up): DIVERGING, the restarts' peak is too high. A
    cycle's end falls as its lr anneals, so a falling last window is no excuse here, and against
    the run's best window (reached at a cycle's end, an lr near 0) a restart's bump is no rise: a
    trial's SGD run at a peak of 0.3, whose cycle ends went 0.549, 0.715, 1.149, 1.138 (chance
    1.386), was CONVERGED noise_floor. The rise must pass RISE_Z standard errors (their noise,
    times the run's AR(1) inflation), plus the chance allowance of the best of k windows
    (c_k / sqrt 2, as the live check's), and RISE_MIN_SHARE of the level."""
    restarts = warm_restarts(run.h)
    if not restarts or run.quantity != "loss":
        return None
    w = WATCH_WINDOW  # short blocks: each at about one lr of its cycle
    gap, k = run.gap, len(run.gap) // w
    if k < 6:
        return None
    start = len(gap) - k * w
    b = blocks(gap, w)
    lr = lr_per_row(run.h, run.steps[start:]).reshape(k, w)
    lo = run.steps[start::w][:k]
    lag = np.array([any(0 <= s - r < RESTART_LAG * WATCH_WINDOW for r in restarts) for s in lo])
    now = float(np.nanmax(lr[-1]))
    cand = [j for j in range(k - 2) if not lag[j] and np.nanmin(lr[j]) >= now / 1.01]
    if not cand:
        return None
    med = np.median(b, axis=1)
    j = min(cand, key=lambda c: med[c])
    recent, best = float(med[-1]), float(med[j])
    pooled = float(np.median([sigma(x) for x in b]))  # a floor under two blocks' own noise, from 20 values each
    se = MEDIAN_SE * math.hypot(max(sigma(b[-1]), pooled), max(sigma(b[j]), pooled)) / math.sqrt(w) * inflation(gap)
    z = RISE_Z + (-NormalDist().inv_cdf(0.625 / (len(cand) + 0.25)) / math.sqrt(2) if len(cand) > 1 else 0.0)
    if not (recent - best > z * se and recent - best > RISE_MIN_SHARE * max(abs(best), 0.01 * abs(float(gap[0])))):
        return None
    t = Trend.of(run)
    a, e = int(run.steps[start + j * w]), int(run.steps[start + j * w + w - 1])
    peak = float(np.nanmax(lr))
    return Diagnosis(
        "DIVERGING", f"the learning rate is too high: the {run.quantity} rose {recent / best if best > 0 else math.inf:.3g}x "
        f"above where it was at the same lr or higher before, across {len(restarts)} warm restart"
        f"{'s' if len(restarts) > 1 else ''}", "lr_too_high",
        evidence=t.evidence + [
            f"median of the last {w} steps {fmt(recent + run.floor)} at an lr up to {fmt(now)}; of steps {a}-{e}, "
            f"trained at {fmt(float(np.nanmin(lr[j])))} or more, {fmt(best + run.floor)}: {(recent - best) / se:.3g} "
            f"standard errors higher (noise from the run: +-{fmt(se)})"],
        advice=[f"a lower peak for the restarts (x 0.3: {fmt(peak)} -> {fmt(peak * 0.3)})",
                f"or roll back to a checkpoint from step {e} and go on without restarts (decay from there)"],
        steps=(a, t.steps[1]), signals={**t.signals, "best_at_lr": best + run.floor, "restarts": len(restarts)})


def held_at_baseline(run: Run) -> Diagnosis | None:
    """With a ``baseline`` (chance: ln K, a unigram entropy): the loss stopped within 10% of it
    while the steps are of a healthy size or larger, and no unit is dead: STALLED, lr too high
    (the model keeps only what ignores the input, as a transformer at too high an lr without
    warmup collapses to the unigram entropy). After a schedule annealed the lr (:func:`_annealed`),
    the steps at its peak lr count, and a loss still falling a little is held there too, when
    those steps were LARGE_PEAK_RATIO or more: a healthy run's are near 1e-3, so a data bug that
    holds a healthy run at chance is not read as an lr too high."""
    t = Trend.of(run)
    level = t.recent + run.floor
    if run.baseline is None or run.baseline <= 0 or not (0.9 * run.baseline <= level <= 1.1 * run.baseline):
        return None
    ratio = run.median("update_ratio")
    annealed = _annealed(run)
    still_falling = not (t.stopped or not falling(run.gap[-run.w:]))
    if still_falling and not (annealed and _stayed_at(run, level)):
        return None
    below = float(run.values.min()) < 0.9 * run.baseline
    if ratio is None and not below and run.median("grad_norm") is None:
        return None if still_falling or _leaving_chance(run) else _at_chance_unexplained(run, t)
    where, peak = "", _ratio_at_peak(run) if annealed and ratio is not None else None
    if peak is not None and peak >= LARGE_PEAK_RATIO and (still_falling or ratio < HEALTHY_UPDATE_RATIO):
        ratio, where = peak, " at its peak lr"  # the steps that did it, not the annealed ones
    elif still_falling:
        return None
    if ratio is None or ratio < HEALTHY_UPDATE_RATIO:
        return None
    return Diagnosis(
        "STALLED", f"the learning rate is too high: the {run.quantity} is held at the baseline {fmt(run.baseline)} "
        f"(chance){' after it had been below it' if below else ''}, with steps of {fmt(ratio)} of the parameters"
        f"{where}", "lr_too_high", evidence=t.evidence + _at_baseline(run) + [
            f"update/parameter ratio{where} {fmt(ratio)} (healthy runs sit near {HEALTHY_UPDATE_RATIO:g})"],
        advice=[run.lr_advice(0.1), "and warm the lr up over the first few hundred steps"],
        steps=t.steps, signals={**t.signals, "baseline": run.baseline, "update_ratio": ratio})


#: A schedule that took the lr below this share of its peak has ended the descent: a loss near
#: chance that still falls a little will not leave it (:func:`held_at_baseline`) ...
ANNEALED_SHARE = 0.1
#: ... when its update/parameter ratio at the peak lr was this large or more (5x a healthy one; the
#: trial's transformer at AdamW lr 0.3 took steps of 0.013-0.015 there).
LARGE_PEAK_RATIO = 5 * HEALTHY_UPDATE_RATIO


def _annealed(run: Run) -> bool:
    """Whether a schedule took the lr below ANNEALED_SHARE of its peak by the end. A transformer
    at AdamW lr 0.3 without warmup sat at 2.66 against ln 16 = 2.77 after a cosine to 3e-7, still
    falling 1.4% a window, and was told CONVERGING, "the schedule's peak lr x 3"."""
    decayed = run.lr_decayed()
    return decayed is not None and decayed[2] < ANNEALED_SHARE * decayed[0]


def _stayed_at(run: Run, level: float) -> bool:
    """Whether the run stayed near its baseline throughout: its first window's median within 10%
    of it, and less than 5% of it above the level now (a loss falling through chance, 2.95 to
    2.58 against ln 16 = 2.77, is no run held there)."""
    first = float(np.median(run.gap[:run.w])) + run.floor
    return abs(first - run.baseline) <= 0.1 * run.baseline and first - level < 0.05 * run.baseline


def _ratio_at_peak(run: Run) -> float | None:
    """The median update/parameter ratio over the rows trained at half the peak lr or more."""
    steps, ratio = run.h.series("update_ratio")
    keep = np.isfinite(ratio)
    steps, ratio = steps[keep], ratio[keep]
    if len(ratio) == 0:
        return None
    lr = lr_per_row(run.h, steps)
    if not np.isfinite(lr).any():
        return None
    at_peak = lr >= 0.5 * np.nanmax(lr)
    return float(np.median(ratio[at_peak])) if at_peak.any() else None


def _leaving_chance(run: Run) -> bool:
    """Whether a run that began at the baseline fell measurably below its first window since:
    slowly leaving chance (an lr 100x too low: a trial's digits MLP 2.4% below ln 10 after 600
    steps was called held at chance, "the model uses nothing of its input"), not held there."""
    first = float(np.median(run.gap[:run.w])) + run.floor
    return abs(first - run.baseline) <= 0.1 * run.baseline and unmoved(run) is None and Trend.of(run).total > 0


def _at_chance_unexplained(run: Run, t) -> Diagnosis:
    """Held at the baseline from the start, in a log without gradient columns: STALLED at chance,
    with what could hold it there (dead units, an lr far off, labels unrelated to the inputs)
    instead of a guess at one of them."""
    return Diagnosis(
        "STALLED", f"the {run.quantity} is held at the baseline {fmt(run.baseline)} (chance) from the start: the "
        "model uses nothing of its input, and the log has no gradient columns to tell why", "at_baseline",
        evidence=t.evidence + _at_baseline(run),
        advice=["record the gradients (a Monitor or DiagnosisCallback): a large share exactly 0 is dead units "
                "(a better init, a lower lr, LeakyReLU)", f"or find the lr: {LR_FIND} (far too low or too "
                "high, it holds a loss at chance)", "and check that the labels match their inputs"],
        steps=t.steps, signals={**t.signals, "baseline": run.baseline})


def stopped_with_tiny_steps(run: Run) -> Diagnosis | None:
    """Stopped near the start with update/parameter ratios far below a healthy run's: STALLED, lr
    too low (whatever the gradient's direction: under minibatch noise it has none to show)."""
    t = Trend.of(run)
    ratio = run.median("update_ratio")
    if not (t.total < LITTLE_PROGRESS and ratio is not None and 0 < ratio < TINY_UPDATE_RATIO):
        return None
    verdict = "STALLED" if t.stopped else "SLOW"
    return with_cause(lr_too_low(run, t.total), verdict, t.evidence, t.steps, t.signals)


def cause_limits_the_step(run: Run) -> Diagnosis | None:
    """The loss still falls, the gradient keeps its direction, and AdaGrad's accumulator took its
    effective lr down 10x: SLOW with that cause (the rate is the accumulator's, not the lr's).

    Only AdaGrad's: a v-hat that remembers larger gradients than today's is what every converging
    Adam run shows (its gradient shrinks), and is no cause while the loss falls."""
    t = Trend.of(run)
    if t.cause is None or t.cause.code != "adagrad_accumulator" or t.consistent is not True:
        return None
    return with_cause(t.cause, "SLOW", t.evidence, t.steps, t.signals)
