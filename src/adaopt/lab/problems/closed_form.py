"""The closed-form problems: four deterministic test functions and the noisy quadratic model.

``quadratic`` (dim 10), ``rosenbrock``, ``beale`` and ``saddle`` (dim 2, drawn as contour
maps by the lab's plots) and ``noisy_quadratic`` (dim 100, stochastic): objectives
written out in a line or two, with their exact gradients.
"""

from __future__ import annotations

import numpy as np

from .base import Problem, _frozen


# ======================================================================================
# Deterministic test functions
# ======================================================================================


class Quadratic(Problem):
    """Ill-conditioned quadratic: f(x) = 0.5 * sum_i h_i (x_i - c_i)^2.

    Curvatures h = logspace(-2, 2, 10) span four decades, c = (+1, -1, +1, ...).
    Optimum f = 0 at x = c; start x0 = 0, so every coordinate starts one unit away.

    Why it is here: one global learning rate must be below 2 / h_max for stability and then
    crawls along the flat directions (condition number 1e4); per-coordinate rates
    (AdaGrad, RMSprop, Adam) rescale each axis, which is the lesson's motivation.
    """

    name = "quadratic"
    title = "Ill-conditioned quadratic (dim 10, curvatures 1e-2 .. 1e2)"
    description = ("A diagonal quadratic whose curvatures span 1e4: a single learning rate "
                   "is either unstable on the steep axes or crawls on the flat ones, which "
                   "is what per-coordinate learning rates fix.")
    dim = 10
    f_opt = 0.0
    default_steps = 500

    h = _frozen(np.logspace(-2, 2, 10))
    c = _frozen(1.0 - 2.0 * (np.arange(10) % 2))
    x_opt = c

    def _start(self):
        return np.zeros(self.dim)

    def _vg(self, x):
        d = x - self.c
        hd = self.h * d
        return 0.5 * np.einsum("ni,ni->n", hd, d), hd


class _Surface(Problem):
    """A 2-D test function: the lab plots its paths over a contour map of ``bounds``.

    Defaults: the optimum value 0 and a 1000-step budget (``saddle`` sets its own).
    """

    dim = 2
    f_opt = 0.0
    default_steps = 1000


class Rosenbrock(_Surface):
    """Rosenbrock: f(x, y) = (a - x)^2 + b (y - x^2)^2 with a = 1, b = 100.

    Optimum f = 0 at (1, 1); start (-1.2, 1).

    Why it is here: a narrow curved valley whose direction and curvature change along the
    way; momentum and adaptive rates are tested on following the bend rather than
    bouncing between the walls.
    """

    name = "rosenbrock"
    title = "Rosenbrock (a=1, b=100)"
    description = ("The classic curved valley: easy to find, slow to follow, so it separates "
                   "methods that build speed along the valley floor from those that bounce "
                   "between its walls.")
    x_opt = _frozen([1.0, 1.0])
    bounds = ((-2.0, 2.0), (-1.0, 3.0))

    a = 1.0
    b = 100.0

    def _start(self):
        return np.array([-1.2, 1.0])

    def _vg(self, x):
        u, v = x[:, 0], x[:, 1]
        r = self.a - u
        s = v - u * u
        f = r * r + self.b * s * s
        g = np.stack([-2.0 * r - 4.0 * self.b * u * s, 2.0 * self.b * s], axis=-1)
        return f, g


