"""The lab's plots: trajectories, loss curves, lr sensitivity, effective lr, bias correction, verdicts.

Every function takes ``ax=None`` (a new figure is made when ``None``), draws on it and
returns the Axes. Figures are created as :class:`matplotlib.figure.Figure` objects, not
through ``pyplot``, so no global state or GUI backend is touched; :func:`figure_png`
renders one to PNG bytes with Agg.

Matplotlib is imported lazily, inside the functions: importing this module needs NumPy
only, and a missing matplotlib raises ``ImportError`` when a plot is asked for.
"""

from __future__ import annotations

import io

import numpy as np

from .. import hyper, registry
from ..diagnostics.plot import VERDICT_STYLE as _VERDICT_STYLE
from .problems import get_problem

__all__ = [
    "plot_trajectories", "plot_loss_curves", "plot_lr_sensitivity", "plot_effective_lr",
    "plot_bias_correction", "plot_verdicts", "figure_png", "FLOOR",
]

#: Losses (gaps to the optimum) are floored at this before they go on a log axis.
FLOOR = 1e-16
#: A final gap above this multiple of the run's first gap counts as blown up in the lr plot.
BLOWUP = 1e3

_MISSING = "plots need matplotlib: pip install 'adaopt[lab]'"

#: One colour per lab optimizer, the same in every plot (others cycle through tab10).
_COLORS = {"sgd": "#1f77b4", "momentum": "#ff7f0e", "nesterov": "#bcbd22", "adagrad": "#d62728",
           "rmsprop": "#9467bd", "adam": "#2ca02c", "adamw": "#17becf", "adam-nobc": "#7f7f7f"}
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")

def _mpl():
    """Import matplotlib (Agg only, via Figure objects) or raise the lab's ImportError."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return matplotlib


def _axes(ax, figsize=(6.4, 4.6)):
    """``ax`` itself, or the single Axes of a new constrained-layout Figure."""
    _mpl()
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _color(optimizer: str) -> str:
    if optimizer in _COLORS:
        return _COLORS[optimizer]
    return _TAB10[sum(map(ord, optimizer)) % len(_TAB10)]


def _name(problem) -> str:
    return getattr(problem, "name", problem)


def _pairs(result, problem: str):
    """``(optimizer, sweep)`` for each of the result's optimizers run on ``problem``."""
    if problem not in result.problems:
        raise ValueError(f"problem {problem!r} is not in this lab result "
                         f"(it has: {', '.join(result.problems)})")
    return [(o, result.sweeps[(problem, o)]) for o in result.optimizers
            if (problem, o) in result.sweeps]


def _best_rows(sw) -> list[int]:
    b = sw.best_lr_index
    return [sw.row(b, j) for j in range(len(sw.seeds))]


def _finite(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a[~np.isfinite(a)] = np.nan
    return a


def _gap(values, f_opt) -> np.ndarray:
    """``values - f_opt`` (or ``values`` when the optimum is unknown), floored at FLOOR."""
    v = _finite(values)
    if f_opt is not None:
        v = v - f_opt
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(v), np.nan, np.maximum(v, FLOOR))


def _loss_label(p) -> str:
    return (f"loss - f* (f* = {p.f_opt:g}, floored at {FLOOR:g})" if p.f_opt is not None
            else f"loss (floored at {FLOOR:g})")


# ---------------------------------------------------------------------------------- plots


