"""A picture of a diagnosis: the loss as diagnose() read it, the steps its evidence names, where
the live check would have fired, and the lr.

:func:`plot_diagnosis` draws on a matplotlib Axes (or saves to a path, or makes a new figure)
and returns the Axes; ``Monitor.plot`` and ``adaopt diagnose --plot`` call it. Figures are
made as :class:`matplotlib.figure.Figure` objects, not through ``pyplot``, so no GUI backend
or global state is touched. Matplotlib is imported only when a plot is asked for.
"""

from __future__ import annotations

import os
import textwrap
import warnings

import numpy as np

#: Verdict -> (colour, short word), shared with the lab's verdict grid.
VERDICT_STYLE = {
    "DIVERGING": ("#e06666", "diverging"),
    "NONFINITE": ("#b03030", "nan/inf"),
    "OSCILLATING": ("#f6b26b", "oscillating"),
    "STALLED": ("#ffd966", "stalled"),
    "SLOW": ("#fff2b3", "slow"),
    "CONVERGING": ("#b6d7a8", "converging"),
    "CONVERGED": ("#6aa84f", "converged"),
    "TOO_SHORT": ("#d9d9d9", "too short"),
}

#: The raw loss is drawn point by point up to this many rows; a longer log in buckets of 100
#: values or more (up to RAW_POINTS // 4 of them), each as its median and the band
#: from its 10th to its 90th percentile (its whole range drew a band as wide as the minibatch
#: noise's extremes), which stays quick to draw.
RAW_POINTS = 20_000
#: The smoothed line: the running median of this many logged losses (the live check's window).
SMOOTH = 20
#: The live check is replayed (for its line) on logs of up to this many losses: about 35 us a
#: loss, 3.5 s for 1e5.
REPLAY_MAX = 200_000

_MISSING = "plots need matplotlib: pip install 'adaopt[lab]'"


def axes_for(ax, figsize=(8, 4.5)):
    """``(Axes, path to save to or None)`` for a plot's ``ax`` argument: an Axes, a path, or None
    (a new figure of ``figsize``)."""
    path = ax if isinstance(ax, (str, os.PathLike)) else None
    if ax is not None and path is None and not callable(getattr(ax, "plot", None)):
        raise TypeError(f"plot(ax={ax!r}): pass a matplotlib Axes, a file path to save to, or nothing")
    if ax is None or path is not None:
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError(_MISSING) from None
        ax = Figure(figsize=figsize).add_subplot()
    return ax, path


