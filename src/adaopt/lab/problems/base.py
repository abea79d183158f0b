"""What every lab problem shares: the batched ``Problem`` API, and its small helpers.

``Problem`` turns a subclass's row-wise ``_vg`` / ``_vg_sample`` / ``_loss`` / ``_metrics``
into the public, batched ``value_and_grad``, ``loss`` and ``metrics`` (any leading batch
axes; one minibatch per seed for stochastic problems).
"""

from __future__ import annotations

import numpy as np


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


def _need_sklearn(problem: str):
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError as e:
        raise ImportError(f"problem {problem!r} needs scikit-learn: "
                          "pip install 'adaopt[lab]'") from e
    return sklearn
