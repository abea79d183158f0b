"""The CSV reader: a header line naming the step (``step`` or an alias of
:data:`.columns.STEP`), then one row a step, separated by commas (``.csv``), tabs
(``.tsv``) or, for ``.txt``, no suffix and a ``.csv`` whose header has no comma,
whichever the header has; a semicolon-separated log may write its decimals with a comma.

Lightning's CSVLogger writes validation rows that share a step with training rows:
``read(..., merge=True)`` makes rows of one step one row (a cell written twice is refused)."""

from __future__ import annotations

import csv
import math
from array import array
from collections import deque
from pathlib import Path

from . import checks
from .columns import STEP, find
from .checks import (STEP_LIMIT, _VALUES_ALLOWED, LogError, _check_name, _json, _lines, _meta, _not_after, _shown,
                     _step)

#: The delimiter a suffix fixes; a file of another suffix has the first of DELIMITERS its header holds.
BY_SUFFIX = {".csv": ",", ".tsv": "\t"}
#: Sniffed in this order: a tab is never part of a column's name, a comma may be ("loss, smoothed").
DELIMITERS = {"\t": "tab", ",": "comma", ";": "semicolon"}
_META = "# meta:"


def read(path: Path, fh, *, step=None, merge=False):
    """``(meta, steps, columns)`` of a CSV log (see :mod:`adaopt.diagnostics.logs`). Blank
    lines are skipped, ``#`` lines are comments, and ``# meta: {...}`` holds the meta.
    ``step`` names the step column (default: the first alias of STEP the header has);
    ``merge`` joins the rows of a repeated step. A log of losses and measures only, with
    no step column, is numbered by row, and a fourth value says so."""
    delimiter = BY_SUFFIX.get(path.suffix.lower())
    meta, table = {}, None
    before = deque(maxlen=FORM_ROWS)  # the last rows read, to tell a cut-off last line by its form
    for line, text in _lines(path, fh):
        body = text.rstrip("\r\n")
        if not body or body.isspace():
            continue
        if body[0] == "#":
            if body.startswith(_META):
                meta = _meta(_json(body[len(_META):], path, line), path, line, "the meta comment")
        elif table is None:
            table = _Table(path, line, body, delimiter, step, merge)
        elif text.endswith("\n"):
            table.add(line, body)
            before.append(body)
        else:  # the last line, cut off mid-write if it cannot be read, or if its last cell looks cut
            mark = table.mark()
            try:
                table.add(line, body)
            except LogError as exc:
                table.rollback(mark)
                checks.cut_off(path, line, exc)
            else:
                why = _cut_cell(body, before, table)
                if why:
                    table.rollback(mark)
                    checks.cut_off(path, line, why)
    if table is None:
        raise LogError(f"{path}: the log is empty (no header line)")
    if table.step_at is None:
        return meta, table.steps, table.columns, "no step column: row k is taken as step k"
    return meta, table.steps, table.columns


#: The rows before an unterminated last line whose last cells show the column's form.
FORM_ROWS = 20


def _cut_cell(body: str, before, table: "_Table") -> str:
    """Why the last line, which has no end of line but reads, looks cut off, or "". A line is
    written left to right, so only its last cell can be cut short, and a cut that still parses
    (``599,0.`` of ``599,0.4821``, ``599,`` of ``599,0.4821``) stands out against the same
    column's cells in the rows before: always filled, never ending in ".", one fixed width
    (``%.4f``, ``%.3e``). A column of varying widths (Python's repr) cannot tell such a cut."""
    if len(before) < 2:
        return ""
    last = _split(body, table.delimiter, table.path, 0)[-1].strip()
    name = _shown(table.header[-1])
    cells = [_split(b, table.delimiter, table.path, 0)[-1].strip() for b in before]
    if not all(cells):
        return ""
    if not last:
        return f"its {name} cell is empty, where each of the {len(cells)} rows before has a value"
    if last.endswith(".") and not any(c.endswith(".") for c in cells):
        return f"its {name} cell {_shown(last)} ends in '.', which none of the {len(cells)} rows before does"
    widths = {len(c) for c in cells}
    if len(widths) == 1 and len(last) < len(cells[0]):
        return (f"its {name} cell {_shown(last)} is shorter than the {len(cells[0])} characters of each of "
                f"the {len(cells)} rows before")
    return ""


