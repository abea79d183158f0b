r"""AdaGrad (Duchi, Hazan and Singer, 2011): divide by the root of every squared
gradient seen so far.

.. math::

    G_t &= G_{t-1} + g_t \odot g_t, \qquad G_0 = \text{initial\_accumulator\_value}\\
    \eta_t &= \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}\\
    p_t &= p_{t-1} - \eta_t\, \frac{g_t}{\sqrt{G_t} + \epsilon}
        \quad\text{(torch)}\qquad\text{or}\qquad
        p_{t-1} - \eta_t\, \frac{g_t}{\sqrt{G_t + \epsilon}} \quad\text{(lesson, optax)}

The effective learning rate :math:`\eta_t/\sqrt{G_t}` only shrinks: ``G`` never
decreases, which is why AdaGrad dies on long runs (the lesson's pitfall 1).

========================  ===============================  ============================
argument                  torch default                    lesson / optax default
========================  ===============================  ============================
``lr``                    1e-2                             1e-2
``eps``                   1e-10, outside the root          1e-8 / 1e-7, inside the root
``initial_accumulator``   0                                0 / 0.1
``lr_decay``              0                                0 (optax has none)
========================  ===============================  ============================

optax also skips coordinates whose accumulator is exactly zero; that only
differs from this rule when ``eps = 0`` and the gradient is 0 (0/0).
"""


#: The lesson's symbol for the buffer.
SYMBOLS = {"sum": "G"}


def buffers(hp):
    return {"sum": hp["initial_accumulator_value"]}


def scalars(t, hp):
    return {"clr": hp["lr"] / (1 + (t - 1) * hp["lr_decay"])}


def _denominator(G, hp):
    return (G + hp["eps"]) ** 0.5 if hp["eps_in_sqrt"] else G**0.5 + hp["eps"]


def update(p, g, state, hp, s):
    if hp["maximize"]:
        g = -g
    if hp["weight_decay"] != 0:
        g = g + hp["weight_decay"] * p
    G = state["sum"] + g * g
    return p - s["clr"] * (g / _denominator(G, hp)), {"sum": G}


def effective_lr(state, hp, s):
    return s["clr"] / _denominator(state["sum"], hp)


def second_moment(state, hp, s):
    """The quantity under the root of the denominator: the accumulator G."""
    return state["sum"]
