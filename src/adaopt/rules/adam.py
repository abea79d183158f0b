r"""Adam (Kingma and Ba, 2015), AMSGrad, and AdamW's decoupled weight decay.

.. math::

    m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t
        &&\text{first moment (momentum)}\\
    v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t \odot g_t
        &&\text{second moment (RMSprop)}\\
    \hat m_t &= \frac{m_t}{1-\beta_1^t}, \quad \hat v_t = \frac{v_t}{1-\beta_2^t}
        &&\text{bias correction}\\
    p_t &= p_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

Options, each a static switch of the same rule:

* ``weight_decay`` with ``decoupled_weight_decay=False`` (Adam): the L2 penalty
  :math:`\lambda p` is added to the gradient, so it passes through the adaptive
  scaling.
* ``decoupled_weight_decay=True`` (AdamW, Loshchilov and Hutter): the decay bypasses
  the scaling. torch shrinks first, :math:`p \leftarrow (1-\eta\lambda)p`; the lesson
  and optax add it to the update, :math:`p_t = p_{t-1} - \eta(\hat m_t/(\sqrt{\hat v_t}+\epsilon)
  + \lambda p_{t-1})`. The two are equal in exact arithmetic (``wd_form``
  ``"shrink"`` or ``"add"``).
* ``amsgrad``: divide by the running maximum of :math:`v_t` instead of :math:`v_t`.
* ``bias_correction=False``: :math:`\hat m_t = m_t`, :math:`\hat v_t = v_t`. The
  lesson's example 3 shows :math:`m_1` is 10x too small; but :math:`v_1` is 1000x too
  small too, so the first uncorrected step is :math:`(1-\beta_1)/\sqrt{1-\beta_2}
  \approx 3.16` times *larger* than the corrected one (``lr``), and stays larger until
  :math:`1-\beta_1^t > \sqrt{1-\beta_2^t}`. Either way early steps are mis-sized.

The arithmetic follows torch.optim's order (``sqrt(v) / sqrt(1-beta2^t) + eps`` and
``lr / (1-beta1^t)``) so float64 runs agree with torch to the last few ulps.
"""

from ._ops import maximum

#: The lesson's symbols for the buffers.
SYMBOLS = {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max"}


def buffers(hp):
    out = {"exp_avg": 0.0, "exp_avg_sq": 0.0}
    if hp["amsgrad"]:
        out["max_exp_avg_sq"] = 0.0
    return out


def scalars(t, hp):
    beta1, beta2 = hp["betas"]
    bc1 = 1 - beta1**t if hp["bias_correction"] else 1.0
    bc2 = 1 - beta2**t if hp["bias_correction"] else 1.0
    return {"step_size": hp["lr"] / bc1, "bc1": bc1, "bc2": bc2, "bc2_sqrt": bc2**0.5}


def _denominator(v, hp, s):
    return v**0.5 / s["bc2_sqrt"] + hp["eps"]  # sqrt(v-hat) + eps


def moments(p, g, state, hp, *, shrink=True):
    """What every Adam-like rule does first, in torch's order: negate g to maximize; weight
    decay, as L2 into the gradient or (decoupled, ``shrink``) p <- (1 - lr*wd) p; then
    the two moving averages. Returns ``(p, g, m, v)``."""
    if hp["maximize"]:
        g = -g
    lam = hp["weight_decay"]
    if lam != 0:
        if not hp["decoupled_weight_decay"]:
            g = g + lam * p
        elif shrink:
            p = p * (1 - hp["lr"] * lam)
    beta1, beta2 = hp["betas"]
    m = state["exp_avg"] + (1 - beta1) * (g - state["exp_avg"])  # = beta1*m + (1-beta1)*g
    v = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
    return p, g, m, v


def update(p, g, state, hp, s):
    lam = hp["weight_decay"]
    added = lam != 0 and hp["decoupled_weight_decay"] and hp["wd_form"] == "add"
    p0 = p
    p, g, m, v = moments(p, g, state, hp, shrink=not added)
    new = {"exp_avg": m, "exp_avg_sq": v}
    if hp["amsgrad"]:
        v = new["max_exp_avg_sq"] = maximum(state["max_exp_avg_sq"], v)
    u = s["step_size"] * (m / _denominator(v, hp, s))
    if added:
        u = u + hp["lr"] * lam * p0
    return p - u, new


def effective_lr(state, hp, s):
    v = state["max_exp_avg_sq"] if hp["amsgrad"] else state["exp_avg_sq"]
    return hp["lr"] / _denominator(v, hp, s)


def corrected(state, hp, s):
    """The bias-corrected moments the lesson prints, m-hat and v-hat (the raw ones without
    bias correction, where ``bc1 = bc2 = 1``)."""
    return {"m_hat": state["exp_avg"] / s["bc1"], "v_hat": state["exp_avg_sq"] / s["bc2"]}


def second_moment(state, hp, s):
    """The quantity under the root of the denominator: v-hat (from max v with AMSGrad)."""
    v = state["max_exp_avg_sq"] if hp["amsgrad"] else state["exp_avg_sq"]
    return v / s["bc2"]
