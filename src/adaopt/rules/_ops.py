"""The elementwise functions a rule may use beyond arithmetic operators.

Each takes NumPy arrays or numbers, torch tensors, or the code generator's symbols
(:class:`adaopt.kernels.codegen.Elem`, which records it as one line of the fused loop).
:data:`ELEMENTWISE` is the list the code generator accepts: a function added here is added there.
"""

import numpy as np

#: NumPy's names of the functions below: the ones a rule recorded into a fused kernel may call.
ELEMENTWISE = ("maximum", "minimum", "sign", "abs", "absolute", "sqrt")


def _torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def maximum(a, b):
    """Elementwise maximum (``b`` may be a number)."""
    if _torch(a):
        import torch

        return torch.maximum(a, b) if torch.is_tensor(b) else torch.clamp_min(a, b)
    return np.maximum(a, b)


def minimum(a, b):
    """Elementwise minimum (``b`` may be a number)."""
    if _torch(a):
        import torch

        return torch.minimum(a, b) if torch.is_tensor(b) else torch.clamp_max(a, b)
    return np.minimum(a, b)


def sign(a):
    """-1, 0 or 1 by the sign of each element (Lion's update, signSGD)."""
    return a.sign() if _torch(a) else np.sign(a)


def abs(a):  # noqa: A001 - the name the math uses
    """Elementwise absolute value (Adamax's infinity norm)."""
    return a.abs() if _torch(a) else np.abs(a)
