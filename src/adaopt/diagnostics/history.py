"""A run's record: one row per step, columns of signals, and what is known of the optimizer.

A :class:`History` is what :class:`~adaopt.diagnostics.Monitor` fills and what
:func:`~adaopt.diagnostics.diagnose` reads. It is also a log file: ``save`` writes
CSV or JSON Lines, and :func:`read_log` reads either back, or a log written by any
training script with at least ``step`` and ``loss`` columns.

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
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

STEP_COLUMNS = ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "cos_grad",
                "cos_update", "nonfinite")
SUMMARY_COLUMNS = ("lr", "eff_lr_p5", "eff_lr_p50", "eff_lr_p95", "eps_frac", "g2_vhat", "vhat_p50",
                   "bc1", "bc2")


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
        out = []
        for i, step in enumerate(self.steps):
            row = {"step": int(step)}
            for name in self._values:
                if self._present[name][i]:
                    row[name] = float(self._values[name][i])
            out.append(row)
        return out

    # ------------------------------------------------------------------ files

    def save(self, path) -> Path:
        """Write ``.csv`` or ``.jsonl`` (by suffix), atomically; meta goes in a first line."""
        path = Path(path)
        kind = _kind(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as fh:
            if kind == "jsonl":
                if self.meta:
                    fh.write(json.dumps({"meta": self.meta}) + "\n")
                for row in self.records():
                    fh.write(json.dumps({k: _json_number(v) for k, v in row.items()}) + "\n")
            else:
                if self.meta:
                    fh.write("# meta: " + json.dumps(self.meta) + "\n")
                writer = csv.writer(fh)
                writer.writerow(self.columns)
                for i, step in enumerate(self.steps):
                    writer.writerow([int(step)] + [repr(float(self._values[c][i])) if self._present[c][i] else ""
                                                   for c in self._values])
        os.replace(tmp, path)
        return path


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt", ""):
        return "csv"
    raise LogError(f"{path}: unknown log format {suffix!r}; use .csv or .jsonl")


def _json_number(v):
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf: written as "nan", "inf"


def read_log(path) -> History:
    """Read a CSV or JSON Lines log with at least ``step`` and ``loss`` columns.

    Extra columns are kept (the known ones give more evidence). Empty cells and JSON
    ``null`` mean "not measured"; ``nan``/``inf`` are read as measured values. A line
    that cannot be read raises :class:`LogError` naming the line number and column.
    """
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    kind = _kind(path)
    meta, rows = (_read_jsonl if kind == "jsonl" else _read_csv)(path)
    if not rows:
        raise LogError(f"{path}: the log has no rows")
    names = sorted({k for _, row in rows for k in row} - {"step"}, key=_column_order)
    for required in ("loss",):
        if required not in names:
            raise LogError(f"{path}: the log has no {required!r} column (it has: {', '.join(names) or 'none'})")
    previous = None
    for line, row in rows:
        if previous is not None and row["step"] <= previous:
            raise LogError(f"{path}: line {line}, column 'step': {row['step']} does not come after {previous}")
        previous = row["step"]
    columns = {"step": [row["step"] for _, row in rows]}
    for name in names:
        columns[name] = [row.get(name) for _, row in rows]
    return History(columns, meta)


def _column_order(name: str):
    known = STEP_COLUMNS + SUMMARY_COLUMNS
    return (known.index(name) if name in known else len(known), name)


def _number(text, path, line, column):
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise LogError(f"{path}: line {line}, column {column!r}: {text!r} is not a number")
    try:
        return float(text)
    except ValueError:
        raise LogError(f"{path}: line {line}, column {column!r}: {text!r} is not a number") from None


def _step(value, path, line):
    if value is None or value == "":
        raise LogError(f"{path}: line {line}, column 'step': missing")
    number = _number(value, path, line, "step")
    if not number.is_integer() or number < 0:
        raise LogError(f"{path}: line {line}, column 'step': {value!r} is not a step number (an integer >= 0)")
    return int(number)


def _read_csv(path: Path):
    meta, rows, header, header_line = {}, [], None, 0
    with open(path, newline="") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            if text.startswith("#"):
                if text.startswith("# meta:"):
                    try:
                        meta = json.loads(text[len("# meta:"):])
                    except json.JSONDecodeError as exc:
                        raise LogError(f"{path}: line {line}: the meta comment is not JSON ({exc.msg})") from None
                continue
            cells = next(csv.reader([text]))
            if header is None:
                header, header_line = [c.strip() for c in cells], line
                if "step" not in header:
                    raise LogError(f"{path}: line {line}: the header has no 'step' column "
                                   f"(it has: {', '.join(header)})")
                dupes = {c for c in header if header.count(c) > 1}
                if dupes:
                    raise LogError(f"{path}: line {line}: column(s) {sorted(dupes)} appear twice in the header")
                continue
            if len(cells) != len(header):
                raise LogError(f"{path}: line {line}: {len(cells)} cells, the header (line {header_line}) "
                               f"has {len(header)} columns")
            row = {}
            for name, cell in zip(header, cells):
                cell = cell.strip()
                if name == "step":
                    row["step"] = _step(cell, path, line)
                elif cell != "":
                    row[name] = _number(cell, path, line, name)
            rows.append((line, row))
    if header is None:
        raise LogError(f"{path}: the log is empty (no header line)")
    return meta, rows


def _read_jsonl(path: Path):
    meta, rows = {}, []
    with open(path) as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LogError(f"{path}: line {line}: not JSON ({exc.msg}, character {exc.pos + 1})") from None
            if not isinstance(obj, dict):
                raise LogError(f"{path}: line {line}: a JSON object was expected, got {type(obj).__name__}")
            if set(obj) == {"meta"}:
                meta = dict(obj["meta"])
                continue
            row = {"step": _step(obj.get("step"), path, line)}
            for name, value in obj.items():
                if name != "step" and value is not None:
                    row[name] = _number(value, path, line, name)
            rows.append((line, row))
    return meta, rows
