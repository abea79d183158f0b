"""Hyperparameters: what each may be, validation, and the lesson's helpers.

Every hyperparameter any optimizer has is in :data:`CHECKS`, with the test its values
must pass and the words that say what is allowed; :func:`validate` refuses a value
that fails, naming the argument, the value and the allowed range, and refuses a name
it has no check for (fail closed). Which hyperparameters an optimizer has, their
defaults and what each ``conventions`` preset changes live in :mod:`adaopt.registry`.
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import dtypes

#: The conventions presets: whose numbers an optimizer gives (``registry.Family.presets``).
PRESETS = ("torch", "optax", "lesson")


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Check:
    """One hyperparameter's allowed values, and how to say them."""

    test: Callable[[object], bool]
    allowed: str


def _as_float(x) -> float | None:
    """``x`` as a finite Python float, or None when it is not a real number a float holds.

    Real numbers are Python and NumPy ints and floats, Fraction and Decimal, and 0-d tensors
    or arrays holding one (torch users pass lr and betas as tensors); not bools,
    complex numbers, strings or None. ``float(x)`` of an int beyond the float range
    (``10**400``) raises OverflowError, and of a signalling Decimal NaN ValueError: both
    are simply "not a number a float holds" here, so the caller's ValueError names the
    argument. Comparisons are made on this float, the value the arithmetic will use.
    """
    if getattr(x, "ndim", None) == 0 and hasattr(x, "item") and not isinstance(x, np.generic):
        x = x.item()  # a 0-d tensor or array: torch users pass lr and betas as tensors
    if _flag(x) or not isinstance(x, (numbers.Real, decimal.Decimal)):
        return None
    try:
        f = float(x)
    except (OverflowError, ValueError, TypeError):
        return None
    return f if math.isfinite(f) else None


def _number(x) -> bool:
    return _as_float(x) is not None


def _at_least_0(x):
    f = _as_float(x)
    return f is not None and f >= 0


def _unit_open(x):
    f = _as_float(x)
    return f is not None and 0 <= f < 1


def _flag(x):
    return isinstance(x, (bool, np.bool_))


def _eps(x):
    return x is None or _at_least_0(x)


def _betas(x):
    return isinstance(x, (tuple, list)) and len(x) == 2 and all(_unit_open(b) for b in x)


def _state_dtype(x):
    return x is None or (isinstance(x, str) and x in (*dtypes.SUPPORTED, "int8")) or dtypes.is_supported(x)


CHECKS: dict[str, Check] = {
    "lr": Check(_at_least_0, "a finite number >= 0"),
    "momentum": Check(_unit_open, "0 <= momentum < 1"),
    "dampening": Check(lambda x: _number(x) and 0 <= _as_float(x) <= 1, "0 <= dampening <= 1"),
    "weight_decay": Check(_at_least_0, "a finite number >= 0"),
    "lr_decay": Check(_at_least_0, "a finite number >= 0"),
    "initial_accumulator_value": Check(_at_least_0, "a finite number >= 0"),
    "eps": Check(_eps, "None (the default for the dtype) or a finite number >= 0"),
    "alpha": Check(_unit_open, "0 <= alpha < 1"),
    "rho": Check(lambda x: _number(x) and 0 <= _as_float(x) <= 1, "0 <= rho <= 1"),
    "momentum_decay": Check(_at_least_0, "a finite number >= 0"),
    "betas": Check(_betas, "a pair (beta1, beta2), each 0 <= beta < 1"),
    "wd_form": Check(lambda x: isinstance(x, str) and x in ("shrink", "add"), "'shrink' or 'add'"),
    "state_dtype": Check(_state_dtype, f"None, 'int8' (8-bit blockwise moments) or one of {', '.join(dtypes.SUPPORTED)}"),
}
for _name in ("nesterov", "maximize", "eps_in_sqrt", "centered", "amsgrad", "bias_correction",
              "decoupled_weight_decay", "kahan", "stochastic_rounding"):
    CHECKS[_name] = Check(_flag, "True or False")


def check_choice(name: str, value, choices) -> None:
    try:
        ok = isinstance(value, str) and value in choices or any(value is c for c in choices)
    except Exception:  # noqa: BLE001 - an odd value is simply not a choice
        ok = False
    if not ok:
        raise ValueError(f"{name}={short_repr(value)} is not one of {', '.join(map(repr, choices))}")


