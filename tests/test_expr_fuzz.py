"""Fuzzing the expression parser: whatever is typed, ``parse`` returns or raises ValueError,
in bounded time, and so does evaluating what it returns.

The examples are derandomized (the same ones on every run, so a failure in CI reproduces)
and few enough to run in a few seconds. Each example has a 2 s deadline; the inputs that
once hung (``(1/2)**10**10``, ``pi^exp(45837.7)*x``) took minutes.
"""

import math
from datetime import timedelta

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from adaopt.expr import MAX_DEPTH, parse  # noqa: E402

FUZZ = settings(max_examples=200, deadline=timedelta(seconds=2), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

NUMBERS = ["0", "1", "2", "3", "10", "0.5", ".5", "1e-3", "1e10", "1e308", "1e-320", "1e400", "45837.7",
           "9" * 40, "1" * 120, "2.5e+7"]
NAMES = ["x", "y", "pi", "e", "z", "foo", "open", "sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "abs"]
OPERATORS = ["+", "-", "*", "/", "**", "^", "(", ")", ",", " ", ".", "_", "'", "@", "\n"]
FUNCTIONS = ["sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "abs"]


def _leaf():
    return st.sampled_from(NUMBERS + ["x", "y", "pi", "e"]) | st.integers(0, 10**12).map(str) | \
        st.floats(allow_nan=False, allow_infinity=False).map(lambda v: repr(abs(v)))


def _expressions():
    """Well-formed expressions: binary operators, signs, functions and parentheses, nested."""
    def extend(inner):
        return (st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", "^"]), inner).map("".join)
                | st.tuples(st.sampled_from(["-", "+"]), inner).map("".join)
                | st.tuples(st.sampled_from(FUNCTIONS), inner).map(lambda t: f"{t[0]}({t[1]})")
                | inner.map(lambda t: f"({t})"))
    return st.recursive(_leaf(), extend, max_leaves=40)


def _repeated():
    """A unit repeated: chains of signs, parentheses, functions and powers, up to MAX_DEPTH
    and beyond it."""
    units = st.sampled_from([("(", ")"), ("-", ""), ("sin(", ")"), ("x**", ""), ("2**", ""), ("exp(", ")"),
                             ("(1/2)**", ""), ("10**", ""), ("abs(", ")"), ("x*(", ")"), ("(x+", ")"),
                             ("abs(-x+", ")"), ("exp(-x-", ")"), ("tanh(x**2/", ")"), ("cos(y/", ")")])
    counts = st.integers(0, MAX_DEPTH) | st.integers(MAX_DEPTH + 1, 3 * MAX_DEPTH)
    return st.tuples(units, counts, st.sampled_from(["x", "10", "0.5", "2"])).map(
        lambda t: t[0][0] * t[1] + t[2] + t[0][1] * t[1])


def _token_soup():
    """Tokens in any order: mostly nonsense, sometimes an expression."""
    return st.lists(st.sampled_from(NUMBERS + NAMES + OPERATORS), max_size=60).map("".join)


def _parses_or_refuses(text: str) -> None:
    try:
        f = parse(text)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)  # a one-line message
        assert len(str(exc)) < 500
        return
    point = 0.5 if len(f.variables) == 1 else np.array([0.5, -1.5])
    with np.errstate(all="ignore"):
        try:
            value, grad = f(point)
        except ValueError:  # 1/0, log(-1): no real value; trace refuses it naming --f
            return
    assert isinstance(float(value), float) and np.shape(grad) == np.shape(point)
    assert all(isinstance(float(g), float) for g in np.ravel(grad))


@FUZZ
@given(_expressions())
def test_well_formed_expressions(text):
    _parses_or_refuses(text)


@FUZZ
@given(_repeated())
def test_deep_chains(text):
    _parses_or_refuses(text)


@FUZZ
@given(_token_soup())
def test_token_soup(text):
    _parses_or_refuses(text)


@FUZZ
@given(st.text(max_size=40))
def test_any_text(text):
    _parses_or_refuses(text)


def test_the_fuzzers_reach_both_outcomes():
    """Not a fuzzer that only ever hits the tokenizer: some inputs parse, some are refused."""
    assert math.isfinite(parse("sin(x)**2 + (1/2)**10**10")(0.5)[0])
    with pytest.raises(ValueError):
        parse("2**" * 150 + "2")
