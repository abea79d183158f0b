"""The update rules: each optimizer's math, written once.

A rule module holds three pure functions and no framework imports:

``buffers(hp)``
    the state buffers the rule keeps for one parameter, and the value each
    starts at (torch.optim's state names, so checkpoints read alike);
``scalars(t, hp)``
    the step-dependent scalars (bias corrections, a decayed learning rate),
    computed once per step, outside any elementwise loop;
``update(p, g, state, hp, s)``
    the elementwise update: parameter ``p``, gradient ``g``, the buffers in
    ``state`` and the scalars ``s`` in; the new parameter and buffers out.
    Plain arithmetic only, so the same function runs on whole arrays (the
    reference path) and on single numbers inside a fused loop.
``effective_lr(state, hp, s)``
    the per-coordinate step size the rule applied: the lesson's
    ``eta / sqrt(G)``, ``eta / (sqrt(v-hat) + eps)``.

``hp`` is a parameter group's hyperparameters (a dict) with ``eps`` already
resolved for the compute dtype.
"""

from . import adagrad, adam, rmsprop, sgd

__all__ = ["adagrad", "adam", "rmsprop", "sgd"]
