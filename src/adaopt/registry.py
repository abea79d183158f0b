"""Every optimizer adaopt offers, listed once.

A :class:`Family` is one optimizer: its rule (the math, a module of :mod:`adaopt.rules`),
its hyperparameters with torch.optim's defaults and argument order, what each
``conventions`` preset changes, and the class name both frontends give it. The NumPy
frontend (:mod:`adaopt.optim`), the torch frontend (:mod:`adaopt.torch`), the lab, the
CLI, the diagnostics, ``lr_find`` and ``trace`` all read :data:`FAMILIES`; nothing
else lists optimizers. A :class:`Variant` is a family with some hyperparameters fixed,
under a name of its own (the lab's ``"momentum"`` is SGD with ``momentum=0.9``).

Adding an optimizer takes three steps (``docs/architecture.md``): write
``rules/<name>.py``, add its :class:`Family` below, add its test cases to
``tests/cases.py``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType, MappingProxyType

from . import hyper, rules
from .rules import adadelta, adamax, nadam, radam

#: torch.optim's switches that choose an implementation, not the math (adaopt.torch's own).
TORCH_FLAGS = ("foreach", "fused", "capturable", "differentiable")
#: Group options every family takes: the dtype the state is kept in, and how a 16-bit
#: parameter is rounded (:mod:`adaopt.rounding`).
COMMON = MappingProxyType({"state_dtype": None, "kahan": False, "stochastic_rounding": False})
#: The keyword options both frontends' constructors take beside the hyperparameters
#: (adaopt.torch also ``on_nonfinite``), for the message about an unknown argument.
FRONTEND_OPTIONS = ("conventions", *COMMON, "backend")


@dataclass(frozen=True)
class Family:
    """One optimizer, as both frontends offer it.

    ``defaults`` are torch.optim's, in its argument order; ``args`` and ``kwargs`` are
    torch's constructor arguments after ``params`` (positional, then keyword-only; they
    may include :data:`TORCH_FLAGS`); hyperparameters torch does not have (``extra``)
    are keyword-only. ``fixed`` are group values the family sets and no one passes
    (AdamW's decoupled decay). ``presets`` say what ``conventions="optax"`` or
    ``"lesson"`` change. ``check_group`` checks what no single value shows (Nesterov
    needs momentum).
    """

    key: str
    name: str
    rule: ModuleType
    summary: str
    defaults: Mapping[str, object]
    args: tuple[str, ...]
    kwargs: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    fixed: Mapping[str, object] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    torch_name: str | None = None
    sparse: Callable[[Mapping], bool] | None = None
    check_group: Callable[[dict, str], None] | None = None
    memory: str | None = None  # the decay of its average of g^2 ("beta2", "alpha", "rho"), if it keeps one
    sums: bool = False         # it divides by a sum of every g^2 (AdaGrad): its step only shrinks

    def __post_init__(self):
        declared = set(self.args) | set(self.kwargs) | set(self.extra)
        hyperparameters = declared - set(TORCH_FLAGS)
        if hyperparameters != set(self.defaults) - set(self.fixed):
            raise TypeError(f"registry entry {self.key!r}: its arguments {sorted(hyperparameters)} and its "
                            f"defaults {sorted(set(self.defaults) - set(self.fixed))} differ")
        unchecked = set(self.defaults) - set(hyper.CHECKS)
        if unchecked:  # fail closed: a hyperparameter nobody checks is a bug here, not a pass there
            raise TypeError(f"registry entry {self.key!r}: no check for {sorted(unchecked)} in hyper.CHECKS")
        for preset, overrides in self.presets.items():
            hyper.check_choice("conventions", preset, hyper.PRESETS)
            if set(overrides) - set(self.defaults):
                raise TypeError(f"registry entry {self.key!r}: preset {preset!r} sets unknown "
                                f"{sorted(set(overrides) - set(self.defaults))}")

    def memory_of(self, hp: Mapping) -> float | None:
        """The decay of its second moment in ``hp`` (a group or a log's meta), or None."""
        if self.memory == "beta2":
            betas = hp.get("betas")
            return betas[1] if isinstance(betas, (list, tuple)) and len(betas) == 2 else None
        return hp.get(self.memory) if self.memory else None

    @property
    def adaptive(self) -> bool:
        """Whether it scales each coordinate by its gradients' history (a second moment or a sum)."""
        return self.memory is not None or self.sums

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The arguments that are hyperparameters, in the NumPy frontend's order."""
        return tuple(n for n in (*self.args, *self.kwargs, *self.extra) if n not in TORCH_FLAGS)

    def positional(self, torch: bool) -> tuple[str, ...]:
        """The constructor's positional arguments after ``params``: torch's exactly (its
        implementation flags included) for adaopt.torch, the hyperparameters among them for
        the NumPy frontend."""
        return self.args if torch else tuple(a for a in self.args if a not in TORCH_FLAGS)

    def bind(self, cls_name: str, args: tuple, given: dict, torch: bool) -> dict:
        """The constructor's arguments by name: ``args`` matched to :meth:`positional`, then
        ``given``; a ``TypeError`` as Python's own for too many, repeated or unknown ones."""
        names = self.positional(torch)
        if len(args) > len(names):
            raise TypeError(f"{cls_name}() takes at most {len(names) + 1} positional arguments "
                            f"(params, {', '.join(names)}); {len(args) + 1} were given")
        out = dict(given)
        for name, value in zip(names, args):
            if name in out:
                raise TypeError(f"{cls_name}() got multiple values for argument {name!r}")
            out[name] = value
        allowed = set(self.hyperparameters) | (set(TORCH_FLAGS) if torch else set())
        unknown = set(out) - allowed
        if unknown:
            options = FRONTEND_OPTIONS + (("on_nonfinite",) if torch else ())
            near = {n: difflib.get_close_matches(n, [*allowed, *options], n=1) for n in sorted(unknown)}
            hints = "".join(f" ({n!r}: did you mean {m[0]!r}?)" for n, m in near.items() if m)
            raise TypeError(f"{cls_name} got unexpected argument(s) {sorted(unknown)}{hints}; it takes "
                            f"{', '.join(sorted(allowed))}, and the options {', '.join(options)}")
        return out

    def defaults_for(self, conventions: str = "torch") -> dict:
        """The group defaults under a preset, with the common options."""
        hyper.check_choice("conventions", conventions, hyper.PRESETS)
        return {**self.defaults, **self.presets.get(conventions, {}), **COMMON}

    def validate(self, hp: dict, where: str = "") -> dict:
        """:func:`hyper.validate` of a group, plus this family's own cross-checks."""
        hp = hyper.validate(hp, where)
        if hp.get("state_dtype") == "int8" and not self.adaptive:
            raise ValueError(f"state_dtype='int8' is for optimizers with moments (Adam, AdamW, NAdam, "
                             f"RAdam, Adamax, RMSprop, AdaGrad, Adadelta); {self.name}'s momentum buffer "
                             f"is not quantized{f' ({where})' if where else ''}")
        if self.check_group is not None:
            self.check_group(hp, f" ({where})" if where else "")
        return hp


@dataclass(frozen=True)
class Variant:
    """A family under another name, with some hyperparameters set (the lab's, the CLI's)."""

    name: str
    family: str
    overrides: Mapping[str, object] = field(default_factory=dict)


def _nesterov_needs_momentum(hp: dict, suffix: str) -> None:
    if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
        raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0{suffix}; "
                         f"got momentum={hp['momentum']!r}, dampening={hp['dampening']!r}")


_ADAM_DEFAULTS = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                      decoupled_weight_decay=False, bias_correction=True, wd_form="shrink")

