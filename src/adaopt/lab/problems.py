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
importing this module needs NumPy only.

>>> from adaopt.lab import get_problem
>>> p = get_problem("rosenbrock")
>>> f, g = p.value_and_grad(p.x0())
>>> round(float(f), 9), g.round(9).tolist()
(24.2, [-215.6, -88.0])
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

__all__ = [
    "PROBLEMS", "Problem", "Quadratic", "Rosenbrock", "Beale", "Saddle", "NoisyQuadratic",
    "SparseLogistic", "BreastCancer", "DigitsMLP", "get_problem",
]


class Problem:
    """An objective for the lab: ``value_and_grad``, ``loss`` and ``metrics``, batched.

    Subclasses set the class attributes below and implement ``_vg`` (deterministic
    problems) or ``_vg_sample`` and ``_loss`` (stochastic ones), all on 2-D arrays of
    rows ``(N, dim)``; the public methods handle leading batch axes and seeds.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    dim: int = 0
    stochastic: bool = False
    f_opt: float | None = None
    x_opt: np.ndarray | None = None
    bounds: tuple | None = None
    default_steps: int = 1000

    #: Standard deviation of the perturbation ``x0(seed)`` adds for ``seed != 0``.
    x0_scale: float = 0.1

    def __repr__(self) -> str:
        return f"<Problem {self.name!r}: {self.title}, dim={self.dim}>"

    # -- the public, batched API -------------------------------------------------------

    def x0(self, seed: int = 0) -> np.ndarray:
        """The start: the canonical one for ``seed=0``, a small deterministic perturbation of
        it (``x0_scale`` times a standard normal draw from ``default_rng(seed)``) otherwise."""
        x = np.array(self._start(), dtype=np.float64)
        if seed:
            x += self.x0_scale * np.random.default_rng(seed).standard_normal(self.dim)
        return x

    def value_and_grad(self, x, *, step: int = 0, seeds=0) -> tuple[np.ndarray, np.ndarray]:
        """``f`` of shape ``x.shape[:-1]`` and its gradient ``g`` of shape ``x.shape``.

        For stochastic problems the minibatch (or noise) is a deterministic function of
        ``(seed, step)``: ``seeds`` is an int or an int array broadcastable to
        ``x.shape[:-1]``, and rows with the same seed at the same step see the same
        minibatch. Deterministic problems ignore ``step`` and ``seeds``.
        """
        rows, lead = self._rows(x)
        if not self.stochastic:
            f, g = self._vg(rows)
        else:
            f, g = self._per_seed(rows, lead, step, seeds)
        return f.reshape(lead), g.reshape(lead + (self.dim,))

    def loss(self, x) -> np.ndarray:
        """The full, deterministic objective, shape ``x.shape[:-1]``."""
        rows, lead = self._rows(x)
        return self._loss(rows).reshape(lead)

    def metrics(self, x) -> dict[str, np.ndarray]:
        """Extra numbers per row (accuracy, test loss, ...), each of shape ``x.shape[:-1]``."""
        rows, lead = self._rows(x)
        return {k: np.asarray(v, dtype=np.float64).reshape(lead)
                for k, v in self._metrics(rows).items()}

    # -- what subclasses implement, on rows of shape (N, dim) --------------------------

    def _start(self) -> np.ndarray:
        raise NotImplementedError

    def _vg(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _vg_sample(self, x: np.ndarray, rng: np.random.Generator):
        """Stochastic problems: ``(f, g)`` on the minibatch / noise that ``rng`` draws."""
        raise NotImplementedError

    def _loss(self, x: np.ndarray) -> np.ndarray:
        return self._vg(x)[0]

    def _metrics(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    # -- plumbing ----------------------------------------------------------------------

    def _rows(self, x) -> tuple[np.ndarray, tuple]:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"problem {self.name!r} has dim {self.dim}; "
                             f"got x of shape {x.shape}")
        return x.reshape(-1, self.dim), x.shape[:-1]

    def _per_seed(self, rows, lead, step, seeds):
        """Evaluate ``_vg_sample`` once per unique seed, on that seed's rows."""
        seeds = np.asarray(seeds)
        if seeds.dtype.kind not in "iu":
            raise TypeError(f"seeds must be an int or an int array; got dtype {seeds.dtype}")
        try:
            seeds = np.broadcast_to(seeds, lead).reshape(-1)
        except ValueError:
            raise ValueError(f"seeds of shape {seeds.shape} do not broadcast to the batch "
                             f"shape {lead}") from None
        step = int(step)
        unique, which = np.unique(seeds, return_inverse=True)
        if len(unique) == 1:
            return self._vg_sample(rows, np.random.default_rng([int(unique[0]), step]))
        f = np.empty(len(rows))
        g = np.empty_like(rows)
        for k, seed in enumerate(unique):
            mine = np.flatnonzero(which == k)
            f[mine], g[mine] = self._vg_sample(rows[mine],
                                               np.random.default_rng([int(seed), step]))
        return f, g


