"""A folder given as a log: the file (or TensorBoard run folder) in it that tools write.

In order: a ``trainer_state.json`` (Hugging Face), a ``metrics.csv`` (Lightning's
CSVLogger), event files (a TensorBoard run); then, in the layouts tools make, the newest
of Lightning's ``version_N`` folders, of Hugging Face's ``checkpoint-N`` folders, or of
TensorBoard runs (by the time their events were last written), looking inside a
``lightning_logs`` folder. What was picked, among what, is said (``note``).
"""

from __future__ import annotations

import re
from pathlib import Path

from .checks import LogError
from .columns import listing
from .tensorboard import PREFIX

#: The files a folder is read by, in the order they are looked for.
FILES = ("trainer_state.json", "metrics.csv")
_NUMBERED = {"version": re.compile(r"^version_(\d+)$"), "checkpoint": re.compile(r"^checkpoint-(\d+)$")}
_DEPTH = 4


def resolve(path: Path, depth: int = 0):
    """``(what to read, note)``: a file or a TensorBoard run folder, and a sentence saying
    which one was picked when there was a choice (else None). A LogError if none."""
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        raise LogError(f"{path}: cannot list the folder ({exc.strerror or exc})") from None
    names = {e.name: e for e in entries}
    for name in FILES:
        if name in names and names[name].is_file():
            return names[name], None
    if any(e.name.startswith(PREFIX) and e.is_file() for e in entries):
        return path, None
    if depth < _DEPTH:
        for kind, pattern in _NUMBERED.items():
            numbered = sorted(((int(m.group(1)), e) for e in entries if e.is_dir() and (m := pattern.match(e.name))),
                              key=lambda t: t[0])
            found = _newest(numbered, depth)
            if found:
                return found
        if "lightning_logs" in names and names["lightning_logs"].is_dir():
            return resolve(names["lightning_logs"], depth + 1)
        runs = [(t, e) for e in _subfolders(path, names) if (t := _events_time(e)) is not None]
        runs.sort(key=lambda t: t[0])
        if runs:
            note = f"read {runs[-1][1]}, the TensorBoard run written last" + (
                f" (of {len(runs)}: {listing(e.name for _, e in runs)})" if len(runs) > 1 else "")
            return runs[-1][1], note if len(runs) > 1 else None
    raise LogError(f"{path}: is a directory without a log (it holds: {listing(names) or 'nothing'}); a log folder "
                   "holds trainer_state.json, metrics.csv or events.out.tfevents.* files, or Lightning's "
                   "version_N, Hugging Face's checkpoint-N or TensorBoard run folders")


def _newest(numbered, depth):
    """The newest of ``[(N, folder)]`` that holds a log, and the note saying so."""
    for n, folder in reversed(numbered):
        try:
            target, inner = resolve(folder, depth + 1)
        except LogError:
            continue
        skipped = [e.name for m, e in numbered if m > n]
        note = f"read {folder.name}, the newest of {len(numbered)} ({listing(e.name for _, e in numbered)})"
        if skipped:
            note += f"; {', '.join(skipped)} hold no log"
        return target, (note if len(numbered) > 1 else inner)
    return None


def _subfolders(path: Path, names):
    folders = [e for e in names.values() if e.is_dir()]
    if "runs" in names and names["runs"].is_dir():  # Hugging Face's output_dir/runs/<date>_<host>
        folders += [e for e in names["runs"].iterdir() if e.is_dir()]
    return folders


def _events_time(folder: Path):
    """When the newest event file in ``folder`` was written; None if it holds none."""
    times = [e.stat().st_mtime for e in folder.iterdir() if e.name.startswith(PREFIX) and e.is_file()]
    return max(times) if times else None