def plot_trajectories(result, problem, ax=None, seed_index: int = 0):
    """The contours of a 2-D problem with each optimizer's path at its best lr.

    Contours are log-spaced levels of ``f - f_min`` over the problem's ``bounds``
    (``f_min`` is ``f_opt`` when known, else the grid's minimum); the path is the run of
    seed ``result.seeds[seed_index]``. The start and the optimum are marked.
    """
    name = _name(problem)
    p = get_problem(name)
    if p.dim != 2 or p.bounds is None:
        raise ValueError(f"plot_trajectories needs a 2-D problem; {name!r} has dim {p.dim}")
    pairs = _pairs(result, name)
    n_seeds = len(result.seeds)
    if not -n_seeds <= seed_index < n_seeds:
        raise ValueError(f"seed_index={seed_index} is out of range for {n_seeds} seeds")
    seed_index %= n_seeds
    ax = _axes(ax, (6.4, 5.4))
    from matplotlib.colors import LogNorm

    (x_lo, x_hi), (y_lo, y_hi) = p.bounds
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, 241), np.linspace(y_lo, y_hi, 241))
    f = p.loss(np.stack([gx, gy], axis=-1))
    f_min = p.f_opt if p.f_opt is not None else float(np.nanmin(f))
    gap = f - f_min
    hi = float(np.nanmax(gap))
    positive = gap[gap > 0]
    lo = max(float(positive.min()) if positive.size else hi * 1e-6, hi * 1e-6)
    levels = np.logspace(np.log10(lo), np.log10(hi), 18)
    ax.contour(gx, gy, np.maximum(gap, lo), levels=levels, norm=LogNorm(lo, hi),
               cmap="Greys_r", linewidths=0.6, alpha=0.8)

    start = None
    span = max(x_hi - x_lo, y_hi - y_lo)
    for opt, sw in pairs:
        if sw.trajectory is None:
            continue
        row = sw.row(sw.best_lr_index, seed_index)
        path = _finite(sw.trajectory[:, row, :])
        far = np.abs(path - np.array([(x_lo + x_hi) / 2, (y_lo + y_hi) / 2])).max(axis=1) > 100 * span
        path[far] = np.nan  # a blown-up run: keep the drawing finite
        start = path[0] if start is None else start
        ax.plot(path[:, 0], path[:, 1], color=_color(opt), lw=1.3, alpha=0.9,
                label=f"{opt} (lr {sw.best_lr:g})")
        ax.plot(path[-1, 0], path[-1, 1], "o", color=_color(opt), ms=4)
    if start is None:
        start = p.x0(int(result.seeds[seed_index]))
    ax.plot(start[0], start[1], "o", color="black", ms=7, mfc="white", mew=1.5, label="start",
            zorder=5)
    if p.x_opt is not None:
        ax.plot(p.x_opt[0], p.x_opt[1], "*", color="crimson", ms=14, mec="black", mew=0.6,
                label="optimum", zorder=5)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{p.name}: paths at each optimizer's best lr "
                 f"(seed {int(result.seeds[seed_index])})", fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    return ax


