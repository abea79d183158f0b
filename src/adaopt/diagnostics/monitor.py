"""The monitor: cheap per-step signals and periodic summaries of the optimizer's state.

It attaches to an optimizer's step hooks and never changes an update. Norms and
cosines are computed on a fixed sample of about ``sample`` coordinates, a few
contiguous blocks from every tensor (all coordinates for smaller models: the norms
are then exact; otherwise they are scaled up from the sample). Every ``every`` steps, and at step 1, it also summarises
the optimizer's state on the same coordinates, through the rule's own
``effective_lr`` and ``second_moment``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from .history import History
from .probes import RULES, probe
from .verdict import ALARMS, Diagnosis, diagnose, quick_check


class StopTraining(RuntimeError):
    """Raised by a monitor with ``stop_on`` when a step's check finds one of those verdicts."""

    def __init__(self, diagnosis: Diagnosis):
        super().__init__(str(diagnosis))
        self.diagnosis = diagnosis


class Monitor:
    """Watch an optimizer and say how its run is going.

    >>> import numpy as np, adaopt
    >>> from adaopt.diagnostics import Monitor
    >>> x = np.array([3.0, -2.0])
    >>> opt = adaopt.Adam([x], lr=0.1)
    >>> mon = Monitor(opt)
    >>> for _ in range(300):
    ...     mon.log(loss=float(x @ x))
    ...     opt.step([2 * x])
    >>> mon.diagnose().verdict in ("CONVERGING", "CONVERGED")
    True

    ``optimizer`` is an :class:`adaopt.Optimizer` or any ``torch.optim.Optimizer``.
    Call :meth:`log` once per step with the loss (before or after the step: both
    work, as long as a run keeps to one). ``stop_on=("NONFINITE", "DIVERGING")``
    makes every step run :meth:`check` and raise :class:`StopTraining` on those.
    """

    def __init__(self, optimizer, *, every: int = 10, sample: int = 8192, stop_on=()):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r}: the state summary interval must be an integer >= 1")
        if not isinstance(sample, int) or sample < 1:
            raise ValueError(f"sample={sample!r}: the sample size must be an integer >= 1")
        unknown = set(stop_on) - set(ALARMS)
        if unknown:
            raise ValueError(f"stop_on={tuple(stop_on)!r}: only {', '.join(ALARMS)} can stop a run")
        self.every, self.stop_on = every, tuple(stop_on)
        self._probe = probe(optimizer)
        self.optimizer = optimizer
        sizes = [p.size for p in self._probe.params()]
        self.total = total = sum(sizes)
        self.exact = total <= sample
        self._spans = [_spans(m, sample, total) for m in sizes]
        self._rows: dict[str, list] = {"step": []}
        self._pending_loss = None
        self._logged_since_step = True
        self._p_before = self._g_prev = self._u_prev = None
        self._handles = self._probe.hook(self._pre, self._post)
        self._meta = None
        self._history = None

    # ------------------------------------------------------------------ the user's side

    def log(self, loss=None, **extra) -> None:
        """Record this step's loss (and any other numbers, as extra columns)."""
        values = dict(extra)
        if loss is not None:
            values["loss"] = _scalar(loss)
        if not values:
            return
        if self._rows["step"] and not self._logged_since_step:  # logged after its step
            self._set_row(-1, values)
        else:  # logged before its step: held for it
            self._pending_loss = {**(self._pending_loss or {}), **values}
        self._logged_since_step = True

    @property
    def history(self) -> History:
        if self._history is None:
            self._history = History(self._rows, self.meta)
        return self._history

    @property
    def meta(self) -> dict:
        if self._meta is None:
            sampled = sum(b - a for spans in self._spans for a, b in spans)
            self._meta = {**self._probe.meta(), "sampled": sampled, "every": self.every}
        return self._meta

    def diagnose(self, **kwargs) -> Diagnosis:
        """The verdict on the run so far; see :func:`adaopt.diagnostics.diagnose`."""
        return diagnose(self.history, **kwargs)

    def check(self) -> Diagnosis | None:
        """A cheap look at the last steps: a :class:`Diagnosis` if the run is DIVERGING or
        NONFINITE, else None. Cheap enough to call every step."""
        rows = self._rows
        if not rows["step"]:
            return None
        if not quick_check(rows):
            return None
        found = diagnose(self.history)
        return found if found.verdict in ALARMS else None

    def save(self, path):
        """Write the history as CSV or JSON Lines (by suffix); ``adaopt diagnose`` reads it."""
        return self.history.save(path)

    def remove(self) -> None:
        """Detach from the optimizer."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    # ------------------------------------------------------------------ hooks

    def _sample(self, flats) -> np.ndarray:
        """The sampled coordinates of flat arrays, as one new float64 vector."""
        parts = [np.full(b - a, np.nan) if f is None else f[a:b]
                 for f, spans in zip(flats, self._spans) for a, b in spans]
        return np.concatenate(parts, dtype=np.float64) if parts else np.zeros(0)

    def _pre(self, grads) -> None:
        self._p_before = self._sample(self._probe.params())

    def _post(self, grads) -> None:
        flats = self._probe.flat(grads)
        g = self._sample(flats)
        p0, p1 = self._p_before, self._sample(self._probe.params())
        if p0 is None or len(p0) != len(p1) or len(g) != len(p1):  # a gradient went missing: skip
            return
        u = p1 - p0
        scale = 1.0 if self.exact else math.sqrt(self.total / max(len(g), 1))
        gg, uu, pp = float(g @ g), float(u @ u), float(p0 @ p0)
        row = {
            "grad_norm": math.sqrt(gg) * scale if gg >= 0 else gg,
            "update_norm": math.sqrt(uu) * scale if uu >= 0 else uu,
            "param_norm": math.sqrt(pp) * scale if pp >= 0 else pp,
            "update_ratio": math.sqrt(uu / pp) if pp > 0 else None,
            "cos_grad": _cos(g, gg, self._g_prev),
            "cos_update": _cos(u, uu, self._u_prev),
            "nonfinite": 0.0,
        }
        if not (math.isfinite(gg) and math.isfinite(uu)):
            row["nonfinite"] = float(np.count_nonzero(~np.isfinite(g)) + np.count_nonzero(~np.isfinite(p1)))
        self._g_prev, self._u_prev = (g, gg), (u, uu)
        n = len(self._rows["step"])
        step = n + 1
        self._append(step, row)
        if step == 1 or step % self.every == 0:
            self._set_row(-1, self._summary(g))
        if self._pending_loss is not None:
            self._set_row(-1, self._pending_loss)
            self._pending_loss = None
            self._logged_since_step = True
        else:
            self._logged_since_step = False
        if self.stop_on:
            found = self.check()
            if found is not None and found.verdict in self.stop_on:
                raise StopTraining(found)

    # ------------------------------------------------------------------ the state summary

    def _summary(self, g: np.ndarray) -> dict:
        family = self._probe.family
        rule = RULES.get(family)
        if rule is None:
            return {}
        eff, vhat, eps_dom, lr, factors = [], [], [], None, {}
        for (hp, step, arrays), spans in zip(self._probe.states(), self._spans):
            if step < 1 or not arrays or any(a is None for a in arrays.values()):
                continue
            buffers = {k: np.concatenate([a[lo:hi] for lo, hi in spans], dtype=np.float64)
                       for k, a in arrays.items()}
            s = rule.scalars(step, hp)
            lr = float(hp["lr"])
            eff.append(np.broadcast_to(np.asarray(rule.effective_lr(buffers, hp, s), dtype=np.float64),
                                       next(iter(buffers.values())).shape))
            if hasattr(rule, "second_moment"):
                v = np.asarray(rule.second_moment(buffers, hp, s), dtype=np.float64)
                vhat.append(v)
                root = v if hp.get("eps_in_sqrt") else np.sqrt(v)
                eps_dom.append(hp["eps"] >= root)
            if family in ("adam", "adamw") and hp.get("bias_correction", True):
                b1, b2 = hp["betas"]
                factors = {"bc1": 1 / (1 - b1**step), "bc2": 1 / (1 - b2**step)}
        if not eff:
            return {}
        eff = np.concatenate(eff)
        p5, p50, p95 = np.percentile(eff, [5, 50, 95]) if eff.size else (np.nan,) * 3
        out = {"lr": lr, "eff_lr_p5": p5, "eff_lr_p50": p50, "eff_lr_p95": p95, **factors}
        if vhat:
            v = np.concatenate(vhat)
            out["eps_frac"] = float(np.mean(np.concatenate(eps_dom)))
            out["vhat_p50"] = float(np.median(v))
            if family != "adagrad" and len(v) == len(g):
                ok = v > 0
                if ok.any():
                    out["g2_vhat"] = float(np.median(g[ok] ** 2 / v[ok]))
        return out

    # ------------------------------------------------------------------ rows

    def _append(self, step: int, row: dict) -> None:
        n = len(self._rows["step"])
        self._rows["step"].append(step)
        for key, value in row.items():
            self._rows.setdefault(key, [None] * n).append(value)
        for key, col in self._rows.items():
            if len(col) == n:
                col.append(None)
        self._history = None

    def _set_row(self, index: int, values: dict) -> None:
        n = len(self._rows["step"])
        for key, value in values.items():
            col = self._rows.setdefault(key, [None] * n)
            col[index] = value
        self._history = None



def _spans(m: int, sample: int, total: int) -> list[tuple[int, int]]:
    """Which coordinates of a flat tensor of ``m`` the monitor reads: all of them when the
    model has at most ``sample`` in all, else its share of ``sample`` in up to 8 contiguous
    blocks spread evenly over the tensor (contiguous reads cost far less than a stride)."""
    if total <= sample:
        return [(0, m)]
    share = min(m, max(1, round(sample * m / total)))
    blocks = min(8, max(1, share // 256))
    length = share // blocks
    starts = np.linspace(0, m - length, blocks).astype(int)
    return [(int(a), int(a) + length) for a in starts]


def _cos(x: np.ndarray, xx: float, prev) -> float | None:
    if prev is None:
        return None
    y, yy = prev
    if not (xx > 0 and yy > 0 and math.isfinite(xx) and math.isfinite(yy)):
        return None
    return float(x @ y) / math.sqrt(xx * yy)


def _scalar(value) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)

