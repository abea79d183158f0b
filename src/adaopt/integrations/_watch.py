"""What both trainer callbacks do: watch an optimizer with a Monitor, take the step's loss,
hand out the latest measures, check for an alarm, and give the verdict at the end."""

from __future__ import annotations

import math

from ..diagnostics import ALARMS, Monitor

#: The Monitor's columns a callback logs to the trainer's loggers, as ``adaopt/<name>``.
MEASURES = ("grad_norm", "update_ratio", "cos_grad", "cos_update", "eff_lr_p50", "eps_frac", "g2_vhat")


def check_stop_on(stop_on) -> tuple:
    """``stop_on`` as a tuple of verdicts (any case: ``"diverging"`` is DIVERGING), refused unless
    each is one of ALARMS."""
    stop_on = (stop_on,) if isinstance(stop_on, str) else tuple(stop_on or ())
    named = tuple(v.upper() if isinstance(v, str) else v for v in stop_on)
    unknown = [v for v, n in zip(stop_on, named) if n not in ALARMS]
    if unknown:
        raise ValueError(f"stop_on={stop_on!r}: only {', '.join(ALARMS)} can stop a run (got {unknown[0]!r})")
    return named


def check_arguments(cls: str, every, sample, verbose) -> None:
    """A callback's arguments checked when it is made, not when the fit starts: ``every`` and
    ``sample`` as the Monitor takes them, ``verbose`` a bool."""
    for name, value, what in (("every", every, "the state summary interval"), ("sample", sample, "the sample size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{cls}({name}={value!r}): {what} must be an integer >= 1")
    if not isinstance(verbose, bool):
        raise TypeError(f"{cls}(verbose={verbose!r}): True (print the verdict when training ends) or False")


def unwrap(optimizer):
    """The torch optimizer inside a wrapper (accelerate's AcceleratedOptimizer, Lightning's
    LightningOptimizer hold it as ``.optimizer``)."""
    seen = 0
    while hasattr(optimizer, "optimizer") and seen < 4:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


class Watch:
    """A Monitor on ``optimizer`` (no ``stop_on`` inside it: a callback stops through its
    trainer, not by an exception out of ``optimizer.step``)."""

    def __init__(self, optimizer, *, every: int, sample: int, stop_on, first_step: int = 1):
        self.monitor = Monitor(unwrap(optimizer), every=every, sample=sample, first_step=first_step)
        self.stop_on = stop_on
        self.stopped = None  # the Diagnosis that stopped the run

    def log(self, loss) -> None:
        """The loss of the step just taken (a tensor or a number; None: not known)."""
        if loss is None:
            return
        value = float(loss.detach().float().mean()) if hasattr(loss, "detach") else float(loss)
        self.monitor.log(loss=value)

    def measures(self) -> dict:
        """The last step's measures that were taken, as ``{"adaopt/<name>": value}``."""
        h = self.monitor.history
        if len(h) == 0:
            return {}
        out = {}
        for name in MEASURES:
            steps, values = h.series(name)
            if len(values) and steps[-1] == h.steps[-1] and math.isfinite(values[-1]):
                out[f"adaopt/{name}"] = float(values[-1])
        return out

    def should_stop(self) -> bool:
        """Whether the run has shown one of ``stop_on`` (then ``stopped`` holds the diagnosis)."""
        if not self.stop_on or self.stopped is not None:
            return self.stopped is not None
        found = self.monitor.check()
        if found is not None and found.verdict in self.stop_on:
            self.stopped = found
        return self.stopped is not None

    def finish(self, *, show: bool, target=None):
        """Detach; the verdict on the run (the one that stopped it, if any), printed when ``show``."""
        self.monitor.remove()
        found = self.stopped or self.monitor.diagnose(target=target)
        if show:
            head = "adaopt: stopped the run: " if self.stopped else "adaopt: "
            print(head + str(found))
        return found
