"""A run's record: one row per step, columns of signals, and what is known of the optimizer.

A :class:`History` is what :class:`~adaopt.diagnostics.Monitor` fills and what
:func:`~adaopt.diagnostics.diagnose` reads. It is also a log file: ``save`` writes
CSV (``.tsv``: tab-separated) or JSON Lines, and :func:`read_log` reads either back, or
a log written by any training script with at least ``step`` and ``loss`` columns.

Per-step columns (any may be missing):

``loss``          the loss at the parameters the step's gradient was taken at
``grad_norm``     ||g||, ``update_norm`` ||p_t - p_{t-1}||, ``param_norm`` ||p_{t-1}||
``update_ratio``  ||p_t - p_{t-1}|| / ||p_{t-1}||
``cos_grad``      cosine between this gradient and the previous one
``cos_update``    cosine between this update and the previous one
``nonfinite``     how many non-finite values the gradient and new parameters hold

Columns of the optimizer-state summary, on the rows where one was taken (step 1, then
every ``every`` steps): ``lr``, ``eff_lr_p5``/``eff_lr_p50``/``eff_lr_p95`` (percentiles
of the per-coordinate effective learning rate), ``eps_frac`` (share of coordinates where
eps dominates the denominator), ``g2_vhat`` (median of g^2 / v-hat), ``vhat_p50``,
``bc1``/``bc2`` (the bias-correction factors 1/(1-beta^t)).

What a log may hold (anything else is a :class:`LogError` naming the line and column):
steps are integers from 0 to 2**53 - 1, strictly increasing; values are numbers (``nan``
and ``inf`` included) or empty/``null`` for "not measured"; at most :data:`MAX_COLUMNS`
columns, cells and names of at most :data:`MAX_CELL` characters, lines of at most
:data:`MAX_LINE_BYTES` bytes; a ``meta`` line is a JSON object. The file is read as a
stream: memory grows with the numbers it holds (about 9 bytes a value), not its text.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from array import array
from pathlib import Path

import numpy as np

from .. import dtypes
from .._io import atomic_write

STEP_COLUMNS = ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "cos_grad",
                "cos_update", "nonfinite")
SUMMARY_COLUMNS = ("lr", "eff_lr_p5", "eff_lr_p50", "eff_lr_p95", "eps_frac", "g2_vhat", "vhat_p50",
                   "bc1", "bc2")

#: The most columns a log may have (a wider one is refused: it is not a training log).
MAX_COLUMNS = 10_000
#: The longest cell, column name or JSON number, in characters (a float needs 24).
MAX_CELL = 1_000
#: The longest line, in bytes (read no further: a file without newlines is refused cheaply).
MAX_LINE_BYTES = 1 << 24
#: Steps are below this: every one is exact as a float64 (and fits an int64).
STEP_LIMIT = 2**53
_STEPS_ALLOWED = "an integer from 0 to 2**53 - 1"
_VALUES_ALLOWED = "allowed: a number, nan, inf, or empty (null in JSON) for not measured"
_BOM = b"\xef\xbb\xbf"
_NAN = array("d", [math.nan])
_DELIMITERS = {"\t": "tab", ",": "comma", ";": "semicolon"}  # sniffed in this order: a tab is
# never part of a column's name, a comma may be ("loss, smoothed")
#: Rows written at a time by ``save`` (each column's block as Python floats, then freed).
_SAVE_BLOCK = 8192


class LogError(ValueError):
    """A log file that cannot be read: the message names the line and the column."""


class History:
    """Columns of equal length keyed by name, with ``step`` first, plus ``meta``.

    A value can be absent (not measured that step): ``h["loss"]`` holds NaN there and
    ``h.present("loss")`` is False. A measured NaN is told apart from an absent one.
    """

    def __init__(self, columns: dict, meta: dict | None = None):
        if "step" not in columns:
            raise ValueError("a history needs a 'step' column")
        steps = np.asarray(columns["step"], dtype=np.int64)
        self.meta = dict(meta or {})
        self._values: dict[str, np.ndarray] = {}
        self._present: dict[str, np.ndarray] = {}
        for name, col in columns.items():
            if name == "step":
                continue
            col = list(col) if not isinstance(col, np.ndarray) else col
            if len(col) != len(steps):
                raise ValueError(f"column {name!r} has {len(col)} values for {len(steps)} steps")
            if isinstance(col, np.ndarray) and col.dtype.kind == "f":
                values, present = col.astype(np.float64), np.ones(len(col), bool)
            else:
                present = np.array([v is not None for v in col], dtype=bool)
                values = np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64)
            self._values[name], self._present[name] = values, present
        self.steps = steps

    @classmethod
    def _of_arrays(cls, steps: np.ndarray, columns: dict, meta: dict) -> "History":
        """A history of ready arrays, used as they are: ``columns`` maps a name to
        ``(float64 values, bool present)``."""
        h = cls.__new__(cls)
        h.meta, h.steps = dict(meta), steps
        h._values = {name: v for name, (v, _) in columns.items()}
        h._present = {name: p for name, (_, p) in columns.items()}
        return h

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"History({len(self)} steps, columns={self.columns})"

    @property
    def columns(self) -> list[str]:
        return ["step", *self._values]

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "step":
            return self.steps
        if name not in self._values:
            return np.full(len(self), np.nan)
        return self._values[name]

    def present(self, name: str) -> np.ndarray:
        """Where column ``name`` was measured (a boolean mask)."""
        if name == "step":
            return np.ones(len(self), bool)
        return self._present.get(name, np.zeros(len(self), bool))

    def has(self, name: str) -> bool:
        return bool(self.present(name).any())

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the rows where ``name`` was measured."""
        mask = self.present(name)
        return self.steps[mask], self[name][mask]

    def records(self) -> list[dict]:
        """One dict a step, absent values left out."""
        return list(self._rows())

    def _blocks(self):
        """``(steps, [(name, values, present)])`` as Python lists, ``_SAVE_BLOCK`` rows at a time."""
        names = list(self._values)
        for lo in range(0, len(self.steps), _SAVE_BLOCK):
            hi = lo + _SAVE_BLOCK
            yield self.steps[lo:hi].tolist(), [(n, self._values[n][lo:hi].tolist(), self._present[n][lo:hi].tolist())
                                              for n in names]

    def _rows(self):
        for steps, cols in self._blocks():
            for i, step in enumerate(steps):
                row = {"step": step}
                for name, v, p in cols:
                    if p[i]:
                        row[name] = v[i]
                yield row

    # ------------------------------------------------------------------ files

    def save(self, path) -> Path:
        """Write ``.csv``/``.tsv``/``.txt`` or ``.jsonl`` (by suffix), atomically (see
        :func:`adaopt._io.atomic_write`: a failed save leaves the old file and no temporary
        one); meta goes in a first line."""
        path = Path(path)
        kind = _kind(path)

        def write(raw):
            fh = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            try:
                if kind == "jsonl":
                    if self.meta:
                        fh.write(json.dumps({"meta": self.meta}, default=_json_default) + "\n")
                    for row in self._rows():
                        fh.write(json.dumps({k: _json_number(v) for k, v in row.items()}) + "\n")
                else:
                    if self.meta:
                        fh.write("# meta: " + json.dumps(self.meta, default=_json_default) + "\n")
                    writer = csv.writer(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
                    writer.writerow(self.columns)
                    for steps, cols in self._blocks():
                        writer.writerows([step] + [repr(v[i]) if p[i] else "" for _, v, p in cols]
                                         for i, step in enumerate(steps))
                fh.flush()
            finally:
                fh.detach()  # the binary file stays open for atomic_write to sync and close

        atomic_write(path, write)
        return path


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt", ""):
        return "csv"
    raise LogError(f"{path}: unknown log format {suffix!r}; use .csv, .tsv or .jsonl")


def _json_number(v):
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf: written as "nan", "inf"


def _json_default(obj):
    """NumPy scalars and arrays in meta are written as numbers and lists."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"meta holds a {type(obj).__name__}, which JSON cannot write")


# ---------------------------------------------------------------------- reading


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
    kind = _kind(path)
    with open(path, "rb") as fh:
        if kind == "jsonl":
            meta, steps, columns = _read_jsonl(path, fh)
        else:
            meta, steps, columns = _read_csv(path, fh, _delimiter_of(path))
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


def _delimiter_of(path: Path):
    """The delimiter a suffix fixes, or None (sniffed from the header)."""
    suffix = path.suffix.lower()
    return {".csv": ",", ".tsv": "\t"}.get(suffix)


def _column_order(name: str):
    known = STEP_COLUMNS + SUMMARY_COLUMNS
    return (known.index(name) if name in known else len(known), name)


def _shown(value) -> str:
    """A value for a message: its repr, cut short; containers by their kind only."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _lines(path: Path, fh):
    """``(line number, text)`` of every line, decoded; a BOM is skipped, and a line longer
    than MAX_LINE_BYTES is refused before more of it is read."""
    limit = MAX_LINE_BYTES
    readline = fh.readline
    number = 0
    while True:
        raw = readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
            raise LogError(f"{path}: line {number} is longer than {limit} bytes; "
                           f"a log's lines are at most {limit} bytes")
        if number == 1:
            if raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise LogError(f"{path}: line 1: the file is UTF-16 text (Excel's \"Unicode Text\"); "
                               "a log is UTF-8: save it as \"CSV UTF-8\"")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LogError(f"{path}: line {number}: not UTF-8 text (byte {raw[exc.start]:#04x} at byte "
                           f"{exc.start + 1} of the line); a log is CSV or JSON Lines text") from None
        yield number, text


def _pad(values: array, present: bytearray, n: int) -> None:
    """Fill a column up to ``n`` rows with "not measured"."""
    gap = n - len(values)
    if gap > 0:
        values.extend(_NAN * gap)
        present.extend(bytes(gap))


def _number(value, path, line, column) -> float:
    """A JSON value or a CSV cell's text as a float; a LogError saying what is wrong."""
    where = f"{path}: line {line}, column {_shown(column)}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LogError(f"{where}: {_shown(value)} is not a number; {_VALUES_ALLOWED}")
    if isinstance(value, str) and len(value) > MAX_CELL:
        raise LogError(f"{where}: a value of {len(value)} characters; at most {MAX_CELL} are allowed")
    try:
        return float(value)
    except OverflowError:
        raise LogError(f"{where}: {_shown(value)} is outside the float range (about 1.8e308)") from None
    except ValueError:
        raise LogError(f"{where}: {_shown(value)} is not a number; {_VALUES_ALLOWED}") from None


def _step(value, path, line) -> int:
    """A step: an integer from 0 to 2**53 - 1, given as a number or its text (``12``, ``12.0``, ``1e3``)."""
    where = f"{path}: line {line}, column 'step'"
    if value is None or value == "" or (isinstance(value, str) and not value.strip()):
        raise LogError(f"{where}: missing; a step is {_STEPS_ALLOWED}")
    if isinstance(value, int) and not isinstance(value, bool):
        step = value
    else:
        if isinstance(value, str):
            try:
                step = int(value)
            except ValueError:
                step = None
        else:
            step = None
        if step is None:
            number = _number(value, path, line, "step")
            if not number.is_integer():
                raise LogError(f"{where}: {_shown(value)} is not a step number; a step is {_STEPS_ALLOWED}")
            step = int(number)
    if not 0 <= step < STEP_LIMIT:
        raise LogError(f"{where}: {_shown(value)} is not a step number; a step is {_STEPS_ALLOWED}")
    return step


def _meta(obj, path, line, where="the meta line") -> dict:
    """The meta object, with the entries the diagnosis reads checked."""
    if not isinstance(obj, dict):
        raise LogError(f"{path}: line {line}: {where} must hold a JSON object ({{\"lr\": 0.001, ...}}), "
                       f"got {type(obj).__name__}")
    at = f"{path}: line {line}: meta"

    def number(key):
        v = obj.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise LogError(f"{at} {key!r} is {_shown(v)}; allowed: a number (or null)")
        if isinstance(v, int):
            try:
                float(v)
            except OverflowError:
                raise LogError(f"{at} {key!r} is outside the float range") from None

    for key in ("lr", "eps", "weight_decay", "alpha", "momentum"):
        number(key)
    betas = obj.get("betas")
    if betas is not None and not (isinstance(betas, list) and len(betas) == 2
                                  and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                          and abs(b) < 1e308 for b in betas)):
        raise LogError(f"{at} 'betas' is {_shown(betas)}; allowed: a list of two numbers (or null)")
    if obj.get("optimizer") is not None and not isinstance(obj["optimizer"], str):
        raise LogError(f"{at} 'optimizer' is {_shown(obj['optimizer'])}; allowed: a name (or null)")
    for key in ("dtype", "state_dtype"):
        v = obj.get(key)
        if v is not None and v not in dtypes.SUPPORTED:
            raise LogError(f"{at} {key!r} is {_shown(v)}; allowed: {', '.join(dtypes.SUPPORTED)} (or null)")
    return obj


