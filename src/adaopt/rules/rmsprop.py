r"""RMSprop (Tieleman and Hinton, 2012): AdaGrad with a moving average in place of
the sum, so the step size can grow again.

.. math::

    v_t &= \alpha\, v_{t-1} + (1-\alpha)\, g_t \odot g_t\\
    \bar g_t &= \alpha\, \bar g_{t-1} + (1-\alpha)\, g_t,
        \qquad s_t = v_t - \bar g_t^2 \ \text{(centered)} \quad\text{else}\quad s_t = v_t\\
    d_t &= \frac{g_t}{\sqrt{s_t} + \epsilon}\ \text{(torch)}
        \quad\text{or}\quad \frac{g_t}{\sqrt{s_t + \epsilon}}\ \text{(lesson, optax)}\\
    b_t &= \mu\, b_{t-1} + d_t, \qquad p_t = p_{t-1} - \eta\, b_t
        \quad\text{(with momentum; else } p_t = p_{t-1} - \eta\, d_t\text{)}

The lesson writes :math:`\rho` for ``alpha``. A moving average with decay
:math:`\alpha` remembers about :math:`1/(1-\alpha)` steps (half-life
:math:`\ln 0.5 / \ln \alpha`): 10 steps for 0.9, 100 for 0.99.

Defaults: torch ``lr=1e-2, alpha=0.99, eps=1e-8`` (outside the root); the lesson and
optax use ``alpha=0.9`` and put ``eps`` inside the root.
"""

from ._ops import maximum

#: The lesson's symbols for the buffers (it calls the average G, as AdaGrad's sum).
SYMBOLS = {"square_avg": "G", "grad_avg": "g_avg", "momentum_buffer": "b"}


def buffers(hp):
    out = {"square_avg": 0.0}
    if hp["centered"]:
        out["grad_avg"] = 0.0
    if hp["momentum"] != 0:
        out["momentum_buffer"] = 0.0
    return out


def scalars(t, hp):
    return {}


def _denominator(s2, hp):
    return (s2 + hp["eps"]) ** 0.5 if hp["eps_in_sqrt"] else s2**0.5 + hp["eps"]


def _second_moment(state, hp):
    """v_t, or the variance v_t - mean_t^2 when centered.

    The variance is clamped at 0: in exact arithmetic it never goes below, but in
    low precision ``v`` can round to 0 while the mean does not, and a negative
    variance would make the step NaN. Where torch's result is finite, this equals it.
    """
    if hp["centered"]:
        return maximum(state["square_avg"] - state["grad_avg"] * state["grad_avg"], 0.0)
    return state["square_avg"]


def update(p, g, state, hp, s):
    if hp["maximize"]:
        g = -g
    if hp["weight_decay"] != 0:
        g = g + hp["weight_decay"] * p
    alpha = hp["alpha"]
    new = {"square_avg": alpha * state["square_avg"] + (1 - alpha) * g * g}
    if hp["centered"]:
        # = alpha * grad_avg + (1 - alpha) * g, written as torch's lerp
        new["grad_avg"] = state["grad_avg"] + (1 - alpha) * (g - state["grad_avg"])
    d = g / _denominator(_second_moment(new, hp), hp)
    if hp["momentum"] != 0:
        d = hp["momentum"] * state["momentum_buffer"] + d
        new["momentum_buffer"] = d
    return p - hp["lr"] * d, new


def effective_lr(state, hp, s):
    return hp["lr"] / _denominator(_second_moment(state, hp), hp)


def second_moment(state, hp, s):
    """The quantity under the root of the denominator: v, or the variance when centered."""
    return _second_moment(state, hp)
