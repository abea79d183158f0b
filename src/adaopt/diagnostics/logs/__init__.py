"""Reading a training log into a History: :func:`read_log` and the list of formats it knows.

Each format is a :class:`Format`: a test of the file (its path and its first
:data:`HEAD_BYTES` bytes) and a reader. :func:`read_log` reads a file with the first
format in :data:`FORMATS` whose test passes, so a new format is one reader function and
one entry in that list, ahead of the formats its files could be taken for. The formats are
told apart by content where tools' files share a suffix: TensorBoard event files
(:mod:`.tensorboard`), Hugging Face ``trainer_state.json`` (:mod:`.hf`), TensorBoard's
JSON and CSV scalar exports, Lightning's CSVLogger ``metrics.csv``, a Weights & Biases
history export, Keras' CSVLogger, and the two ``History.save`` writes: JSON Lines
(:mod:`.jsonl`) and CSV (:mod:`.delimited`). A folder is read by the log in it
(:mod:`.folders`: Lightning's ``version_N``, a TensorBoard run, ...).

A reader is called as ``read(path, fh, step=None)``, ``fh`` the file opened in binary mode
at its start, and returns ``(meta, steps, columns)``: the meta dict, the steps as an
``array("q")``, and for each column name ``(array("d") of values, bytearray: 1 where
measured)``, which may stop short of the last rows (they are filled in as not measured).
It refuses what it cannot read with a :class:`~.checks.LogError`, through the checks
every reader shares (:mod:`.checks`, which also says what a log may hold), with one
exception: a CSV or JSON Lines log's last line, when it has no end of line and cannot be
read (cut off mid-write by a run still writing, or killed), is left out with a
:class:`~.checks.LogWarning`. The columns
are then given their roles (:mod:`.columns`: the step, the training and eval losses, the
lr, the gradient norm) by the names tools use for them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import columns as roles
from . import delimited, documents, folders, hf, jsonl, tensorboard
from .checks import LogError, LogWarning, _pad

if TYPE_CHECKING:
    from ..history import History

#: How much of a file a format's test sees.
HEAD_BYTES = 8192
#: The suffixes of the formats ``History.save`` writes (and read_log reads by suffix alone).
SUFFIXES = {"jsonl": (".jsonl", ".ndjson", ".json"), "csv": (".csv", ".tsv", ".txt", "")}


@dataclass(frozen=True)
class Format:
    """A kind of log file: ``claims(path, head)`` says whether a file is one (``head``: its
    first HEAD_BYTES bytes); ``read(path, fh, step=None)`` reads it (see the module's
    docstring); ``title`` names it in messages (None: the plain formats, named by suffix)."""

    name: str
    claims: Callable[[Path, bytes], bool]
    read: Callable
    title: str | None = None


def kind(path: Path) -> str:
    """``"jsonl"`` or ``"csv"``: the format ``path``'s suffix names; a LogError for any other."""
    suffix = path.suffix.lower()
    for name, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return name
    raise _unknown(path)


def _unknown(path: Path) -> LogError:
    return LogError(f"{path}: unknown log format {path.suffix.lower()!r}; use .csv, .tsv or .jsonl, a "
                    "trainer_state.json, TensorBoard events (events.out.tfevents.*) or a log folder")


def _suffix_is(name: str):
    """The test of a format known by its suffix alone."""
    suffixes = SUFFIXES[name]

    def claims(path: Path, head: bytes) -> bool:
        return path.suffix.lower() in suffixes
    return claims


def _text_start(head: bytes) -> bytes:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")


def _json_text(path: Path, head: bytes) -> bool:
    """A .json file, or a .txt or suffix-less one that starts like JSON."""
    suffix = path.suffix.lower()
    return suffix == ".json" or (suffix in (".txt", "") and _text_start(head)[:1] in (b"{", b"["))


def _one_document(path: Path, head: bytes) -> bool:
    """JSON text whose first line is not a whole JSON object: one document, not JSON Lines."""
    if not _json_text(path, head):
        return False
    first = _text_start(head).split(b"\n", 1)[0].strip()
    if not first.startswith(b"{"):
        return first.startswith(b"[")
    try:
        return not isinstance(json.loads(first), dict)
    except ValueError:
        return True


def _document(path: Path, fh, step=None):
    """A JSON document: a trainer_state.json, a TensorBoard export, or a LogError saying what it holds."""
    doc = documents.load(path, fh, "JSON document")
    if isinstance(doc, dict) and "log_history" in doc:
        return hf.read_document(path, doc, step=step)
    if isinstance(doc, list):
        return tensorboard.read_export(path, doc, step=step)
    shown = f"an object with keys {roles.listing(doc)}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
    raise LogError(f"{path}: one JSON document ({shown}), not a log adaopt knows: a JSON log is JSON Lines "
                   "(an object a line, with step and loss), a Hugging Face trainer_state.json "
                   "({\"log_history\": [...]}) or TensorBoard's export ([[wall_time, step, value], ...])")


