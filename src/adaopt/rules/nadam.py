r"""NAdam (Dozat, 2016): Adam with Nesterov momentum, and a momentum that warms up.

.. math::

    \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{\,t\psi}\right), \qquad
    \Pi_t = \prod_{i \le t} \mu_i
        &&\text{the momentum schedule } (\psi = \text{momentum\_decay})\\
    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t\\
    d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon\\
    p_t &= p_{t-1} - \eta\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
                   - \eta\,\frac{\mu_{t+1}}{1-\Pi_t\,\mu_{t+1}}\,\frac{m_t}{d_t}

Nesterov's idea applied to Adam: the step uses the momentum one step ahead
(:math:`\mu_{t+1} m_t`) plus the current gradient, each bias-corrected by the product
of the momentum factors so far. :math:`\mu_t` rises from :math:`\beta_1/2` towards
:math:`\beta_1` (0.96^{t psi} with psi = 0.004 halves after about 4,300 steps), a
warmup of the momentum.

:math:`\Pi_t` is per-parameter scalar state (``state["mu_product"]``): it multiplies
in the :math:`\mu_t` actually used, so a schedule that moves ``beta1`` (OneCycleLR's
``cycle_momentum``) changes it as in torch. torch keeps it as a float32 number
whatever the parameters' dtype, and so does adaopt, so the two agree to the bit.

``decoupled_weight_decay=True`` (NAdamW) shrinks the parameter first,
:math:`p \leftarrow (1-\eta\lambda)p`; else :math:`\lambda p` is added to the gradient.
Defaults (torch): ``lr=2e-3, betas=(0.9, 0.999), eps=1e-8, momentum_decay=4e-3``.
"""

import numpy as np

from .adam import moments

#: The lesson's symbols for the buffers.
SYMBOLS = {"exp_avg": "m", "exp_avg_sq": "v", "mu_product": "Pi"}


def buffers(hp):
    return {"exp_avg": 0.0, "exp_avg_sq": 0.0}


def scalar_state(hp):
    return {"mu_product": np.float32(1.0)}


def _mu(beta1, t, psi):
    return beta1 * (1.0 - 0.5 * (0.96 ** (t * psi)))


def scalars(t, hp, carried):
    beta1, beta2 = hp["betas"]
    psi, lr = hp["momentum_decay"], hp["lr"]
    mu, mu_next = _mu(beta1, t, psi), _mu(beta1, t + 1, psi)
    mu_product = carried["mu_product"] * np.float32(mu)  # float32 arithmetic, as torch's tensor
    bc2 = 1 - beta2**t
    return {
        "mu_product": mu_product, "bc2": bc2,
        "c_grad": -lr * (1.0 - mu) / (1.0 - float(mu_product)),
        "c_mom": (-lr * mu_next) / (1.0 - float(mu_product) * mu_next),
    }


def update(p, g, state, hp, s):
    p, g, m, v = moments(p, g, state, hp)  # maximize, weight decay, the two averages
    d = (v / s["bc2"]) ** 0.5 + hp["eps"]
    p = p + s["c_grad"] * (g / d)
    p = p + s["c_mom"] * (m / d)
    return p, {"exp_avg": m, "exp_avg_sq": v}


def effective_lr(state, hp, s):
    """``lr / (sqrt(v-hat) + eps)``, as Adam's (the momentum weights come on top)."""
    return hp["lr"] / ((state["exp_avg_sq"] / s["bc2"]) ** 0.5 + hp["eps"])


def second_moment(state, hp, s):
    """v-hat, under the denominator's root."""
    return state["exp_avg_sq"] / s["bc2"]