def running_median(values: np.ndarray, w: int = SMOOTH) -> np.ndarray:
    """The median of each value and the ``w - 1`` before it (fewer at the start), NaNs left out
    (NaN where a window has no finite value)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), np.nan)
    padded = np.concatenate([np.full(w - 1, np.nan), values])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window stays NaN
        if len(values):
            out[:] = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, w), axis=1)
    return out


def plot_diagnosis(history, diagnosis=None, ax=None, **diagnose_kwargs):
    """Draw a run's loss with its diagnosis. Returns the Axes.

    ``history``: a :class:`~adaopt.diagnostics.History`, a log path, a dict of columns (what
    :func:`~adaopt.diagnostics.diagnose` takes); ``diagnosis``: its
    :class:`~adaopt.diagnostics.Diagnosis`, or None to diagnose it here (with
    ``diagnose_kwargs``: ``floor=``, ``baseline=``, ...); ``ax``: a matplotlib Axes to draw on,
    a path (``"run.png"``) to save the picture to, or None for a new figure.

    Drawn: every logged loss (grey), their running median over 20 (the live check's window;
    a quarter of a shorter log),
    the steps the verdict's evidence names (shaded in the verdict's colour), the step at which
    ``Monitor.check()`` would have fired (a dashed line; the replay of
    :func:`~adaopt.diagnostics.verdict_watch.first_alarm`, on logs of up to REPLAY_MAX losses),
    non-finite losses (red marks at the top), ``baseline=`` and ``floor=`` when given, and the
    lr on a second axis when the log records one that changes; the legend below. The y axis is logarithmic when the losses are
    positive and span more than 20x. The title is the verdict, its cause code and its cause.
    """
    from .verdict import as_history, diagnose
    from .verdict_signals import first_bad
    from .verdict_watch import first_alarm

    ax, path = axes_for(ax)
    h = as_history(history)
    d = diagnose(h, **diagnose_kwargs) if diagnosis is None else diagnosis
    steps, loss = h.series("loss")
    loss = np.asarray(loss, dtype=np.float64)
    finite = np.isfinite(loss)
    color = VERDICT_STYLE.get(d.verdict, ("#999999", ""))[0]

    clean = np.where(finite, loss, np.nan)
    if len(loss) > RAW_POINTS:  # per bucket, its median and middle 80%: what the eye sees of 1e6 points
        # buckets of 100 values or more: a median of 10 jittered into a band as wide as the noise
        buckets = min(len(loss) // 100, RAW_POINTS // 4)  # (a log over RAW_POINTS has 200 or more)
        edges = np.linspace(0, len(loss), buckets + 1).astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a bucket of NaNs stays NaN
            lo, mid, hi = np.array([np.nanpercentile(clean[a:b], (10, 50, 90))
                                    for a, b in zip(edges[:-1], edges[1:])]).T
        at = steps[edges[:-1]]
        ax.fill_between(at, lo, hi, color="0.8", lw=0, label="loss (10-90% per bucket)")
        ax.plot(at, mid, color="C0", lw=2, label=f"median per bucket of {edges[1]}")
    elif len(loss):
        ax.plot(steps, clean, color="0.72", lw=0.8, label="loss")
        smooth = min(SMOOTH, max(1, len(loss) // 4))  # a short log: a shorter window
        if finite.any() and smooth > 1:
            ax.plot(steps, running_median(clean, smooth), color="C0", lw=2, label=f"running median of {smooth}")
    if d.steps:
        a, b = d.steps
        ax.axvspan(a, b, color=color, alpha=0.3, lw=0, label=f"{d.verdict.lower()}: steps {a}-{b}")
    fired = first_alarm(h) if 0 < len(loss) <= REPLAY_MAX else None
    if fired is not None:
        bad = first_bad(h)
        why = "a non-finite value" if bad is not None and fired == int(h.steps[bad]) else "DIVERGING"
        ax.axvline(fired, color="#b03030", ls="--", lw=1.2, label=f"check() fires at step {fired}: {why}")
    for name, value, style in (("baseline", diagnose_kwargs.get("baseline"), ":"),
                               ("floor", diagnose_kwargs.get("floor"), "-.")):
        if value is not None and np.isfinite(value):
            ax.axhline(value, color="0.4", ls=style, lw=1, label=f"{name} {value:.4g}")
    shown = loss[finite]
    if len(shown) and shown.min() > 0 and shown.max() > 20 * shown.min():
        ax.set_yscale("log")
    if (~finite).any() and len(shown):
        top = shown.max() * (2.0 if ax.get_yscale() == "log" else 1.05)
        bad = steps[~finite]
        ax.plot(bad, np.full(len(bad), top), "x", color="#b03030", ms=6,
                label=f"non-finite loss ({len(bad)} rows)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    cause = textwrap.shorten(d.cause, 150, placeholder=" ...") if d.cause else ""
    ax.set_title(f"{d.verdict}" + (f" ({d.code})" if d.code else "") + ("\n" + "\n".join(
        textwrap.wrap(cause, 90)) if cause else ""), fontsize=9, loc="left")
    handles, labels = ax.get_legend_handles_labels()
    lr_steps, lr = h.series("lr")
    keep = np.isfinite(lr) & (lr >= 0) if len(lr) else np.zeros(0, bool)
    if keep.sum() >= 2 and lr[keep].max() > lr[keep].min():  # (a constant lr: no axis of its own)
        zero = keep & (lr == 0)
        # a log axis for an lr spanning decades, unless it has rows at 0 (a warmup from 0, an lr
        # annealed to 0), which only a linear one can draw
        log = not zero.any() and lr[keep].max() > 10 * lr[keep].min()
        twin = ax.twinx()
        twin.step(lr_steps[keep], lr[keep], where="post", color="C1", lw=1, alpha=0.8, label="lr")
        if log:
            twin.set_yscale("log")
        twin.set_ylabel("lr", color="C1")
        twin.tick_params(axis="y", colors="C1")
        more, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more, labels + more_labels
    if handles:  # below the axes: over them it hid the lr's line (placed for the loss's axis only)
        ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncol=min(3, len(handles)), frameon=False)
    if path is not None:
        ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    return ax
