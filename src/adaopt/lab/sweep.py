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

import time
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
        keep = ("lr", "betas", "alpha", "rho", "eps", "momentum", "weight_decay", "bias_correction")
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
    start = time.perf_counter()
    problem, lrs, seeds, steps = _checked(problem, optimizer, lrs, seeds, steps)
    batch = _Batch.start(problem, optimizer, lrs, seeds)
    record = _Record(steps, batch.x, every, keep_path=problem.dim == 2)
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            x = batch.x
            f, g, s = batch.step(problem, t)
            record.signals_at(t, f, g, batch.x - x, x)
            record.summary_at(t, batch, s, g)
            record.path_at(t, batch.x)
        final = problem.loss(batch.x)
        metrics = problem.metrics(batch.x)
    return Sweep(problem.name, optimizer, lrs, seeds, steps, record.signals, record.summary_steps,
                 record.summaries, np.asarray(final, dtype=np.float64),
                 {k: np.asarray(v) for k, v in metrics.items()}, record.trajectory,
                 time.perf_counter() - start)


def _checked(problem, optimizer, lrs, seeds, steps):
    """The sweep's arguments as arrays, every configuration validated before anything runs."""
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
        optimizer_hp(optimizer, float(lr))
    return problem, lrs, seeds, steps


@dataclass
class _Batch:
    """Every configuration of a sweep as a row: parameters ``x``, the rule's buffers, a seed."""

    rule: object
    family: str
    hp: dict  # ``lr`` is a (rows, 1) column, lr-major
    row_seeds: np.ndarray
    x: np.ndarray
    buffers: dict
    carried: dict  # scalar state (NAdam's product): one for all rows

    @classmethod
    def start(cls, problem: Problem, optimizer: str, lrs: np.ndarray, seeds: np.ndarray) -> _Batch:
        family = registry.variant(optimizer).family
        rule = registry.FAMILIES[family].rule
        hp = optimizer_hp(optimizer, float(lrs[0]))
        hp["lr"] = np.repeat(lrs, len(seeds))[:, None]
        row_seeds = np.tile(seeds, len(lrs))
        x = np.stack([problem.x0(int(s)) for s in row_seeds])
        buffers = {k: np.full(x.shape, fill, dtype=np.float64) for k, fill in rule.buffers(hp).items()}
        return cls(rule, family, hp, row_seeds, x, buffers, rules.scalar_state(rule, hp))

    def step(self, problem: Problem, t: int):
        """Step ``t`` (from 1) on every row; returns the loss, gradient and step scalars it used."""
        f, g = problem.value_and_grad(self.x, step=t - 1, seeds=self.row_seeds)
        s = rules.step_scalars(self.rule, t, self.hp, self.carried)
        self.carried = {k: s[k] for k in self.carried}
        self.x, self.buffers = self.rule.update(self.x, g, self.buffers, self.hp, s)
        return f, g, s


#: The monitor's per-step signals, each recorded for every row.
_SIGNALS = ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "cos_grad", "cos_update")


class _Record:
    """What a sweep keeps: per-step signals, state summaries every ``every`` steps, 2-D paths."""

    def __init__(self, steps: int, x0: np.ndarray, every: int, keep_path: bool):
        rows = len(x0)
        self.signals = {k: np.full((steps, rows), np.nan) for k in _SIGNALS}
        self.summary_steps = np.array(sorted({1, *range(every, steps + 1, every)}))
        self.summaries = {k: np.full((len(self.summary_steps), rows), np.nan)
                          for k in ("lr", "eff_lr_p50", "eps_frac", "g2_vhat")}
        self.trajectory = np.empty((steps + 1, rows, 2)) if keep_path else None
        if self.trajectory is not None:
            self.trajectory[0] = x0
        self._previous = None  # ((g, g.g), (u, u.u)) of the step before
        self._k = 0  # the next summary's index

    def signals_at(self, t: int, f, g, u, x) -> None:
        """Step ``t``'s signals from its loss, gradient, update and the parameters it started at."""
        gg, uu, pp = _dot(g, g), _dot(u, u), _dot(x, x)
        sig = self.signals
        sig["loss"][t - 1] = f
        sig["grad_norm"][t - 1] = np.sqrt(gg)
        sig["update_norm"][t - 1] = np.sqrt(uu)
        sig["param_norm"][t - 1] = np.sqrt(pp)
        sig["update_ratio"][t - 1] = np.where(pp > 0, np.sqrt(uu / np.where(pp > 0, pp, 1)), np.nan)
        if self._previous is not None:
            g_prev, u_prev = self._previous
            sig["cos_grad"][t - 1] = _cos(g, gg, *g_prev)
            sig["cos_update"][t - 1] = _cos(u, uu, *u_prev)
        self._previous = (g, gg), (u, uu)

    def summary_at(self, t: int, batch: _Batch, s, g) -> None:
        """The state summary after step ``t``, if ``t`` is one of ``summary_steps``."""
        k = self._k
        if k < len(self.summary_steps) and self.summary_steps[k] == t:
            _summarise(self.summaries, k, batch.rule, batch.family, batch.buffers, batch.hp, s, g)
            self._k += 1

    def path_at(self, t: int, x) -> None:
        if self.trajectory is not None:
            self.trajectory[t] = x


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
