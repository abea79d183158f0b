"""The lab run: every optimizer on every problem, tuned, seeded, diagnosed, and summarised.

:func:`run_lab` sweeps each (problem, optimizer) pair over the lr grid and the seeds
in one batched computation (:mod:`adaopt.lab.sweep`), picks each pair's best lr,
diagnoses every seed's run at that lr, and measures the evidence for the lesson's
table "Why Adam dominates practice".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import registry
from .problems import PROBLEMS, get_problem
from .sweep import DEFAULT_LRS, DEFAULT_OPTIMIZERS, Sweep, run_sweep

#: Problems whose curvature differs by orders of magnitude across coordinates.
ILL_CONDITIONED = ("quadratic", "breast_cancer", "rosenbrock")


@dataclass
class LabResult:
    """Every sweep of a lab run, keyed by ``(problem, optimizer)``."""

    problems: list[str]
    optimizers: list[str]
    lrs: np.ndarray
    seeds: np.ndarray
    sweeps: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # sweeps run only for the evidence (adam-nobc)
    seconds: float = 0.0

    def sweep(self, problem: str, optimizer: str) -> Sweep:
        return self.sweeps.get((problem, optimizer)) or self.extra[(problem, optimizer)]

    def records(self) -> list[dict]:
        """Tidy records: one per (problem, optimizer, lr, seed)."""
        out = []
        for (problem, optimizer), sw in self.sweeps.items():
            best = sw.best_lr_index
            for i, lr in enumerate(sw.lrs):
                for j, seed in enumerate(sw.seeds):
                    row = sw.row(i, j)
                    rec = {"problem": problem, "optimizer": optimizer, "lr": float(lr), "seed": int(seed),
                           "best_lr": i == best, "final_loss": _num(sw.final_loss[row])}
                    for name, values in sw.metrics.items():
                        rec[name] = _num(values[row])
                    if i == best:
                        d = sw.diagnose(row)
                        rec.update(verdict=d.verdict, cause=d.code)
                    out.append(rec)
        return out

    def summary(self) -> list[dict]:
        """One row per (problem, optimizer) at its best lr: mean and spread over seeds."""
        out = []
        for (problem, optimizer), sw in self.sweeps.items():
            b = sw.best_lr_index
            finals = sw.final_by_lr()[b]
            verdicts = [sw.diagnose(sw.row(b, j)).verdict for j in range(len(sw.seeds))]
            row = {"problem": problem, "optimizer": optimizer, "best_lr": sw.best_lr,
                   "final_loss_mean": float(np.mean(finals)), "final_loss_std": float(np.std(finals)),
                   "verdict": max(verdicts, key=verdicts.count)}  # ties: the first seed's
            for name, values in sw.metrics.items():
                v = values.reshape(len(sw.lrs), len(sw.seeds))[b]
                row[f"{name}_mean"] = float(np.mean(v))
            out.append(row)
        return out

    def evidence(self) -> list[dict]:
        """The lesson's table "Why Adam dominates practice", one measured claim per column."""
        return evidence(self)


def run_lab(problems=None, optimizers=DEFAULT_OPTIMIZERS, *, lrs=DEFAULT_LRS, seeds=(0, 1, 2), steps=None,
            progress=None) -> LabResult:
    """Run the lab. ``progress(done, total, label)`` is called after each sweep."""
    start = time.perf_counter()
    problems = list(PROBLEMS) if problems is None else list(problems)
    for p in problems:
        get_problem(p)
    optimizers = list(optimizers)
    for o in optimizers:
        registry.variant(o)  # an unknown name is refused, naming the known ones
    result = LabResult(problems, optimizers, np.asarray(lrs, float), np.asarray(seeds))
    # the bias-correction evidence: Adam without it, at Adam's best lr only
    extra = [(p, "adam-nobc") for p in problems if "adam" in optimizers and "adam-nobc" not in optimizers]
    jobs = [(p, o) for p in problems for o in optimizers] + extra
    for done, (p, o) in enumerate(jobs, start=1):
        if (p, o) in extra:
            result.extra[(p, o)] = run_sweep(p, o, [result.sweeps[(p, "adam")].best_lr], seeds, steps)
        else:
            result.sweeps[(p, o)] = run_sweep(p, o, lrs, seeds, steps)
        if progress is not None:
            progress(done, len(jobs), f"{p} / {o}")
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------------- the lesson's table, measured


def _best_final(result: LabResult, problem: str, optimizer: str) -> float | None:
    key = (problem, optimizer)
    if key not in result.sweeps and key not in result.extra:
        return None
    sw = result.sweep(problem, optimizer)
    return float(np.mean(sw.final_by_lr()[sw.best_lr_index]))


def _eff_lr_drop(sw: Sweep) -> float:
    """Median over seeds of (effective lr at step 1) / (effective lr at the end), at the best lr."""
    b = sw.best_lr_index
    rows = [sw.row(b, j) for j in range(len(sw.seeds))]
    eff = sw.summaries["eff_lr_p50"][:, rows]
    return float(np.median(eff[0] / eff[-1]))


def _wins(result: LabResult, a: str, b: str, problems) -> tuple[int, int, list[str]]:
    """How many of ``problems`` optimizer ``a`` ends lower than ``b`` at each's best lr (gap to f* if known)."""
    wins, n, detail = 0, 0, []
    for p in problems:
        fa, fb = _best_final(result, p, a), _best_final(result, p, b)
        if fa is None or fb is None:
            continue
        f_opt = get_problem(p).f_opt or 0.0
        ga, gb = fa - f_opt, fb - f_opt
        n += 1
        wins += ga < gb
        detail.append(f"{p}: {ga:.3g} vs {gb:.3g}")
    return wins, n, detail


