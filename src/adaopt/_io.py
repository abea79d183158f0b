"""Files written atomically: a temporary file in the same folder, fsynced, renamed into place.

Every file adaopt writes (checkpoints, logs, reports, plots) goes through
:func:`atomic_write`, so a crash or a ``kill -9`` never leaves half a file where the
file should be. What a killed writer can leave is its temporary file,
``.adaopt.<pid>.<random>.tmp`` beside the target; the next write into that folder
removes those of processes that no longer run on this machine.

The temporary name is short and fixed in length, so a target whose name is close to
the file system's limit (255 bytes) can still be written.

:func:`strict_json` writes JSON that strict parsers (a browser's ``JSON.parse``, ``jq``)
read: a float that is not finite becomes ``null``, where Python's ``json`` writes
``Infinity`` or ``NaN``, which JSON does not have.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

_TEMP = re.compile(r"^\.adaopt\.(\d+)\.[0-9a-f]{12}\.tmp$")


def _finite(obj):
    """``obj`` with every float that is not finite (a diverged run, a verdict's inf ratio) as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def strict_json(obj, **kwargs) -> str:
    """``json.dumps(obj, **kwargs)`` with inf and NaN written as ``null``, so the text is JSON."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:  # an inf or NaN somewhere
        return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def atomic_write(path, data: bytes | str | Callable[[BinaryIO], None], *, fsync: bool = True) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function that writes to a binary file)
    to ``path`` atomically; return the path.

    Raises ``OSError`` as the file system does (a missing folder, no permission, a name
    too long); nothing is left behind then.
    """
    path = Path(path)
    folder = path.parent
    remove_stale_temps(folder)
    tmp = folder / f".adaopt.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def remove_stale_temps(folder) -> int:
    """Remove temporary files of writers that were killed (their process is gone); return
    how many. Never raises: a folder that cannot be listed is left as it is."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        m = _TEMP.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a pid we cannot ask about): leave its file
    return True
