"""What the explorer's page asks for, computed by adaopt's own rules.

:func:`run` takes one request (a surface, a start, several optimizers, the sliders'
values) and returns every optimizer's trajectory with the numbers the page shows per
step. All optimizers start together as rows of one ``(rows, 2)`` array, as in the lab's
batched sweeps (:mod:`adaopt.lab.sweep`): each step evaluates the surface on every row
in one call, then steps each row with its rule from :mod:`adaopt.rules`,

.. math::

    p_t = \\text{rule}(p_{t-1}, \\nabla f(p_{t-1}), \\text{state}_{t-1}, hp, s_t),

and records the per-coordinate effective learning rate ``rule.effective_lr`` (the
lesson's :math:`\\eta/\\sqrt{G}`, :math:`\\eta/(\\sqrt{\\hat v}+\\epsilon)`), the
bias-correction factors :math:`1/(1-\\beta_1^t)`, :math:`1/(1-\\beta_2^t)` and the
state buffers (AdaGrad's :math:`G`). The Monitor's per-step signals (gradient, update
and parameter norms, cosines of successive gradients and updates) and its state
summaries every 10 steps are then computed from the whole record at once, and each row
gets the Monitor's verdict (:func:`adaopt.diagnostics.diagnose`). Runs whose inputs
are unchanged since a recent request (the five optimizers a lr slider does not move) are
taken from :data:`RECENT` (:mod:`adaopt.explore.recent`) instead of being computed again.

Every input is bounded: :data:`MAX_STEPS` steps, :data:`MAX_OPTIMIZERS` optimizers,
coordinates within :data:`MAX_COORD`, expressions within
:data:`~adaopt.explore.problems.MAX_EXPRESSION` characters; anything else is an
:class:`~adaopt.explore.problems.InputError` (a ``ValueError``) naming the field, its value
and what is allowed. A ``ValueError`` raised while computing an accepted request is not
turned into one: it is a bug, and the server answers it 500.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import hyper, registry, rules
from ..diagnostics import state as st
from ..diagnostics.history import History
from ..diagnostics.verdict import diagnose
from . import answer
from .problems import InputError, checking_input, surface
from .recent import Recent

MAX_STEPS = 2000
MAX_OPTIMIZERS = 12
MAX_COORD = 1e4
MAX_LR = 100.0
#: The runs computed lately (:mod:`adaopt.explore.recent`), shared by the server's threads.
RECENT = Recent()
#: The state summary is taken at step 1 and every ``EVERY`` steps (the Monitor's default).
EVERY = 10


def _number(req: dict, key: str, default, low: float, high: float, *, integer=False, open_low=False):
    value = req.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{key}={hyper.short_repr(value)} is invalid: allowed {kind} "
                         f"{'>' if open_low else '>='} {low:g} and <= {high:g}")
    return int(value) if integer else float(value)


def _flag(req: dict, key: str, default: bool) -> bool:
    value = req.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}={hyper.short_repr(value)} is invalid: allowed true or false")
    return value


def optimizer_hp(name: str, lr: float, req: dict) -> dict:
    """The hyperparameters of lab optimizer ``name`` under the page's sliders and switches.

    The preset (``conventions``) gives the defaults, the variant its own settings
    (``momentum`` is SGD with momentum); then each slider sets what the family has:
    ``momentum`` (SGD with momentum; ``nesterov`` switches it to Nesterov's), ``beta1``
    and ``beta2`` (the Adam family's betas), ``rho`` (RMSprop's alpha, the lesson's rho;
    Adadelta's rho), ``eps`` (null: the preset's), and the switches ``bias_correction``,
    ``amsgrad`` and ``centered`` where the family takes them. A variant's own settings are
    not switched: ``nesterov`` stays Nesterov's, ``adam-nobc`` stays uncorrected.
    """
    variant = registry.variant(name)
    family = registry.FAMILIES[variant.family]
    conventions = req.get("conventions", "torch")
    hyper.check_choice("conventions", conventions, hyper.PRESETS)
    hp = {**family.defaults_for(conventions), **variant.overrides, "lr": lr}
    own = variant.overrides  # a variant's own settings (nesterov's Nesterov, adam-nobc's) stay
    if family.key == "sgd" and hp["momentum"] != 0:
        hp["momentum"] = _number(req, "momentum", hp["momentum"], 0.0, 0.999)
        if "nesterov" not in own:
            hp["nesterov"] = _flag(req, "nesterov", hp["nesterov"])
    if "betas" in hp:
        hp["betas"] = (_number(req, "beta1", hp["betas"][0], 0.0, 0.9999),
                       _number(req, "beta2", hp["betas"][1], 0.0, 0.99999))
    for key in ("alpha", "rho"):
        if key in hp:
            hp[key] = _number(req, "rho", hp[key], 0.0, 0.99999)
    if "eps" in hp and req.get("eps") is not None:
        hp["eps"] = _number(req, "eps", None, 0.0, 1.0)
    for key in ("bias_correction", "amsgrad", "centered"):
        if key in hp and key in req and key not in own:
            hp[key] = _flag(req, key, hp[key])
    return family.validate(hp, where=name)


def _optimizers(req: dict) -> list[tuple[str, float]]:
    chosen = req.get("optimizers")
    if not isinstance(chosen, list) or not chosen or len(chosen) > MAX_OPTIMIZERS:
        raise ValueError(f"optimizers must be a list of 1 to {MAX_OPTIMIZERS} entries "
                         '{"name": ..., "lr": ...}')
    out = []
    for entry in chosen:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"optimizers: each entry is {{\"name\": ..., \"lr\": ...}}, got {hyper.short_repr(entry)}")
        name = entry["name"].lower()
        registry.variant(name)  # ValueError listing the names
        if name in (n for n, _ in out):
            raise ValueError(f"optimizers: {name!r} is listed twice")
        out.append((name, _number(entry, "lr", None, 0.0, MAX_LR, open_low=True)))
    return out


def _start(req: dict, problem) -> np.ndarray:
    start = req.get("start")
    if start is None:
        return problem.x0()
    if not isinstance(start, list) or len(start) != 2:
        raise ValueError(f"start={hyper.short_repr(start)} is invalid: allowed [x, y]")
    pair = {"start x": start[0], "start y": start[1]}
    return np.array([_number(pair, k, None, -MAX_COORD, MAX_COORD) for k in pair])


def _finite_at(problem, x: np.ndarray) -> None:
    where = f"({x[0]:.6g}, {x[1]:.6g})"
    try:
        with np.errstate(all="ignore"):
            f, g = problem.value_and_grad(x[None])
    except ValueError as exc:  # a part with no real value: 1/0, log(-1) folded at parse time
        raise ValueError(f"start: f has no real value at {where}: {exc}") from None
    if not (np.isfinite(f).all() and np.isfinite(g).all()):
        raise ValueError(f"start: f or its gradient is not finite at {where}; pick another start")


#: The fields of a /api/run request: what the page sends (:func:`optimizer_hp` and :func:`answer.options`
#: read the sliders and the output options); each entry of ``optimizers`` has only ``name`` and ``lr``.
RUN_KEYS = ("problem", "expr", "start", "steps", "optimizers", "conventions", "momentum", "nesterov", "beta1",
            "beta2", "rho", "eps", "bias_correction", "amsgrad", "centered", "digits", "state")
ENTRY_KEYS = ("name", "lr")


def _unknown_keys(req: dict) -> None:
    """A misspelled field is refused, naming it (and the nearest known one), not ignored: "lrr": 1 at
    the top, or a slider inside an optimizer's entry, used to pass as if unset."""
    import difflib

    def refuse(key, known, where):
        near = difflib.get_close_matches(str(key), known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise InputError(f"{where}unknown field {hyper.short_repr(key)}{hint} (known: {', '.join(known)})")

    for key in req:
        if key not in RUN_KEYS:
            if difflib.get_close_matches(str(key), ENTRY_KEYS, n=1, cutoff=0.6):
                raise InputError(f"unknown field {hyper.short_repr(key)}: an optimizer's lr goes in its entry of "
                                 'optimizers, [{"name": ..., "lr": ...}]')
            refuse(key, RUN_KEYS, "")
    for i, entry in enumerate(req.get("optimizers") or []):
        for key in entry if isinstance(entry, dict) else ():
            if key not in ENTRY_KEYS:
                slider = f" ({key} is a field of the request, for every optimizer)" if key in RUN_KEYS else ""
                refuse(key, ENTRY_KEYS, f"optimizers[{i}]{slider}: ")


def parse_request(req) -> tuple:
    """The problem, start, steps and ``[(name, hp)]`` of a request, every field checked
    (:class:`InputError` naming the first that is not, or a field it does not know)."""
    if not isinstance(req, dict):
        raise InputError("the request must be a JSON object")
    _unknown_keys(req)
    with checking_input():
        problem = surface(req.get("problem", "rosenbrock"), req.get("expr"))
        steps = _number(req, "steps", min(problem.default_steps, 500), 1, MAX_STEPS, integer=True)
        start = _start(req, problem)
        _finite_at(problem, start)
        chosen = [(name, optimizer_hp(name, lr, req)) for name, lr in _optimizers(req)]
    return problem, start, steps, chosen


def run(req: dict) -> dict:
    """The page's answer to one request: a trajectory and its panels per optimizer."""
    problem, start, steps, chosen = parse_request(req)
    digits, state = answer.options(req)
    runs = trajectories(problem, start, steps, chosen)
    return {"problem": problem.name, "title": problem.title, "start": start.tolist(), "steps": steps,
            "runs": [r.to_json(digits, state) for r in runs]}


class Run:
    """One optimizer's record: ``x[t]`` after ``t`` steps, ``f[t]`` there; step ``t``'s gradient
    ``g[t-1]``, effective lr ``eff_lr[t-1]``, buffers ``kept[k][t-1]`` after it, ``vhat[t-1]``
    (G, v-hat: what is under the root, NaN for rules without one) and its bias-correction
    factors ``bc[t-1]`` (``None`` for rules without them). During the run each step's values
    are appended to lists (cheaper than writing rows of arrays); :meth:`finish` stacks them."""

    def __init__(self, name, hp):
        self.name, self.hp = name, hp
        self.family = registry.variant(name).family
        self.rule = registry.FAMILIES[self.family].rule
        self.buffers = {k: np.full((1, 2), fill, dtype=np.float64) for k, fill in self.rule.buffers(hp).items()}
        self.carried = rules.scalar_state(self.rule, hp)
        self.carries = hasattr(self.rule, "scalar_state")  # its scalars take the carried state
        self.has_vhat = False  # the rule has a second moment (G, v-hat) under its root
        self.corrects = bool(hp.get("bias_correction", False))
        self.scalars = []  # each step's s
        self.kept = {k: [] for k in self.buffers}
        self.x = self.f = self.g = None
        self.diagnosis = None

    def step(self, t: int, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Step ``t`` (from 1) from row ``x`` with gradient ``g`` (both ``(1, 2)``); the new row."""
        if self.carries:  # scalar state (NAdam's product): rules.step_scalars reads and renews it
            s = rules.step_scalars(self.rule, t, self.hp, self.carried)
            self.carried = {k: s[k] for k in self.carried}
        else:  # what rules.step_scalars does for a rule without scalar state, one call less
            s = self.rule.scalars(t, self.hp)
        x, self.buffers = self.rule.update(x, g, self.buffers, self.hp, s)
        self.scalars.append(s)
        for k, buf in self.buffers.items():
            self.kept[k].append(buf)
        return x

    def finish(self, x: np.ndarray, f: np.ndarray, g: np.ndarray) -> None:
        """The record as arrays, given this row's points ``(steps + 1, 2)``, values and gradients.

        The effective lr, v-hat and the bias-correction factors are the rule's own functions of
        each step's buffers and scalars, computed here for whole stretches of steps at once (the
        scalars that change from step to step as a column; a new stretch where the scalars'
        keys or flags change: RAdam's rectification, SGD's first step)."""
        steps, rule, hp = len(g), self.rule, self.hp
        self.x, self.f, self.g = x, f, g
        self.kept = {k: _rows(v, steps) for k, v in self.kept.items()}
        stretches = _stretches(self.scalars)
        self.eff_lr = _over_steps(rule.effective_lr, self.kept, hp, self.scalars, stretches)
        self.has_vhat = hasattr(rule, "second_moment")
        self.vhat = (_over_steps(rule.second_moment, self.kept, hp, self.scalars, stretches) if self.has_vhat
                     else np.full((steps, 2), np.nan))
        if self.corrects:
            factors = [st.bias_factors(rule, hp, s) for s in self.scalars]
            self.bc = np.array([(b["bc1"], b["bc2"]) for b in factors], dtype=np.float64).reshape(steps, 2)
        else:
            self.bc = None

    def to_json(self, digits: int | None = None, state: set | None = None) -> dict:
        """The run as the page reads it: full precision and every buffer, or ``digits``
        significant digits and the buffers in ``state`` (:mod:`adaopt.explore.answer`)."""
        symbols = getattr(self.rule, "SYMBOLS", {})
        plain = lambda a: _plain(answer.shaped(a, digits))  # noqa: E731 - one line, used five times
        out = {"name": self.name, "family": self.family, "label": _label(self.name, self.hp),
               "hp": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.hp.items()
                      if k not in registry.COMMON},
               "x": plain(self.x), "f": plain(self.f), "eff_lr": plain(self.eff_lr),
               "state": {symbols.get(k, k): plain(v) for k, v in self.kept.items()
                         if state is None or symbols.get(k, k) in state},
               "bias_correction": None if self.bc is None else plain(self.bc),
               "diagnosis": self.diagnosis.to_dict() if self.diagnosis is not None else None}
        out["diagnosis_text"] = str(self.diagnosis) if self.diagnosis is not None else ""
        return out


def _over_steps(fn, kept: dict, hp: dict, scalars: list, stretches: list) -> np.ndarray:
    """``fn(state, hp, s)`` of every step as a ``(steps, 2)`` array, one call per stretch of
    :func:`_stretches`, each scalar that changes from step to step passed as a ``(stretch, 1)``
    column, so the rule's own arithmetic runs on the columns."""
    out = np.empty((len(scalars), 2))
    for start, end, flags in stretches:
        s_all = {k: v if k in flags else np.array([s[k] for s in scalars[start:end]], dtype=np.float64)[:, None]
                 for k, v in scalars[start].items()}
        out[start:end] = fn({k: v[start:end] for k, v in kept.items()}, hp, s_all)
    return out


def _stretches(scalars: list) -> list:
    """``[(start, end, flags)]``: the stretches of steps whose scalars share their keys and the
    values of their flags (booleans and anything not a number, which a rule may branch on):
    all steps for most rules; SGD's first step and the rest; RAdam before and after it rectifies."""
    out, start = [], 0
    while start < len(scalars):
        first, end = scalars[start], start + 1
        flags = [k for k, v in first.items()
                 if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number))]
        while end < len(scalars) and scalars[end].keys() == first.keys() and all(
                scalars[end][k] == first[k] for k in flags):
            end += 1
        out.append((start, end, flags))
        start = end
    return out


