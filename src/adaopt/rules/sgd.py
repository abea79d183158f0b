r"""Stochastic gradient descent: plain, heavy-ball momentum and Nesterov.

.. math::

    g_t &\leftarrow -g_t \ \text{(maximize)}, \qquad g_t \leftarrow g_t + \lambda p_{t-1}\\
    b_1 &= g_1, \qquad b_t = \mu\, b_{t-1} + (1-\tau)\, g_t\\
    d_t &= g_t + \mu\, b_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = b_t \ \text{(heavy ball)}\\
    p_t &= p_{t-1} - \eta\, d_t

========================  ==================  =========================================
symbol                    argument            default
========================  ==================  =========================================
:math:`\eta`              ``lr``              1e-3 (torch.optim.SGD)
:math:`\mu`               ``momentum``        0 (plain SGD)
:math:`\tau`              ``dampening``       0
:math:`\lambda`           ``weight_decay``    0 (L2 penalty added to the gradient)
========================  ==================  =========================================

Conventions: the first momentum buffer is the gradient itself, undamped (torch).
optax's ``trace`` (``m = g + mu*m``, starting at 0) is the same when ``dampening=0``.
"""


#: The lesson's symbol for the buffer.
SYMBOLS = {"momentum_buffer": "b"}


def buffers(hp):
    return {"momentum_buffer": 0.0} if hp["momentum"] != 0 else {}


def scalars(t, hp):
    return {"first": t == 1}


def update(p, g, state, hp, s):
    if hp["maximize"]:
        g = -g
    if hp["weight_decay"] != 0:
        g = g + hp["weight_decay"] * p
    new = {}
    mu = hp["momentum"]
    if mu != 0:
        if s["first"]:
            b = g
        else:
            b = mu * state["momentum_buffer"] + (1 - hp["dampening"]) * g
        new["momentum_buffer"] = b
        g = g + mu * b if hp["nesterov"] else b
    return p - hp["lr"] * g, new


def effective_lr(state, hp, s):
    return hp["lr"]
