"""Run an optimizer on a function and keep every step: the lesson's tables, computed.

>>> import adaopt
>>> tr = adaopt.minimize(lambda x: (10 * x**2, 20 * x), 5.0,
...                      adaopt.AdaGrad(lr=0.5, eps=0.0, conventions="lesson"), steps=3)
>>> [round(float(v), 3) for v in tr.x[1:]]
[4.5, 4.166, 3.902]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import rules
from .optim import Optimizer, get

@dataclass
class Trace:
    """Every step of one run.

    ``x[k]`` is the point after ``k`` steps (``x[0]`` is the start), ``f[k]`` the
    value there; ``grad[k-1]``, ``state[name][k-1]`` and ``eff_lr[k-1]`` belong to step
    ``k``: the gradient at ``x[k-1]``, the state after the update, and the
    per-coordinate learning rate it applied. State names follow the lesson (``G``,
    ``m``, ``v``, ``m_hat``, ``v_hat``).
    """

    optimizer: str
    hyperparameters: dict
    x: np.ndarray
    f: np.ndarray
    grad: np.ndarray
    eff_lr: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.grad)

    def table(self, max_rows: int = 20) -> str:
        """The step-by-step table of the lesson's worked examples, as text.

        One row per step ``t``: the point it starts from, the gradient there, the
        state after the update, the effective learning rate and the new point. Runs
        longer than ``max_rows`` show that many rows: the first half (rounded up) and the
        last half, with a row of ``...`` between. ``max_rows=0`` shows every row.
        """
        if not isinstance(max_rows, (int, np.integer)) or max_rows < 0 or max_rows == 1:
            raise ValueError(f"max_rows={max_rows!r} is invalid: allowed 0 (all rows) or an integer >= 2")
        cols = ["t", "x[t-1]", "grad", *self.state, "lr_eff", "x[t]", "f(x[t])"]
        rows = []
        for t in range(1, self.steps + 1):
            rows.append([str(t), _fmt(self.x[t - 1]), _fmt(self.grad[t - 1]),
                         *(_fmt(v[t - 1]) for v in self.state.values()),
                         _fmt(self.eff_lr[t - 1]), _fmt(self.x[t]), _fmt(self.f[t])])
        if max_rows and len(rows) > max_rows:
            head, tail = (max_rows + 1) // 2, max_rows // 2
            rows = rows[:head] + [["..."] * len(cols)] + rows[len(rows) - tail:]
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)


def _fmt(v) -> str:
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return "[" + ", ".join(f"{float(e):.6g}" for e in a.ravel()) + "]"


def minimize(fun, x0, optimizer: Optimizer | str, steps: int, **hyperparameters) -> Trace:
    """Run ``optimizer`` for ``steps`` steps on ``fun`` from ``x0``, recording every step.

    ``fun(x)`` returns ``(value, gradient)``. ``optimizer`` is an adaopt optimizer
    (its hyperparameters are used; its bound parameters, if any, are not touched) or a
    name such as ``"adam"`` with the hyperparameters as keyword arguments.
    """
    if isinstance(optimizer, str):
        optimizer = get(optimizer)(**hyperparameters)
    elif hyperparameters:
        raise TypeError("hyperparameters go to the optimizer's constructor when it is given as an object")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r} is invalid: allowed an integer >= 0")
    x = np.array(x0, dtype=np.float64)
    if x.ndim > 1:
        raise ValueError(f"x0 must be a number or a 1-d vector, got shape {x.shape}")
    state = optimizer.init(x)
    name = next(iter(state))
    xs, fs, gs, lrs = [x], [], [], []
    buffers: dict[str, list] = {}
    for _ in range(steps):
        value, g = fun(x)
        fs.append(float(value))
        g = np.asarray(g, dtype=np.float64).reshape(x.shape)
        x, state = optimizer.update(g, state, x)
        st = state[name]
        for key, arr in _lesson_state(optimizer, st).items():
            buffers.setdefault(key, []).append(arr)
        gs.append(g)
        lrs.append(np.broadcast_to(optimizer.effective_lr(name, state), x.shape).copy())
        xs.append(x)
    fs.append(float(fun(x)[0]))
    return Trace(
        optimizer=type(optimizer).__name__,
        hyperparameters=dict(optimizer.defaults),
        x=np.array(xs), f=np.array(fs),
        grad=np.array(gs).reshape(steps, *x.shape), eff_lr=np.array(lrs).reshape(steps, *x.shape),
        state={k: np.array(v) for k, v in buffers.items()},
    )


def _lesson_state(optimizer: Optimizer, st: dict) -> dict:
    """The state in the lesson's symbols (``G``, ``m``, ``v``), and what the rule derives from
    it for the lesson's tables (Adam's bias-corrected ``m_hat``, ``v_hat``)."""
    rule = optimizer.rule
    symbols = getattr(rule, "SYMBOLS", {})
    out = {symbols.get(k, k): np.array(v) for k, v in st.items() if k != "step"}
    if hasattr(rule, "corrected"):
        out.update(rule.corrected(st, optimizer.defaults, rules.step_scalars(rule, st["step"], optimizer.defaults, st)))
    return out
