"""The learning-rate range test: raise lr exponentially each step and watch the loss.

The loss is smoothed with a bias-corrected moving average (the same correction as
Adam's, 1/(1 - beta^k)); the sweep stops when the smoothed loss exceeds ``diverge``
times its best (after the first tenth of the sweep), or turns non-finite. The suggestion is the lr where the smoothed
loss falls fastest against log(lr), which sits below the lr of the minimum loss,
where training is already on the edge. The first tenth of the sweep is never a
minimum or a suggestion: the average holds too few batches there, and a low first
batch had made the start of the range (1e-7) the "minimum" of a run that later fell.

Works on a lab problem (by name) with an adaopt optimizer, or on a torch model with
a loss function and batches; the model's weights are restored afterwards.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from .. import registry


@dataclass
class LRFindResult:
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float  # where the smoothed loss falls fastest
    min_loss_lr: float  # where the smoothed loss is lowest
    stopped_early: bool  # the loss blew up before ``end``
    optimizer: str = ""
    fall: float = math.nan  # the share the smoothed loss fell from the trusted start to its minimum

    def __str__(self) -> str:
        how = "stopped when the smoothed loss passed 4x its best" if self.stopped_early else "ran to the end"
        lines = [f"lr range test ({self.optimizer}, {len(self.lrs)} steps, {self.lrs[0]:.3g} to "
                 f"{self.lrs[-1]:.3g}, {how})",
                 f"  suggested lr: {self.suggestion:.3g} (steepest fall of the smoothed loss)",
                 f"  lowest smoothed loss at lr {self.min_loss_lr:.3g}; a tenth of that, "
                 f"{self.min_loss_lr / 10:.3g}, is the other common choice"]
        if math.isfinite(self.fall) and self.fall < CLEAR_FALL:
            lines.append(f"  note: the smoothed loss fell only {max(self.fall, 0):.1%} before it rose: no clear "
                         "descent, so the suggestion is weak (try more steps, another start, or larger batches)")
        if not self.stopped_early and self.min_loss_lr >= self.lrs[-1]:
            lines.append("  note: the loss was still falling at the largest lr tried; widen the range "
                         "(a larger end) before trusting the suggestion")
        return "\n".join(lines)

    def plot(self, ax=None):
        """Loss and smoothed loss against lr (log x), the suggestion marked. Returns the Axes.

        ``ax``: a matplotlib Axes to draw on, or a path (``"lr.png"``) to save the picture to
        (as ``adaopt lr-find --plot`` does); None draws on a new figure."""
        from .plot import axes_for

        ax, path = axes_for(ax, figsize=(6, 4))
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed")
        ax.axvline(self.suggestion, color="C3", ls="--", label=f"suggested {self.suggestion:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if len(finite):
            lo, hi = finite.min(), min(finite.max(), 4 * finite.min() if finite.min() > 0 else finite.max())
            pad = 0.1 * (hi - lo) if hi > lo else 1.0
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"lr range test: {self.optimizer}")
        ax.legend()
        if path is not None:
            ax.figure.savefig(path, dpi=120, bbox_inches="tight")
        return ax


def lr_find(target, optimizer="adam", *, loss_fn=None, data=None, start: float = 1e-7, end: float = 10.0,
            steps: int = 100, smooth: float = 0.98, diverge: float = 4.0, seed: int = 0, **hp) -> LRFindResult:
    """Run the range test on ``target``: a lab problem name or a torch ``nn.Module``.

    ``optimizer`` is a name ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
    or, for a torch model, a ``torch.optim.Optimizer`` class. For a model, ``loss_fn(output,
    target)`` and ``data`` (an iterable of ``(inputs, targets)``, cycled) are required.
    Extra keyword arguments go to the optimizer.
    """
    if not (0 < start < end):
        raise ValueError(f"start={start!r}, end={end!r}: need 0 < start < end")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps={steps!r}: need an integer >= 2")
    if not (0 <= smooth < 1):
        raise ValueError(f"smooth={smooth!r}: the smoothing factor must be in [0, 1)")
    if not diverge > 1:
        raise ValueError(f"diverge={diverge!r}: must be > 1")
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))
    if _is_module(target):
        step, name = _torch_stepper(target, optimizer, loss_fn, data, float(lrs[0]), hp)
    else:
        step, name = _problem_stepper(target, optimizer, float(lrs[0]), seed, hp)
    width = max(1, steps // 20)  # slopes are taken across 2 * width points
    skip = max(width, steps // 10)  # the moving average's first tenth: too few batches to trust
    losses, smoothed = [], []
    avg, best, stopped = 0.0, math.inf, False
    try:
        for k, lr in enumerate(lrs, start=1):
            loss = step(float(lr))
            losses.append(loss)
            avg = smooth * avg + (1 - smooth) * loss
            s = avg / (1 - smooth**k)
            smoothed.append(s)
            if not math.isfinite(s) or s > diverge * best:
                stopped = True
                break
            if k > skip:  # the best, and so the stop, from the trusted part of the sweep on
                best = min(best, s)
    finally:
        restore = getattr(step, "restore", None)
        if restore is not None:
            restore()
    n = len(losses)
    lrs, losses, smoothed = lrs[:n], np.array(losses), np.array(smoothed)
    trusted = np.isfinite(smoothed) & (np.arange(n) >= (skip if n > skip else 0))
    i_min = int(np.nanargmin(np.where(trusted, smoothed, np.nan))) if trusted.any() else 0
    suggestion = _steepest(lrs[: i_min + 1], smoothed[: i_min + 1], width, min(skip, i_min))  # before the minimum
    start = smoothed[min(skip, i_min)]
    fall = float(1 - smoothed[i_min] / start) if start > 0 and np.isfinite(start) else math.nan
    return LRFindResult(lrs, losses, smoothed, suggestion, float(lrs[i_min]), stopped, name, fall)


#: A fall of the smoothed loss, from the trusted start of the sweep to its minimum, below which
#: the result says the descent is not clear.
CLEAR_FALL = 0.05


def _steepest(lrs: np.ndarray, smoothed: np.ndarray, k: int, skip: int) -> float:
    """The lr where the smoothed loss falls fastest against log(lr), from point ``skip`` up to
    its minimum (the last point), slopes taken across 2k points; a tenth of the minimum's lr
    when too few points lie between."""
    n = len(lrs)
    if n - k <= skip:
        return float(lrs[-1] / 10)
    i = np.arange(skip, n - k)
    log_lr = np.log(lrs)
    lo = np.maximum(i - k, 0)
    slope = (smoothed[i + k] - smoothed[lo]) / (log_lr[i + k] - log_lr[lo])
    return float(lrs[int(i[np.argmin(slope)])])


def _is_module(obj) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _problem_stepper(problem, optimizer: str, lr0: float, seed: int, hp: dict):
    from ..lab.problems import get_problem
    from ..optim import get

    problem = get_problem(problem) if isinstance(problem, str) else problem
    variant = registry.variant(optimizer)
    x = problem.x0(seed).copy()
    opt = get(variant.family)([x], lr=lr0, **{**variant.overrides, **hp})
    t = 0

    def step(lr: float) -> float:
        nonlocal t
        opt.param_groups[0]["lr"] = lr
        with np.errstate(all="ignore"):
            f, g = problem.value_and_grad(x, step=t, seeds=seed)
            t += 1
            if np.all(np.isfinite(g)):
                opt.step([g])
        return float(f)

    return step, f"{optimizer} on {problem.name}"


def _torch_stepper(model, optimizer, loss_fn, data, lr0: float, hp: dict):
    import itertools

    import torch

    if loss_fn is None or data is None:
        raise ValueError("lr_find on a torch model needs loss_fn= and data= (an iterable of (inputs, targets))")
    if isinstance(optimizer, str):
        from .. import torch as adaopt_torch

        variant = registry.variant(optimizer)
        cls = adaopt_torch.CLASSES[variant.family]
        hp = {**variant.overrides, **hp}
        name = optimizer
    else:
        cls, name = optimizer, optimizer.__name__
    saved = copy.deepcopy(model.state_dict())
    opt = cls(model.parameters(), lr=lr0, **hp)
    batches = itertools.cycle(data)

    def step(lr: float) -> float:
        for group in opt.param_groups:
            group["lr"] = lr
        try:
            inputs, targets = next(batches)
        except StopIteration:
            raise ValueError("lr_find: data= gave no batches (an empty DataLoader or list?); it needs an "
                             "iterable of (inputs, targets) with at least one batch, which it cycles") from None
        opt.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def restore() -> None:
        with torch.no_grad():
            model.load_state_dict(saved)

    step.restore = restore
    return step, name