SGD = Family(
    "sgd", "SGD", rules.sgd,
    "Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.",
    dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    args=("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    kwargs=("maximize", "foreach", "differentiable", "fused"),
    sparse=lambda hp: hp["momentum"] == 0, check_group=_nesterov_needs_momentum,
)
ADAGRAD = Family(
    "adagrad", "AdaGrad", rules.adagrad,
    "AdaGrad: divide by the root of the sum of every squared gradient so far.",
    dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False,
         eps_in_sqrt=False),
    args=("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "foreach"),
    kwargs=("maximize", "differentiable", "fused"), extra=("eps_in_sqrt",),
    presets={"optax": dict(eps=1e-7, initial_accumulator_value=0.1, eps_in_sqrt=True),
             "lesson": dict(eps=1e-8, eps_in_sqrt=True)},
    aliases=("Adagrad",), torch_name="Adagrad", sparse=lambda hp: True, sums=True,
)
RMSPROP = Family(
    "rmsprop", "RMSprop", rules.rmsprop,
    "RMSprop: divide by the root of a moving average of squared gradients.",
    dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False,
         eps_in_sqrt=False),
    args=("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "capturable", "foreach", "maximize",
          "differentiable"),
    extra=("eps_in_sqrt",),
    presets={"optax": dict(alpha=0.9, eps_in_sqrt=True), "lesson": dict(alpha=0.9, eps_in_sqrt=True)},
    memory="alpha",
)
ADAM = Family(
    "adam", "Adam", rules.adam,
    "Adam: a moving average of the gradient over the root of a moving average of its square, "
    "both bias-corrected.",
    _ADAM_DEFAULTS,
    args=("lr", "betas", "eps", "weight_decay", "amsgrad"),
    kwargs=("foreach", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay"),
    extra=("bias_correction",), fixed={"wd_form": "shrink"}, memory="beta2",
)
ADAMW = Family(
    "adamw", "AdamW", rules.adam,
    "AdamW: Adam with decoupled weight decay (the decay bypasses the adaptive scaling).",
    {**_ADAM_DEFAULTS, "weight_decay": 1e-2, "decoupled_weight_decay": True},
    args=("lr", "betas", "eps", "weight_decay", "amsgrad"),
    kwargs=("maximize", "foreach", "capturable", "differentiable", "fused"),
    extra=("bias_correction", "wd_form"),
    fixed={"decoupled_weight_decay": True},
    presets={"optax": dict(weight_decay=1e-4, wd_form="add"), "lesson": dict(wd_form="add")},
    memory="beta2",
)

ADADELTA = Family(
    "adadelta", "Adadelta", adadelta,
    "Adadelta: RMSprop's moving average of g^2, and a step scaled by the RMS of past steps.",
    dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    args=("lr", "rho", "eps", "weight_decay", "foreach"),
    kwargs=("capturable", "maximize", "differentiable"), memory="rho",
)
ADAMAX = Family(
    "adamax", "Adamax", adamax,
    "Adamax: Adam with a decaying running maximum of |g| in place of the root of v.",
    dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
    args=("lr", "betas", "eps", "weight_decay", "foreach"),
    kwargs=("maximize", "differentiable", "capturable"), memory="beta2",
)
RADAM = Family(
    "radam", "RAdam", radam,
    "RAdam: Adam whose adaptive step waits until v is trustworthy, rectified by its variance.",
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
         maximize=False),
    args=("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay"),
    kwargs=("foreach", "maximize", "capturable", "differentiable"), memory="beta2",
)

