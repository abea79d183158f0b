"""Objective functions typed on the command line, parsed and differentiated exactly.

``parse("10*x**2 + sin(y)")`` reads the text with a small recursive-descent parser
(numbers, the variables ``x`` and ``y``, ``+ - * / ** ^``, parentheses, ``pi``, ``e``
and the functions in :data:`FUNCTIONS`) and builds a sympy expression from it. The
text is never handed to Python's ``eval``, and nothing else can be named. sympy
differentiates the expression; :func:`evaluate` walks the result with NumPy.

sympy is optional (``pip install 'adaopt[cli]'``) and imported only here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "abs")
_NUMPY = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
          "sqrt": np.sqrt, "tanh": np.tanh, "Abs": np.abs, "sign": np.sign}

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
                    r"|(?P<op>\*\*|[-+*/^(),]))")


def _sympy():
    try:
        import sympy
    except ImportError as exc:
        raise ImportError("differentiating expressions needs sympy: pip install 'adaopt[cli]'") from exc
    return sympy


def _tokens(text: str):
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read {text[pos:pos + 10]!r} at column {pos + 1} of {text!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    out.append(("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str, variables):
        self.sp = _sympy()
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.vars = {v: self.sp.Symbol(v, real=True) for v in variables}

    def peek(self):
        return self.toks[self.i]

    def take(self, value=None):
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            self.fail(f"expected {value!r}")
        self.i += 1
        return tok

    def fail(self, why):
        kind, value, col = self.peek()
        found = "the end" if kind == "end" else repr(value)
        raise ValueError(f"{why} at column {col} of {self.text!r}, found {found}")

    def expr(self):
        node = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rhs = self.term()
            node = node + rhs if op == "+" else node - rhs
        return node

    def term(self):
        node = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            rhs = self.unary()
            node = node * rhs if op == "*" else node / rhs
        return node

    def unary(self):
        if self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = self.unary()
            return -node if op == "-" else node
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek()[1] in ("**", "^"):
            self.take()
            exponent = self.unary()  # right-associative; binds tighter than unary minus on its left
            if base.is_Number and exponent.is_Number and abs(base) > 1 and \
                    float(exponent) * math.log10(float(abs(base))) > 308:  # sympy would compute it exactly
                raise ValueError(f"{base}**{exponent} is beyond the range of a float (about 1e308)")
            return base ** exponent
        return base

    def atom(self):
        kind, value, _ = self.peek()
        sp = self.sp
        if kind == "num":
            self.take()
            return sp.Rational(value) if re.fullmatch(r"\d+", value) else sp.Float(value)
        if value == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind == "name":
            self.take()
            if value in self.vars:
                return self.vars[value]
            if value == "pi":
                return sp.pi
            if value == "e":
                return sp.E
            if value in FUNCTIONS:
                self.take("(")
                arg = self.expr()
                self.take(")")
                return getattr(sp, "Abs" if value == "abs" else value)(arg)
            self.i -= 1
            self.fail(f"unknown name {value!r} (variables: {', '.join(self.vars)}; "
                      f"functions: {', '.join(FUNCTIONS)})")
        self.fail("expected a number, a variable, a function or '('")


@dataclass
class Objective:
    """A parsed function of one or two variables with its exact gradient."""

    text: str
    variables: tuple[str, ...]
    expr: object
    gradient: tuple

    def __call__(self, x):
        """``(value, gradient)`` at ``x`` (a number or a vector with one entry per variable)."""
        x = np.asarray(x, dtype=np.float64)
        env = dict(zip(self.variables, np.atleast_1d(x)))
        value = evaluate(self.expr, env)
        grad = np.array([evaluate(d, env) for d in self.gradient], dtype=np.float64)
        return value, grad.reshape(x.shape)


def parse(text: str, variables=None) -> Objective:
    """Parse ``text``; the variables are ``("x",)``, or ``("x", "y")`` when ``y`` appears."""
    if variables is None:
        names = {v for k, v, _ in _tokens(text) if k == "name"}
        variables = ("x", "y") if "y" in names else ("x",)
    p = _Parser(text, variables)
    if p.peek()[0] == "end":
        raise ValueError("the expression is empty")
    node = p.expr()
    if p.peek()[0] != "end":
        p.fail("unexpected text after the expression")
    grad = tuple(p.sp.diff(node, p.vars[v]) for v in variables)
    return Objective(text, tuple(variables), node, grad)


def evaluate(node, env: dict) -> float:
    """The value of a sympy expression at ``env``, computed by walking its tree with NumPy."""
    if node.is_Symbol:
        return env[node.name]
    if not node.free_symbols:
        try:
            return float(node)
        except TypeError:  # zoo (1/0), I*pi (log(-1)), ...: sympy cannot make a real number of it
            if str(node) == "zoo":
                raise ValueError("a division by zero gives complex infinity") from None
            if node.has(_sympy().I):
                raise ValueError(f"{node} is imaginary, not a real number (log or sqrt of a negative number?)") \
                    from None
            raise ValueError(f"{node} is not a real number") from None
    args = [evaluate(a, env) for a in node.args]
    if node.is_Add:
        return sum(args[1:], args[0])
    if node.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if node.is_Pow:
        return np.float64(args[0]) ** args[1]
    fn = _NUMPY.get(type(node).__name__)
    if fn is None:
        raise ValueError(f"cannot evaluate {type(node).__name__} in {node}")
    return fn(*args)
