"""What an optimizer's state says, element by element, through the rule's own math.

Both the Monitor (a sample of a real model's state) and the lab's batched sweeps (every
coordinate of every row) summarise the state with these functions and only reduce
differently (quantiles over a sample, a median per row), so the arithmetic is written
once:

* the effective learning rate, ``rule.effective_lr`` (the lesson's
  :math:`\\eta/\\sqrt{G}`, :math:`\\eta/(\\sqrt{\\hat v}+\\epsilon)`);
* where epsilon dominates the denominator: :math:`\\epsilon \\ge \\sqrt{\\hat v}`, i.e.
  :math:`\\epsilon^2 \\ge \\hat v` (:math:`\\epsilon \\ge \\hat v` when epsilon is inside
  the root);
* :math:`g^2/\\hat v`, how today's squared gradient compares with the remembered one
  (undefined where :math:`\\hat v = 0`; not asked of AdaGrad, whose :math:`G` is a sum);
* the bias-correction factors :math:`1/(1-\\beta^t)` the rule applied, if any.
"""

from __future__ import annotations

import numpy as np


def effective_lr(rule, buffers: dict, hp: dict, s: dict, like: np.ndarray) -> np.ndarray:
    """The per-coordinate step size, broadcast to ``like``'s shape."""
    return np.broadcast_to(rule.effective_lr(buffers, hp, s), np.shape(like))


def second_moment(rule, buffers: dict, hp: dict, s: dict):
    """v-hat (or G, or the variance): the quantity under the root; None for rules without one."""
    return rule.second_moment(buffers, hp, s) if hasattr(rule, "second_moment") else None


def eps_dominates(rule, v: np.ndarray, hp: dict) -> np.ndarray:
    """True where epsilon is at least the root of ``v`` in the denominator (epsilon inside
    the root where the rule says so: ``eps_inside_root(hp)``, else ``hp["eps_in_sqrt"]``)."""
    inside = rule.eps_inside_root(hp) if hasattr(rule, "eps_inside_root") else hp.get("eps_in_sqrt", False)
    limit = hp["eps"] if inside else hp["eps"] ** 2
    return v <= limit


def g2_over_vhat(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """g^2 / v-hat, NaN where v-hat is 0."""
    ok = v > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, np.square(g) / np.where(ok, v, 1.0), np.nan)


def remembers_a_sum(family: str) -> bool:
    """AdaGrad's G sums every squared gradient: g^2 / G is no comparison with "today"."""
    return family == "adagrad"


def bias_factors(rule, hp: dict, s: dict) -> dict:
    """``{"bc1": 1/(1-beta1^t), "bc2": 1/(1-beta2^t)}`` when the rule corrects its moments."""
    if not hp.get("bias_correction", False) or "bc1" not in s:
        return {}
    return {"bc1": 1.0 / s["bc1"], "bc2": 1.0 / s["bc2"]}
