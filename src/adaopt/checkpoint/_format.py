"""What an adaopt checkpoint is called and how large it may be, and the error for one that cannot be loaded.

Shared by the writer (:mod:`adaopt.checkpoint`), the member reader
(:mod:`adaopt.checkpoint._npz`) and the index checks (:mod:`adaopt.checkpoint._schema`,
:mod:`adaopt.checkpoint._expect`); all of it is re-exported by :mod:`adaopt.checkpoint`.
"""

from __future__ import annotations

FORMAT = "adaopt-checkpoint"
VERSION = 1

#: The largest ``__meta__`` accepted, in bytes (a checkpoint of 100,000 arrays needs ~10 MB).
MAX_META_BYTES = 64 * 2**20
#: Compressed members (``save`` never writes any; ``np.savez_compressed`` does) may inflate
#: to at most this many bytes in all, or 16 times the file's size if that is more. Stored
#: members hold their bytes in the file itself, so they are bounded by its size.
MAX_INFLATED_BYTES = 256 * 2**20
INFLATION_RATIO = 16


class CheckpointError(ValueError):
    """A checkpoint or state_dict that cannot be loaded, and why."""

    __module__ = "adaopt.checkpoint"  # the name it is raised, caught and documented under


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, so a hostile file cannot flood an error message."""
    return text if len(text) <= limit else text[:limit] + "..."