NADAM = Family(
    "nadam", "NAdam", nadam,
    "NAdam: Adam with Nesterov momentum, whose momentum warms up over the first few thousand steps.",
    dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
         decoupled_weight_decay=False, maximize=False),
    args=("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"),
    kwargs=("foreach", "maximize", "capturable", "differentiable"), memory="beta2",
)

#: Every family, by key.
FAMILIES: Mapping[str, Family] = MappingProxyType({f.key: f for f in (
    SGD, ADAGRAD, RMSPROP, ADAM, ADAMW, ADADELTA, ADAMAX, NADAM, RADAM)})

_NAMED = (
    Variant("momentum", "sgd", {"momentum": 0.9}),
    Variant("nesterov", "sgd", {"momentum": 0.9, "nesterov": True}),
    Variant("adam-nobc", "adam", {"bias_correction": False}),
)
#: Named variants: every family under its own key, each followed by the settings of it
#: worth a name of their own.
VARIANTS: Mapping[str, Variant] = MappingProxyType({
    v.name: v for key in FAMILIES for v in (Variant(key, key), *(n for n in _NAMED if n.family == key))
})


def signature(entry: Family, *, torch: bool, options: list, first_default=inspect.Parameter.empty):
    """The constructor signature a frontend shows for ``entry`` (``help(adaopt.Adam)``):
    ``params``, the positional arguments, the keyword-only ones, then the frontend's
    ``options`` (``inspect.Parameter`` objects)."""
    P = inspect.Parameter
    flag_defaults = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}

    def default(name):
        return flag_defaults[name] if name in TORCH_FLAGS else entry.defaults[name]

    positional = entry.positional(torch)
    keyword = [n for n in (*entry.kwargs, *entry.extra) if torch or n not in TORCH_FLAGS]
    keyword += [n for n in entry.args if n not in positional]
    params = [P("params", P.POSITIONAL_OR_KEYWORD, default=first_default)]
    params += [P(n, P.POSITIONAL_OR_KEYWORD, default=default(n)) for n in positional]
    params += [P(n, P.KEYWORD_ONLY, default=default(n)) for n in keyword]
    return inspect.Signature(params + list(options))


def family(name: str) -> Family:
    """The family called ``name``: a key (``"adamw"``), or a class name (``"AdamW"``,
    ``"Adagrad"``), case-insensitive."""
    wanted = name.lower() if isinstance(name, str) else name
    for f in FAMILIES.values():
        if wanted in (f.key, f.name.lower(), *(a.lower() for a in f.aliases)):
            return f
    raise ValueError(f"unknown optimizer {hyper.short_repr(name)}; choose one of {', '.join(FAMILIES)}")


def variant(name: str) -> Variant:
    """The variant called ``name`` (a family key, or one of the extra names in :data:`VARIANTS`)."""
    try:
        return VARIANTS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown optimizer {hyper.short_repr(name)}; choose one of {', '.join(VARIANTS)}") from None


def of_torch_class(cls_name: str) -> Family | None:
    """The family a torch.optim class computes (``"Adagrad"`` -> AdaGrad), or None."""
    for f in FAMILIES.values():
        if cls_name in (f.name, f.torch_name, *f.aliases):
            return f
    return None
