"""Code generation: a rule recorded as the body of a fused loop, by running it on symbols.

A rule in :mod:`adaopt.rules` is plain arithmetic on ``p``, ``g`` and the state
buffers. Called with :class:`Elem` symbols in their place and :class:`Scalar`
values for the hyperparameters, every operation it performs is recorded as one
line of straight-line code, ``t3 = t1 * s2``. That code, placed inside
``for i in range(n)``, *is* the fused kernel: nothing about the optimizer is
written twice.

Scalars carry their concrete value. Arithmetic between scalars happens right
here in Python floats, exactly as the reference path does it (``1 - beta1``,
``lr / (1 - beta1**t)``); only the results that meet array elements become
kernel arguments (``s0``, ``s1``, ...). Comparisons of scalars
(``weight_decay != 0``, ``amsgrad``, SGD's first step) are answered from the value,
so the rule's options are resolved before the loop and the recorded code is the
kernel specialised to this option set. A rule that compares array elements cannot
be recorded and says so.

The scalar arithmetic is recorded too, as a small Python function
(:attr:`Program.replay`): on later steps it recomputes ``s0, s1, ...`` from the new
hyperparameters and step scalars in a few microseconds, checking that every
comparison the rule made still comes out the same; if one does not, it returns
``None`` and the caller records it again.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from ..rules._ops import ELEMENTWISE


@dataclass
class Tape:
    """What one recording holds: the loop body, the scalar arguments, the scalar program."""

    lines: list[str] = field(default_factory=list)
    slots: list[tuple[str, float]] = field(default_factory=list)  # (scalar expression, value)
    scalar_lines: list[str] = field(default_factory=list)
    _temps: int = 0
    _vars: int = 0

    def temp(self, expr: str) -> "Elem":
        name = f"t{self._temps}"
        self._temps += 1
        self.lines.append(f"{name} = {expr}")
        return Elem(self, name)

    def slot(self, expr: str, value) -> str:
        self.slots.append((expr, float(value)))
        return f"s{len(self.slots) - 1}"

    def scalar(self, expr: str, value) -> "Scalar":
        name = f"x{self._vars}"
        self._vars += 1
        self.scalar_lines.append(f"{name} = {expr}")
        return Scalar(self, value, name)

    def guard(self, expr: str, outcome: bool) -> bool:
        self.scalar_lines.append(f"if ({expr}) is not {outcome}: return None")
        return outcome


def _expr(x) -> str:
    """Source text for a scalar operand (plain Python literals for numbers, never NumPy reprs)."""
    if isinstance(x, Scalar):
        return x.expr
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return repr(float(x))
    return repr(x)


def _value(x):
    return x.value if isinstance(x, Scalar) else x


class Scalar:
    """A hyperparameter or step scalar: a concrete value, and the expression that made it."""

    __slots__ = ("tape", "value", "expr")

    def __init__(self, tape: Tape, value, expr: str):
        self.tape, self.value, self.expr = tape, value, expr

    def _op(self, other, sym, fn, reflected=False):
        if isinstance(other, Elem):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        return self.tape.scalar(f"{_expr(a)} {sym} {_expr(b)}", fn(_value(a), _value(b)))

    def __add__(self, o): return self._op(o, "+", lambda a, b: a + b)
    def __radd__(self, o): return self._op(o, "+", lambda a, b: a + b, True)
    def __sub__(self, o): return self._op(o, "-", lambda a, b: a - b)
    def __rsub__(self, o): return self._op(o, "-", lambda a, b: a - b, True)
    def __mul__(self, o): return self._op(o, "*", lambda a, b: a * b)
    def __rmul__(self, o): return self._op(o, "*", lambda a, b: a * b, True)
    def __truediv__(self, o): return self._op(o, "/", lambda a, b: a / b)
    def __rtruediv__(self, o): return self._op(o, "/", lambda a, b: a / b, True)
    def __pow__(self, o): return self._op(o, "**", lambda a, b: a**b)
    def __rpow__(self, o): return self._op(o, "**", lambda a, b: a**b, True)
    def __neg__(self): return self.tape.scalar(f"-{self.expr}", -self.value)

    def _cmp(self, other, sym, fn):
        return self.tape.guard(f"{self.expr} {sym} {_expr(other)}", bool(fn(self.value, _value(other))))

    def __eq__(self, o): return self._cmp(o, "==", lambda a, b: a == b)
    def __ne__(self, o): return self._cmp(o, "!=", lambda a, b: a != b)
    def __lt__(self, o): return self._cmp(o, "<", lambda a, b: a < b)
    def __le__(self, o): return self._cmp(o, "<=", lambda a, b: a <= b)
    def __gt__(self, o): return self._cmp(o, ">", lambda a, b: a > b)
    def __ge__(self, o): return self._cmp(o, ">=", lambda a, b: a >= b)
    def __bool__(self): return self.tape.guard(f"bool({self.expr})", bool(self.value))
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
        if isinstance(x, Scalar) and isinstance(x.value, numbers.Real):
            return self.tape.slot(x.expr, x.value)
        if isinstance(x, numbers.Real):
            return self.tape.slot(_expr(x), x)
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
        if method == "__call__" and ufunc.__name__ in ELEMENTWISE:
            args = ", ".join(self._ref(x) for x in inputs)
            return self.tape.temp(f"np.{ufunc.__name__}({args})")
        return NotImplemented

    def _no_branch(self, *_):
        raise TypeError("a rule may not branch on array values; use the functions of adaopt.rules._ops")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _no_branch
    __hash__ = None


@dataclass
class Program:
    """A recorded rule: inputs, the loop body, outputs, its scalar arguments and their replay."""

    buffers: tuple[str, ...]          # state buffers read and written, in order
    body: tuple[str, ...]             # straight-line code over p_, g_, <buffer>_ and s0, s1, ...
    p_out: str
    buffer_out: tuple[str, ...]       # for each buffer, the variable holding its new value
    scalars: tuple[float, ...]        # values of s0, s1, ... for the recorded step
    replay: object = None             # replay(hp, s) -> the scalars for another step, or None

    @property
    def key(self) -> tuple:
        """Identifies the compiled kernel: same key, same code, whatever the scalar values."""
        return (self.buffers, self.body, self.p_out, self.buffer_out)


def _wrap(tape: Tape, v, expr: str):
    if v is None:
        return v
    if isinstance(v, tuple):
        return tuple(_wrap(tape, x, f"{expr}[{i}]") for i, x in enumerate(v))
    if isinstance(v, (numbers.Real, str)):
        return Scalar(tape, v, expr)
    return v


def record(rule, hp: dict, s: dict) -> Program:
    """Record ``rule.update`` for hyperparameters ``hp`` and step scalars ``s`` as a :class:`Program`."""
    tape = Tape()
    names = tuple(rule.buffers(hp))
    state = {k: Elem(tape, f"{k}_") for k in names}
    p_new, new = rule.update(Elem(tape, "p_"), Elem(tape, "g_"), state,
                             {k: _wrap(tape, v, f"hp[{k!r}]") for k, v in hp.items()},
                             {k: _wrap(tape, v, f"s[{k!r}]") for k, v in s.items()})
    unknown = set(new) - set(names)
    if unknown:
        raise TypeError(f"rule {rule.__name__} returned buffers {sorted(unknown)} it did not declare")

    def out(x):
        if isinstance(x, Elem):
            return x.name
        return tape.slot(_expr(x), _value(x))  # a constant result (never for the shipped rules)

    p_out = out(p_new)
    buffer_out = tuple(out(new[k]) if k in new else f"{k}_" for k in names)
    return Program(
        buffers=names, body=tuple(tape.lines), p_out=p_out, buffer_out=buffer_out,
        scalars=tuple(v for _, v in tape.slots), replay=_replay_function(tape),
    )


def _replay_function(tape: Tape):
    """Compile the recorded scalar arithmetic into ``replay(hp, s)``.

    The source is made here from the tape (names, operators and ``repr`` of numbers
    the rule used); no user text reaches it.
    """
    lines = ["def replay(hp, s):"]
    lines += [f"    {line}" for line in tape.scalar_lines]
    lines.append(f"    return ({''.join(f'float({e}), ' for e, _ in tape.slots)})")
    scope: dict = {}
    exec(compile("\n".join(lines), "<adaopt scalar replay>", "exec"), scope)  # noqa: S102
    return scope["replay"]
