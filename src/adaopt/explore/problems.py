"""The surfaces ``adaopt explore`` draws: the lab's 2-D problems, two 2-D quadratics and typed f(x, y).

=====================  ==============================================================
name                   f(x, y)
=====================  ==============================================================
``rosenbrock``         the lab's: (1 - x)^2 + 100 (y - x^2)^2
``beale``              the lab's: Beale's function
``saddle``             the lab's: x^2 + y^4/4 - y^2/2
``quadratic``          0.5 (h1 x^2 + h2 y^2), h = (1, 50): ill-conditioned, axis-aligned
``quadratic_rotated``  the same bowl turned by 45 degrees: 0.5 (R p)^T diag(h) (R p)
=====================  ==============================================================

The two quadratics are the lesson's "one size doesn't fit all" in one picture: a
per-coordinate learning rate (AdaGrad, RMSprop, Adam) rescales x and y separately,
which undoes the axis-aligned bowl's conditioning, but the rotated bowl's steep and
flat directions are diagonals, which no per-coordinate scaling can tell apart.

A typed expression becomes an :class:`ExpressionProblem`: parsed by
:func:`adaopt.expr.parse` (never evaluated as Python), with its exact derivative,
evaluated on every row at once like the lab's problems.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from ..expr import _run, parse
from ..lab.problems import PROBLEMS, Problem
from ..lab.problems.base import _frozen

#: The most characters of a typed f(x, y) the page sends (the parser's own bound is larger).
MAX_EXPRESSION = 500


class InputError(ValueError):
    """A request the explorer refuses: the server answers it 400 with this message. Any other
    exception while answering is a bug of the server's, answered 500, never taken for bad input."""


@contextlib.contextmanager
def checking_input():
    """Inside: every ``ValueError`` (the parser's, the registry's, a hyperparameter's check) is the
    request's fault and leaves as an :class:`InputError` with the same message."""
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(str(exc)) from None


class Quadratic2D(Problem):
    """f(p) = 0.5 (R p)^T diag(h) (R p), R the rotation by ``angle`` degrees; minimum 0 at 0.

    With ``angle = 0`` it is 0.5 (h1 x^2 + h2 y^2), whose gradient (h1 x, h2 y) keeps
    the axes apart; with ``angle = 45`` the curvatures h1 and h2 lie along the diagonals.
    """

    dim = 2
    f_opt = 0.0
    x_opt = _frozen([0.0, 0.0])
    bounds = ((-3.0, 3.0), (-3.0, 3.0))
    default_steps = 500
    h = _frozen([1.0, 50.0])

    def __init__(self, name: str, angle: float, title: str, description: str):
        self.name, self.title, self.description = name, title, description
        a = math.radians(angle)
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        self.hessian = _frozen(rot.T @ np.diag(self.h) @ rot)

    def _start(self):
        return np.array([-2.5, 1.0])

    def _vg(self, x):
        hx = x @ self.hessian
        return 0.5 * np.einsum("ni,ni->n", hx, x), hx


class ExpressionProblem(Problem):
    """A typed f(x, y), parsed by :func:`adaopt.expr.parse`, evaluated on rows ``(N, 2)``."""

    dim = 2
    f_opt = None
    default_steps = 500
    bounds = ((-3.0, 3.0), (-3.0, 3.0))

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise ValueError(f"expr must be a string, got {type(text).__name__}")
        if len(text) > MAX_EXPRESSION:
            raise ValueError(f"expr is {len(text)} characters long; at most {MAX_EXPRESSION} are allowed")
        self.objective = parse(text, variables=("x", "y"))  # ValueError naming the column
        self.name, self.title, self.description = "custom", f"f(x, y) = {text}", "the function you typed"

    def _start(self):
        return np.array([1.0, 1.0])

    def _vg(self, x):
        program, outputs = self.objective._program  # f and its two derivatives, shared parts once
        values = _run(program, {"x": x[:, 0], "y": x[:, 1]})  # every row in one pass
        f, gx, gy = (np.broadcast_to(np.asarray(values[i], dtype=np.float64), (len(x),)) for i in outputs)
        return f.copy(), np.stack([gx, gy], axis=-1)


SURFACES: dict[str, Problem] = {
    "rosenbrock": PROBLEMS["rosenbrock"],
    "beale": PROBLEMS["beale"],
    "saddle": PROBLEMS["saddle"],
    "quadratic": Quadratic2D(
        "quadratic", 0.0, "Ill-conditioned quadratic, axis-aligned (curvatures 1 and 50)",
        "The steep and flat directions are x and y: per-coordinate learning rates rescale each and "
        "walk almost straight to the minimum."),
    "quadratic_rotated": Quadratic2D(
        "quadratic_rotated", 45.0, "The same quadratic, rotated 45 degrees",
        "The same bowl with its steep and flat directions on the diagonals: x and y see the same "
        "gradients' sizes, so a per-coordinate learning rate cannot help, and everyone zig-zags."),
}


def surface(name: str, expr: str | None = None) -> Problem:
    """The surface called ``name``, or ``"custom"`` with ``expr``; ``ValueError`` naming the choices."""
    if name == "custom":
        if expr is None or not str(expr).strip():
            raise ValueError("problem 'custom' needs expr, a function of x and y such as 'x**2 + 10*y**2'")
        return ExpressionProblem(expr)
    try:
        return SURFACES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown problem {name!r}; choose one of: {', '.join(SURFACES)}, custom") from None
