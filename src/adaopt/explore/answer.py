"""How much of each run ``/api/run`` sends: every number in full, or what the page shows.

By default the answer holds every double as adaopt computed it (``repr`` round-trips, so
the trajectories equal the lab's sweep bit for bit) and every state buffer. A request may
ask for less, which is what the page does, since a slider move re-sends every step:

``"digits": d`` (an integer from :data:`MIN_DIGITS` to 17)
    every per-step number rounded to ``d`` significant digits (the page asks for 6, the
    digits it prints). Rounding ``a`` with decimal exponent :math:`e = \\lfloor\\log_{10}|a|\\rfloor`
    is :math:`r = \\mathrm{rint}(a\\,10^{k}) / 10^{k}` with :math:`k = d - 1 - e`: for
    :math:`0 \\le k \\le 22` the power of ten is exact and the division correctly rounded, so
    ``r`` is the double nearest the ``d``-digit decimal and JSON writes it with at most
    ``d`` digits; :math:`|r - a| \\le \\tfrac12 10^{e-d+1} \\le \\tfrac12 10^{1-d} |a|`. Other
    exponents (:math:`|a| \\ge 10^{d}` or tiny values) are rounded one by one by Python's
    ``format``. The answer shrinks to about a third and encodes and decodes faster.
``"state": [symbols]``
    only those buffers, in the lesson's symbols (the page asks for ``["G"]``: AdaGrad's
    accumulator, the one buffer it draws); ``true`` (the default) sends every buffer.
"""

from __future__ import annotations

import numpy as np

from .. import hyper, registry
from .problems import InputError

MIN_DIGITS = 3
#: The lesson's symbols of every rule's buffers, what ``"state"`` may list.
SYMBOLS = tuple(sorted({s for f in registry.FAMILIES.values() for s in getattr(f.rule, "SYMBOLS", {}).values()}))


def options(req: dict) -> tuple:
    """``(digits or None, the set of symbols to send or None for all)`` of a request."""
    digits = req.get("digits")
    if digits is not None and not (isinstance(digits, int) and not isinstance(digits, bool)
                                   and MIN_DIGITS <= digits <= 17):
        raise InputError(f"digits={hyper.short_repr(digits)} is invalid: allowed null (full precision) "
                         f"or an integer >= {MIN_DIGITS} and <= 17")
    state = req.get("state", True)
    if state is True:
        return digits, None
    if not isinstance(state, list) or not all(isinstance(s, str) and s in SYMBOLS for s in state):
        raise InputError(f"state={hyper.short_repr(state)} is invalid: allowed true (every buffer) or a list "
                         f"of the symbols {', '.join(SYMBOLS)}")
    return digits, set(state)


def rounded(a: np.ndarray, digits: int) -> np.ndarray:
    """``a`` (float64) with each finite value rounded to ``digits`` significant digits (see the module)."""
    a = np.asarray(a, dtype=np.float64)
    out = a.copy()
    mag = np.abs(a)
    ok = np.isfinite(a) & (mag > 0)
    with np.errstate(all="ignore"):
        e = np.floor(np.log10(np.where(ok, mag, 1.0)))
        e -= mag < 10.0 ** e  # log10 a hair off at a power of ten
        e += mag >= 10.0 ** (e + 1)
    k = digits - 1 - e
    fast = ok & (k >= 0) & (k <= 22)
    scale = 10.0 ** np.where(fast, k, 0)
    out[fast] = np.rint(a[fast] * scale[fast]) / scale[fast]
    for i in np.flatnonzero(ok & ~fast):
        out.flat[i] = float(f"{a.flat[i]:.{digits}g}")
    return out


def shaped(a: np.ndarray, digits: int | None) -> np.ndarray:
    """``a`` as sent: as it is for full precision, else :func:`rounded`."""
    return a if digits is None else rounded(a, digits)

