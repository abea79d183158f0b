"""The lab's built-in problems: objectives with exact gradients, batched over many points.

=====================  ====  ==========  =====================================================
name                   dim   stochastic  what it is
=====================  ====  ==========  =====================================================
``quadratic``          10    no          0.5 sum h_i (x_i - c_i)^2, curvatures 1e-2 .. 1e2
``rosenbrock``         2     no          the banana valley, a=1, b=100
``beale``              2     no          Beale's function: flat plateaus and steep walls
``saddle``             2     no          x^2 + y^4/4 - y^2/2: start just off a saddle point
``noisy_quadratic``    100   yes         the noisy quadratic model of Zhang et al. (2019)
``sparse_logistic``    500   yes         logistic regression on Zipf-sparse binary features
``breast_cancer``      31    no          logistic regression on unscaled breast-cancer data
``digits_mlp``         2410  yes         a 64-32-10 tanh MLP on the 8x8 digits, with test split
=====================  ====  ==========  =====================================================

Every problem evaluates many points at once: ``x`` has shape ``(..., dim)`` (typically
``(B, dim)``, one row per learning rate of a sweep) and ``value_and_grad`` returns ``f`` of
shape ``x.shape[:-1]`` and ``g`` of shape ``x.shape``, everything float64.

Stochastic problems draw their minibatch (or noise) from ``np.random.default_rng([seed,
step])``: rows that share a seed at a step see the same minibatch, so a learning-rate grid
is compared on common random numbers. ``loss`` is the full, deterministic objective.

The two scikit-learn data sets (``breast_cancer``, ``digits_mlp``) are loaded on first use;
importing this package needs NumPy only.

The problems live in modules by kind: :mod:`.base` (the batched ``Problem`` API),
:mod:`.closed_form` (the test functions and the noisy quadratic), :mod:`.logistic`
(``sparse_logistic``, ``breast_cancer``) and :mod:`.mlp` (``digits_mlp``); this package
holds the registry.

>>> from adaopt.lab import get_problem
>>> p = get_problem("rosenbrock")
>>> f, g = p.value_and_grad(p.x0())
>>> round(float(f), 9), g.round(9).tolist()
(24.2, [-215.6, -88.0])
"""

from __future__ import annotations

from .base import Problem
from .closed_form import Beale, NoisyQuadratic, Quadratic, Rosenbrock, Saddle
from .logistic import BreastCancer, SparseLogistic
from .mlp import DigitsMLP

__all__ = [
    "PROBLEMS", "Problem", "Quadratic", "Rosenbrock", "Beale", "Saddle", "NoisyQuadratic",
    "SparseLogistic", "BreastCancer", "DigitsMLP", "get_problem",
]


PROBLEMS: dict[str, Problem] = {p.name: p for p in (
    Quadratic(), Rosenbrock(), Beale(), Saddle(), NoisyQuadratic(), SparseLogistic(),
    BreastCancer(), DigitsMLP(),
)}


def get_problem(name: str) -> Problem:
    """The registered problem called ``name``; ``ValueError`` listing the choices otherwise."""
    try:
        return PROBLEMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown problem {name!r}; choose one of: "
                         f"{', '.join(PROBLEMS)}") from None
