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
        if not m:
            raise ValueError(f"cannot read {text[pos:pos + 10]!r} at column {pos + 1} of {_show(text)}")
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
        if len(out) > MAX_TOKENS:
            n = len(out) + len(_TOKEN.findall(text, pos))
            raise ValueError(f"the expression has {n} numbers, names, operators and parentheses; "
                             f"at most {MAX_TOKENS} are allowed")
    out.append(("end", "", len(text) + 1))
    return out


# ----------------------------------------------------------------------------- the tree

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


def evaluate(node: Node, env: dict) -> float:
    """The value of an expression tree at ``env`` (``{"x": 1.0}``), in NumPy float64."""
    program, outputs = _program((node,))
    return _run(program, env)[outputs[0]]
