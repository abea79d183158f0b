"""Diagnostics: is a run diverging, oscillating, stalled, slow or converging, and why.

>>> from adaopt.diagnostics import Monitor, diagnose
>>> mon = Monitor(optimizer)            # doctest: +SKIP
>>> ...; mon.log(loss); optimizer.step(...)   # doctest: +SKIP
>>> print(mon.diagnose())               # doctest: +SKIP

:class:`Monitor` records cheap signals without changing any update;
:func:`diagnose` turns a run's :class:`History` (or a CSV/JSONL log) into a
:class:`Diagnosis`: a verdict, its cause in words, the evidence and advice.
``docs/diagnostics.md`` lists every signal and threshold.
"""

from .history import History, LogError, LogWarning, read_log
from .monitor import Monitor, StopTraining
from .verdict import ALARMS, VERDICTS, Diagnosis, diagnose

__all__ = ["ALARMS", "VERDICTS", "Diagnosis", "History", "LogError", "LogWarning", "Monitor", "StopTraining", "diagnose",
           "read_log"]
from .lr_find import LRFindResult, lr_find  # noqa: E402

__all__ += ["LRFindResult", "lr_find"]
