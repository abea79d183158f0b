r"""Adadelta (Zeiler, 2012): AdaGrad's fix for its dying rate, and a step in the units of
the parameter.

.. math::

    v_t &= \rho\, v_{t-1} + (1-\rho)\, g_t \odot g_t
        &&\text{moving average of } g^2 \text{ (RMSprop's)}\\
    \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\; g_t
        &&\text{the step, scaled by the past steps' RMS}\\
    u_t &= \rho\, u_{t-1} + (1-\rho)\, \Delta_t \odot \Delta_t
        &&\text{moving average of } \Delta^2\\
    p_t &= p_{t-1} - \eta\, \Delta_t

The lesson's pitfall 1 is AdaGrad's accumulator: :math:`G` only grows, so
:math:`\eta/\sqrt{G}` dies. Adadelta replaces the sum by a moving average (as RMSprop
does), and the numerator :math:`\sqrt{u+\epsilon}` makes the step the size past steps
had, so the method needs no learning rate at all in the paper; torch keeps ``lr`` as a
multiplier (default 1.0). :math:`\epsilon` sits inside both roots, and with
:math:`u_0 = 0` it sets the size of the first steps: :math:`\sqrt{\epsilon}` per unit of
:math:`g/\mathrm{RMS}(g)`.

========================  ==================  =====================================
symbol                    argument            default (torch; optax the same)
========================  ==================  =====================================
:math:`\eta`              ``lr``              1.0
:math:`\rho`              ``rho``             0.9
:math:`\epsilon`          ``eps``             1e-6, inside both roots
:math:`\lambda`           ``weight_decay``    0 (L2, added to the gradient)
========================  ==================  =====================================
"""

#: The lesson's symbols for the buffers.
SYMBOLS = {"square_avg": "v", "acc_delta": "u"}


def buffers(hp):
    return {"square_avg": 0.0, "acc_delta": 0.0}


def scalars(t, hp):
    return {}


def update(p, g, state, hp, s):
    if hp["maximize"]:
        g = -g
    if hp["weight_decay"] != 0:
        g = g + hp["weight_decay"] * p
    rho, eps = hp["rho"], hp["eps"]
    v = rho * state["square_avg"] + (1 - rho) * g * g
    delta = (state["acc_delta"] + eps) ** 0.5 / (v + eps) ** 0.5 * g
    u = rho * state["acc_delta"] + (1 - rho) * delta * delta
    return p - hp["lr"] * delta, {"square_avg": v, "acc_delta": u}


def effective_lr(state, hp, s):
    """``lr * sqrt(u + eps) / sqrt(v + eps)``: the factor the gradient was multiplied by."""
    return hp["lr"] * (state["acc_delta"] + hp["eps"]) ** 0.5 / (state["square_avg"] + hp["eps"]) ** 0.5


def eps_inside_root(hp):
    return True


def second_moment(state, hp, s):
    """The quantity under the denominator's root: the moving average v of g^2."""
    return state["square_avg"]