def _frozen(values) -> np.ndarray:
    """A read-only float64 copy, for the class-level constants shared by all instances."""
    a = np.array(values, dtype=np.float64)
    a.setflags(write=False)
    return a


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


class Rosenbrock(Problem):
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
    dim = 2
    f_opt = 0.0
    x_opt = _frozen([1.0, 1.0])
    bounds = ((-2.0, 2.0), (-1.0, 3.0))
    default_steps = 1000

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


class Beale(Problem):
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
    dim = 2
    f_opt = 0.0
    x_opt = _frozen([3.0, 0.5])
    bounds = ((-4.5, 4.5), (-4.5, 4.5))
    default_steps = 1000

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


class Saddle(Problem):
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
    dim = 2
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


# ======================================================================================
# Logistic regression: sparse synthetic features and breast cancer
# ======================================================================================


class _LogisticRegression(Problem):
    """Mean logistic loss of labels y in {0, 1} on features X, plus l2 / 2 * ||w||^2.

    Parameters are the weights, followed by a bias when ``fit_bias``. With s = 2y - 1 and
    margin z = X w (+ b), the per-sample loss is log(1 + exp(-s z)), computed stably for any
    margin, and its derivative in z is -s * sigmoid(-s z). With
    ``batch_size`` set, ``value_and_grad`` uses a minibatch of that many samples drawn
    without replacement from (seed, step); ``loss`` always uses all of them.
    """

    fit_bias = False
    l2 = 0.0
    batch_size: int | None = None

    def _make_data(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @cached_property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)``: features (n, d) float64 and labels (n,) in {0., 1.}; built on first use."""
        X, y = self._make_data()
        X = np.ascontiguousarray(X, dtype=np.float64)
        assert X.shape[1] + self.fit_bias == self.dim, (X.shape, self.dim)
        return X, np.asarray(y, dtype=np.float64)

    def _start(self):
        return np.zeros(self.dim)

    def _margins(self, x, X):
        if self.fit_bias:
            return x[:, :-1] @ X.T + x[:, -1:]
        return x @ X.T

    def _objective(self, x, X, y, grad=True):
        s = 2.0 * y - 1.0
        sz = s * self._margins(x, X)                    # (N, m)
        w = x[:, :-1] if self.fit_bias else x
        # log(1 + exp(-sz)) = log1p(exp(-|sz|)) + max(-sz, 0), stable for any sz (and
        # faster than np.logaddexp); sigmoid(-sz) reuses the same exp(-|sz|).
        e = np.exp(-np.abs(sz))
        losses = np.log1p(e)
        losses += np.maximum(-sz, 0.0)
        f = losses.mean(axis=1) + 0.5 * self.l2 * np.einsum("ni,ni->n", w, w)
        if not grad:
            return f
        r = np.where(sz >= 0.0, e, 1.0) / (1.0 + e)    # sigmoid(-sz)
        r *= -s / len(y)                                # d f / d z, (N, m)
        gw = r @ X + self.l2 * w
        g = np.concatenate([gw, r.sum(axis=1, keepdims=True)], axis=1) if self.fit_bias else gw
        return f, g

    def _vg(self, x):
        return self._objective(x, *self.data)

    def _loss(self, x):
        return self._objective(x, *self.data, grad=False)

    def _vg_sample(self, x, rng):
        X, y = self.data
        idx = rng.choice(len(y), size=self.batch_size, replace=False)
        return self._objective(x, X[idx], y[idx])

    def _metrics(self, x):
        X, y = self.data
        return {"accuracy": ((self._margins(x, X) > 0) == (y > 0.5)).mean(axis=1)}


class SparseLogistic(_LogisticRegression):
    """Logistic regression on synthetic sparse binary features (AdaGrad's home ground).

    n = 2000 samples, d = 500 binary features; each sample has 10 active features drawn
    without replacement with probability proportional to 1 / k^1.1 (a Zipf law over
    k = 1..500, sampled with the Gumbel-top-k trick). True weights w* ~ N(0, 1), labels
    y ~ Bernoulli(sigmoid(X w*)), all from ``default_rng(1234)``. Loss: mean logistic loss
    + 1e-4 / 2 * ||w||^2 (no bias), so the optimum is unique; its value is not known in
    closed form. Minibatches of 32 samples. Start w = 0. Metric: full-data accuracy.

    Why it is here: rare features get rare, small gradients; a global learning rate tuned
    for the frequent features barely moves the rare ones, while AdaGrad's per-coordinate
    rate 1 / sqrt(sum g^2) gives them large steps when they do appear.
    """

    name = "sparse_logistic"
    title = "Sparse logistic regression (2000 x 500, Zipf features)"
    description = ("Logistic regression where feature k is active with probability ~ 1/k^1.1: "
                   "rare features get rare gradients, which per-coordinate learning rates "
                   "(AdaGrad) compensate for.")
    dim = 500
    stochastic = True
    default_steps = 1000
    x0_scale = 0.01

    l2 = 1e-4
    batch_size = 32
    n_samples = 2000
    n_active = 10
    zipf_exponent = 1.1
    data_seed = 1234

    def _make_data(self):
        n, d, k = self.n_samples, self.dim, self.n_active
        rng = np.random.default_rng(self.data_seed)
        w_true = rng.standard_normal(d)
        # Gumbel-top-k: the k largest of log p + Gumbel noise are a draw of k features
        # without replacement, with probability proportional to p, one after another.
        keys = -self.zipf_exponent * np.log(np.arange(1, d + 1)) + rng.gumbel(size=(n, d))
        active = np.argpartition(-keys, k, axis=1)[:, :k]
        X = np.zeros((n, d))
        np.put_along_axis(X, active, 1.0, axis=1)
        y = rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w_true))
        return X, y


def _need_sklearn(problem: str):
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as e:
        raise ImportError(f"problem {problem!r} needs scikit-learn: "
                          "pip install 'adaopt[lab]'") from e
    return sklearn


class BreastCancer(_LogisticRegression):
    """Logistic regression on scikit-learn's breast-cancer data, features left unscaled.

    569 samples, 30 features whose scales run from ~1e-3 to ~4e3; parameters are the 30
    weights followed by the bias (dim 31). Full batch (deterministic), mean logistic loss,
    no regularisation; the optimum's value is not known in closed form. Start 0. Metric:
    accuracy.

    Why it is here: without feature scaling the loss's curvature differs by ~1e12 between
    coordinates; a single learning rate cannot serve them all, while Adam/RMSprop/AdaGrad
    rescale each coordinate by its own gradient size, which acts as feature scaling.
    """

    name = "breast_cancer"
    title = "Breast cancer logistic regression (unscaled features)"
    description = ("Real data with feature scales from 1e-3 to 4e3 left unscaled on purpose: "
                   "an ill-conditioned convex problem where per-coordinate rates act as "
                   "automatic feature scaling.")
    dim = 31
    default_steps = 1000
    x0_scale = 1e-4

    fit_bias = True

    def _make_data(self):
        data = _need_sklearn(self.name).datasets.load_breast_cancer()
        return data.data, data.target


# ======================================================================================
# The digits MLP
# ======================================================================================


class DigitsMLP(Problem):
    """A 64-32-10 MLP (tanh hidden layer, softmax cross-entropy) on scikit-learn's digits.

    Data: ``load_digits`` pixels / 16, split by ``train_test_split(test_size=0.25,
    random_state=0, stratify=y)`` into 1347 training and 450 test images. Minibatches of 64
    training images. ``loss`` is the full training-set cross entropy; ``metrics`` gives
    ``test_loss`` and ``test_accuracy``. The optimum is not known.

    Parameter layout (dim 2410), in this order, each block row-major:
    W1 (64, 32) at [0, 2048), b1 (32,) at [2048, 2080), W2 (32, 10) at [2080, 2400),
    b2 (10,) at [2400, 2410); the network is softmax(tanh(X @ W1 + b1) @ W2 + b2).
    ``x0(seed)`` draws Glorot-uniform weights from ``default_rng(seed)``, biases zero.

    Why it is here: a small non-convex network with a held-out split, so that the
    generalisation of SGD with momentum and of Adam can be compared (the lesson's pitfall 4),
    not only their training loss.
    """

    name = "digits_mlp"
    title = "Digits MLP 64-32-10 (tanh, softmax)"
    description = ("A small tanh network on the 8x8 digits with a held-out test split: "
                   "training loss and test accuracy can disagree between SGD with momentum "
                   "and Adam, the lesson's pitfall about generalisation.")
    stochastic = True
    default_steps = 500

    sizes = (64, 32, 10)
    batch_size = 64
    dim = 64 * 32 + 32 + 32 * 10 + 10

    @cached_property
    def data(self) -> dict[str, np.ndarray]:
        """``X_train, y_train, X_test, y_test`` (pixels / 16, int labels); built on first use."""
        sklearn = _need_sklearn(self.name)
        digits = sklearn.datasets.load_digits()
        X = digits.data.astype(np.float64) / 16.0
        X_train, X_test, y_train, y_test = sklearn.model_selection.train_test_split(
            X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
        return {"X_train": np.ascontiguousarray(X_train), "y_train": np.asarray(y_train),
                "X_test": np.ascontiguousarray(X_test), "y_test": np.asarray(y_test)}

    def unpack(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Views ``W1 (..., 64, 32), b1 (..., 32), W2 (..., 32, 10), b2 (..., 10)`` of ``x``."""
        x = np.asarray(x)
        lead = x.shape[:-1]
        n_in, n_hid, n_out = self.sizes
        cuts = np.cumsum([n_in * n_hid, n_hid, n_hid * n_out])
        w1, b1, w2, b2 = np.split(x, cuts, axis=-1)
        return (w1.reshape(lead + (n_in, n_hid)), b1,
                w2.reshape(lead + (n_hid, n_out)), b2)

    def x0(self, seed: int = 0) -> np.ndarray:
        """Glorot-uniform weights from ``default_rng(seed)``, zero biases."""
        rng = np.random.default_rng(seed)
        n_in, n_hid, n_out = self.sizes
        parts = []
        for fan_in, fan_out in ((n_in, n_hid), (n_hid, n_out)):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            parts += [rng.uniform(-limit, limit, fan_in * fan_out), np.zeros(fan_out)]
        return np.concatenate(parts)

    def _forward(self, x, X, y):
        """Hidden activations (N, m, 32), log-probabilities (N, m, 10), losses (N, m)."""
        w1, b1, w2, b2 = self.unpack(x)
        hidden = np.tanh(X @ w1 + b1[:, None, :])
        logits = hidden @ w2 + b2[:, None, :]
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        return hidden, logp, -logp[:, np.arange(len(y)), y]

    def _cross_entropy(self, x, X, y):
        hidden, logp, losses = self._forward(x, X, y)
        w1, b1, w2, b2 = self.unpack(x)
        m = len(y)
        d_logits = np.exp(logp)                          # softmax - onehot, / m
        d_logits[:, np.arange(m), y] -= 1.0
        d_logits /= m
        d_pre = (d_logits @ np.swapaxes(w2, -1, -2)) * (1.0 - hidden * hidden)
        g = np.concatenate([
            (X.T @ d_pre).reshape(len(x), -1), d_pre.sum(axis=1),
            (np.swapaxes(hidden, -1, -2) @ d_logits).reshape(len(x), -1), d_logits.sum(axis=1),
        ], axis=1)
        return losses.mean(axis=1), g

    def _vg_sample(self, x, rng):
        X, y = self.data["X_train"], self.data["y_train"]
        idx = rng.choice(len(y), size=self.batch_size, replace=False)
        return self._cross_entropy(x, X[idx], y[idx])

    def _loss(self, x):
        return self._forward(x, self.data["X_train"], self.data["y_train"])[2].mean(axis=1)

    def _metrics(self, x):
        X, y = self.data["X_test"], self.data["y_test"]
        _, logp, losses = self._forward(x, X, y)
        return {"test_loss": losses.mean(axis=1),
                "test_accuracy": (logp.argmax(axis=-1) == y).mean(axis=1)}


# ======================================================================================
# The registry
# ======================================================================================

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
