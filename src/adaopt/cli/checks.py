"""What the ``adaopt`` commands check before any work: numbers, names, files and folders.

Each check either returns what the command needs or stops it with ``error: ...`` on stderr
and exit status 2, naming the option and the problem; no traceback reaches the user.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Optional

import typer


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def count(lo: int, hi: Optional[int] = None):
    """A typer callback that refuses an integer option outside ``lo``..``hi``, echoing the value
    and the range (typer's own message says neither)."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: Optional[int]) -> Optional[int]:
        if value is not None and (value < lo or hi is not None and value > hi):
            allowed = f"{lo} to {hi}" if hi is not None else f"{lo} or more"
            raise typer.BadParameter(f"{value} is out of range: allowed {allowed}")
        return value

    return check


def short(text: str, width: int = 60) -> str:
    """``repr(text)`` for a one-line message, shortened when ``text`` is long."""
    return repr(text) if len(text) <= width else repr(text[:width - 20]) + f"... ({len(text)} characters)"


def floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        fail(f"{what}={text!r}: expected a number or comma-separated numbers")
    if not all(math.isfinite(v) for v in values):
        fail(f"{what}={text!r}: allowed finite numbers only (not nan, inf or out of float range)")
    return values


#: The formats ``lr-find --plot`` writes, by file suffix.
PLOT_FORMATS = ("png", "pdf", "svg")



def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long, a loop of links: it cannot be there
        return False


def _name_problem(path: Path) -> Optional[str]:
    """Why the file system will not take ``path`` as a name (a part of it, or the whole,
    longer than it allows), or None; asked of the nearest folder that exists."""
    anchor = path.absolute()
    while not _exists(anchor) and anchor != anchor.parent:
        anchor = anchor.parent
    try:
        name_max, path_max = os.pathconf(anchor, "PC_NAME_MAX"), os.pathconf(anchor, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the common limits
        name_max, path_max = 255, 4096
    for part in path.parts:
        size = len(os.fsencode(part))
        if name_max and name_max > 0 and size > name_max:
            shown = repr(part) if len(part) <= 40 else repr(part[:20]) + "..."
            return f"the name {shown} is {size} bytes long; the file system allows {name_max}"
    size = len(os.fsencode(str(path)))
    if path_max and path_max > 0 and size >= path_max:
        return f"the path is {size} bytes long; the file system allows {path_max - 1}"
    return None


def _require_writable(given: str, folder: Path) -> None:
    """Fail naming ``given`` (``--out='x'``) unless a file can be created in ``folder``:
    tried, not guessed. The trial file's name is short, whatever the folder's."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".adaopt-check-")
    except OSError as exc:
        fail(f"{given}: cannot write in {short(str(folder))} ({exc.strerror or exc})")
    os.close(fd)
    os.unlink(name)


def check_out_dir(out: Optional[str]) -> None:
    """Fail before any work unless the report folder ``out`` exists and is writable, or can be made."""
    if out is None:
        return
    given = f"--out={short(out)}"
    if not out.strip():
        fail(f"{given}: give a folder for the report (it is created if needed)")
    path = Path(out)
    problem = _name_problem(path)
    if problem:
        fail(f"{given}: cannot make the folder: {problem}")
    try:
        if path.exists() and not path.is_dir():
            fail(f"{given} is a file: give a folder for the report (it is created if needed)")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            fail(f"{given}: cannot create the folder, {short(str(existing))} is a file")
    except OSError as exc:
        fail(f"{given}: cannot use it ({exc.strerror or exc})")
    _require_writable(given, existing)


def check_plot(plot: Optional[str]) -> Optional[tuple[Path, str]]:
    """The file and format ``--plot`` will write (``lr-find``, ``diagnose``); fails before any work
    when it cannot."""
    if plot is None:
        return None
    given = f"--plot={short(plot)}"
    allowed = ", ".join("." + f for f in PLOT_FORMATS)
    if not plot.strip():
        fail(f"{given}: give a file name ending in {allowed}")
    path = Path(plot)
    try:
        folder_given = plot.endswith(("/", "\\")) or path.is_dir()  # (not "folder.png" beside it)
    except OSError:  # a name too long, ...: said below, with the name's own problem
        folder_given = False
    if folder_given:
        fail(f"{given} is a folder: give a file name ending in {allowed}")
    fmt = path.suffix[1:].lower()
    if not fmt:  # no suffix: a PNG, and the name says so
        path, fmt = path.with_name(path.name + ".png"), "png"
    elif fmt not in PLOT_FORMATS:
        fail(f"{given}: unsupported format {short(path.suffix, 20)}; allowed: {allowed}")
    problem = _name_problem(path)
    if problem:
        fail(f"{given}: cannot write the plot: {problem}")
    folder = path.parent
    try:
        if path.is_dir():
            fail(f"{given} is a folder: give a file name ending in {allowed}")
        if folder.exists() and not folder.is_dir():
            fail(f"{given}: {short(str(folder))} is a file, not a folder")
        if not folder.is_dir():
            fail(f"{given}: the folder {short(str(folder))} does not exist")
    except OSError as exc:
        fail(f"{given}: cannot use it ({exc.strerror or exc})")
    _require_writable(given, folder)
    return path, fmt


def check_log(log: str) -> None:
    """Fail naming ``log`` when it cannot be a log: a name too long, a folder, binary data.
    What is wrong inside a text log, read_log says."""
    path = Path(log)
    problem = _name_problem(path)
    if problem:
        fail(f"{short(log)}: cannot read it: {problem}")
    try:
        if path.is_dir():
            return  # a log folder (Lightning's version_N, a TensorBoard run): read_log looks inside
        if not path.is_file():
            return  # missing, a device, a pipe: read_log says so (and a pipe is not read here)
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        fail(f"{log}: cannot read it ({exc.strerror or exc})")
    binary_log = path.name.startswith("events.out.tfevents.")  # TensorBoard's events are binary
    if b"\x00" in head and not binary_log and not head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: read_log
        fail(f"{log}: not a text log (byte {head.index(0) + 1} is a NUL byte; a log is UTF-8 text); "
              "give a CSV or JSON Lines file")


def names_in(text: Optional[str], known, what: str) -> Optional[list[str]]:
    """The comma-separated names in ``text``; ``what`` is how the user gave them (``--problems``, ``PROBLEM``)."""
    if text is None:
        return None
    parts = [v.strip() for v in text.split(",")]
    names = [v for v in parts if v]
    if not names:
        fail(f"{what}={text!r}: no names given; choose one or more, comma-separated, from {', '.join(known)}")
    if len(names) != len(parts):  # "sgd," or "sgd,,adam": a name left out?
        fail(f"{what}={text!r}: an empty name between commas; choose from {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        fail(f"{what}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        fail(f"{what}={text!r}: {', '.join(map(repr, twice))} given twice; name each once")
    return names
