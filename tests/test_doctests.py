"""Every example in adaopt's docstrings runs and prints what it says.

A doctest that nobody runs lies sooner or later (``hyper.ema_window`` said
100.00000000000009 and returned 99.99999999999991). Each module of the package is
imported and its examples run; a module whose optional dependency is missing here is
skipped by name, not silently.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import adaopt

#: Every module but ``__main__`` (importing it runs the CLI).
MODULES = ["adaopt"] + sorted(m.name for m in pkgutil.walk_packages(adaopt.__path__, prefix="adaopt.") if m.name != "adaopt.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # an optional extra (torch, typer, sympy, matplotlib) not installed
        pytest.skip(f"{name}: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_examples_exist():
    """The package's entry points carry examples (so this file tests something)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    examples = sum(len(t.examples) for name in ("adaopt", "adaopt.hyper", "adaopt.trace", "adaopt.dtypes")
                   for t in finder.find(importlib.import_module(name)))
    assert examples >= 8
