"""The update rules: each optimizer's math, written once.

A rule module is plain arithmetic with no framework imports. It must define the four
functions of :class:`Rule`; the optional ones (:class:`Diagnosable`) let the
diagnostics and ``trace`` read its state through its own math.

``buffers(hp)``
    the state buffers the rule keeps for one parameter, and the value each starts at
    (torch.optim's state names, so checkpoints read alike);
``scalars(t, hp)``
    the step-dependent scalars (bias corrections, a decayed learning rate), computed
    once per step in Python floats, outside any elementwise loop;
``update(p, g, state, hp, s)``
    the elementwise update: parameter ``p``, gradient ``g``, the buffers in ``state``
    and the scalars ``s`` in; the new parameter and the new buffers out;
``effective_lr(state, hp, s)``
    the per-coordinate step size the rule applied: the lesson's ``eta / sqrt(G)``,
    ``eta / (sqrt(v-hat) + eps)``.

Optional: ``second_moment(state, hp, s)`` (the quantity under the root of the
denominator: ``G``, ``v-hat``), ``corrected(state, hp, s)`` (what the lesson's tables
print beside the buffers: Adam's ``m_hat``, ``v_hat``) and ``SYMBOLS`` (the lesson's
names for the buffers).

``hp`` is a parameter group's hyperparameters (a dict) with ``eps`` already resolved
for the compute dtype.

What the arithmetic may use, so the same function runs on whole NumPy arrays (the
reference path), on torch tensors (``backend="tensor"``), on a ``(rows, dim)`` batch
of configurations (the lab) and on the code generator's symbols (the fused kernels,
:mod:`adaopt.kernels.codegen`): ``+ - * /``, ``**`` (``** 0.5`` becomes a square root),
unary minus, and the elementwise functions of :mod:`adaopt.rules._ops` (``maximum``,
``minimum``, ``sign``, ``abs``). Branches may test hyperparameters and step scalars
(``if hp["amsgrad"]``, ``if s["first"]``): they are resolved before the loop. A rule
may not branch on array values.

State that is one number per parameter, not per element (NAdam's running product of
momentum factors, which depends on every beta1 used so far, so a schedule that moves
beta1 changes it), is declared by ``scalar_state(hp)``: its names and starting values
(as NumPy scalars: their dtype is the dtype it is kept in). Such a rule's ``scalars``
takes a third argument, ``scalars(t, hp, carried)``, the values after step ``t - 1``,
and returns the new values under the same names among the step's scalars; the
frontends keep them in the parameter's state (0-d arrays, 0-d tensors as torch does)
and :func:`step_scalars` is the one way to call ``scalars``. Buffers are per element;
scalar state is per parameter, and all of a bucket's parameters share its value.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from . import adagrad, adam, rmsprop, sgd


@runtime_checkable
class Rule(Protocol):
    """What every rule module defines (checked for every registry entry by the tests)."""

    def buffers(self, hp: dict) -> dict: ...

    def scalars(self, t: int, hp: dict) -> dict: ...

    def update(self, p, g, state: dict, hp: dict, s: dict) -> tuple: ...

    def effective_lr(self, state: dict, hp: dict, s: dict): ...


@runtime_checkable
class Diagnosable(Protocol):
    """A rule whose denominator has a second moment the diagnostics can read."""

    def second_moment(self, state: dict, hp: dict, s: dict): ...


def scalar_state(rule, hp: dict) -> dict:
    """The rule's per-parameter scalar state and its starting values ({} for most rules)."""
    return rule.scalar_state(hp) if hasattr(rule, "scalar_state") else {}


def step_scalars(rule, t: int, hp: dict, state=None) -> dict:
    """``rule.scalars`` of step ``t``; a rule with scalar state reads it from ``state`` (the
    parameter's state before step ``t``: 0-d arrays or tensors, or nothing yet)."""
    if not hasattr(rule, "scalar_state"):
        return rule.scalars(t, hp)
    carried = {}
    for key, start in rule.scalar_state(hp).items():
        value = start if state is None or state.get(key) is None else state[key]
        carried[key] = type(start)(float(value))  # a NumPy scalar of the declared dtype
    return rule.scalars(t, hp, carried)


__all__ = ["Diagnosable", "Rule", "adagrad", "adam", "rmsprop", "scalar_state", "sgd", "step_scalars"]