class Beale(_Surface):
    """Beale: f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2.

    Optimum f = 0 at (3, 0.5); start (1, 1).

    Why it is here: gradients range from nearly zero on the plateaus to huge near the
    corners (the y^3 term), so it tests how a method copes with gradient scales that
    change by orders of magnitude along the path.
    """

    name = "beale"
    title = "Beale"
    description = ("Flat plateaus next to steep walls: gradient magnitudes change by orders of "
                   "magnitude along the path, which adaptive step sizes normalise away.")
    x_opt = _frozen([3.0, 0.5])
    bounds = ((-4.5, 4.5), (-4.5, 4.5))

    def _start(self):
        return np.array([1.0, 1.0])

    def _vg(self, x):
        u, v = x[:, :1], x[:, 1:]                      # (N, 1) each
        k = np.arange(1, 4)                            # the powers of y, 1..3
        t = np.array([1.5, 2.25, 2.625]) - u + u * v**k    # (N, 3) residuals
        f = np.einsum("nk,nk->n", t, t)
        gx = 2.0 * np.einsum("nk,nk->n", t, v**k - 1.0)
        gy = 2.0 * np.einsum("nk,nk->n", t, k * u * v ** (k - 1))
        return f, np.stack([gx, gy], axis=-1)


class Saddle(_Surface):
    """A saddle: f(x, y) = x^2 + y^4 / 4 - y^2 / 2.

    A saddle point at the origin (f = 0) and two minima at (0, +-1) with f = -0.25;
    ``x_opt`` is (0, 1), the one the start leads to. Start (1, 1e-3), just off the saddle.

    Why it is here: the gradient along y is tiny near y = 0, so plain gradient descent
    lingers at the saddle; methods that divide by the gradient's recent magnitude
    (RMSprop, Adam) escape much sooner.
    """

    name = "saddle"
    title = "Saddle x^2 + y^4/4 - y^2/2"
    description = ("Starting just off a saddle point, the escape direction has a tiny gradient: "
                   "SGD lingers there, while methods that normalise by the gradient's size "
                   "escape quickly.")
    f_opt = -0.25
    x_opt = _frozen([0.0, 1.0])
    bounds = ((-1.5, 1.5), (-1.5, 1.5))
    default_steps = 500

    def _start(self):
        return np.array([1.0, 1e-3])

    def _vg(self, x):
        u, v = x[:, 0], x[:, 1]
        f = u * u + 0.25 * v**4 - 0.5 * v * v
        return f, np.stack([2.0 * u, v**3 - v], axis=-1)


# ======================================================================================
# Stochastic: the noisy quadratic model
# ======================================================================================


class NoisyQuadratic(Problem):
    """The noisy quadratic model (Zhang et al. 2019, "Which algorithmic choices matter at
    which batch sizes?").

    f(x) = 0.5 * sum_i h_i x_i^2 with h_i = 1 / i, i = 1..100. The stochastic gradient is
    h * x + sqrt(h) * sigma * xi with xi ~ N(0, I) and sigma = 1: gradient noise whose
    covariance is proportional to the curvature, as for a minibatch loss near a minimum.
    ``value_and_grad`` returns the noise-free value 0.5 sum h x^2 as ``f`` (the noise is
    additive in the gradient only), which is also ``loss``, the exact expected loss.
    Optimum f = 0 at x = 0; start x0 = ones.

    Why it is here: it reproduces, in closed form, how noise limits the useful learning rate
    and how preconditioning (Adam) and momentum help at large batch sizes but not at small.
    """

    name = "noisy_quadratic"
    title = "Noisy quadratic model (Zhang et al. 2019), dim 100"
    description = ("A quadratic with curvatures 1/i and gradient noise proportional to the "
                   "curvature: the analysable model of minibatch training, where noise, not "
                   "conditioning alone, limits the learning rate.")
    dim = 100
    stochastic = True
    f_opt = 0.0
    x_opt = _frozen(np.zeros(100))
    default_steps = 500

    h = _frozen(1.0 / np.arange(1, 101))
    sigma = 1.0

    def _start(self):
        return np.ones(self.dim)

    def _loss(self, x):
        return 0.5 * np.einsum("ni,ni->n", self.h * x, x)

    def _vg(self, x):
        return self._loss(x), self.h * x

    def _vg_sample(self, x, rng):
        xi = rng.standard_normal(self.dim)
        f, g = self._vg(x)
        return f, g + np.sqrt(self.h) * self.sigma * xi
