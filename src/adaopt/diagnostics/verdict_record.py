"""The records a verdict is written in: Diagnosis, the Cause a check finds, and how their numbers read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Diagnosis:
    """A verdict with its cause, the evidence it rests on and what to change."""

    verdict: str
    cause: str
    code: str  # a short key for the cause: "lr_too_high", "adagrad_accumulator", ...
    evidence: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    steps: tuple[int, int] | None = None  # the step range the verdict rests on
    signals: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.verdict}: {self.cause}"]
        if self.steps:
            a, b = self.steps
            lines[0] += f"  (step {a})" if a == b else f"  (steps {a}-{b})"
        if self.evidence:
            lines += ["  evidence:"] + [f"    - {e}" for e in self.evidence]
        if self.advice:
            lines += ["  advice:"] + [f"    - {a}" for a in self.advice]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "cause": self.cause, "code": self.code, "evidence": self.evidence,
                "advice": self.advice, "steps": list(self.steps) if self.steps else None,
                "signals": {k: plain(v) for k, v in self.signals.items()}}


@dataclass
class Cause:
    """A reason for slow or no progress, before a verdict is attached to it (:func:`with_cause`)."""

    cause: str
    code: str
    evidence: list[str]
    advice: list[str]
    signals: dict


def with_cause(cause: Cause, verdict: str, evidence: list[str], steps, signals) -> Diagnosis:
    """``verdict`` for ``cause``: the check's evidence and signals first, then the cause's own."""
    return Diagnosis(verdict, cause.cause, cause.code, evidence=evidence + cause.evidence, advice=cause.advice,
                     steps=steps, signals={**signals, **cause.signals})


#: How advice names the lr range test: the Python call (a log read by ``adaopt diagnose`` is no
#: lab problem, which is all the CLI's ``adaopt lr-find`` takes).
LR_FIND = "adaopt.lr_find(model, loss_fn=..., data=...)"


def fmt(x) -> str:
    """A number as the verdicts write it: 4 significant digits, "?" when unknown."""
    if x is None:
        return "?"
    x = float(x)
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def plain(v):
    """A NumPy scalar as the Python number it holds (for JSON)."""
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