def _json(text, path, line):
    """One JSON value; numbers of more than MAX_CELL characters are refused as they are read."""
    try:
        if len(text) <= MAX_CELL:  # no number in it can be too long: the fast, hook-free parse
            return json.loads(text)
        return json.loads(text, parse_int=_checked(int), parse_float=_checked(float))
    except _TooLong as exc:
        raise LogError(f"{path}: line {line}: a number of {exc.args[0]} characters; "
                       f"at most {MAX_CELL} are allowed") from None
    except json.JSONDecodeError as exc:
        raise LogError(f"{path}: line {line}: not JSON ({exc.msg}, character {exc.pos + 1})") from None
    except RecursionError:
        raise LogError(f"{path}: line {line}: JSON nested too deeply; a log line is an object of "
                       "numbers (meta may hold lists)") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise LogError(f"{path}: line {line}: not JSON that can be read ({exc})") from None


class _TooLong(Exception):
    pass


def _checked(convert):
    def parse(text):
        if len(text) > MAX_CELL:
            raise _TooLong(len(text))
        return convert(text)
    return parse


def _check_name(name, path, line, count):
    if len(name) > MAX_CELL:
        raise LogError(f"{path}: line {line}: a column name of {len(name)} characters; "
                       f"at most {MAX_CELL} are allowed")
    if count > MAX_COLUMNS:
        raise LogError(f"{path}: line {line}: more than {MAX_COLUMNS} columns; at most {MAX_COLUMNS} are read")


