"""adaopt: adaptive-learning-rate optimizers, written once, exact to the lesson and to torch.optim.

>>> import numpy as np, adaopt
>>> x = np.array([5.0])
>>> opt = adaopt.AdaGrad([x], lr=0.5, eps=0.0, conventions="lesson")
>>> opt.step([20 * x])          # f(x) = 10 x^2, the lesson's example 1
>>> x
array([4.5])

Only NumPy is imported here; torch, sympy, typer and rich load when a feature needs them.
"""

from .checkpoint import CheckpointError
from .dtypes import default_eps
from .hyper import PRESETS, bias_correction_factor, ema_window, half_life
from . import optim, registry
from .optim import Optimizer
from .trace import Trace, minimize

globals().update({name: getattr(optim, name) for name in optim.__all__})  # every registered optimizer

__version__ = "0.1.0"


def __getattr__(name):  # the diagnostics' entry points, imported on first use
    if name in ("diagnose", "lr_find", "Monitor"):
        from . import diagnostics

        return getattr(diagnostics, name)
    raise AttributeError(f"module 'adaopt' has no attribute {name!r}")


__all__ = [
    *optim.__all__, "PRESETS", "CheckpointError", "Trace", "bias_correction_factor", "default_eps",
    "ema_window", "half_life", "minimize", "registry", "diagnose", "lr_find", "Monitor",
]
