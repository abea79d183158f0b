"""The runs the explorer computed lately, so a slider that moves one optimizer's lr recomputes that one.

A run is a function of its surface, start, steps, optimizer and hyperparameters alone: the
rows of a batch never mix (the surfaces are evaluated row by row, elementwise), so a run
taken from an earlier batch equals the same run computed in this one, bit for bit
(``tests/test_explore.py`` checks it). Moving lr, momentum or the betas changes one or two
rows of six; the others come from here. A click on the map, ``steps`` or the preset
change every row, and all are computed. At most :data:`MAX_RUNS` runs are kept (about 160 KB
each at 500 steps, 0.6 MB at 2000), the least recently used dropped first; the server's threads
share them under a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

#: The most runs kept: two dozen slider positions of six optimizers.
MAX_RUNS = 144


class Recent:
    """A bounded, thread-safe map from a run's inputs to the finished run (its verdict included)."""

    def __init__(self, size: int = MAX_RUNS):
        self.size, self._runs, self._lock = size, OrderedDict(), threading.Lock()

    @staticmethod
    def key(problem, start, steps: int, name: str, hp: dict) -> tuple:
        """What a run depends on: the surface (a typed f by its text), start, steps, optimizer and hp."""
        return (problem.name, problem.title, tuple(map(float, start)), steps, name, repr(sorted(hp.items())))

    def get(self, key):
        with self._lock:
            run = self._runs.get(key)
            if run is not None:
                self._runs.move_to_end(key)
            return run

    def put(self, key, run) -> None:
        with self._lock:
            self._runs[key] = run
            self._runs.move_to_end(key)
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()

    def __len__(self) -> int:
        return len(self._runs)