def _header(head: bytes) -> list[str]:
    """The lowercased names of a CSV's first line that is not blank or a comment."""
    for raw in head.split(b"\n"):
        line = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
        if line and not line.startswith("#"):
            sep = next((d for d in delimited.DELIMITERS if d in line), ",")
            return [c.strip().strip('"').lower() for c in line.split(sep)]
    return []


def _csv_with(test):
    """The test of a CSV flavour: a CSV suffix and ``test(header names)``."""
    is_csv = _suffix_is("csv")
    return lambda path, head: is_csv(path, head) and test(_header(head))


def _events(path: Path, fh, step=None):
    return tensorboard.read_events(path, step=step)


def _merging(path: Path, fh, step=None):
    return delimited.read(path, fh, step=step, merge=True)


#: The formats read_log knows, tried in order: the ones told by content before the plain ones.
FORMATS = [
    Format("tensorboard", lambda path, head: tensorboard.is_events(path), _events, "TensorBoard event file"),
    Format("hf_trainer_state", lambda path, head: _json_text(path, head) and hf.claims(head), _document, hf.WHAT),
    Format("tensorboard_json", lambda path, head: _one_document(path, head) and tensorboard.claims_export(head),
           _document, tensorboard.WHAT),
    Format("json_document", _one_document, _document, "JSON document"),
    Format("jsonl", lambda path, head: _suffix_is("jsonl")(path, head) or _json_text(path, head), jsonl.read),
    Format("tensorboard_csv", _csv_with(lambda h: h == ["wall time", "step", "value"]), delimited.read,
           "TensorBoard scalar export (CSV)"),
    Format("lightning_csv", _csv_with(lambda h: "epoch" in h and "step" in h), _merging,
           "Lightning CSVLogger metrics.csv"),
    Format("wandb_csv", _csv_with(lambda h: "_step" in h), delimited.read, "Weights & Biases history export"),
    Format("keras_csv", _csv_with(lambda h: h[:1] == ["epoch"] and "step" not in h), delimited.read,
           "Keras CSVLogger log"),
    Format("csv", _suffix_is("csv"), delimited.read),
]


def read_log(path, *, loss=None, step=None, lr=None) -> History:
    """Read a training log (a file or a folder, see :data:`FORMATS`) into a History.

    ``loss``, ``step`` and ``lr`` name the columns to take for the training loss, the step
    and the learning rate; by default the names tools use are looked for, in any case
    (:mod:`.columns`). A CSV is ``.csv`` (``.tsv`` is tab-separated; ``.txt``, no suffix or a
    ``.csv`` header without a comma: comma, tab or semicolon, as the header has, and a
    semicolon-separated log's decimals may be ``0,48``); JSON Lines hold an object a step.
    Extra columns are kept (the known ones give more evidence). Empty cells and JSON
    ``null`` mean "not measured"; ``nan``/``inf`` are read as measured values. A line
    that cannot be read raises :class:`LogError` naming the line number and column, and
    what is allowed there. A UTF-8 byte-order mark (as Excel writes) is skipped. What was
    read, as which format, is ``history.read_from``.
    """
    path = Path(os.fsdecode(path))
    note = None
    if path.is_dir():
        path, note = folders.resolve(path)
    if path.is_dir():
        found = FORMATS[0]
        meta, steps, columns = tensorboard.read_events(path, step=step)
    elif not path.is_file():
        raise LogError(f"{path}: no such file")
    else:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
            fh.seek(0)
            found = next((f for f in FORMATS if f.claims(path, head)), None)
            if found is None:
                raise _unknown(path)
            try:
                meta, steps, columns, *said = found.read(path, fh, step=step)  # said: a reader's note
                note = note or (said[0] if said else None)
            except LogError as exc:
                raise _as(found, exc) from None
    try:
        h = _history(path, meta, steps, columns, loss=loss, lr=lr)
    except LogError as exc:
        raise _as(found, exc) from None
    h.read_from = {"format": found.name, "title": found.title, "path": str(path), "note": note}
    return h


def _as(found: Format, exc: LogError) -> LogError:
    """A reader's error, saying which format the file was read as (the plain ones go unsaid)."""
    return LogError(f"{exc} [read as a {found.title}]") if found.title else exc


def _history(path: Path, meta: dict, steps, columns: dict, loss=None, lr=None) -> History:
    """A reader's columns as a History: filled to the last row, under their roles' names, in
    the known columns' order and without the ones never measured; a LogError if no row or
    no loss is left."""
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
    kept = roles.rename(kept, roles.roles(path, sorted(kept, key=_column_order), loss=loss, lr=lr))
    names = sorted(kept, key=_column_order)
    return History._of_arrays(np.frombuffer(steps, dtype=np.int64), {name: kept[name] for name in names}, meta)
