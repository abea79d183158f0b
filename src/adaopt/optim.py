"""The NumPy frontend: optimizers over trees of arrays, pure or stateful.

Every class here is a thin shell around one rule module in :mod:`adaopt.rules`;
this file moves arrays to and from the rule and does no optimizer math itself.

Two ways to use an optimizer::

    opt = adaopt.Adam(lr=1e-3)                 # pure: no parameters bound
    state = opt.init(params)
    params, state = opt.update(grads, state, params)

    opt = adaopt.Adam(params, lr=1e-3)         # stateful: arrays updated in place
    opt.step(grads)

``params`` is an array or a tree of arrays (nested list, tuple or dict), or a list of
parameter groups as in torch.optim, ``[{"params": tree, "weight_decay": 0.0}, ...]``,
where each group may override any hyperparameter. ``grads`` has the structure of
``params`` (for groups: a list with one gradient tree per group).
"""

from __future__ import annotations

import copy
import inspect
from types import ModuleType

import numpy as np

from . import _tree, dtypes, hyper, quant, registry, rules
from ._inputs import ARRAYS_ONLY, as_param, check_grad, check_state, check_state_dict, is_groups, match
from .engine import CachedPlan, Engine, Plan, StateWatch

_DEFAULT = None  # an argument left at None takes the conventions preset's default



