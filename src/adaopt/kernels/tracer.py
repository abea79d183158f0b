"""Turn a rule into the body of a fused loop by running it on symbols.

A rule in :mod:`adaopt.rules` is plain arithmetic on ``p``, ``g`` and the state
buffers. Called with :class:`Elem` symbols in their place and :class:`Scalar`
values for the hyperparameters, every operation it performs is recorded as one
line of straight-line code, ``t3 = t1 * s2``. That code, placed inside
``for i in range(n)``, *is* the fused kernel: nothing about the optimizer is
written twice.

Scalars carry their concrete value. Arithmetic between scalars happens right
here in Python floats, exactly as the reference path does it (``1 - beta1``,
``lr / (1 - beta1**t)``); only the results that meet array elements become
kernel arguments. Comparisons of scalars (``weight_decay != 0``) are answered
from the value, so the rule's options are resolved before the loop and the
recorded code is the specialised kernel for this option set. A rule that
compares array elements cannot be traced and says so.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field


@dataclass
class Tape:
    """What one trace recorded: the loop body and the scalar arguments it reads."""

    lines: list[str] = field(default_factory=list)
    scalars: dict[str, float] = field(default_factory=dict)  # slot name -> value
    _temps: int = 0

    def temp(self, expr: str) -> "Elem":
        name = f"t{self._temps}"
        self._temps += 1
        self.lines.append(f"{name} = {expr}")
        return Elem(self, name)

    def slot(self, value: float) -> str:
        name = f"s{len(self.scalars)}"
        self.scalars[name] = float(value)
        return name


def _value(x):
    return x.value if isinstance(x, Scalar) else x


class Scalar:
    """A hyperparameter or step scalar: a concrete number that arithmetic keeps concrete."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def _op(self, other, fn):
        if isinstance(other, Elem):
            return NotImplemented
        return Scalar(fn(self.value, _value(other)))

    def __add__(self, o): return self._op(o, lambda a, b: a + b)
    def __radd__(self, o): return self._op(o, lambda a, b: b + a)
    def __sub__(self, o): return self._op(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._op(o, lambda a, b: b - a)
    def __mul__(self, o): return self._op(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._op(o, lambda a, b: b * a)
    def __truediv__(self, o): return self._op(o, lambda a, b: a / b)
    def __rtruediv__(self, o): return self._op(o, lambda a, b: b / a)
    def __pow__(self, o): return self._op(o, lambda a, b: a**b)
    def __rpow__(self, o): return self._op(o, lambda a, b: b**a)
    def __neg__(self): return Scalar(-self.value)
    def __eq__(self, o): return self.value == _value(o)
    def __ne__(self, o): return self.value != _value(o)
    def __lt__(self, o): return self.value < _value(o)
    def __le__(self, o): return self.value <= _value(o)
    def __gt__(self, o): return self.value > _value(o)
    def __ge__(self, o): return self.value >= _value(o)
    def __bool__(self): return bool(self.value)
    def __float__(self): return float(self.value)
    __hash__ = None


class Elem:
    """One array element inside the loop: operations on it become lines of code."""

    __slots__ = ("tape", "name")
    __array_priority__ = 1000

    def __init__(self, tape: Tape, name: str):
        self.tape, self.name = tape, name

    def _ref(self, x) -> str:
        if isinstance(x, Elem):
            return x.name
        if isinstance(x, Scalar):
            x = x.value
        if isinstance(x, numbers.Real):
            return self.tape.slot(x)
        raise TypeError(f"a rule combined an array element with {type(x).__name__}")

    def _bin(self, op, a, b):
        return self.tape.temp(f"{self._ref(a)} {op} {self._ref(b)}")

    def __add__(self, o): return self._bin("+", self, o)
    def __radd__(self, o): return self._bin("+", o, self)
    def __sub__(self, o): return self._bin("-", self, o)
    def __rsub__(self, o): return self._bin("-", o, self)
    def __mul__(self, o): return self._bin("*", self, o)
    def __rmul__(self, o): return self._bin("*", o, self)
    def __truediv__(self, o): return self._bin("/", self, o)
    def __rtruediv__(self, o): return self._bin("/", o, self)
    def __neg__(self): return self.tape.temp(f"-{self.name}")

    def __pow__(self, o):
        if _value(o) == 0.5:
            return self.tape.temp(f"np.sqrt({self.name})")
        return self._bin("**", self, o)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and ufunc.__name__ in ("maximum", "minimum", "sqrt", "abs", "absolute"):
            args = ", ".join(self._ref(x) for x in inputs)
            return self.tape.temp(f"np.{ufunc.__name__}({args})")
        return NotImplemented

    def _no_branch(self, *_):
        raise TypeError("a rule may not branch on array values; use np.maximum/np.where-free arithmetic")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _no_branch
    __hash__ = None


@dataclass
class Program:
    """A traced rule: inputs, the loop body, outputs and its scalar arguments."""

    buffers: tuple[str, ...]          # state buffers read and written, in order
    body: tuple[str, ...]             # straight-line code over p_, g_, <buffer>_ and s0, s1, ...
    p_out: str
    buffer_out: tuple[str, ...]       # for each buffer, the variable holding its new value
    scalars: tuple[float, ...]        # values of s0, s1, ... for this step

    @property
    def key(self) -> tuple:
        """Identifies the compiled kernel: same key, same code, whatever the scalar values."""
        return (self.buffers, self.body, self.p_out, self.buffer_out)


def _wrap(v):
    if isinstance(v, bool) or isinstance(v, str) or v is None:
        return v
    if isinstance(v, numbers.Real):
        return Scalar(v)
    if isinstance(v, tuple):
        return tuple(_wrap(x) for x in v)
    return v


def trace(rule, hp: dict, s: dict) -> Program:
    """Record ``rule.update`` for hyperparameters ``hp`` and step scalars ``s``."""
    tape = Tape()
    names = tuple(rule.buffers(hp))
    state = {k: Elem(tape, f"{k}_") for k in names}
    p_new, new = rule.update(Elem(tape, "p_"), Elem(tape, "g_"),
                             state, {k: _wrap(v) for k, v in hp.items()}, {k: _wrap(v) for k, v in s.items()})
    unknown = set(new) - set(names)
    if unknown:
        raise TypeError(f"rule {rule.__name__} returned buffers {sorted(unknown)} it did not declare")

    def out(x):
        if isinstance(x, Elem):
            return x.name
        return tape.slot(_value(x))  # a constant result (never for the shipped rules)

    return Program(
        buffers=names,
        body=tuple(tape.lines),
        p_out=out(p_new),
        buffer_out=tuple(out(new[k]) if k in new else f"{k}_" for k in names),
        scalars=tuple(tape.scalars.values()),
    )