class _Table:
    """The columns a header line names, filled a row at a time."""

    def __init__(self, path: Path, line: int, body: str, delimiter, step=None, merge=False):
        if delimiter is None or delimiter == "," and "," not in body:
            # .txt or no suffix, or a .csv whose header has no comma (Excel in a locale whose
            # decimal mark is the comma writes semicolons): what the header is separated by
            delimiter = next((d for d in DELIMITERS if d in body), ",")
        header = [c.strip() for c in _split(body, delimiter, path, line)]
        _check_header(header, body, delimiter, path, line, step)
        self.path, self.delimiter, self.header, self.header_line = path, delimiter, header, line
        named = find(header, STEP, step, what="step", option="--step", path=path)
        self.step_at = None if named is None else header.index(named)  # None: the rows are steps 1, 2, ...
        self.merge = merge
        self.steps, self.previous = array("q"), -1 if named is not None else 0
        self.columns = {name: (array("d"), bytearray()) for j, name in enumerate(header) if j != self.step_at}
        # (position in the row, name, values, present) of every column but step
        self.cols = [(j, name, *self.columns[name]) for j, name in enumerate(header) if j != self.step_at]

    def add(self, line: int, body: str) -> None:
        """Read one row: as many cells as the header has, a step after the last one, numbers."""
        path = self.path
        cells = _split(body, self.delimiter, path, line)
        if len(cells) != len(self.header):
            raise LogError(f"{path}: line {line}: {len(cells)} cells, the header (line {self.header_line}) "
                           f"has {len(self.header)} columns")
        if len(body) > checks.MAX_CELL:  # only a long line can hold a long cell
            _check_cells(cells, self.header, path, line)
        if self.step_at is None:
            step = self.previous + 1
        else:
            cell = cells[self.step_at]
            try:
                step = int(cell)
            except ValueError:
                step = _step(cell, path, line)
        if step <= self.previous or step >= STEP_LIMIT:
            if not 0 <= step < STEP_LIMIT:
                _step(cell, path, line)  # raises, saying what a step may be
            if step == self.previous and self.merge:
                return self._merge(line, cells)
            raise _not_after(step, self.previous, path, line)
        self.previous = step
        self.steps.append(step)
        for j, name, values, present in self.cols:
            cell = cells[j]
            if cell:
                try:
                    values.append(float(cell))
                    present.append(1)
                    continue
                except ValueError:
                    if self.decimal_comma(cell, values, present):
                        continue
                    if cell.strip():
                        raise LogError(f"{path}: line {line}, column {_shown(name)}: {_shown(cell)} is not a "
                                       f"number; {_VALUES_ALLOWED}") from None
            values.append(math.nan)
            present.append(0)


    def decimal_comma(self, cell: str, values, present) -> bool:
        """A semicolon-separated log's ``0,4821`` (a comma for the decimal mark, as Excel
        writes it there) is 0.4821: appended, True; anything else, False."""
        if self.delimiter != ";" or cell.count(",") != 1 or "." in cell:
            return False
        try:
            values.append(float(cell.replace(",", ".")))
        except ValueError:
            return False
        present.append(1)
        return True

    def mark(self) -> tuple:
        """The table's length and its last row's values, to :meth:`rollback` a row that failed."""
        return len(self.steps), self.previous, [(len(v), v[-1:], p[-1:]) for _, _, v, p in self.cols]

    def rollback(self, mark: tuple) -> None:
        """Undo what a failed :meth:`add` (or merge) wrote after :meth:`mark`."""
        n, self.previous, cols = mark
        del self.steps[n:]
        for (_, _, values, present), (k, last, was) in zip(self.cols, cols):
            del values[k:], present[k:]
            if k and len(last):  # a merge writes into the last row
                values[-1], present[-1] = last[0], was[0]

    def _merge(self, line: int, cells: list[str]) -> None:
        """Put a row of the last row's step into that row: where both have a value, the same one."""
        for j, name, values, present in self.cols:
            cell = cells[j]
            if not cell.strip():
                continue
            try:
                value = float(cell)
            except ValueError:
                raise LogError(f"{self.path}: line {line}, column {_shown(name)}: {_shown(cell)} is not a "
                               f"number; {_VALUES_ALLOWED}") from None
            if present[-1] and not (value == values[-1] or (math.isnan(value) and math.isnan(values[-1]))):
                raise LogError(f"{self.path}: line {line}, column {_shown(name)}: step {self.previous} has "
                               f"{values[-1]!r} there already (an earlier row), this row {value!r}; a step's "
                               "rows may repeat a column only with the same value (as Lightning's epoch)")
            values[-1], present[-1] = value, 1


