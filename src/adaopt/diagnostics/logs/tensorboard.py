"""TensorBoard: event files (``events.out.tfevents.*``, or the run folder holding them), read
through the ``tensorboard`` package's ``EventAccumulator`` (an optional dependency:
``pip install tensorboard``), and the scalar exports TensorBoard's web page offers.

The exports are written by ``ScalarsPlugin.scalars_impl`` (tensorboard/plugins/scalar/
scalars_plugin.py): CSV is ``csv.writer`` rows under the header ``Wall time,Step,Value``
(read by the CSV reader: ``Step`` is a step alias and ``Value`` a loss alias), JSON is the
list ``[[wall_time, step, value], ...]``. Both hold one tag; the file the page saves is
named ``run-<run>-tag-<tag>``, and a tag of an eval loss (``val_loss``) is read as one.

Every scalar tag of an event file becomes a column (``train/loss``, ``eval/loss``,
``train/learning_rate``: :mod:`.columns` maps them), one row per step any tag was written at.
"""

from __future__ import annotations

from pathlib import Path

from .checks import LogError
from .documents import columns_of

PREFIX = "events.out.tfevents."
WHAT = "TensorBoard scalar export (JSON)"


def is_events(path: Path) -> bool:
    return path.name.startswith(PREFIX)


def claims_export(head: bytes) -> bool:
    """JSON whose first value is a list of lists: ``[[wall, step, value], ...]``."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def read_export(path: Path, doc, *, step=None):
    """``(meta, steps, columns)`` of a loaded JSON export: a column ``Value``."""
    if not isinstance(doc, list):
        raise LogError(f"{path}: a JSON {type(doc).__name__}; a {WHAT} is a list [[wall_time, step, value], ...]")
    records = []
    for i, row in enumerate(doc):
        if not (isinstance(row, list) and len(row) == 3):
            raise LogError(f"{path}: item [{i}] is {_what(row)}; a {WHAT} holds [wall_time, step, value] "
                           "lists of 3 numbers")
        records.append((f"[{i}]", row[1], {"Value": row[2]}))
    steps, columns = columns_of(path, records, "item")
    return {}, steps, columns


def _what(row) -> str:
    if isinstance(row, list):
        return f"a list of {len(row)}"
    return f"a {type(row).__name__}"


def event_accumulator():
    """tensorboard's EventAccumulator class, or a LogError saying how to get it."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as exc:
        raise LogError(f"reading TensorBoard event files needs the tensorboard package ({exc}); "
                       "pip install tensorboard, or export the scalars as CSV from TensorBoard's page") from None
    return EventAccumulator


def read_events(path: Path, *, step=None):
    """``(meta, steps, columns)`` of an event file or a folder of them: every scalar tag."""
    acc = event_accumulator()(str(path), size_guidance={"scalars": 0, "tensors": 0})
    try:
        acc.Reload()
    except Exception as exc:  # a truncated or foreign file: the reader's own errors vary
        raise LogError(f"{path}: cannot be read as TensorBoard events ({type(exc).__name__}: {exc})") from None
    tags = acc.Tags()
    series = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags.get("scalars", [])}
    for tag in tags.get("tensors", []):  # tf.summary.scalar in TF2 writes scalars as tensors
        values = [(e.step, _scalar(e.tensor_proto)) for e in acc.Tensors(tag)]
        if values and all(v is not None for _, v in values):
            series.setdefault(tag, values)
    if not series:
        raise LogError(f"{path}: TensorBoard events without scalars (tags: "
                       f"{', '.join(f'{k}: {len(v)}' for k, v in tags.items() if v) or 'none'}); "
                       "a log needs a loss logged with add_scalar / self.log")
    rows: dict = {}
    for tag, values in series.items():
        for s, v in values:
            rows.setdefault(s, {})[tag] = v
    steps, columns = columns_of(path, [(f"step {s}", s, rows[s]) for s in sorted(rows)], "event")
    return {}, steps, columns


def _scalar(proto):
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(proto)  # a text summary (hparams, args) is a string tensor: not a scalar
    return float(array.reshape(())) if array.size == 1 and array.dtype.kind in "fiub" else None