def _rows(items: list, steps: int) -> np.ndarray:
    """Per-step values (numbers, or ``(1, 2)`` rows) as a ``(steps, 2)`` array."""
    try:
        a = np.asarray(items, dtype=np.float64).reshape(steps, -1)
    except ValueError:  # numbers on some steps, rows on others (RAdam before and after rectifying)
        a = np.array([np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (2,)) for v in items])
    return np.array(np.broadcast_to(a, (steps, 2)))


def trajectories(problem, start, steps: int, chosen, recent: Recent | None = None) -> list[Run]:
    """:func:`paths`, each run with the Monitor's verdict on it; the runs found in ``recent``
    (default :data:`RECENT`) are taken from there, the others computed together and kept there."""
    recent = RECENT if recent is None else recent
    keys = [recent.key(problem, start, steps, name, hp) for name, hp in chosen]
    found = [recent.get(k) for k in keys]
    missing = [c for c, r in zip(chosen, found) if r is None]
    fresh = iter(paths(problem, start, steps, missing) if missing else ())
    runs = [r if r is not None else next(fresh) for r in found]
    for k, r in zip(keys, runs):
        if r.diagnosis is None:
            r.diagnosis = diagnose(history(r), floor=problem.f_opt)
        recent.put(k, r)
    return runs