def short_repr(value, limit: int = 60) -> str:
    """``repr(value)``, shortened for messages: an int of hundreds of digits reads
    ``1000...0 (401 digits)``, a long string or other repr keeps its first and last
    characters, and the items of a tuple or list are shortened one by one."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            text = repr(value)
        except ValueError:  # beyond int -> str's digit limit (sys.get_int_max_str_digits)
            sign = "-" if value < 0 else ""
            return f"{sign}<int of about {int(abs(value).bit_length() * math.log10(2)) + 1} digits>"
        digits = len(text.lstrip("-"))
        return text if len(text) <= limit else f"{text[:5]}...{text[-1]} ({digits} digits)"
    if type(value) in (tuple, list):
        items = [short_repr(v, max(limit // 2, 20)) for v in value[:8]]
        if len(value) > 8:
            items.append(f"... ({len(value)} items)")
        inner = ", ".join(items) + ("," if type(value) is tuple and len(value) == 1 else "")
        return f"({inner})" if type(value) is tuple else f"[{inner}]"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails still gets named
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit - 15]}...{text[-8:]} ({len(text)} characters)"


def _passes(check: Check, value) -> bool:
    """``check.test(value)``; a test that raises (an array compared to a string) is a refusal."""
    try:
        return bool(check.test(value))
    except Exception:  # noqa: BLE001
        return False


#: Short names of dtypes people pass (Lightning's precision="bf16"), and the name adaopt takes:
#: said in the refusal, not taken silently.
_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp64": "float64", "8bit": "int8"}


def _dtype_hint(value: str) -> str | None:
    """The state_dtype name a refused string likely meant ("bf16", "BFloat16": "bfloat16"), or None."""
    low = value.strip().lower()
    return _DTYPE_NAMES.get(low, low if low in (*dtypes.SUPPORTED, "int8") else None)


def validate(hp: dict, where: str = "") -> dict:
    """Check every hyperparameter of a group; return ``hp`` or raise ``ValueError``.

    The message names the argument, the value it got and the values it allows, e.g.
    ``ValueError: betas=(0.9, 1.0) is invalid: allowed a pair (beta1, beta2), each 0 <= beta < 1``.
    Numbers are Python or NumPy ints and floats, Fraction or Decimal, that a float holds:
    ``10**400``, NaN, infinities, complex numbers, strings and bools are refused (the same
    ValueError), and every accepted number is stored as a Python float.
    """
    suffix = f" ({where})" if where else ""
    for name, value in hp.items():
        check = CHECKS.get(name)
        if check is None:
            raise ValueError(f"{short_repr(name)} is not a hyperparameter adaopt knows{suffix}")
        if not _passes(check, value):
            hint = _dtype_hint(value) if name == "state_dtype" and isinstance(value, str) else None
            raise ValueError(f"{name}={short_repr(value)} is invalid{suffix}: allowed {check.allowed}"
                             + (f" (did you mean {hint!r}?)" if hint else ""))
    for name, value in hp.items():  # numbers as Python floats: one arithmetic for all inputs
        if _number(value):
            hp[name] = _as_float(value)
    if hp.get("kahan") and hp.get("stochastic_rounding"):
        raise ValueError(f"kahan=True and stochastic_rounding=True{suffix}: choose one")
    if "betas" in hp:
        hp["betas"] = tuple(_as_float(b) for b in hp["betas"])
    return hp


_PLAIN_SCALARS = frozenset((bool, int, float, str, type(None)))
_PLAIN_TYPES = _PLAIN_SCALARS | {tuple}
_SEEN: dict = {}


def validate_cached(hp: dict, where: str = "", check: Callable[[dict, str], dict] = validate) -> dict:
    """``check(dict(hp), where)`` (:func:`validate`, or a family's own), remembered: a group
    whose values have not changed since a step that checked them is not checked again, so
    validating every step costs a dict lookup.

    An unchanged group gets the *same* validated dict back (callers must not change it;
    the frontends use its identity to skip work). Only plain values (numbers, flags,
    strings, tuples of numbers) are remembered; anything else, such as a list edited in
    place, is checked every time.
    """
    values = tuple(hp.values())
    types = tuple(map(type, values))
    if not _PLAIN_TYPES.issuperset(types) or (
            tuple in types and not all(_PLAIN_SCALARS.issuperset(map(type, v)) for v in values if type(v) is tuple)):
        return check(dict(hp), where)
    key = (check, where, tuple(hp), values, types)
    hit = _SEEN.get(key)
    if hit is None:
        hit = check(dict(hp), where)
        if len(_SEEN) >= 1024:
            _SEEN.clear()
        _SEEN[key] = hit
    return hit


# --------------------------------------------------------------------------- the lesson's helpers


def ema_window(beta: float) -> float:
    r"""The effective window :math:`1/(1-\beta)` of a moving average with decay ``beta``.

    >>> ema_window(0.9), ema_window(0.99)
    (10.000000000000002, 99.99999999999991)
    """
    _check_decay(beta)
    return 1.0 / (1.0 - beta)


def half_life(beta: float) -> float:
    r"""Steps until a past gradient's weight halves: :math:`\ln 0.5 / \ln \beta`.

    >>> round(half_life(0.9), 2), round(half_life(0.99), 2)
    (6.58, 68.97)
    """
    _check_decay(beta)
    if beta == 0:
        return 0.0
    return math.log(0.5) / math.log(beta)


def bias_correction_factor(beta: float, k: int) -> float:
    r"""Adam's bias-correction multiplier :math:`1/(1-\beta^k)` at step ``k >= 1``.

    10 at k = 1 for beta = 0.9, falling to 1 as k grows (the lesson's example 3).
    """
    _check_decay(beta)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={short_repr(k)} is invalid: allowed an integer step >= 1")
    return 1.0 / (1.0 - beta**k)


def _check_decay(beta) -> None:
    if not _unit_open(beta):
        raise ValueError(f"beta={short_repr(beta)} is invalid: allowed 0 <= beta < 1")
