"""A run's record: one row per step, columns of signals, and what is known of the optimizer.

A :class:`History` is what :class:`~adaopt.diagnostics.Monitor` fills and what
:func:`~adaopt.diagnostics.diagnose` reads. It is also a log file: ``save`` writes
CSV (``.tsv``: tab-separated) or JSON Lines, and :func:`~adaopt.diagnostics.logs.read_log`
reads either back, or a log written by any training script with at least ``step`` and
``loss`` columns (:mod:`adaopt.diagnostics.logs`, which also says what a log may hold).

Per-step columns (any may be missing):

``loss``          the loss at the parameters the step's gradient was taken at
``grad_norm``     ||g||, ``update_norm`` ||p_t - p_{t-1}||, ``param_norm`` ||p_{t-1}||
``update_ratio``  ||p_t - p_{t-1}|| / ||p_{t-1}||
``cos_grad``      cosine between this gradient and the previous one
``cos_update``    cosine between this update and the previous one
``nonfinite``     how many non-finite values the gradient and new parameters hold
``grad_zero``     the share of sampled gradient coordinates that are exactly 0 (dead units)
``update_lost``   the share of sampled coordinates with a nonzero gradient whose parameter did not
                  change (an update below half an ulp of the parameter's dtype: rounded away)

Columns of the optimizer-state summary, on the rows where one was taken (step 1, then
every ``every`` steps): ``lr``, ``eff_lr_p5``/``eff_lr_p50``/``eff_lr_p95`` (percentiles
of the per-coordinate effective learning rate), ``eps_frac`` (share of coordinates where
eps dominates the denominator), ``g2_vhat`` (median of g^2 / v-hat; for AdaGrad ``g2_mean``, the
median of t g^2 / G: today's squared gradient against the average of all so far), ``vhat_p50``,
``bc1``/``bc2`` (the bias-correction factors 1/(1-beta^t)).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .._io import atomic_write
from .logs import LogError, LogWarning, read_log  # noqa: F401  (importable from here, where they used to live)
from .logs import kind as log_kind

STEP_COLUMNS = ("loss", "grad_norm", "update_norm", "param_norm", "update_ratio", "cos_grad",
                "cos_update", "nonfinite", "grad_zero", "update_lost")
SUMMARY_COLUMNS = ("lr", "eff_lr_p5", "eff_lr_p50", "eff_lr_p95", "eps_frac", "g2_vhat", "g2_mean", "vhat_p50",
                   "bc1", "bc2")

#: Rows written at a time by ``save`` (each column's block as Python floats, then freed).
_SAVE_BLOCK = 8192


class History:
    """Columns of equal length keyed by name, with ``step`` first, plus ``meta``.

    A value can be absent (not measured that step): ``h["loss"]`` holds NaN there and
    ``h.present("loss")`` is False. A measured NaN is told apart from an absent one.
    """

    #: What read_log read it from ({"format", "title", "path", "note"}); None for a History made here.
    read_from: dict | None = None

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

    def take(self, rows: np.ndarray) -> "History":
        """The history of the rows where the boolean mask ``rows`` is True, with the same meta."""
        return History._of_arrays(self.steps[rows], {name: (self._values[name][rows], self._present[name][rows])
                                                     for name in self._values}, self.meta)

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
        kind = log_kind(path)

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


def _json_number(v):
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf: written as "nan", "inf"


def _json_default(obj):
    """NumPy scalars and arrays in meta are written as numbers and lists."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"meta holds a {type(obj).__name__}, which JSON cannot write")


def _column_order(name: str):
    """Sort key: the known columns in their order here, then the others by name."""
    known = STEP_COLUMNS + SUMMARY_COLUMNS
    return (known.index(name) if name in known else len(known), name)