def paths(problem, start, steps: int, chosen) -> list[Run]:
    """Every optimizer of ``chosen`` from ``start`` for ``steps`` steps, rows of one ``(rows, 2)`` batch."""
    runs = [Run(name, hp) for name, hp in chosen]
    X = np.empty((steps + 1, len(runs), 2))  # (steps + 1, rows, 2): the points, written in place
    F, G = np.empty((steps + 1, len(runs))), np.empty((steps, len(runs), 2))
    X[0] = start
    with np.errstate(all="ignore"):
        for t in range(1, steps + 1):
            F[t - 1], G[t - 1] = problem.value_and_grad(X[t - 1])  # the surface on every row at once
            x, g = X[t - 1], G[t - 1]
            for i, r in enumerate(runs):
                X[t, i] = r.step(t, x[i:i + 1], g[i:i + 1])
        F[steps] = problem.loss(X[steps])
    for i, r in enumerate(runs):
        r.finish(X[:, i], F[:, i], G[:, i])
    return runs


def history(r: Run) -> History:
    """The Monitor's columns for run ``r``, as the lab's sweeps record them (:mod:`adaopt.lab.sweep`)."""
    steps = len(r.g)
    x0, u, g = r.x[:-1], np.diff(r.x, axis=0), r.g
    gg, uu, pp = (np.einsum("ij,ij->i", a, a) for a in (g, u, x0))
    with np.errstate(all="ignore"):
        per_step = {"loss": r.f[:-1], "grad_norm": np.sqrt(gg), "update_norm": np.sqrt(uu), "param_norm": np.sqrt(pp),
                    "update_ratio": np.where(pp > 0, np.sqrt(uu / np.where(pp > 0, pp, 1)), np.nan),
                    "cos_grad": _cosines(g, gg), "cos_update": _cosines(u, uu)}
    cols = {k: (v, np.ones(steps, bool)) for k, v in per_step.items()}
    at = np.array(sorted({1, *range(EVERY, steps + 1, EVERY)})) - 1
    summary = {"lr": np.full(len(at), r.hp["lr"]), "eff_lr_p50": np.median(r.eff_lr[at], axis=1),
               "eps_frac": np.full(len(at), np.nan), "g2_vhat": np.full(len(at), np.nan)}
    if r.has_vhat:
        v = r.vhat[at]
        summary["eps_frac"] = np.mean(st.eps_dominates(r.rule, v, r.hp), axis=1)
        if not st.remembers_a_sum(r.family):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                summary["g2_vhat"] = np.nanmedian(st.g2_over_vhat(g[at], v), axis=1)
    for name, arr in summary.items():  # present where taken, as the sweep's None-for-NaN columns
        full = np.full(steps, np.nan)
        full[at] = arr
        cols[name] = (full, ~np.isnan(full))
    keep = ("lr", "betas", "alpha", "rho", "eps", "momentum", "weight_decay", "bias_correction")
    meta = {"optimizer": r.family, "dtype": "float64", "state_dtype": "float64",
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.hp.items() if k in keep}}
    return History._of_arrays(np.arange(1, steps + 1), cols, meta)


def _cosines(a: np.ndarray, aa: np.ndarray) -> np.ndarray:
    """cos(a[t], a[t-1]) per step; NaN at step 1 and where a norm is 0 or not finite."""
    out = np.full(len(a), np.nan)
    den = np.sqrt(aa[1:] * aa[:-1])
    ok = (den > 0) & np.isfinite(den)
    out[1:] = np.where(ok, np.einsum("ij,ij->i", a[1:], a[:-1]) / np.where(ok, den, 1), np.nan)
    return out


def _label(name: str, hp: dict) -> str:
    extras = [k for k in ("nesterov", "amsgrad", "centered") if hp.get(k)]
    if hp.get("bias_correction") is False and name != "adam-nobc":
        extras.append("no bias correction")
    return name + (f" ({', '.join(extras)})" if extras else "")


def _plain(a: np.ndarray) -> list:
    """A float array as nested lists, with null where a value is not finite (JSON has no NaN)."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    if finite.all():
        return a.tolist()
    obj = a.astype(object)
    obj[~finite] = None
    return obj.tolist()
