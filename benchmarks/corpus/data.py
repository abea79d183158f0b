"""The corpus's data: scikit-learn's bundled tables (no downloads) and text that ships with Python.

The text is the docstrings of a fixed list of standard-library modules, lower-cased and cut
to a small alphabet: every Python install has it, so the corpus needs no file of its own.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import string
import warnings

import numpy as np

TEXT_MODULES = ("collections", "json", "argparse", "textwrap", "functools", "itertools", "random", "string",
                "dataclasses", "pathlib", "logging", "typing", "unittest", "csv", "heapq", "bisect", "shutil",
                "tempfile", "contextlib", "statistics", "fractions", "decimal", "calendar", "difflib")
ALPHABET = string.ascii_lowercase + " .,()\n"


@functools.lru_cache(maxsize=None)
def table(name: str):
    """(X float32 standardised, y, classes or 0 for regression) of a bundled scikit-learn data set."""
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
              "wine": datasets.load_wine, "diabetes": datasets.load_diabetes}[name]
    d = loader()
    X = np.asarray(d.data, np.float64)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    if name == "diabetes":
        y = np.asarray(d.target, np.float64)
        return X.astype(np.float32), ((y - y.mean()) / y.std()).astype(np.float32), 0
    return X.astype(np.float32), np.asarray(d.target, np.int64), int(d.target.max()) + 1


@functools.lru_cache(maxsize=None)
def text(limit: int = 60_000) -> np.ndarray:
    """Character ids (into :data:`ALPHABET`) of the standard library's docstrings, ``limit`` long at most."""
    parts = []
    with warnings.catch_warnings():  # typing's deprecated submodules warn when read
        warnings.simplefilter("ignore", DeprecationWarning)
        _docstrings(parts)
    raw = "\n".join(parts).lower()
    index = {c: i for i, c in enumerate(ALPHABET)}
    ids = [index[c] for c in raw if c in index]
    return np.asarray(ids[:limit], np.int64)


def _docstrings(parts: list) -> None:
    """Append the docstrings of :data:`TEXT_MODULES` and of their own functions and classes."""
    for name in TEXT_MODULES:
        mod = importlib.import_module(name)
        parts.append(inspect.getdoc(mod) or "")
        for _, obj in sorted(vars(mod).items()):
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == name:
                parts.append(inspect.getdoc(obj) or "")


def unigram_entropy() -> float:
    """The cross-entropy (nats) of predicting every character from its frequency alone."""
    counts = np.bincount(text(), minlength=len(ALPHABET)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def chance(classes: int) -> float:
    """The cross-entropy of a uniform guess over ``classes``: ln K."""
    return math.log(classes)
