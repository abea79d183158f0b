"""A labelled corpus of real training runs for the diagnosis (issue 13).

Each :class:`~benchmarks.corpus.case.Case` is a small real run (a minibatch CNN or MLP on
scikit-learn's bundled data sets, a tiny transformer or GRU language model on text that ships
with Python, an MLP regression, a NumPy lab problem), watched by a Monitor, with the verdict and
cause code it should get written down before the verdict was looked at, and, for a failure,
a twin: the run with the advice applied, which must end measurably better.
``benchmarks/bench_diagnose.py`` runs all of it; ``tests/test_diagnose_corpus.py`` a fast subset.
"""

from .case import HEALTHY, Case, Result, judge  # noqa: F401
from .cases import CASES  # noqa: F401
