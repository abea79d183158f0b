"""The ``digits_mlp`` problem: a small tanh network on scikit-learn's 8x8 digits, with a test split."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .base import Problem, _need_sklearn


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
