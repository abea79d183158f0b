"""Batched sweeps: a learning-rate grid x seeds as one array computation.

Every configuration of a sweep is a row of one ``(rows, dim)`` array. The rule from
:mod:`adaopt.rules` runs once per step on all rows, with ``lr`` a ``(rows, 1)``
column: the same function the optimizers use, broadcast over a leading batch axis
instead of looped over in Python. Each step also records the monitor's signals
for every row (loss, gradient/update/parameter norms, cosines of successive
gradients and updates) and, every ``every`` steps, the state summary (median
effective learning rate, g^2/v-hat, the share of coordinates where eps dominates),
so each row gets a :class:`~adaopt.diagnostics.History` and a verdict.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import registry, rules
from ..diagnostics import state
from ..diagnostics.history import History
from ..diagnostics.verdict import Diagnosis, diagnose
from .problems import Problem, get_problem

#: The six the lab compares by default (the lesson's table, with AdamW). Any name of
#: :data:`adaopt.registry.VARIANTS` can be swept.
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
#: Deprecated view of :data:`adaopt.registry.VARIANTS`: name -> (family, overrides).
OPTIMIZERS = {name: (v.family, dict(v.overrides)) for name, v in registry.VARIANTS.items()}
#: 16 learning rates, 1e-4 to 10, three to a decade.
DEFAULT_LRS = tuple(float(f"{v:.3g}") for v in np.logspace(-4, 1, 16))


def optimizer_hp(name: str, lr=1e-3) -> dict:
    """Validated hyperparameters of lab optimizer ``name`` (eps resolved for float64)."""
    v = registry.variant(name)
    family = registry.FAMILIES[v.family]
    hp = {**family.defaults_for("torch"), **v.overrides, "lr": lr}
    return family.validate(hp)


@dataclass
class Sweep:
    """One problem x one optimizer over a learning-rate grid and seeds.

    Arrays indexed ``[step, row]`` (per step) or ``[k, row]`` (state summaries at
    ``summary_steps``), rows ordered lr-major: row ``i`` is ``lrs[i // len(seeds)]``,
    ``seeds[i % len(seeds)]``.
    """

    problem: str
    optimizer: str
    lrs: np.ndarray
    seeds: np.ndarray
    steps: int
    signals: dict  # name -> (steps, rows)
    summary_steps: np.ndarray
    summaries: dict  # name -> (k, rows)
    final_loss: np.ndarray  # (rows,) the full objective at the last iterate
    metrics: dict  # name -> (rows,)
    trajectory: np.ndarray | None = None  # (steps + 1, rows, 2) for 2-D problems
    seconds: float = 0.0
    _verdicts: dict = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return len(self.lrs) * len(self.seeds)

    def row(self, lr_index: int, seed_index: int) -> int:
        return lr_index * len(self.seeds) + seed_index

    def final_by_lr(self) -> np.ndarray:
        """(lrs, seeds) final losses, inf where a run went non-finite."""
        out = self.final_loss.reshape(len(self.lrs), len(self.seeds)).copy()
        out[~np.isfinite(out)] = np.inf
        return out

    @property
    def best_lr_index(self) -> int:
        """The lr with the lowest mean final loss over seeds (ties: the larger lr).

        The mean, not the median: an lr at which any seed blows up (inf) is never the best.
        """
        med = np.mean(self.final_by_lr(), axis=1)
        best = np.flatnonzero(med == med.min())
        return int(best[-1])

    @property
    def best_lr(self) -> float:
        return float(self.lrs[self.best_lr_index])

    def history(self, row: int) -> History:
        cols = {"step": np.arange(1, self.steps + 1)}
        for name, arr in self.signals.items():
            cols[name] = arr[:, row]
        for name, arr in self.summaries.items():
            full = np.full(self.steps, np.nan)
            full[self.summary_steps - 1] = arr[:, row]
            cols[name] = [None if np.isnan(v) else float(v) for v in full]
        family = registry.variant(self.optimizer).family
        hp = optimizer_hp(self.optimizer, float(self.lrs[row // len(self.seeds)]))
        keep = ("lr", "betas", "alpha", "eps", "momentum", "weight_decay", "bias_correction")
        meta = {"optimizer": family, "dtype": "float64", "state_dtype": "float64",
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items() if k in keep}}
        return History(cols, meta)

    def diagnose(self, row: int) -> Diagnosis:
        if row not in self._verdicts:
            f_opt = get_problem(self.problem).f_opt
            self._verdicts[row] = diagnose(self.history(row), floor=f_opt)
        return self._verdicts[row]


def run_sweep(problem: Problem | str, optimizer: str, lrs=DEFAULT_LRS, seeds=(0, 1, 2), steps: int | None = None,
              every: int = 10) -> Sweep:
    """Run ``optimizer`` on ``problem`` for every lr in ``lrs`` and seed in ``seeds`` at once."""
    import time

    start = time.perf_counter()
    problem = get_problem(problem) if isinstance(problem, str) else problem
    lrs = np.asarray(lrs, dtype=np.float64)
    seeds = np.asarray(seeds, dtype=np.int64)
    if lrs.ndim != 1 or len(lrs) == 0 or not np.all(lrs > 0):
        raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {lrs!r}")
    if seeds.ndim != 1 or len(seeds) == 0:
        raise ValueError("seeds must be a non-empty list of integers")
    steps = problem.default_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps={steps}: a sweep takes at least 1 step")
    for lr in lrs:
        optimizer_hp(optimizer, float(lr))  # every configuration is checked before anything runs
    family = registry.variant(optimizer).family
    rule = registry.FAMILIES[family].rule
    hp = optimizer_hp(optimizer, float(lrs[0]))
    rows = len(lrs) * len(seeds)
    hp["lr"] = np.repeat(lrs, len(seeds))[:, None]
    row_seeds = np.tile(seeds, len(lrs))
    x = np.stack([problem.x0(int(s)) for s in row_seeds])
    buffers = {k: np.full(x.shape, fill, dtype=np.float64) for k, fill in rule.buffers(hp).items()}
    carried = rules.scalar_state(rule, hp)

    names = ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "cos_grad", "cos_update")
    signals = {k: np.full((steps, rows), np.nan) for k in names}
    summary_steps = np.array(sorted({1, *range(every, steps + 1, every)}))
    summaries = {k: np.full((len(summary_steps), rows), np.nan)
                 for k in ("lr", "eff_lr_p50", "eps_frac", "g2_vhat")}
    trajectory = np.empty((steps + 1, rows, 2)) if problem.dim == 2 else None
    if trajectory is not None:
        trajectory[0] = x
    g_prev = u_prev = None
    k = 0
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            f, g = problem.value_and_grad(x, step=t - 1, seeds=row_seeds)
            s = rules.step_scalars(rule, t, hp, carried)
            carried = {k: s[k] for k in carried}  # scalar state (NAdam's product): one for all rows
            x_new, buffers = rule.update(x, g, buffers, hp, s)
            u = x_new - x
            gg, uu, pp = _dot(g, g), _dot(u, u), _dot(x, x)
            sig = signals
            sig["loss"][t - 1] = f
            sig["grad_norm"][t - 1] = np.sqrt(gg)
            sig["update_norm"][t - 1] = np.sqrt(uu)
            sig["param_norm"][t - 1] = np.sqrt(pp)
            sig["update_ratio"][t - 1] = np.where(pp > 0, np.sqrt(uu / np.where(pp > 0, pp, 1)), np.nan)
            if g_prev is not None:
                sig["cos_grad"][t - 1] = _cos(g, gg, *g_prev)
                sig["cos_update"][t - 1] = _cos(u, uu, *u_prev)
            g_prev, u_prev = (g, gg), (u, uu)
            if k < len(summary_steps) and summary_steps[k] == t:
                _summarise(summaries, k, rule, family, buffers, hp, s, g)
                k += 1
            x = x_new
            if trajectory is not None:
                trajectory[t] = x
        final = problem.loss(x)
        metrics = problem.metrics(x)
    return Sweep(problem.name, optimizer, lrs, seeds, steps, signals, summary_steps, summaries,
                 np.asarray(final, dtype=np.float64), {k: np.asarray(v) for k, v in metrics.items()},
                 trajectory, time.perf_counter() - start)


def _dot(a, b):
    return np.einsum("ij,ij->i", a, b)


def _cos(a, aa, b, bb):
    den = np.sqrt(aa * bb)
    ok = (den > 0) & np.isfinite(den)
    return np.where(ok, _dot(a, b) / np.where(ok, den, 1), np.nan)


def _summarise(summaries, k, rule, family, buffers, hp, s, g) -> None:
    """The Monitor's state summary (:mod:`adaopt.diagnostics.state`), a median per row."""
    summaries["lr"][k] = hp["lr"][:, 0]
    summaries["eff_lr_p50"][k] = np.median(state.effective_lr(rule, buffers, hp, s, g), axis=1)
    v = state.second_moment(rule, buffers, hp, s)
    if v is not None:
        summaries["eps_frac"][k] = np.mean(state.eps_dominates(rule, v, hp), axis=1)
        if not state.remembers_a_sum(family):
            with warnings.catch_warnings():  # rows where v-hat is 0 everywhere (a diverged run)
                warnings.simplefilter("ignore", RuntimeWarning)
                summaries["g2_vhat"][k] = np.nanmedian(state.g2_over_vhat(g, v), axis=1)


def sweep_one_by_one(problem, optimizer: str, lrs=DEFAULT_LRS, seeds=(0, 1, 2), steps: int | None = None,
                     every: int = 10) -> list[Sweep]:
    """The same configurations run one at a time (the baseline batched sweeps are measured against)."""
    return [run_sweep(problem, optimizer, [lr], [seed], steps, every) for lr in lrs for seed in seeds]
