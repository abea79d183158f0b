"""Objective functions typed on the command line, parsed and differentiated exactly.

``parse("10*x**2 + sin(y)")`` reads the text with a small recursive-descent parser
(numbers, the variables ``x`` and ``y``, ``+ - * / ** ^``, parentheses, ``pi``, ``e``
and the functions in :data:`FUNCTIONS`) into an expression tree. The text is never
handed to Python's ``eval``, and nothing else can be named. The gradient is the tree's
derivative by the rules (sum, product, quotient, power and chain rule), built once at
parse time; :class:`Objective` computes value and gradient in NumPy float64, each
shared part once.

Numbers are floats, as NumPy computes them: every literal is read with ``float()`` and
every part without a variable (``2**-10**10``, ``sin(1)``) is computed when it is
parsed. A number beyond the range of a float there (``10**10**10``) is refused; one with
no real value (``1/0``, ``log(-1)``) is reported where the function is evaluated.

The work is bounded by the size of the text: at most :data:`MAX_LENGTH` characters,
:data:`MAX_TOKENS` tokens, :data:`MAX_DEPTH` levels of nesting and :data:`MAX_DIGITS`
characters in one number, and the derivative of a tree of n nodes, nested d deep, has
at most about n * d nodes. ``parse`` either returns or raises ``ValueError``.

(An earlier version built sympy expressions. sympy's exact arithmetic took minutes on
``(1/2)**10**10`` and its simplification of nested ``abs(x+abs(x+...))`` or
``exp(-x-exp(-x-...))`` took time exponential in the nesting.)
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from .tree import Node, _bad, _const, _derivative, _fold, _is, _program, _run, evaluate  # noqa: F401

#: What :func:`parse` accepts at most: characters of text, tokens (numbers, names,
#: operators and parentheses), levels of nesting (parentheses, function calls, signs
#: and powers: ``-(x)**-x`` is 3 deep) and characters in one number.
MAX_LENGTH = 2000
MAX_TOKENS = 500
MAX_DEPTH = 100
MAX_DIGITS = 100
_RECURSION_LIMIT = 5000  # the parser takes ~5 frames a level: 500 at MAX_DEPTH, above its caller's

FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "abs")

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
                    r"|(?P<op>\*\*|[-+*/^(),]))")


def _show(text: str, width: int = 60) -> str:
    """``repr(text)``, shortened to about ``width`` characters for a message."""
    if len(text) <= width:
        return repr(text)
    return repr(text[:width - 20]) + f"... ({len(text)} characters)"


def _tokens(text: str):
    pos, out = 0, []
    text = text.rstrip()
    if len(text) > MAX_LENGTH:
        raise ValueError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:  # (a quote, a bracket, a comma...: __import__('os') stops here, at its quote)
            raise ValueError(f"the character {text[pos]!r} at column {pos + 1} of {_show(text)} has no place in "
                             "a formula: it takes numbers, the variables, + - * / ** ( ) and the functions "
                             f"{', '.join(FUNCTIONS)}")
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
        if len(out) > MAX_TOKENS:
            n = len(out) + len(_TOKEN.findall(text, pos))
            raise ValueError(f"the expression has {n} numbers, names, operators and parentheses; "
                             f"at most {MAX_TOKENS} are allowed")
    out.append(("end", "", len(text) + 1))
    return out


# ----------------------------------------------------------------------------- the parser


class _Parser:
    def __init__(self, text: str, variables):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = -1  # the whole expression is level 0
        self.vars = tuple(variables)

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
        found = "the end" if kind == "end" else _show(value, 30)
        raise ValueError(f"{why} at column {col} of {_show(self.text)}, found {found}")

    def span(self, start: int) -> str:
        """The text of the tokens from ``start`` to the last one taken, as typed."""
        first, last = self.toks[start], self.toks[self.i - 1]
        return _show(self.text[first[2] - 1:last[2] - 1 + len(last[1])])

    def node(self, op: str, start: int, *args) -> Node:
        """``op`` of ``args``; computed now when they are constants (refused beyond float range)."""
        if op == "/" and _is(args[1], 0):  # x/0: inf or nan in floats, refused where it is evaluated
            return _bad(f"{self.span(start)} is a division by zero")
        if all(a.op in ("const", "bad") for a in args):
            folded = _fold(op, args, self.span(start))
            if folded is None:
                raise ValueError(f"{self.span(start)} is beyond the range of a float (about 1e308)")
            return folded
        return Node(op, args)

    def expr(self):
        start = self.i
        node = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rhs = self.term()
            node = self.node(op, start, node, rhs)
        return node

    def term(self):
        start = self.i
        node = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            rhs = self.unary()
            node = self.node(op, start, node, rhs)
        return node

    def unary(self):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                self.fail(f"the expression is nested more than {MAX_DEPTH} levels deep "
                          "(parentheses, function calls, signs and powers)")
            start = self.i
            if self.peek()[1] in ("+", "-"):
                op = self.take()[1]
                node = self.unary()
                return self.node("neg", start, node) if op == "-" else node
            return self.power()
        finally:
            self.depth -= 1

    def power(self):
        start = self.i
        base = self.atom()
        if self.peek()[1] in ("**", "^"):
            self.take()
            exponent = self.unary()  # right-associative; binds tighter than unary minus on its left
            return self.node("**", start, base, exponent)
        return base

    def atom(self):
        kind, value, _ = self.peek()
        if kind == "num":
            if len(value) > MAX_DIGITS:
                self.fail(f"a number of more than {MAX_DIGITS} digits")
            number = float(value)
            if not math.isfinite(number):
                self.fail(f"the number {_show(value, 30)[1:-1]} is beyond the range of a float (about 1e308)")
            self.take()
            return _const(number)
        if value == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind == "name":
            start = self.i
            self.take()
            if value in self.vars:
                return Node("var", name=value)
            if value == "pi":
                return _const(math.pi)
            if value == "e":
                return _const(math.e)
            if value in FUNCTIONS:
                self.take("(")
                arg = self.expr()
                self.take(")")
                return self.node(value, start, arg)
            self.i -= 1
            self.fail(f"unknown name {value!r} (variables: {', '.join(self.vars)}; "
                      f"functions: {', '.join(FUNCTIONS)})")
        self.fail("expected a number, a variable, a function or '('")


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Objective:
    """A parsed function of one or two variables with its exact gradient."""

    text: str
    variables: tuple[str, ...]
    expr: Node
    gradient: tuple
    _program: tuple = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self._program is None:
            self._program = _program((self.expr, *self.gradient))

    def __call__(self, x):
        """``(value, gradient)`` at ``x`` (a number or a vector with one entry per variable).

        Raises ValueError where the function has a part with no real value (``1/0``,
        ``log(-1)``)."""
        x = np.asarray(x, dtype=np.float64)
        env = dict(zip(self.variables, np.atleast_1d(x)))
        program, outputs = self._program
        values = _run(program, env)
        value = values[outputs[0]]
        grad = np.array([values[i] for i in outputs[1:]], dtype=np.float64)
        return value, grad.reshape(x.shape)


def parse(text: str, variables=None) -> Objective:
    """Parse ``text``; the variables are ``("x",)``, or ``("x", "y")`` when ``y`` appears."""
    if variables is None:
        names = {v for k, v, _ in _tokens(text) if k == "name"}
        variables = ("x", "y") if "y" in names else ("x",)
    p = _Parser(text, variables)
    if p.peek()[0] == "end":
        raise ValueError("the expression is empty")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _RECURSION_LIMIT))
    try:
        node = p.expr()
        if p.peek()[0] != "end":
            p.fail("unexpected text after the expression")
        grad = tuple(_derivative(node, v, {}) for v in variables)
    except RecursionError:  # the last guard: MAX_DEPTH keeps well below _RECURSION_LIMIT
        raise ValueError(f"{_show(text)} is nested too deeply") from None
    finally:
        sys.setrecursionlimit(limit)
    return Objective(text, tuple(variables), node, grad)
