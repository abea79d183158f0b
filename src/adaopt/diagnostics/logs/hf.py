"""Hugging Face ``Trainer``'s ``trainer_state.json``: one JSON document whose ``log_history``
holds a record every ``logging_steps`` (``loss``, ``grad_norm``, ``learning_rate``,
``epoch``, ``step``) and one every evaluation (``eval_loss``, ``eval_runtime``, ...,
``step``), in the order they were logged; ``TrainerState.save_to_json`` writes it
(``json.dumps(asdict(state), indent=2, sort_keys=True)``) into every ``checkpoint-N/``.

The record written when training ends (``train_runtime``, ``train_loss``: the mean loss of
the whole run) is left out: it is a summary, not a step's loss.
"""

from __future__ import annotations

from pathlib import Path

from .checks import LogError
from .columns import listing
from .documents import columns_of

WHAT = "Hugging Face trainer_state.json"
#: A record with this key is the end-of-training summary.
SUMMARY_KEY = "train_runtime"


def claims(head: bytes) -> bool:
    """A JSON object whose first keys (sorted, as the Trainer writes them) include log_history."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and b'"log_history"' in head


def read_document(path: Path, doc, *, step=None):
    """``(meta, steps, columns)`` of a loaded trainer_state.json."""
    history = doc.get("log_history")
    if not isinstance(history, list):
        raise LogError(f"{path}: a JSON object with keys {listing(doc)}, read as a {WHAT}: its 'log_history' "
                       f"is {type(history).__name__}, not a list of records")
    key = step or "step"
    records = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise LogError(f"{path}: log_history[{i}] is {type(entry).__name__}; a record is a JSON object")
        if SUMMARY_KEY in entry:
            continue
        if key not in entry:
            raise LogError(f"{path}: log_history[{i}] has no {key!r} (it has: {listing(entry)}); "
                           "every record of a trainer_state.json names its step")
        records.append((f"[{i}]", entry[key], {k: v for k, v in entry.items() if k != key}))
    steps, columns = columns_of(path, records, "log_history")
    return {}, steps, columns
