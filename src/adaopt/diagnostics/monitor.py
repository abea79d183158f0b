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
import warnings
from array import array

import numpy as np

from .. import registry
from .history import History
from .probes import probe
from .sampling import Sample, gather
from .summaries import STATE, build_history, summarise
from .verdict import ALARMS, DIVERGE_FACTOR, LIVE_CHECKS, MIN_WINDOW, Diagnosis, diagnose
from .verdict_noise import median
from .verdict_thresholds import ALARM_REASK
from .verdict_watch import RiseWatch, rise_diagnosis


#: The most tensors a monitor reads (the largest ones).
MAX_TENSORS = 16
#: Steps whose samples wait before their dot products are done together.
QUEUE = 64
#: Numbers per step the monitor keeps (g.g, u.u, p.p, g.g_prev, u.u_prev, non-finite count,
#: share of zero gradients, share of lost updates).
RAW_COLUMNS = 8
#: The layout of :meth:`Monitor.state_dict`.
STATE_VERSION = 1


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
    work, as long as a run keeps to one; the first call tells which). More calls
    between two steps add columns to the same row (``mon.log(val_loss=...)``).
    ``stop_on=("NONFINITE", "DIVERGING")`` makes every step run :meth:`check` and
    raise :class:`StopTraining` on those.

    After a stop, a run can be rolled back to a checkpoint and continued: restore the
    parameters and ``optimizer.load_state_dict(saved)``, and the monitor notices at the
    next step (the optimizer's step count went back and the parameters moved without a
    step): the steps after the checkpoint leave the history (``meta["rollbacks"]`` keeps
    ``[last step, step returned to]``), and the next update is measured from the restored
    parameters, not read as a jump. A restore the optimizer's state does not show (the
    parameters alone, or an optimizer that keeps no step count, as SGD without momentum
    in torch) is told with :meth:`rollback`.

    To resume a run in a new process, save :meth:`state_dict` with the optimizer's and load
    it into the new run's monitor before its first step (:meth:`load_state_dict`): the
    history goes on from the saved step, and the verdict covers the whole run. Without the
    saved monitor, ``first_step=k + 1`` numbers a run resumed at step k on from there (the
    verdict then covers the steps from the resume; :meth:`rollback` counts rows of this history).
    """

    #: ``state_dict()["format"]``; ``version`` is :data:`STATE_VERSION`.
    STATE_FORMAT = "adaopt.Monitor"

    def __init__(self, optimizer, *, every: int = 10, sample: int = 1024, stop_on=(), first_step: int = 1):
        if isinstance(first_step, bool) or not isinstance(first_step, int) or first_step < 1:
            raise ValueError(f"first_step={first_step!r}: the number of the first step watched, an integer >= 1 "
                             "(a run resumed at step k without the saved monitor: k + 1)")
        self.first_step = first_step
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r}: the state summary interval must be an integer >= 1")
        if not isinstance(sample, int) or sample < 1:
            raise ValueError(f"sample={sample!r}: the sample size must be an integer >= 1")
        if isinstance(stop_on, str):  # stop_on="DIVERGING" is one verdict, not nine letters
            stop_on = (stop_on,)
        stop_on = tuple(v.upper() if isinstance(v, str) else v for v in stop_on)  # "diverging" too
        unknown = set(stop_on) - set(ALARMS)
        if unknown:
            raise ValueError(f"stop_on={tuple(stop_on)!r}: only {', '.join(ALARMS)} can stop a run")
        self.every, self.stop_on = every, tuple(stop_on)
        self._probe = probe(optimizer)
        self.optimizer = optimizer
        sizes = self._probe.sizes()
        self.total = sum(sizes)
        # a model of many tensors is sampled from its MAX_TENSORS largest: per-tensor work is what costs
        chosen = sorted(sorted(range(len(sizes)), key=lambda i: -sizes[i])[:MAX_TENSORS])
        self._probe.choose(chosen)
        sizes = [sizes[i] for i in chosen]
        self.exact = sum(sizes) <= sample and len(chosen) == len(self._probe.sizes())
        self._layout = Sample(sizes, sample)
        self._sample = self._layout.take  # the sampled coordinates of flat arrays, as one vector
        self._raw: list[np.ndarray] = []  # blocks of rows: g.g, u.u, p.p, g.g_prev, u.u_prev,
        # the non-finite count, the share of exactly-zero gradients, of updates that rounded away
        # queues of sampled gradients, parameters and updates: row 0 is the step before row 1
        self._G, self._P, self._U = (np.full((QUEUE + 1, self._layout.size), np.nan) for _ in range(3))
        self._queued, self._primed = 0, False
        self._steps = 0
        self._extra: list = []  # per step: None, or a dict of logged values and the state summary
        self._recent_losses: list[float] = []
        self._asked = None  # (rows, Diagnosis) of the last diagnose() an alarm asked (check())
        self._watch = RiseWatch()  # the losses as the live check's rise test sees them
        self._loss_steps = array("q")  # the step of each loss the watch holds
        self._step_lr = None  # the first group's lr when the last step was taken
        self._first_loss = None
        self._pending_loss = None
        self._log_after = None  # whether log() is called after its step (set by the first call)
        self._warned_added = False
        self._warned_twice, self._repeats = False, 0  # losses logged for a step that had one (dropped)
        self._counters = array("q")  # per row: the optimizer's step count after it (-1: unknown)
        self._rollbacks: list[list[int]] = []  # [rows before, rows kept] of every rollback
        self._restored = False  # whether a rollback was taken since the last step
        self._handles = self._probe.hook(self._pre, self._post)
        self._history = None

    # ------------------------------------------------------------------ the user's side

    def log(self, loss=None, **extra) -> None:
        """Record this step's loss (and any other numbers, as extra columns), once a step. A second
        loss for the same optimizer step is dropped: the row and the live check keep the first
        (before, the row kept the last and the live check saw each). When that happens at about
        every step (each micro-batch of gradient accumulation logged), a warning says so."""
        values = dict(extra)
        if loss is not None:
            values["loss"] = _scalar(loss)
        if not values:
            return
        if "loss" in values and self._has_loss_now():
            del values["loss"]
            self._repeats += 1  # (a GradScaler's skipped step repeats now and then; micro-batches every step)
            if not self._warned_twice and self._repeats >= max(8, len(self._extra)):
                self._warned_twice = True
                warnings.warn(f"Monitor.log(): {self._repeats} losses were logged for optimizer steps that already "
                              "had one (gradient accumulation, logging each micro-batch?): each step keeps the first "
                              "it was given; log once per optimizer step, e.g. the mean of its micro-batches' losses",
                              stacklevel=2)
            if not values:
                return
        if "loss" in values:
            if self._first_loss is None:
                self._first_loss = values["loss"]
            self._recent_losses = (self._recent_losses + [values["loss"]])[-MIN_WINDOW:]
            # the lr beside the loss, in its row too: a replay of the history (diagnose, a saved
            # log, a resumed monitor) then reads the lr the live check read
            after = self._steps > 0 and self._log_after is not False  # (as the loss's step is told below)
            lr = _number(values["lr"]) if values.get("lr") is not None else self._step_lr if after else \
                self._lr_now()  # the lr its step took: read at the step (a scheduler moves it after)
            if lr is not None:
                values["lr"] = lr
            if math.isfinite(values["loss"]):
                self._watch.push(values["loss"], lr)
                self._loss_steps.append(self._steps if self._steps > 0 and self._log_after is not False else
                                        self._steps + 1)
        if self._log_after is None:  # the first call tells which way this run logs
            self._log_after = self._steps > 0
        if self._log_after:  # into the last step's row; a value it already has stays (a step
            # skipped in between, as a GradScaler does, has no row of its own)
            if self._extra:  # (none when a rollback undid every step: the value has no row)
                self._extra[-1] = {**values, **(self._extra[-1] or {})}
            self._history = None
        else:  # logged before its step: held for it (the latest value of each name)
            self._pending_loss = {**(self._pending_loss or {}), **values}

    def _has_loss_now(self) -> bool:
        """Whether the step a loss logged now belongs to already has one (as :meth:`log` files it)."""
        if self._log_after is None:
            return False
        if self._log_after:
            return bool(self._extra) and "loss" in (self._extra[-1] or {})
        return "loss" in (self._pending_loss or {})

    @property
    def history(self) -> History:
        self._notice_rollback()
        if self._history is None:
            self._history = self._build_history()
        return self._history

    @property
    def meta(self) -> dict:
        # the probe's meta read anew: a scheduler moves lr
        out = {**self._probe.meta(), "sampled": self._layout.size, "every": self.every}
        if self._rollbacks:
            out["rollbacks"] = [list(r) for r in self._rollbacks]
        return out

    def diagnose(self, **kwargs) -> Diagnosis:
        """The verdict on the run so far; see :func:`adaopt.diagnostics.diagnose`."""
        return diagnose(self.history, **kwargs)

    def plot(self, ax=None, **kwargs):
        """The run so far as a picture: its loss, the verdict and the steps its evidence names,
        where check() fires, the lr (:func:`~adaopt.diagnostics.plot.plot_diagnosis`; ``ax``: an
        Axes, a path to save to, or None; ``kwargs`` go to :meth:`diagnose`). Returns the Axes."""
        from .plot import plot_diagnosis

        return plot_diagnosis(self.history, self.diagnose(**kwargs), ax=ax, **kwargs)

    def check(self) -> Diagnosis | None:
        """A cheap look at the last steps: a :class:`Diagnosis` if the run is DIVERGING or
        NONFINITE, else None. Cheap enough to call every step.

        It fires on a non-finite value, on a loss 1.5x its first value (when :meth:`diagnose`
        agrees), and on a sustained, significant rise above the best window of 20 logged losses
        (:mod:`~adaopt.diagnostics.verdict_watch`): within 20 logged steps of a blow-up's onset."""
        self._notice_rollback()
        return self._check()

    def _check(self) -> Diagnosis | None:
        self._flush()
        if not self._raw:
            return None
        gg, uu, pp, _, _, nonfinite, _, _ = self._raw[-1][-1]
        last = self._extra[-1] or {}
        bad = nonfinite > 0 or not math.isfinite(gg + uu + pp) or not math.isfinite(last.get("loss", 0.0))
        recent, first = self._recent_losses, self._first_loss
        high = not bad and first is not None and first > 0 and len(recent) >= 3 and \
            median(recent) > DIVERGE_FACTOR * first
        if bad:  # a non-finite value: asked at once, whatever was asked before
            self._asked = None
            found = diagnose(self.history, _checks=LIVE_CHECKS)
            if found.verdict in ALARMS:
                return found
        elif not high:
            self._asked = None
        else:  # diagnose() costs O(rows): asked at once, then again once ALARM_REASK more losses came
            n = len(self._watch.values)  # (losses, not rows: as its replay, first_alarm, counts them)
            if self._asked is None or n - self._asked[0] >= max(1, ALARM_REASK * self._asked[0]):
                self._asked = (n, diagnose(self.history, _checks=LIVE_CHECKS))
            found = self._asked[1]
            if found.verdict in ALARMS:
                return found
        rise = self._watch.rise()
        if rise is None:
            return None
        steps, before = self._loss_steps, self.first_step - 1
        lrs = {_number(g.get("lr")) for g in self.optimizer.param_groups}
        return rise_diagnosis(rise, lambda i: int(steps[i]) + before, self.meta.get("lr"), len(lrs))

    def rollback(self, to_step=None) -> None:
        """Say that the run was restored from a checkpoint taken after ``to_step`` steps: the
        history keeps its first ``to_step`` rows (0: none), and the next update is measured
        from the parameters as they are now (the restored ones).

        Without ``to_step``, the optimizer's state says it (its step count, when it went
        back since the last step: ``optimizer.load_state_dict`` of an earlier state, which
        the monitor also notices by itself; calling it then too does no harm). Call it
        after restoring, before the next step.
        """
        self._flush()
        n = len(self._extra)
        if to_step is None:
            keep = self._restored_rows()
            if keep is None and self._restored:  # already noticed (reading the history does)
                return
            if keep is None:
                raise ValueError("rollback(): the optimizer's step count did not go back, so it does not say "
                                 "which step was restored; say it: rollback(to_step=k), k the number of steps "
                                 f"the checkpoint had taken (0 to {n})")
        else:
            if isinstance(to_step, bool) or not isinstance(to_step, (int, np.integer)) or not 0 <= to_step <= n:
                raise ValueError(f"rollback(to_step={to_step!r}): allowed an integer from 0 to {n} "
                                 "(the steps in the history)")
            keep = int(to_step)
        self._truncate(keep)

    def save(self, path):
        """Write the history as CSV or JSON Lines (by suffix); ``adaopt diagnose`` reads it. A CSV's
        first line is ``# meta: {...}``, the optimizer's settings as JSON (a JSON Lines file's first
        object is ``{"meta": ...}``); to read the CSV yourself, skip it:
        ``csv.DictReader(line for line in f if not line.startswith("#"))``."""
        return self.history.save(path)

    # ------------------------------------------------------------------ resuming

    def state_dict(self) -> dict:
        """What a resumed run's monitor needs to go on with this history: plain lists and
        numbers, so ``torch.save`` / ``torch.load(weights_only=True)`` and pickle carry it. The state summaries are worked out now (the state they sample is not saved)."""
        self._notice_rollback()
        self._flush()
        raw = np.concatenate(self._raw) if self._raw else np.zeros((0, RAW_COLUMNS))
        family = self._probe.family
        extra = [None if e is None else
                 {**{k: _plain(v) for k, v in e.items() if k != STATE},
                  **({k: _plain(v) for k, v in summarise(family, *e[STATE]).items()} if STATE in e else {})}
                 for e in self._extra]
        return {"format": self.STATE_FORMAT, "version": STATE_VERSION, "parameters": int(self.total),
                "rows": [[_plain(x) for x in row] for row in raw.tolist()], "extra": extra,
                "counters": [int(c) for c in self._counters], "rollbacks": [list(r) for r in self._rollbacks],
                "log_after": self._log_after, "first_step": self.first_step,
                "pending": None if self._pending_loss is None else {k: _plain(v) for k, v in
                                                                    self._pending_loss.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a saved monitor's history (:meth:`state_dict`); call it on a new monitor
        before its first step, once the parameters and the optimizer's state are restored
        (the next update is measured from the parameters as they are then)."""
        state = _checked_state(state, self.total)
        if self._extra or self._pending_loss is not None:
            raise ValueError("load_state_dict(): this monitor has already recorded steps; load the saved "
                             "state into a new Monitor, before the first step of the resumed run")
        rows = state["rows"]
        self._raw = [np.array(rows, dtype=np.float64).reshape(len(rows), RAW_COLUMNS)] if rows else []
        self._extra = [None if e is None else dict(e) for e in state["extra"]]
        self._counters = array("q", state["counters"])
        self._rollbacks = [list(r) for r in state["rollbacks"]]
        self._log_after = state["log_after"]
        self.first_step = state.get("first_step", 1)  # (a state saved before it was kept: 1)
        self._pending_loss = None if state["pending"] is None else dict(state["pending"])
        self._queued = 0
        self._from_rows(len(self._extra))


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

    def _pre(self, grads) -> None:
        # The parameters after the last step are the ones before this one, unless something
        # changed them in between: the update measured is then what the parameters really did
        # (a rollback to a checkpoint excepted: it is not an update).
        self._notice_rollback()
        if self._queued == 0 and not self._primed:
            self._sample(self._probe.params(), out=self._P[0])
            self._primed = True

    def _post(self, grads) -> None:
        """Record the step: copy the sampled gradient and parameters into the queue. The dot
        products wait, to be done for up to ``QUEUE`` steps at once (or when asked)."""
        if not self._warned_added and self._probe.added():
            self._warned_added = True
            warnings.warn("parameters were added to the optimizer after the monitor was attached "
                          "(add_param_group); it does not watch them: attach a new Monitor to see them",
                          stacklevel=3)
        i = self._queued = self._queued + 1
        g = self._sample(self._probe.flat(grads), out=self._G[i])
        self._sample(self._probe.params(), out=self._P[i])
        self._steps += 1
        self._step_lr = self._lr_now()  # the lr this step took, before a scheduler's step moves it
        self._restored = False
        count = self._probe.counter()
        self._counters.append(-1 if count is None else count)
        step = self._steps
        extra = None
        if step == 1 or step % self.every == 0:
            extra = self._summary(g)
            if extra is None and self._step_lr is not None:  # no state to summarise (SGD): the lr alone
                extra = {"lr": self._step_lr}
        if self._pending_loss is not None:
            extra = {**(extra or {}), **self._pending_loss}
            self._pending_loss = None
        self._extra.append(extra)
        self._history = None
        if i == len(self._G) - 1:
            self._flush()
        if self.stop_on:
            found = self._check()
            if found is not None and found.verdict in self.stop_on:
                raise StopTraining(found)

    def _flush(self) -> None:
        """Turn the queued samples into rows: five dot products a step, for all of them at once.

        Row 0 of the queues holds the step before the queued ones (its gradient, parameters
        and update), so the cosines with the previous step need no special case.
        """
        k = self._queued
        if k == 0:
            return
        G, P, U = self._G[: k + 1], self._P[: k + 1], self._U[: k + 1]
        np.subtract(P[1:], P[:-1], out=U[1:])
        g, u, p0 = G[1:], U[1:], P[:-1]
        with np.errstate(all="ignore"):
            dots = [np.einsum("ij,ij->i", a, b) for a, b in ((g, g), (u, u), (p0, p0), (g, G[:-1]), (u, U[:-1]))]
        bad = ~np.isfinite(dots[0] + dots[1])
        nonfinite = np.zeros(k)
        if bad.any():
            nonfinite[bad] = (~np.isfinite(g[bad])).sum(axis=1) + (~np.isfinite(P[1:][bad])).sum(axis=1)
        # dead units and updates lost to rounding: a gradient exactly 0, a parameter that did not
        # move although its gradient was not 0 (compared as the dtype stores them: exact)
        live = g != 0
        n_live = live.sum(axis=1)
        zero_g = 1.0 - n_live / g.shape[1]
        with np.errstate(invalid="ignore"):
            lost = np.where(n_live > 0, (live & (u == 0)).sum(axis=1) / np.maximum(n_live, 1), np.nan)
        self._raw.append(np.column_stack(dots + [nonfinite, zero_g, lost]))
        for buf in (G, P, U):
            buf[0] = buf[k]
        self._queued = 0

    # ------------------------------------------------------------------ rollbacks

    def _restored_rows(self):
        """How many rows the optimizer's state says were kept, if its step count went back
        since the last step (a state_dict of an earlier step loaded); else None."""
        if not self._counters or self._counters[-1] < 0:
            return None
        count = self._probe.counter()
        if count is None or count >= self._counters[-1]:
            return None
        keep = len(self._counters)
        while keep and self._counters[keep - 1] > count:  # the rows of steps after the checkpoint's
            keep -= 1
        return keep

    def _notice_rollback(self) -> None:
        """Undo the rows of the steps a checkpoint's restore undid: the optimizer's step count
        went back, and the parameters are not the ones the last step left. (An earlier state
        loaded onto the same parameters undoes no step: the history stays.)"""
        keep = self._restored_rows()
        if keep is None:
            return
        now = self._sample(self._probe.params())
        if np.array_equal(now, self._P[self._queued], equal_nan=True):
            return
        self._truncate(keep, now)

    def _truncate(self, keep: int, params=None) -> None:
        """Keep the first ``keep`` rows; the next update is measured from the parameters now."""
        self._flush()
        n = len(self._extra)
        if keep < n:
            raw = np.concatenate(self._raw)
            self._raw = [raw[:keep]] if keep else []
            del self._extra[keep:]
            del self._counters[keep:]
            self._rollbacks.append([n, keep])
        self._from_rows(keep, params)
        self._restored = True

    def _from_rows(self, steps: int, params=None) -> None:
        """Go on after ``steps`` rows of history, from the parameters now: the step before
        the next one is the restored point, its gradient and update not known (the next
        cosines are absent); the live checks' losses are read again from the rows."""
        self._steps = steps
        self._G[0] = np.nan
        self._U[0] = np.nan
        self._P[0] = self._sample(self._probe.params()) if params is None else params
        self._primed = True
        losses = [e["loss"] for e in self._extra if e and "loss" in e]
        if self._pending_loss and "loss" in self._pending_loss:
            losses.append(self._pending_loss["loss"])
        self._recent_losses = losses[-MIN_WINDOW:]
        self._first_loss = losses[0] if losses else None
        self._asked = None
        self._watch, self._loss_steps = RiseWatch(), array("q")
        for i, e in enumerate(self._extra):
            if e and "loss" in e and math.isfinite(e["loss"]):
                self._watch.push(e["loss"], _row_lr(e))
                self._loss_steps.append(i + 1)
        self._history = None

    def _lr_now(self) -> float | None:
        """The first parameter group's lr now (a tensor's value; None if it has none), which the
        live check reads beside each loss: an lr that jumps is a restart or a raise."""
        return _number(self.optimizer.param_groups[0].get("lr")) if self.optimizer.param_groups else None

    # ------------------------------------------------------------------ the state summary

    def _summary(self, g: np.ndarray):
        """Copy what the state summary needs (a thinned sample of the state, the step's
        scalars); the numbers are worked out when the history is read."""
        if self._probe.family not in registry.FAMILIES:
            return None
        layout, taken = self._layout, []
        for (hp, step, arrays), spans in zip(self._probe.states(), layout.spans):
            if step < 1 or not arrays or any(a is None for a in arrays.values()):
                continue
            taken.append((hp, step, {k: gather(a, spans, layout.thin) for k, a in arrays.items()}))
        return {STATE: (taken, g[layout.thin_index])} if taken else None

    # ------------------------------------------------------------------ rows

    def _build_history(self) -> History:
        """The columns, computed from the raw dot products in one pass (:mod:`.summaries`)."""
        self._flush()
        raw = np.concatenate(self._raw) if self._raw else np.zeros((0, RAW_COLUMNS))
        scale = 1.0 if self.exact else self.total / max(self._layout.size, 1)
        return build_history(raw, self._extra, scale, self._probe.family, self.meta, self.first_step)


def _row_lr(extra: dict) -> float | None:
    """The lr a row of the history records: logged, or in its state summary (worked out, or the
    hyperparameters of its first sampled tensor), else None."""
    if extra.get("lr") is not None:
        return float(extra["lr"])
    taken = extra.get(STATE, ((),))[0]
    return float(taken[0][0]["lr"]) if taken and taken[0][0].get("lr") is not None else None


def _plain(value):
    """A logged number as a Python float (None stays None)."""
    return None if value is None else float(value)


def _checked_state(state, total: int) -> dict:
    """``state`` if it is a monitor's :meth:`Monitor.state_dict` of a model of ``total``
    parameters, consistent with itself; else a ValueError that says what is wrong."""
    if not isinstance(state, dict) or state.get("format") != Monitor.STATE_FORMAT:
        raise ValueError("load_state_dict(): not a Monitor's state_dict (no format "
                         f"{Monitor.STATE_FORMAT!r}); pass what Monitor.state_dict() returned")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"load_state_dict(): state version {state.get('version')!r}; this adaopt reads "
                         f"version {STATE_VERSION}")
    if state.get("parameters") != total:
        raise ValueError(f"load_state_dict(): the saved monitor watched {state.get('parameters')!r} "
                         f"parameters, this one {total}: a monitor of another model")
    need = ("rows", "extra", "counters", "rollbacks", "log_after", "pending")
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"load_state_dict(): the state has no {', '.join(missing)}")
    rows, extra, counters = state["rows"], state["extra"], state["counters"]
    if not (isinstance(rows, list) and isinstance(extra, list) and isinstance(counters, list)):
        raise ValueError("load_state_dict(): rows, extra and counters must be lists")
    if not len(rows) == len(extra) == len(counters):
        raise ValueError(f"load_state_dict(): {len(rows)} rows, {len(extra)} extras and {len(counters)} "
                         "step counts: they must be as many (one per step)")
    if any(not isinstance(r, (list, tuple)) or len(r) != RAW_COLUMNS for r in rows):
        raise ValueError(f"load_state_dict(): every row must hold {RAW_COLUMNS} numbers")
    if any(e is not None and not isinstance(e, dict) for e in extra):
        raise ValueError("load_state_dict(): every extra must be None or a dict of numbers")
    first = state.get("first_step", 1)
    if isinstance(first, bool) or not isinstance(first, int) or first < 1:
        raise ValueError(f"load_state_dict(): first_step={first!r}, allowed an integer >= 1")
    if state["log_after"] not in (None, True, False):
        raise ValueError(f"load_state_dict(): log_after={state['log_after']!r}, allowed None, True, False")
    return state


def _number(value) -> float | None:
    """A logged or optimizer's lr as a float (a tensor's or array's one value), or None."""
    try:
        return None if value is None else float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _scalar(value) -> float:
    """The loss as a float; a clear TypeError for anything that is not one number."""
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        from ..hyper import short_repr

        raise TypeError(f"loss={short_repr(value)}: Monitor.log takes one number (a float, or a tensor or "
                        "array of one element)") from None