def evidence(result: LabResult) -> list[dict]:
    """The measured rows of the lesson's table, column by column, for the optimizers that ran."""
    opts = set(result.optimizers)
    return [*_momentum_rows(result, opts), *_adaptive_lr_rows(result, opts), *_doesnt_die_rows(result, opts),
            *_generalization_rows(result, opts), *_bias_correction_rows(result, opts)]


def _momentum_rows(result: LabResult, opts: set) -> list[dict]:
    if not {"sgd", "momentum"} <= opts:
        return []
    w, n, detail = _wins(result, "momentum", "sgd", result.problems)
    return [{"column": "Momentum", "claim": "momentum speeds SGD up on consistent gradients",
             "measured": f"SGD+momentum ends lower than SGD on {w} of {n} problems (best lr each)",
             "agrees": w > n / 2, "detail": detail}]


def _adaptive_lr_rows(result: LabResult, opts: set) -> list[dict]:
    rows = []
    ill = [p for p in result.problems if p in ILL_CONDITIONED]
    for adaptive in ("rmsprop", "adam"):
        if {"sgd", adaptive} <= opts and ill:
            w, n, detail = _wins(result, adaptive, "sgd", ill)
            rows.append({"column": "Adaptive LR", "claim": "per-coordinate rates handle ill-conditioning",
                         "measured": f"{adaptive} ends lower than SGD on {w} of {n} ill-conditioned problems",
                         "agrees": w > n / 2, "detail": detail})
    return rows


def _doesnt_die_rows(result: LabResult, opts: set) -> list[dict]:
    if "adagrad" not in opts:
        return []
    problems = result.problems
    drops = {p: _eff_lr_drop(result.sweep(p, "adagrad")) for p in problems}
    others = {o: {p: _eff_lr_drop(result.sweep(p, o)) for p in problems} for o in ("rmsprop", "adam") if o in opts}
    med = float(np.median(list(drops.values())))
    text = f"AdaGrad's median effective lr falls {med:.3g}x over a run (median over problems)"
    for o, d in others.items():
        text += f"; {o}'s {float(np.median(list(d.values()))):.3g}x"
    return [{"column": "Doesn't die", "claim": "AdaGrad's effective lr decays monotonically; "
             "RMSprop's and Adam's do not",
             "measured": text,
             "agrees": all(med > float(np.median(list(d.values()))) for d in others.values()),
             "detail": [f"{p}: {v:.3g}x" for p, v in drops.items()]}]


def _generalization_rows(result: LabResult, opts: set) -> list[dict]:
    """One row per problem with a test split: test accuracy of SGD+momentum vs Adam."""
    if not {"momentum", "adam"} <= opts:
        return []
    rows = []
    for p in result.problems:
        if "test_accuracy" not in result.sweep(p, "adam").metrics:
            continue
        acc = {}
        for o in ("momentum", "adam"):
            sw = result.sweep(p, o)
            acc[o] = sw.metrics["test_accuracy"].reshape(len(sw.lrs), -1)[sw.best_lr_index]
        m, a = acc["momentum"], acc["adam"]
        rows.append({"column": "Generalization (pitfall 4)",
                     "claim": "SGD with momentum can generalize better than Adam",
                     "measured": f"{p}: test accuracy {m.mean():.3f} +- {m.std():.3f} (SGD+momentum) vs "
                     f"{a.mean():.3f} +- {a.std():.3f} (Adam), each at its best training lr",
                     "agrees": bool(m.mean() >= a.mean()),
                     "detail": [f"seed {j}: {x:.3f} vs {y:.3f}" for j, (x, y) in enumerate(zip(m, a))]})
    return rows


def _bias_correction_rows(result: LabResult, opts: set) -> list[dict]:
    """Adam's first update with and without bias correction, at Adam's best lr."""
    if "adam" not in opts:
        return []
    ratios, detail = [], []
    for p in result.problems:
        key = (p, "adam-nobc")
        if key not in result.extra and key not in result.sweeps:
            continue
        with_bc, without = result.sweep(p, "adam"), result.sweep(p, "adam-nobc")
        # the first update, as a multiple of lr, at the same lr (adam's best)
        b = with_bc.best_lr_index
        c = int(np.argmin(np.abs(without.lrs - with_bc.lrs[b])))  # the same lr
        first_with = np.median(with_bc.signals["update_norm"][0].reshape(len(with_bc.lrs), -1)[b])
        first_without = np.median(without.signals["update_norm"][0].reshape(len(without.lrs), -1)[c])
        ratios.append(first_without / first_with)
        fw, fo = _best_final(result, p, "adam"), _best_final(result, p, "adam-nobc")
        lr_o = without.lrs[without.best_lr_index]
        at = (f"both at lr {with_bc.lrs[b]:.3g}" if np.isclose(lr_o, with_bc.lrs[b]) else
              f"each at its best lr, {with_bc.lrs[b]:.3g} and {lr_o:.3g}")
        detail.append(f"{p}: first step {first_without / first_with:.3g}x at lr {with_bc.lrs[b]:.3g}; final "
                      f"{fw:.3g} (with) vs {fo:.3g} (without), {at}")
    if not ratios:
        return []
    r = float(np.median(ratios))
    return [{"column": "Bias correction", "claim": "without bias correction early steps are "
             "too small (the lesson: m1 is 10x too small)",
             "measured": f"without correction the first step is {r:.3g}x the corrected one "
             "(median over problems): larger, not smaller, because v1 is 1000x too small as well",
             "agrees": r < 1, "detail": detail}]


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None