class Optimizer:
    """Base class: parameter groups, state, validation, checkpoints.

    Each optimizer class is made from its :class:`adaopt.registry.Family` (``entry``):
    its arguments, defaults and rule come from there, and this class holds the
    plumbing. Hyperparameters may be given by position in torch.optim's order or by
    name; one left at ``None`` takes the ``conventions`` preset's default.

    Every optimizer also takes ``conventions``, ``state_dtype``, ``backend`` and, for
    float16/bfloat16 parameters, ``kahan=True`` (the rounding error of each update is kept
    in ``state["kahan_comp"]`` and added back) or ``stochastic_rounding=True`` (bfloat16).
    """

    entry: registry.Family
    family: str  # the entry's key ("adamw")
    rule: ModuleType  # the entry's rule module

    def __init__(self, params=None, *args, conventions: str = "torch", state_dtype=None, backend="auto",
                 kahan=False, stochastic_rounding=False, **given):
        given = self.entry.bind(type(self).__name__, args, given, torch=False)
        base = self.entry.defaults_for(conventions)
        self.conventions = conventions
        self._engine = Engine(self.rule, base.get("eps"), backend)
        hp = {**base, **{k: v for k, v in given.items() if v is not _DEFAULT}}
        if "eps" in base and given.get("eps") is None:
            hp["eps"] = None  # resolved per parameter for its compute dtype
        hp.update(state_dtype=state_dtype, kahan=kahan, stochastic_rounding=stochastic_rounding)
        self.defaults = self.entry.validate(hp)
        self.param_groups: list[dict] = []
        self.state: dict[str, dict] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._trees: list = []  # each group's tree, to match gradient trees against
        self._plan: CachedPlan | None = None  # the step plan, while groups and state stay the same
        self._pre_hooks: dict = {}
        self._post_hooks: dict = {}
        if params is not None:
            for group in self._groups(params):
                self.add_param_group(group)

    def __repr__(self) -> str:
        quiet = {"state_dtype": None, "kahan": False, "stochastic_rounding": False}
        shown = {k: v for k, v in self.defaults.items() if k not in quiet or v != quiet[k]}
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args}, conventions={self.conventions!r})"

    # ------------------------------------------------------------------ parameters and groups

    @staticmethod
    def _groups(params) -> list[dict]:
        if is_groups(params):
            return [dict(g) for g in params]
        return [{"params": params}]

    def _group_hp(self, group: dict, where: str) -> dict:
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{where} sets unknown hyperparameter(s) {sorted(unknown)}; "
                             f"allowed: {sorted(self.defaults)}")
        hp = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        return self.entry.validate(hp, where)

    def _entries(self, params, *, in_place: bool):
        """(trees, [(name, array, group_index)], hps) for params or groups, validated."""
        groups = self._groups(params)
        multi = len(groups) > 1
        trees, entries, hps = [], [], []
        for i, group in enumerate(groups):
            hps.append(self._group_hp(group, f"param group {i}"))
            leaves, names = _tree.flatten(group["params"], prefix=str(i) if multi else "")
            for name, leaf in zip(names, leaves):
                entries.append((name, as_param(leaf, name, in_place), i))
            trees.append(group["params"])
        names = [e[0] for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("parameter names must be unique across groups")
        return trees, entries, hps

    def add_param_group(self, group: dict) -> None:
        """Bind one more group of parameters (a dict with ``"params"``) to this optimizer.

        Everything is checked first; a rejected group changes nothing.
        """
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a param group is a dict with a 'params' entry")
        index = len(self.param_groups)
        hp = self._group_hp(group, f"param group {index}")
        leaves, names = _tree.flatten(group["params"], prefix=str(index) if index else "")
        arrays = [as_param(leaf, name, True) for name, leaf in zip(names, leaves)]
        states = [self._engine.fresh_state(arr, hp, name) for name, arr in zip(names, arrays)]
        rename = {}
        if index == 1:  # a second group: name every parameter by its group, as for groups given at once
            _, first = _tree.flatten(self._trees[0], prefix="0")
            rename = dict(zip(self.param_groups[0]["params"], first))
        existing = {rename.get(n, n) for n in self._arrays}
        clash = set(names) & existing
        if clash:
            raise ValueError(f"parameters {sorted(clash)} are already in another group")
        if rename:
            self._arrays = {rename[k]: v for k, v in self._arrays.items()}
            self.state = {rename[k]: v for k, v in self.state.items()}
            self.param_groups[0]["params"] = [rename[k] for k in self.param_groups[0]["params"]]
        for name, arr, st in zip(names, arrays, states):
            self._arrays[name] = arr
            self.state[name] = st
        self._trees.append(group["params"])
        self.param_groups.append({"params": names, **hp})
        self._plan = None

    @property
    def backend(self) -> str:
        """"auto", "fused" or "reference": how steps run (see :mod:`adaopt.engine`)."""
        return self._engine.backend

    @property
    def params(self):
        """The bound parameters, in the structure they were given."""
        leaves = [self._arrays[n] for g in self.param_groups for n in g["params"]]
        if len(self._trees) == 1:
            return _tree.unflatten(self._trees[0], leaves)
        out, it = [], iter(leaves)
        for tree, group in zip(self._trees, self.param_groups):
            out.append(_tree.unflatten(tree, [next(it) for _ in group["params"]]))
        return out

    # ------------------------------------------------------------------ state

    def init(self, params) -> dict:
        """Pure API: a fresh state for ``params`` (a tree or a list of groups)."""
        _, entries, hps = self._entries(params, in_place=False)
        return {name: self._engine.fresh_state(p, hps[i], name) for name, p, i in entries}

    # ------------------------------------------------------------------ stepping

    def step(self, grads) -> None:
        """Stateful API: apply one update to the bound arrays, in place.

        Nothing changes unless every gradient matches its parameter's shape and dtype
        and every hyperparameter is valid.
        """
        if not self.param_groups:
            raise RuntimeError(f"{type(self).__name__} has no parameters bound; "
                               "pass params to the constructor, or use init/update")
        grads = self._match_grads(grads)
        plan, hps = self._cached_plan()
        if not (ARRAYS_ONLY.issuperset(map(type, grads)) and plan.shapes == [g.shape for g in grads]
                and plan.dtypes == [g.dtype for g in grads]):  # else check one by one, naming the culprit
            grads = [check_grad(g, p, name) for (name, p), g in zip(plan.params, grads)]
        if not all(a.flags.writeable for a in plan.arrays):  # made read-only since construction
            name = next(n for n, a in plan.params if not a.flags.writeable)
            raise ValueError(f"parameter {name!r} is a read-only array; nothing was changed")
        for hook in list(self._pre_hooks.values()):
            hook(self, grads)
        self._engine.run(plan, grads, hps)
        for hook in list(self._post_hooks.values()):
            hook(self, grads)

    def register_step_pre_hook(self, hook) -> "HookHandle":
        """Call ``hook(optimizer, grads)`` before each step, after its input is checked.

        ``grads`` is the list of gradient arrays in :meth:`named_parameters` order (torch's
        hooks get ``(optimizer, args, kwargs)`` instead). Returns a handle; ``.remove()``
        detaches the hook. :class:`adaopt.diagnostics.Monitor` uses these hooks.
        """
        return HookHandle(self._pre_hooks, hook)

    def register_step_post_hook(self, hook) -> "HookHandle":
        """Call ``hook(optimizer, grads)`` after each step; see :meth:`register_step_pre_hook`."""
        return HookHandle(self._post_hooks, hook)

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` for every bound parameter, group by group."""
        return [(n, self._arrays[n]) for g in self.param_groups for n in g["params"]]

    def _cached_plan(self) -> tuple[Plan, list]:
        """The step plan for the bound parameters and this step's validated group hyperparameters.

        Every hyperparameter is validated each step, so a group edited to an invalid value
        is refused before anything changes. The plan is rebuilt when an option changes (not
        when a value does: an LR schedule) and when ``state`` was replaced or edited other
        than in place.
        """
        hps = [hyper.validate_cached({k: v for k, v in g.items() if k != "params"}, f"param group {i}",
                                     self.entry.validate)
               for i, g in enumerate(self.param_groups)]
        c = self._plan
        if c is None or not c.fits(self._engine, self.state, hps) or c.plan.steps() != c.plan.expected_steps:
            for gi, group in enumerate(self.param_groups):  # state cleared since: start afresh, as torch
                for name in group["params"]:
                    if name not in self.state:
                        self.state[name] = self._engine.fresh_state(self._arrays[name], hps[gi], name)
            items = [(gi, name, self._arrays[name], self.state[name], hps[gi])
                     for gi, group in enumerate(self.param_groups) for name in group["params"]]
            # the state as the plan found it: replaced or edited (not in place) means a new plan
            self._plan = c = CachedPlan(self._engine.build_plan(items), hps,
                                        [self._engine.signature(hp) for hp in hps],
                                        StateWatch(self.state, step_counts=True))
        return c.plan, hps

    def _match_grads(self, grads) -> list:
        """The gradient leaves in parameter order; the structure must match the params'."""
        return match(self._trees, grads)

    def update(self, grads, state: dict, params):
        """Pure API: ``(new_params, new_state)``; the inputs are left as they were."""
        trees, entries, hps = self._entries(params, in_place=False)
        g_leaves = match(trees, grads)
        missing = [name for name, _, _ in entries if name not in state]
        if missing:
            raise ValueError(f"state has no entry for parameter(s) {missing}; make it with init(params)")
        g_leaves = [check_grad(g, p, name) for (name, p, _), g in zip(entries, g_leaves)]
        new_state = dict(state)
        for name, p, _ in entries:
            new_state[name] = check_state(state[name], p, name, copy_=True, scalar_keys=self._scalar_keys)
        new_leaves = [p.copy() for _, p, _ in entries]
        plan = self._engine.build_plan([(gi, name, new_p, new_state[name], hps[gi])
                                 for (name, _, gi), new_p in zip(entries, new_leaves)])
        self._engine.run(plan, g_leaves)
        if len(trees) == 1:
            return _tree.unflatten(trees[0], new_leaves), new_state
        out, it = [], iter(new_leaves)
        for group, tree in zip(self._groups(params), trees):
            n = len(_tree.flatten(tree)[0])
            out.append({**group, "params": _tree.unflatten(tree, [next(it) for _ in range(n)])})
        return out, new_state

    # ------------------------------------------------------------------ inspection

    def effective_lr(self, name: str | None = None, state: dict | None = None):
        """The per-coordinate step size of the last step, from the current state.

        AdaGrad: ``lr_t / (sqrt(G) + eps)``; RMSprop: ``lr / (sqrt(v) + eps)``;
        Adam: ``lr / (sqrt(v-hat) + eps)``; SGD: ``lr``. With ``state`` given (pure
        API), ``name`` selects its entry and the optimizer's defaults are used.
        """
        if state is None:
            if name is None:
                if len(self.state) != 1:
                    raise ValueError("name the parameter: this optimizer holds several")
                (name,) = self.state
            st, hp = self.state[name], self._hp_of(name)
        else:
            st = state[name] if name is not None else next(iter(state.values()))
            hp = self.defaults
        st = quant.floats(st)  # 8-bit moments read as the numbers they stand for
        cdtype = next((v.dtype for v in st.values() if isinstance(v, np.ndarray)), np.dtype("float64"))
        hp = self._engine.resolved(hp, cdtype, name or "param")
        s = rules.step_scalars(self.rule, max(st["step"], 1), hp, st)
        buffers = {k: v for k, v in st.items() if k != "step"}
        return self.rule.effective_lr(buffers, hp, s)

    @property
    def _scalar_keys(self) -> dict:
        """The names of the rule's per-parameter scalar state (NAdam's mu_product)."""
        return rules.scalar_state(self.rule, self.defaults)

    def _hp_of(self, name: str) -> dict:
        for group in self.param_groups:
            if name in group["params"]:
                return {k: v for k, v in group.items() if k != "params"}
        raise KeyError(f"no parameter named {name!r}; known: {sorted(self._arrays)}")

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """A deep copy of the state and the groups' hyperparameters, keyed by parameter name."""
        out = {
            "optimizer": type(self).__name__,
            "conventions": self.conventions,
            "state": copy.deepcopy(self.state),
            "param_groups": copy.deepcopy(self.param_groups),
        }
        if quant.holds_codes(self.state.values()):
            out[quant.MAP_KEY] = quant.MAP_VERSION  # what the codes mean
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; everything is checked before anything changes.

        The saved state keeps its dtypes and is copied (never aliased), except where this
        optimizer was built with a ``state_dtype``: that stays, and the moments are cast to it
        (``"bfloat16"``: a float32 state rounded to bf16) or quantized (``"int8"``,
        :mod:`adaopt.quant`); and an optimizer without int8 dequantizes 8-bit moments.
        """
        new_groups, new_state = check_state_dict(self, state_dict)
        self.param_groups = new_groups
        self.state = new_state
        self._plan = None
        for name, st in self.state.items():
            hp = self._hp_of(name)
            cdtype = dtypes.compute_dtype(self._arrays[name].dtype, hp["state_dtype"])
            quant.conform(st, self.rule.buffers(hp), quant.applies(hp, self._arrays[name].size), cdtype)
            if hp["state_dtype"] not in (None, quant.NAME):
                for key in self.rule.buffers(hp):
                    if key in st and st[key].dtype != cdtype:
                        st[key] = st[key].astype(cdtype)

    def save(self, path) -> None:
        """Write the state to ``path`` (.npz, no pickle), atomically."""
        from .checkpoint import save

        save(self.state_dict(), path)

    def load(self, path) -> None:
        """Read a file written by :meth:`save` into this optimizer."""
        from .checkpoint import load

        self.load_state_dict(load(path, expect=self._arrays))  # sizes checked before any data is read


class HookHandle:
    """Returned by the ``register_step_*_hook`` methods; ``remove()`` detaches the hook."""

    _next_id = 0

    def __init__(self, hooks: dict, hook):
        HookHandle._next_id += 1
        self._hooks, self.id = hooks, HookHandle._next_id
        hooks[self.id] = hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


# ---------------------------------------------------------------------- the optimizers


def _optimizer_class(entry: registry.Family) -> type[Optimizer]:
    """The NumPy frontend's class for a registry entry: its name, signature and docstring."""
    options = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in (
        ("conventions", "torch"), ("state_dtype", None), ("backend", "auto"), ("kahan", False),
        ("stochastic_rounding", False))]
    cls = type(entry.name, (Optimizer,), {
        "entry": entry, "family": entry.key, "rule": entry.rule, "__module__": __name__, "__qualname__": entry.name,
        "__doc__": _docstring(entry),
    })
    cls.__signature__ = registry.signature(entry, torch=False, options=options, first_default=None)
    return cls


def _docstring(entry: registry.Family) -> str:
    rows = "\n".join(f"    {k}={v!r}" for k, v in entry.defaults.items() if k not in entry.fixed)
    return (f"{entry.summary}\n\nArguments and torch's defaults (``None`` takes the ``conventions`` "
            f"preset's)::\n\n{rows}\n\nThe update, its symbols and how libraries differ: "
            f":mod:`{entry.rule.__name__}`.")


#: The optimizer classes, by registry key.
CLASSES: dict[str, type[Optimizer]] = {key: _optimizer_class(entry) for key, entry in registry.FAMILIES.items()}
globals().update({cls.__name__: cls for cls in CLASSES.values()})
globals().update({alias: CLASSES[e.key] for e in registry.FAMILIES.values() for alias in e.aliases})
__all__ = ["Optimizer", "get", *(e.name for e in registry.FAMILIES.values()),
           *(a for e in registry.FAMILIES.values() for a in e.aliases)]


def get(name: str) -> type[Optimizer]:
    """The optimizer class called ``name`` (a registry key or class name, case-insensitive)."""
    return CLASSES[registry.family(name).key]