def _split(body: str, delimiter: str, path, line) -> list[str]:
    if '"' not in body:
        return body.split(delimiter)
    try:
        return next(csv.reader([body], delimiter=delimiter))
    except csv.Error as exc:  # a quoted cell longer than the csv module's limit (131072)
        raise LogError(f"{path}: line {line}: cannot be read as CSV ({exc}); cells are at most "
                       f"{MAX_CELL} characters") from None


def _read_csv(path: Path, fh, delimiter):
    meta, header = {}, None
    steps = array("q")
    columns: dict = {}
    cols = []  # (position in the row, values, present) of every column but step
    step_at = n_cells = 0
    previous = -1
    for line, text in _lines(path, fh):
        body = text.rstrip("\r\n")
        if not body or body.isspace():
            continue
        if body[0] == "#":
            if body.startswith("# meta:"):
                meta = _meta(_json(body[len("# meta:"):], path, line), path, line, "the meta comment")
            continue
        if header is None:
            if delimiter is None:  # .txt or no suffix: what the header is separated by
                delimiter = next((d for d in _DELIMITERS if d in body), ",")
            header = [c.strip() for c in _split(body, delimiter, path, line)]
            header_line, n_cells = line, len(header)
            if n_cells > MAX_COLUMNS:
                raise LogError(f"{path}: line {line}: the header has {n_cells} columns; "
                               f"at most {MAX_COLUMNS} are read")
            for name in header:
                _check_name(name, path, line, 0)
            if "step" not in header:
                hint = ""
                other = [d for d in _DELIMITERS if d != delimiter and d in body]
                if other:
                    hint = (f"; it looks {_DELIMITERS[other[0]]}-separated: name the file "
                            + (".tsv" if other[0] == "\t" else ".txt") + " (a .txt file's delimiter is sniffed)")
                shown = ", ".join(_shown(h) for h in header[:20]) + (", ..." if len(header) > 20 else "")
                raise LogError(f"{path}: line {line}: the header has no 'step' column (it has: {shown}){hint}")
            first = {}
            for j, name in enumerate(header):  # one pass: a dict of first positions
                k = first.setdefault(name, j)
                if k != j:
                    raise LogError(f"{path}: line {line}: column {_shown(name)} appears twice in the header "
                                   f"(columns {k + 1} and {j + 1})")
            step_at = header.index("step")
            for j, name in enumerate(header):
                if j != step_at:
                    columns[name] = (array("d"), bytearray())
                    cols.append((j, name, *columns[name]))
            continue
        cells = _split(body, delimiter, path, line)
        if len(cells) != n_cells:
            raise LogError(f"{path}: line {line}: {len(cells)} cells, the header (line {header_line}) "
                           f"has {n_cells} columns")
        if len(body) > MAX_CELL:  # only a long line can hold a long cell
            for j, cell in enumerate(cells):
                if len(cell) > MAX_CELL:
                    raise LogError(f"{path}: line {line}, column {_shown(header[j])}: a cell of {len(cell)} characters; "
                                   f"at most {MAX_CELL} are allowed")
        cell = cells[step_at]
        try:
            step = int(cell)
        except ValueError:
            step = _step(cell, path, line)
        if step <= previous or step >= STEP_LIMIT:
            if not 0 <= step < STEP_LIMIT:
                _step(cell, path, line)  # raises, saying what a step may be
            raise LogError(f"{path}: line {line}, column 'step': {step} does not come after {previous}; "
                           "steps must increase")
        previous = step
        steps.append(step)
        for j, name, values, present in cols:
            cell = cells[j]
            if cell:
                try:
                    values.append(float(cell))
                    present.append(1)
                    continue
                except ValueError:
                    if cell.strip():
                        raise LogError(f"{path}: line {line}, column {_shown(name)}: {_shown(cell)} is not a "
                                       f"number; {_VALUES_ALLOWED}") from None
            values.append(math.nan)
            present.append(0)
    if header is None:
        raise LogError(f"{path}: the log is empty (no header line)")
    return meta, steps, columns


