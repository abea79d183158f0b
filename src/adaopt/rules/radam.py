r"""RAdam (Liu et al., 2020): Adam whose adaptive step is switched on only once the
second moment has seen enough gradients to be trusted, and scaled by how much.

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t\\
    \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
    \rho_t = \rho_\infty - \frac{2t\,\beta_2^t}{1-\beta_2^t}
        &&\text{how many gradients } v_t \text{ effectively averages}\\
    r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\,\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\,\rho_t}}
        &&\text{the variance rectification}\\
    p_t &= p_{t-1} - \eta\, \frac{m_t}{1-\beta_1^t}\,
        \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\, r_t
        \quad\text{if } \rho_t > 5, \qquad
    p_t = p_{t-1} - \eta\, \frac{m_t}{1-\beta_1^t} \quad\text{otherwise.}

The lesson's bias correction fixes the *mean* of :math:`v_t` in the first steps; RAdam
fixes its *variance*: with few gradients behind it :math:`1/\sqrt{\hat v_t}` swings
widely, which is why Adam is usually run with warmup. While :math:`\rho_t \le 5`
(the first 5 steps for :math:`\beta_2 = 0.999`) the step is SGD with momentum;
afterwards :math:`r_t` rises from about 0.02 towards 1. torch places :math:`\epsilon`
outside :math:`\sqrt{v_t}` (not :math:`\sqrt{\hat v_t}`, as Adam does).

``decoupled_weight_decay=True`` shrinks the parameter first, :math:`p \leftarrow
(1-\eta\lambda)p`, as AdamW; else :math:`\lambda p` is added to the gradient.
Defaults (torch): ``lr=1e-3, betas=(0.9, 0.999), eps=1e-8``.
"""

from .adam import moments

#: The lesson's symbols for the buffers.
SYMBOLS = {"exp_avg": "m", "exp_avg_sq": "v"}


def buffers(hp):
    return {"exp_avg": 0.0, "exp_avg_sq": 0.0}


def scalars(t, hp):
    beta1, beta2 = hp["betas"]
    bc1, bc2 = 1 - beta1**t, 1 - beta2**t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2**t) / bc2
    s = {"bc1": bc1, "bc2": bc2, "rho_t": rho_t, "rectify": rho_t > 5.0}
    if s["rectify"]:
        s["rect"] = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        s["bc2_sqrt"] = bc2**0.5
    return s


def update(p, g, state, hp, s):
    p, g, m, v = moments(p, g, state, hp)  # maximize, weight decay, the two averages
    step = m / s["bc1"] * hp["lr"]  # m-hat * lr, in torch's order
    if s["rectify"]:
        step = step * (s["bc2_sqrt"] / (v**0.5 + hp["eps"])) * s["rect"]
    return p - step, {"exp_avg": m, "exp_avg_sq": v}


def effective_lr(state, hp, s):
    """``lr * r_t * sqrt(1-beta2^t) / (sqrt(v) + eps)`` once rectified, ``lr`` before."""
    if not s["rectify"]:
        return hp["lr"]
    return hp["lr"] * s["rect"] * (s["bc2_sqrt"] / (state["exp_avg_sq"] ** 0.5 + hp["eps"]))


def second_moment(state, hp, s):
    """v, the quantity under the denominator's root (torch's RAdam does not correct it there)."""
    return state["exp_avg_sq"]


def corrected(state, hp, s):
    """m-hat and v-hat, as the lesson prints them for Adam."""
    return {"m_hat": state["exp_avg"] / s["bc1"], "v_hat": state["exp_avg_sq"] / s["bc2"]}
