"""torch.optim's step wrapper: step pre/post hooks and the profiler label, as torch runs them.

Under ``torch.compile`` the whole step is one call dynamo does not trace into
(``torch.compiler.disable``): it is NumPy views and numba kernels, which dynamo cannot
capture, and tracing it broke the graph dozens of times (``Tensor.item()``, numba's
dispatcher) and ran 4x slower than eager. The model's forward and backward around it
still compile.
"""

from __future__ import annotations

import functools
from itertools import chain

import torch


def hooked(step):
    """``step`` with torch's step pre/post hooks (global ones first before, last after) and,
    while a profiler runs, torch's ``Optimizer.step#<class>.step`` label."""
    from torch.optim import optimizer as torch_optimizer

    global_pre = getattr(torch_optimizer, "_global_optimizer_pre_hooks", {})
    global_post = getattr(torch_optimizer, "_global_optimizer_post_hooks", {})
    profiling = torch._C._autograd._profiler_enabled

    @functools.wraps(step)
    def hooked(*args, **kwargs):
        self = args[0]
        if profiling():
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return run_hooked(step, self, global_pre, global_post, args, kwargs)
        return run_hooked(step, self, global_pre, global_post, args, kwargs)

    return torch.compiler.disable(hooked, recursive=True)


def run_hooked(step, self, global_pre, global_post, args, kwargs):
    args, kwargs = run_pre(self, global_pre, args, kwargs)
    out = step(*args, **kwargs)
    self._optimizer_step_code()  # where torch's Python-tracing profiler looks
    run_post(self, global_post, args, kwargs)
    return out


def run_pre(self, global_pre, args, kwargs):
    """The step pre-hooks, global ones first; returns the (args, kwargs) they leave."""
    if global_pre or self._optimizer_step_pre_hooks:
        for hook in chain(global_pre.values(), self._optimizer_step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"a step pre-hook must return None or (args, kwargs), got {result!r}")
                args, kwargs = result
    return args, kwargs


def run_post(self, global_post, args, kwargs) -> None:
    """The step post-hooks, global ones last."""
    if global_post or self._optimizer_step_post_hooks:
        for hook in chain(self._optimizer_step_post_hooks.values(), global_post.values()):
            hook(self, args, kwargs)


def global_hooks() -> tuple[dict, dict]:
    """torch's global step pre- and post-hooks (``register_optimizer_step_pre_hook``)."""
    from torch.optim import optimizer as torch_optimizer

    return (getattr(torch_optimizer, "_global_optimizer_pre_hooks", {}),
            getattr(torch_optimizer, "_global_optimizer_post_hooks", {}))