def _read_jsonl(path: Path, fh):
    meta = {}
    steps = array("q")
    columns: dict = {}  # name -> (values, present), filled up to the row before they were last written
    previous = -1
    for line, text in _lines(path, fh):
        if not text or text.isspace():
            continue
        obj = _json(text, path, line)
        if not isinstance(obj, dict):
            raise LogError(f"{path}: line {line}: a JSON object was expected, got {type(obj).__name__}")
        if len(obj) == 1 and "meta" in obj:
            meta = _meta(obj["meta"], path, line)
            continue
        step = _step(obj.get("step"), path, line)
        if step <= previous:
            raise LogError(f"{path}: line {line}, column 'step': {step} does not come after {previous}; "
                           "steps must increase")
        previous = step
        row = len(steps)
        steps.append(step)
        for name, value in obj.items():
            if value is None or name == "step":
                continue
            col = columns.get(name)
            if col is None:
                _check_name(name, path, line, len(columns) + 1)
                col = columns[name] = (array("d"), bytearray())
            values, present = col
            if len(values) < row:
                _pad(values, present, row)
            if type(value) is float:
                values.append(value)
            elif type(value) is int:
                try:
                    values.append(float(value))
                except OverflowError:
                    raise LogError(f"{path}: line {line}, column {_shown(name)}: {_shown(value)} is outside the "
                                   "float range (about 1.8e308)") from None
            else:
                values.append(_number(value, path, line, name))
            present.append(1)
    return meta, steps, columns
