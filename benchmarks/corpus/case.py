"""What a corpus case is: a run under a seed, its label, its twin, and how a verdict is judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from adaopt.diagnostics import Diagnosis, History, diagnose

#: The cause codes a healthy run may be given (with CONVERGING or CONVERGED).
HEALTHY_CODES = frozenset({"progress", "optimum", "noise_floor", "gradient_vanished", "weight_decay",
                           "reached_target"})
HEALTHY = frozenset({"CONVERGING", "CONVERGED"})
SEEDS = (0, 1, 2)


@dataclass
class Result:
    """One run: its history, the first step ``check()`` fired at (None: never), the final
    loss on a fixed evaluation set (lower is better; what a twin is compared on), the step a
    failure began at when the run knows it, and what ``diagnose`` is given beside the history."""

    history: History
    fired: int | None
    final: float
    onset: int | None = None
    kwargs: dict = field(default_factory=dict)

    def diagnose(self) -> Diagnosis:
        return diagnose(self.history, **self.kwargs)


@dataclass(frozen=True)
class Case:
    """A labelled run. ``run(seed)`` returns a :class:`Result`; the label is the verdicts and
    cause codes it may get; ``twin(seed)`` is the run with the advice applied (failures only),
    whose ``final`` must be below the run's by ``better`` (a factor)."""

    name: str
    kind: str  # the failure class, or "healthy"
    run: Callable[[int], Result]
    verdicts: frozenset
    codes: frozenset
    twin: Callable[[int], Result] | None = None
    better: float = 0.9  # the twin's final loss must be at most this share of the run's
    fast: bool = False  # in the suite's subset
    alarm: bool = False  # check()/stop_on should fire (a blow-up, a creep, a NaN)

    @property
    def healthy(self) -> bool:
        return self.kind == "healthy"

    def __str__(self) -> str:
        return self.name


def case(name, kind, run, verdicts, codes=None, **kw) -> Case:
    """A Case with its label given as strings or sets (a healthy case needs no codes)."""
    as_set = lambda v: frozenset([v] if isinstance(v, str) else v)  # noqa: E731
    if kind == "healthy":
        verdicts, codes = verdicts or HEALTHY, codes or HEALTHY_CODES
    return Case(name, kind, run, as_set(verdicts), as_set(codes), **kw)


def judge(c: Case, d: Diagnosis) -> bool:
    """Whether a verdict matches the case's label."""
    return d.verdict in c.verdicts and d.code in c.codes


def twin_better(run: Result, twin: Result, better: float) -> bool:
    """Whether the twin (the advice applied) ended measurably lower than the run."""
    a, b = run.final, twin.final
    if not np.isfinite(b):
        return False
    return not np.isfinite(a) or b <= better * a