def plot_loss_curves(result, problem, ax=None):
    """Loss (gap to ``f_opt`` when known) per step on a log axis, one line per optimizer at
    its best lr: the median over seeds, with the min-max band."""
    name = _name(problem)
    p = get_problem(name)
    pairs = _pairs(result, name)
    ax = _axes(ax)
    for opt, sw in pairs:
        loss = _gap(sw.signals["loss"][:, _best_rows(sw)], p.f_opt)  # (steps, seeds)
        steps = np.arange(loss.shape[0])
        with np.errstate(all="ignore"), _quiet():
            med = np.nanmedian(loss, axis=1)
            low, high = np.nanmin(loss, axis=1), np.nanmax(loss, axis=1)
        c = _color(opt)
        ax.plot(steps, med, color=c, lw=1.5, label=f"{opt} (lr {sw.best_lr:g})")
        if loss.shape[1] > 1:
            ax.fill_between(steps, low, high, color=c, alpha=0.18, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("step (updates applied)")
    ax.set_ylabel(_loss_label(p))
    ax.set_title(f"{p.name}: loss at the best lr (median, min-max over seeds)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_lr_sensitivity(result, problem, ax=None):
    """Final loss (gap to ``f_opt`` when known) against lr, log-log, median over seeds.

    An lr at which any seed's run went non-finite, or ended more than ``BLOWUP`` times
    above its starting gap, is drawn as an ``x`` at the top edge instead of a point of the
    line; each optimizer's chosen best lr is marked with a star.
    """
    name = _name(problem)
    p = get_problem(name)
    pairs = _pairs(result, name)
    ax = _axes(ax)
    xaxis = ax.get_xaxis_transform()
    any_blown = False
    for k, (opt, sw) in enumerate(pairs):
        n_lr, n_seed = len(sw.lrs), len(sw.seeds)
        final = _gap(sw.final_by_lr(), p.f_opt)  # (lrs, seeds), nan where non-finite
        first = _gap(sw.signals["loss"][0], p.f_opt).reshape(n_lr, n_seed)
        with np.errstate(invalid="ignore"):
            blown = np.isnan(final) | (final > BLOWUP * np.fmax(first, FLOOR))
        bad = blown.any(axis=1)
        with np.errstate(all="ignore"), _quiet():
            med = np.nanmedian(np.where(blown, np.nan, final), axis=1)
        med[bad] = np.nan
        c = _color(opt)
        ax.plot(sw.lrs, med, "-o", color=c, ms=3.5, lw=1.4, label=opt)
        if bad.any():
            any_blown = True
            ax.plot(sw.lrs[bad], np.full(bad.sum(), 0.975 - 0.025 * (k % 6)), "x", color=c, ms=7, mew=1.6,
                    transform=xaxis, clip_on=False)
        b = sw.best_lr_index
        if np.isfinite(med[b]):
            ax.plot(sw.lrs[b], med[b], "*", color=c, ms=14, mec="black", mew=0.7, zorder=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if any_blown:
        ax.plot([], [], "x", color="0.3", mew=1.6, label="diverged (top edge)")
    ax.plot([], [], "*", color="0.6", mec="black", ms=11, label="best lr")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final " + _loss_label(p))
    ax.set_title(f"{p.name}: final loss against lr (median over seeds)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_effective_lr(result, problem, ax=None):
    """The median per-coordinate effective lr divided by the optimizer's lr, per step, at the
    best lr (median over seeds), for the adaptive optimizers.

    SGD and momentum step with the lr itself (a multiplier of 1, the dotted line); AdaGrad's
    multiplier only falls, while RMSprop's and Adam's follow the recent gradient scale.
    """
    name = _name(problem)
    p = get_problem(name)
    pairs = [(o, sw) for o, sw in _pairs(result, name) if registry.variant(o).family != "sgd"]
    ax = _axes(ax)
    ax.axhline(1.0, color="0.5", ls=":", lw=1.2, label="SGD / momentum (x1)")
    for opt, sw in pairs:
        rows = _best_rows(sw)
        eff = _finite(sw.summaries["eff_lr_p50"][:, rows]) / sw.best_lr
        with np.errstate(all="ignore"), _quiet():
            med = np.nanmedian(eff, axis=1)
        ax.plot(sw.summary_steps, med, "-", color=_color(opt), lw=1.5,
                label=f"{opt} (lr {sw.best_lr:g})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("median effective lr / lr")
    ax.set_title(f"{p.name}: per-coordinate lr multiplier at the best lr", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_bias_correction(betas=(0.9, 0.999), steps: int = 1000, ax=None):
    """Adam's bias-correction factors ``1 / (1 - beta^k)`` against the step ``k``, log-log."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps={steps}: need at least 1 step")
    ax = _axes(ax)
    k = np.arange(1, steps + 1)
    for beta in betas:
        factor = np.array([hyper.bias_correction_factor(beta, int(i)) for i in k])
        ax.plot(k, factor, lw=1.6, label=f"beta = {beta:g}: {factor[0]:.4g} at k = 1")
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step k")
    ax.set_ylabel("1 / (1 - beta^k)")
    ax.set_title("Adam's bias-correction factors", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def majority_verdicts(result) -> dict:
    """``(problem, optimizer) -> verdict``: the majority over seeds at the best lr, as in
    ``result.summary()``."""
    return {(row["problem"], row["optimizer"]): row["verdict"] for row in result.summary()}


def plot_verdicts(result, ax=None, verdicts: dict | None = None):
    """A problems x optimizers grid coloured by the majority verdict at the best lr, with the
    verdict written in each cell. ``verdicts`` (as from :func:`majority_verdicts`) saves
    recomputing the summary."""
    verdicts = majority_verdicts(result) if verdicts is None else verdicts
    problems, optimizers = list(result.problems), list(result.optimizers)
    ax = _axes(ax, (1.25 * len(optimizers) + 2.6, 0.5 * len(problems) + 1.4))
    from matplotlib.colors import ListedColormap

    names = list(_VERDICT_STYLE)
    cmap = ListedColormap([_VERDICT_STYLE[v][0] for v in names] + ["#dddddd"])
    grid = np.full((len(problems), len(optimizers)), len(names), dtype=float)
    for i, prob in enumerate(problems):
        for j, opt in enumerate(optimizers):
            v = verdicts.get((prob, opt))
            grid[i, j] = names.index(v) if v in names else len(names)
            word = _VERDICT_STYLE[v][1] if v in names else (v or "-").lower()
            ax.text(j, i, word, ha="center", va="center", fontsize=8)
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(names) + 0.5, aspect="auto",
              interpolation="nearest")
    ax.set_xticks(range(len(optimizers)), optimizers, fontsize=8)
    ax.set_yticks(range(len(problems)), problems, fontsize=8)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(len(optimizers) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(problems) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.tick_params(which="minor", length=0)
    ax.set_title("Verdict at the best lr (majority over seeds)", fontsize=9)
    return ax


def figure_png(fig_or_ax, dpi: int = 100) -> bytes:
    """PNG bytes of a Figure (or of the Figure an Axes belongs to), rendered with Agg."""
    _mpl()
    fig = getattr(fig_or_ax, "figure", None) if not hasattr(fig_or_ax, "savefig") else fig_or_ax
    if fig is None or not hasattr(fig, "savefig"):
        raise TypeError(f"figure_png needs a matplotlib Figure or Axes, got {type(fig_or_ax).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class _quiet:
    """Silence the RuntimeWarnings of nan-reductions over all-nan slices."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
