"""The expression tree behind :func:`adaopt.expr.parse`: nodes folded to floats where they
have no variable, derivatives by the usual rules, and evaluation in NumPy float64.

A :class:`Node` is an operation (``+``, ``sin``, ...) on child nodes, a constant or a
variable. :func:`_make` builds one, computing it at once when no variable is in it;
:func:`_derivative` differentiates a tree (sum, product, quotient, power and chain rule),
sharing what it has built before; :func:`_program` and :func:`_run` evaluate several trees
in one pass that computes each shared part once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Node:
    """One node of an expression: ``op`` is ``"const"`` (``value``), ``"var"`` (``name``),
    ``"bad"`` (a constant with no real value; ``name`` says why), an operator
    (``+ - * / ** neg``) or a function name, applied to ``args``."""

    op: str
    args: tuple = ()
    value: float = 0.0
    name: str = ""

    def __str__(self) -> str:
        if self.op == "const":
            return repr(self.value)
        if self.op in ("var", "bad"):
            return self.name
        if self.op == "neg":
            return f"-({self.args[0]})"
        if self.op in _BINARY:
            return f"({self.args[0]} {self.op} {self.args[1]})"
        return f"{self.op}({self.args[0]})"


def _const(v: float) -> Node:
    return Node("const", value=float(v))


def _bad(why: str) -> Node:
    return Node("bad", name=why)


ZERO, ONE = _const(0.0), _const(1.0)

_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
_UNARY = {"neg": np.negative, "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
          "sqrt": np.sqrt, "tanh": np.tanh, "abs": np.abs, "sign": np.sign}
_SCALAR = {"neg": lambda a: -a, "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp,
           "log": math.log, "sqrt": math.sqrt, "tanh": math.tanh, "abs": abs,
           "sign": lambda a: float(np.sign(a)), "+": lambda a, b: a + b, "-": lambda a, b: a - b,
           "*": lambda a, b: a * b, "/": lambda a, b: a / b, "**": lambda a, b: a ** b}


def _fold(op: str, args, text: str):
    """``op`` of constant ``args`` in Python floats: a const node, a bad one (no real value),
    or None when the result is beyond the range of a float."""
    for a in args:
        if a.op == "bad":
            return a
    values = [a.value for a in args]
    try:
        out = _SCALAR[op](*values)
    except ZeroDivisionError:  # 1/0, 0/0, 0**-1
        return _bad(f"{text} is a division by zero")
    except OverflowError:  # 10.0**400, exp(1000)
        return None
    except ValueError:  # math domain error: log(-1), sqrt(-1), log(0)
        if op == "log" and values[0] == 0:
            return _bad(f"{text} is minus infinity (log of 0)")
        return _bad(f"{text} is imaginary, not a real number (log or sqrt of a negative number?)")
    if isinstance(out, complex):  # (-8)**(1/3)
        return _bad(f"{text} is imaginary, not a real number (a negative number to a fractional power)")
    if math.isnan(out):
        return _bad(f"{text} is not a real number")
    if math.isinf(out):
        return None
    return _const(out)


def _make(op: str, *args) -> Node:
    """A node of the derivative, simplified where a 0 or 1 makes it trivial; constants are
    folded, out of range as float arithmetic gives them (inf, which evaluation reports)."""
    consts = all(a.op in ("const", "bad") for a in args)
    if consts:
        folded = _fold(op, args, str(Node(op, tuple(args))))
        if folded is None:
            return _const(math.inf)
        return folded
    if op == "+":
        a, b = args
        return b if _is(a, 0) else a if _is(b, 0) else Node("+", args)
    if op == "-":
        a, b = args
        return _make("neg", b) if _is(a, 0) else a if _is(b, 0) else Node("-", args)
    if op == "*":
        a, b = args
        if _is(a, 0) or _is(b, 0):
            return ZERO
        return b if _is(a, 1) else a if _is(b, 1) else Node("*", args)
    if op == "/":
        a, b = args
        return ZERO if _is(a, 0) else a if _is(b, 1) else Node("/", args)
    if op == "**":
        a, b = args
        return a if _is(b, 1) else ONE if _is(b, 0) else Node("**", args)
    if op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    return Node(op, args)


def _is(node: Node, v: float) -> bool:
    return node.op == "const" and node.value == v


def _derivative(node: Node, var: str, memo: dict) -> Node:
    """d node / d var by the rules; a part that occurs twice is differentiated once."""
    key = id(node)
    if key in memo:
        return memo[key][1]
    op, args = node.op, node.args
    if op in ("const", "bad"):
        out = ZERO
    elif op == "var":
        out = ONE if node.name == var else ZERO
    else:
        d = [_derivative(a, var, memo) for a in args]
        a = args[0]
        if op == "+":
            out = _make("+", d[0], d[1])
        elif op == "-":
            out = _make("-", d[0], d[1])
        elif op == "neg":
            out = _make("neg", d[0])
        elif op == "*":
            out = _make("+", _make("*", d[0], args[1]), _make("*", a, d[1]))
        elif op == "/":
            b = args[1]
            out = _make("-", _make("/", d[0], b), _make("/", _make("*", a, d[1]), _make("**", b, _const(2))))
        elif op == "**":
            b = args[1]
            if _is(d[1], 0):  # u**c: c * u**(c-1) * u'
                out = _make("*", _make("*", b, _make("**", a, _make("-", b, ONE))), d[0])
            else:  # u**v: u**v * (v' log u + v u'/u)
                out = _make("*", node, _make("+", _make("*", d[1], _make("log", a)),
                                             _make("*", b, _make("/", d[0], a))))
        else:
            if op == "sin":
                outer = _make("cos", a)
            elif op == "cos":
                outer = _make("neg", _make("sin", a))
            elif op == "tan":
                outer = _make("+", ONE, _make("**", node, _const(2)))
            elif op == "exp":
                outer = node
            elif op == "log":
                outer = _make("/", ONE, a)
            elif op == "sqrt":
                outer = _make("/", ONE, _make("*", _const(2), node))
            elif op == "tanh":
                outer = _make("-", ONE, _make("**", node, _const(2)))
            elif op == "abs":
                outer = _make("sign", a)
            elif op == "sign":
                outer = ZERO  # almost everywhere; a gradient needs first derivatives only
            else:  # pragma: no cover - the parser makes no other node
                raise ValueError(f"cannot differentiate {op}")
            out = _make("*", outer, d[0])
    memo[key] = (node, out)  # node kept alive so that its id is not reused
    return out


# ----------------------------------------------------------------------------- evaluation


def _program(outputs) -> tuple[list, list[int]]:
    """The nodes under ``outputs`` in an order where each comes after its arguments (each
    shared node once), and the positions of the outputs."""
    order, index = [], {}
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in index:
                continue
            if expanded or not node.args:
                index[id(node)] = len(order)
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args) if id(a) not in index)
    return [(n, tuple(index[id(a)] for a in n.args)) for n in order], [index[id(r)] for r in outputs]


def _run(program, env: dict) -> list:
    values = []
    for node, args in program:
        op = node.op
        if op == "const":
            out = np.float64(node.value)
        elif op == "var":
            out = env[node.name]
        elif op == "bad":
            raise ValueError(node.name)
        elif op in _BINARY:
            a, b = values[args[0]], values[args[1]]
            out = np.float64(a) ** b if op == "**" else _BINARY[op](a, b)
        else:
            out = _UNARY[op](values[args[0]])
        values.append(out)
    return values


def evaluate(node: Node, env: dict) -> float:
    """The value of an expression tree at ``env`` (``{"x": 1.0}``), in NumPy float64."""
    program, outputs = _program((node,))
    return _run(program, env)[outputs[0]]
