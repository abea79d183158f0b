"""Logistic-regression problems: ``sparse_logistic`` (synthetic, Zipf-sparse) and ``breast_cancer``.

Both share one stable, batched logistic loss and gradient (:class:`_LogisticRegression`);
they differ in their data, which is built on first use (breast cancer needs scikit-learn).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .base import Problem, _need_sklearn


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
