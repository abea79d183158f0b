r"""Adamax (Kingma and Ba, 2015, section 7.1): Adam with the infinity norm in place of the
second moment.

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t\\
    u_t &= \max(\beta_2\, u_{t-1},\ |g_t| + \epsilon)
        &&\text{a decaying running maximum of } |g|\\
    p_t &= p_{t-1} - \frac{\eta}{1-\beta_1^t}\, \frac{m_t}{u_t}

Adam's :math:`\sqrt{\hat v}` is an L2 average of past gradients; Adamax takes the limit
of the Lp average as :math:`p \to \infty`, which is a maximum and needs no bias
correction (only :math:`m` is corrected). One large gradient sets the scale for about
:math:`1/(1-\beta_2)` steps. torch adds :math:`\epsilon` to :math:`|g|` inside the
maximum (the paper has no :math:`\epsilon`; optax adds it outside, to :math:`u`).

=================  ==================  ==========================================
symbol             argument            default (torch)
=================  ==================  ==========================================
:math:`\eta`       ``lr``              2e-3
:math:`\beta`      ``betas``           (0.9, 0.999)
:math:`\epsilon`   ``eps``             1e-8, added to ``|g|`` inside the maximum
:math:`\lambda`    ``weight_decay``    0 (L2, added to the gradient)
=================  ==================  ==========================================
"""

from ._ops import abs, maximum

#: The lesson's symbols for the buffers.
SYMBOLS = {"exp_avg": "m", "exp_inf": "u"}


def buffers(hp):
    return {"exp_avg": 0.0, "exp_inf": 0.0}


def scalars(t, hp):
    beta1 = hp["betas"][0]
    return {"clr": hp["lr"] / (1 - beta1**t)}


def update(p, g, state, hp, s):
    if hp["maximize"]:
        g = -g
    if hp["weight_decay"] != 0:
        g = g + hp["weight_decay"] * p
    beta1, beta2 = hp["betas"]
    m = state["exp_avg"] + (1 - beta1) * (g - state["exp_avg"])  # = beta1*m + (1-beta1)*g
    u = maximum(beta2 * state["exp_inf"], abs(g) + hp["eps"])
    return p - s["clr"] * (m / u), {"exp_avg": m, "exp_inf": u}


def effective_lr(state, hp, s):
    return s["clr"] / state["exp_inf"]


def second_moment(state, hp, s):
    """u^2: the square of the denominator (an infinity norm, not a mean of g^2)."""
    return state["exp_inf"] * state["exp_inf"]
