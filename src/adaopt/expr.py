"""Objective functions typed on the command line, parsed and differentiated exactly.

``parse("10*x**2 + sin(y)")`` reads the text with a small recursive-descent parser
(numbers, the variables ``x`` and ``y``, ``+ - * / ** ^``, parentheses, ``pi``, ``e``
and the functions in :data:`FUNCTIONS`) and builds a sympy expression from it. The
text is never handed to Python's ``eval``, and nothing else can be named. sympy
differentiates the expression; :func:`evaluate` walks the result with NumPy.

Numbers are floats, as NumPy evaluates them: every literal is read with ``float()``
and every part without a variable (``2**-10**10``, ``sin(1)``) is computed at once in
53-bit floats. sympy never does exact arithmetic on them, which for ``(1/2)**10**10``
takes minutes. A number outside the range of a float is refused when it is parsed, and
so is any text beyond the limits below (how long it is, how deeply it nests): ``parse``
either returns or raises ``ValueError``, in bounded time.

sympy is optional (``pip install 'adaopt[cli]'``) and imported only here.
"""

from __future__ import annotations

import math
import operator
import re
import sys
from dataclasses import dataclass

import numpy as np

#: What :func:`parse` accepts at most: characters of text, tokens (numbers, names,
#: operators and parentheses), levels of nesting (parentheses, function calls, signs
#: and powers: ``-(x)**-x`` is 3 deep) and characters in one number.
MAX_LENGTH = 2000
MAX_TOKENS = 500
MAX_DEPTH = 100
MAX_DIGITS = 100
_RECURSION_LIMIT = 5000  # parse() needs up to about 2,000 at MAX_DEPTH, above its caller's frames

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


class _Parser:
    def __init__(self, text: str, variables):
        self.sp = _sympy()
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = -1  # the whole expression is level 0
        self.vars = {v: self.sp.Symbol(v, real=True) for v in variables}
        self.checked: set = set()  # subexpressions whose numbers are known to be in range

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

    # Every node the parser builds goes through _op, which keeps the numbers in it floats.
    def _op(self, fn, start: int, *args):
        sp = self.sp
        try:
            node = fn(*args)
        except ZeroDivisionError:  # sympy's Float / Float(0): what Float(1) * 0**-1 gives
            node = sp.nan if args[0].is_zero else sp.zoo
        if node.is_number:
            return self._constant(node, start)
        self._check_numbers(node, start)
        return node

    def _constant(self, node, start: int):
        """A number without variables as a Float (or a complex of two), computed now."""
        sp = self.sp
        if node.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            return node  # 1/0, 0/0, log(0): evaluate() names them where the function is used
        try:
            c = complex(node)
        except (TypeError, ValueError, OverflowError):
            c = complex(math.inf)
        if not (math.isfinite(c.real) and math.isfinite(c.imag)):
            raise ValueError(f"{self.span(start)} is beyond the range of a float (about 1e308)")
        return sp.Float(c.real) if c.imag == 0 else sp.Float(c.real) + sp.Float(c.imag) * sp.I

    def _check_numbers(self, node, start: int) -> None:
        """Refuse a number that sympy made, multiplying out (2*x)**1e10 into 2**1e10 * x**1e10,
        which no float holds; each subexpression is looked at once."""
        sp = self.sp
        todo = [node]
        while todo:
            n = todo.pop()
            if n in self.checked:
                continue
            self.checked.add(n)
            if isinstance(n, (sp.Float, sp.Rational)):
                try:
                    v = float(n)
                except OverflowError:
                    v = math.inf
                if not math.isfinite(v) or (v == 0 and not n.is_zero):
                    raise ValueError(f"{self.span(start)} has a number outside the range of a float "
                                     "(about 1e-308 to 1e308 in size) once sympy multiplies it out")
            else:
                todo.extend(n.args)

    def expr(self):
        start = self.i
        node = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            rhs = self.term()
            node = self._op(operator.add if op == "+" else operator.sub, start, node, rhs)
        return node

    def term(self):
        start = self.i
        node = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            rhs = self.unary()
            node = self._op(operator.mul if op == "*" else operator.truediv, start, node, rhs)
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
                return self._op(operator.neg, start, node) if op == "-" else node
            return self.power()
        finally:
            self.depth -= 1

    def power(self):
        start = self.i
        base = self.atom()
        if self.peek()[1] in ("**", "^"):
            self.take()
            exponent = self.unary()  # right-associative; binds tighter than unary minus on its left
            return self._op(operator.pow, start, base, exponent)
        return base

    def atom(self):
        kind, value, _ = self.peek()
        sp = self.sp
        if kind == "num":
            if len(value) > MAX_DIGITS:
                self.fail(f"a number of more than {MAX_DIGITS} digits")
            number = float(value)
            if not math.isfinite(number):
                self.fail(f"the number {_show(value, 30)[1:-1]} is beyond the range of a float (about 1e308)")
            self.take()
            return sp.Float(number)
        if value == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind == "name":
            start = self.i
            self.take()
            if value in self.vars:
                return self.vars[value]
            if value == "pi":
                return sp.Float(math.pi)
            if value == "e":
                return sp.Float(math.e)
            if value in FUNCTIONS:
                self.take("(")
                arg = self.expr()
                self.take(")")
                return self._op(getattr(sp, "Abs" if value == "abs" else value), start, arg)
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
        memo: dict = {}  # the gradient repeats parts of the function: each is computed once
        value = evaluate(self.expr, env, memo)
        grad = np.array([evaluate(d, env, memo) for d in self.gradient], dtype=np.float64)
        return value, grad.reshape(x.shape)