def _check_header(header: list[str], body: str, delimiter: str, path, line, step=None) -> None:
    """At most MAX_COLUMNS names, none too long, a step among them, none twice."""
    if len(header) > checks.MAX_COLUMNS:
        raise LogError(f"{path}: line {line}: the header has {len(header)} columns; "
                       f"at most {checks.MAX_COLUMNS} are read")
    for name in header:
        _check_name(name, path, line, 0)
    if step is None and find(header, STEP, what="step", option="--step") is None and not _measures_only(header):
        raise _no_step(header, body, delimiter, path, line)
    first = {}
    for j, name in enumerate(header):  # one pass: a dict of first positions
        k = first.setdefault(name, j)
        if k != j:
            raise LogError(f"{path}: line {line}: column {_shown(name)} appears twice in the header "
                           f"(columns {k + 1} and {j + 1})")


def _measures_only(header: list[str]) -> bool:
    """Every column is one a log records at a step (loss, lr, a Monitor's measure), so none
    can be a step under another name: the rows are then taken as steps 1, 2, ... (a list of
    losses written one a line)."""
    from ..history import STEP_COLUMNS, SUMMARY_COLUMNS  # here: history imports this package
    from .columns import EVAL, GRAD_NORM, IGNORED, LOSS, LR

    known = {*LOSS, *EVAL, *LR, *GRAD_NORM, *STEP_COLUMNS, *SUMMARY_COLUMNS}
    names = [h.lower() for h in header if h.lower() not in IGNORED]
    return bool(names) and all(n in known for n in names) and any(n in LOSS for n in names)


def _no_step(header: list[str], body: str, delimiter: str, path, line) -> LogError:
    """The header has no ``step``: say what it has, and which other delimiter it may be separated by."""
    hint = ""
    other = [d for d in DELIMITERS if d != delimiter and d in body]
    if other:
        hint = (f"; it looks {DELIMITERS[other[0]]}-separated: name the file "
                + (".tsv" if other[0] == "\t" else ".txt") + " (a .txt file's delimiter is sniffed)")
    shown = ", ".join(_shown(h) for h in header[:20]) + (", ..." if len(header) > 20 else "")
    return LogError(f"{path}: line {line}: the header has no 'step' column (it has: {shown}){hint}; "
                    f"a step is one of {', '.join(STEP)} (any case), or name it: --step COLUMN")


def _check_cells(cells: list[str], header: list[str], path, line) -> None:
    for j, cell in enumerate(cells):
        if len(cell) > checks.MAX_CELL:
            raise LogError(f"{path}: line {line}, column {_shown(header[j])}: a cell of {len(cell)} characters; "
                           f"at most {checks.MAX_CELL} are allowed")


def _split(body: str, delimiter: str, path, line) -> list[str]:
    if '"' not in body:
        return body.split(delimiter)
    try:
        return next(csv.reader([body], delimiter=delimiter))
    except csv.Error as exc:  # a quoted cell longer than the csv module's limit (131072)
        raise LogError(f"{path}: line {line}: cannot be read as CSV ({exc}); cells are at most "
                       f"{checks.MAX_CELL} characters") from None
