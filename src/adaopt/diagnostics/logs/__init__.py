"""Reading a training log into a History: :func:`read_log` and the list of formats it knows.

Each format is a :class:`Format`: a test of the file (its path and its first
:data:`HEAD_BYTES` bytes) and a reader. :func:`read_log` reads a file with the first
format in :data:`FORMATS` whose test passes, so a new format is one reader function and
one entry in that list, ahead of the formats its files could be taken for. The two there
now are the ones :meth:`History.save <adaopt.diagnostics.History.save>` writes, told apart
by suffix: JSON Lines (:mod:`.jsonl`) and CSV (:mod:`.delimited`).

A reader is called as ``read(path, fh)``, ``fh`` the file opened in binary mode at its
start, and returns ``(meta, steps, columns)``: the meta dict, the steps as an
``array("q")``, and for each column name ``(array("d") of values, bytearray: 1 where
measured)``, which may stop short of the last rows (they are filled in as not measured).
It refuses what it cannot read with a :class:`~.checks.LogError`, through the checks
every reader shares (:mod:`.checks`, which also says what a log may hold).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import delimited, jsonl
from .checks import LogError, _pad

if TYPE_CHECKING:
    from ..history import History

#: How much of a file a format's test sees.
HEAD_BYTES = 8192
#: The suffixes of the formats ``History.save`` writes (and read_log reads by suffix alone).
SUFFIXES = {"jsonl": (".jsonl", ".ndjson", ".json"), "csv": (".csv", ".tsv", ".txt", "")}


@dataclass(frozen=True)
class Format:
    """A kind of log file: ``claims(path, head)`` says whether a file is one (``head``: its
    first HEAD_BYTES bytes); ``read(path, fh)`` reads it (see the module's docstring)."""

    name: str
    claims: Callable[[Path, bytes], bool]
    read: Callable


def kind(path: Path) -> str:
    """``"jsonl"`` or ``"csv"``: the format ``path``'s suffix names; a LogError for any other."""
    suffix = path.suffix.lower()
    for name, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return name
    raise _unknown(path)


def _unknown(path: Path) -> LogError:
    return LogError(f"{path}: unknown log format {path.suffix.lower()!r}; use .csv, .tsv or .jsonl")


def _suffix_is(name: str):
    """The test of a format known by its suffix alone."""
    suffixes = SUFFIXES[name]

    def claims(path: Path, head: bytes) -> bool:
        return path.suffix.lower() in suffixes
    return claims


#: The formats read_log knows, tried in order (their suffixes do not overlap).
FORMATS = [
    Format("jsonl", _suffix_is("jsonl"), jsonl.read),
    Format("csv", _suffix_is("csv"), delimited.read),
]


def read_log(path) -> History:
    """Read a CSV (``.csv``; ``.tsv`` is tab-separated; ``.txt`` or no suffix: comma, tab or
    semicolon, as the header has) or JSON Lines log with at least ``step`` and ``loss``.

    Extra columns are kept (the known ones give more evidence). Empty cells and JSON
    ``null`` mean "not measured"; ``nan``/``inf`` are read as measured values. A line
    that cannot be read raises :class:`LogError` naming the line number and column, and
    what is allowed there. A UTF-8 byte-order mark (as Excel writes) is skipped.
    """
    path = Path(os.fsdecode(path))
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
        fh.seek(0)
        found = next((f for f in FORMATS if f.claims(path, head)), None)
        if found is None:
            raise _unknown(path)
        meta, steps, columns = found.read(path, fh)
    return _history(path, meta, steps, columns)


def _history(path: Path, meta: dict, steps, columns: dict) -> History:
    """A reader's columns as a History: filled to the last row, in the known columns' order
    and without the ones never measured; a LogError if no row or no loss is left."""
    from ..history import History, _column_order  # here, not above: history imports this package

    if len(steps) == 0:
        raise LogError(f"{path}: the log has no rows")
    n = len(steps)
    kept = {}
    for name, (values, present) in columns.items():
        _pad(values, present, n)
        present = np.frombuffer(present, dtype=bool) if n else np.zeros(0, bool)
        if present.any():  # a column never measured is not a column
            kept[name] = (np.frombuffer(values, dtype=np.float64), present)
    names = sorted(kept, key=_column_order)
    if "loss" not in kept:
        raise LogError(f"{path}: the log has no 'loss' column (it has: {', '.join(names) or 'none'})")
    return History._of_arrays(np.frombuffer(steps, dtype=np.int64), {name: kept[name] for name in names}, meta)