def parse(text: str, variables=None) -> Objective:
    """Parse ``text``; the variables are ``("x",)``, or ``("x", "y")`` when ``y`` appears."""
    if variables is None:
        names = {v for k, v, _ in _tokens(text) if k == "name"}
        variables = ("x", "y") if "y" in names else ("x",)
    p = _Parser(text, variables)
    if p.peek()[0] == "end":
        raise ValueError("the expression is empty")
    # sympy recurses over the tree (diff, free_symbols): at MAX_DEPTH, sin(x*sin(x*...))
    # takes about 1,600 frames, more than Python's default 1,000 allows
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _RECURSION_LIMIT))
    try:
        node = p.expr()
        if p.peek()[0] != "end":
            p.fail("unexpected text after the expression")
        grad = tuple(p.sp.diff(node, p.vars[v]) for v in variables)
    except RecursionError:  # the last guard: MAX_DEPTH keeps well below _RECURSION_LIMIT
        raise ValueError(f"{_show(text)} is nested too deeply to differentiate") from None
    finally:
        sys.setrecursionlimit(limit)
    return Objective(text, tuple(variables), node, grad)


def evaluate(node, env: dict, _memo: dict | None = None) -> float:
    """The value of a sympy expression at ``env``, computed by walking its tree with NumPy.

    A subexpression that occurs more than once (a derivative repeats its function's
    parts: the one of ``x**x**x`` holds ``x**x`` several times) is computed once."""
    memo = {} if _memo is None else _memo
    if node in memo:
        return memo[node]
    if node.is_Symbol:
        return env[node.name]
    if node.is_number:  # no variable in it (found without walking all of a big tree)
        try:
            out = float(node)
        except TypeError:  # zoo (1/0), I*pi (log(-1)), ...: sympy cannot make a real number of it
            if str(node) == "zoo":
                raise ValueError("a division by zero gives complex infinity") from None
            if node.has(_sympy().I):
                raise ValueError(f"{node} is imaginary, not a real number (log or sqrt of a negative number?)") \
                    from None
            raise ValueError(f"{node} is not a real number") from None
        memo[node] = out
        return out
    args = [evaluate(a, env, memo) for a in node.args]
    if node.is_Add:
        out = sum(args[1:], args[0])
    elif node.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
    elif node.is_Pow:
        out = np.float64(args[0]) ** args[1]
    else:
        fn = _NUMPY.get(type(node).__name__)
        if fn is None:
            raise ValueError(f"cannot evaluate {type(node).__name__} in {node}")
        out = fn(*args)
    memo[node] = out
    return out
