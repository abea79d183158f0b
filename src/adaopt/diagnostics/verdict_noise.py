"""Noise-aware statistics of a loss series: how noisy it is, and whether it sits above its best.

A minibatch loss is a trend plus noise. The noise is estimated from the run itself, per window:
the residuals around a robust trend are the differences ``d_i = x_{i+L} - x_i`` at a lag of a
quarter of the window (a smooth trend moves them by a nearly constant amount, which the median
removes; the lag makes a slowly wandering loss, as momentum makes it, count as noise at the
scale of a window, not only from step to step), and

    sigma = 1.4826 * MAD(d) / sqrt(2)

(1.4826 MAD is the standard deviation of a normal sample; a difference of two draws has twice
the variance). The median of ``w`` values then has a standard error of about
``1.2533 * sigma / sqrt(w)``, and two windows' medians differ by noise alone by
``se = 1.2533 * sqrt(sigma_a^2 + sigma_b^2) / sqrt(w)`` if the noise were independent from step
to step. It is not always (a bouncing run wanders): the spread of the differences between
consecutive blocks' medians, ``1.4826 * MAD(diff(medians))``, measures the same thing with the
run's own correlation in it, and the larger of the two is used. A window is *significantly above*
another when the difference exceeds ``RISE_Z * se`` (and a small share of the level, so that a
noiseless run's last-bit wobble is no rise). The false-alarm rate of that test on the healthy
runs of the corpus is in docs/diagnostics.md.
"""

from __future__ import annotations

import math

import numpy as np

from .verdict_thresholds import RISE_MIN_SHARE, RISE_Z

#: Logs shorter than this take twice the standard errors in :func:`above_first`: the live check
#: asks at every step, and in a few values the noise estimate itself is rough.
SHORT_LOG = 20
#: 1.4826 MAD estimates a normal sigma; the median of n draws has a standard error 1.2533 sigma / sqrt(n).
MAD_SIGMA, MEDIAN_SE = 1.4826, 1.2533


def median(x) -> float:
    """``np.median`` of a 1-D array, the same bits (the mean of the middle two of an even count;
    NaN if any value is; float32 and float64, others by np.median), at a fraction of its cost on
    the short windows asked at every step:
    np.median took 20 us of its own on 20 values, most of what a live check cost."""
    x = np.asarray(x).ravel()
    if x.size > 64 or x.dtype not in (np.float64, np.float32):  # (its partition beats a sort on long
        return float(np.median(x))  # arrays; other dtypes it averages in float64)
    s = np.sort(x)
    n = s.size
    if n == 0 or s[-1] != s[-1]:  # (np.sort puts NaN last)
        return math.nan
    m = n // 2
    return float(s[m]) if n % 2 else float((s[m - 1] + s[m]) / 2)


def sigma(values: np.ndarray, lag: int | None = None) -> float:
    """The noise of a window: 1.4826 MAD of its differences at a lag of a quarter of the window
    (or ``lag``), over sqrt(2) (0 with fewer than 3 differences)."""
    lag = max(1, len(values) // 4) if lag is None else lag
    d = values[lag:] - values[:-lag]
    if len(d) < 3:
        return 0.0
    return MAD_SIGMA * median(np.abs(d - median(d))) / math.sqrt(2)


def between(medians) -> float:
    """The noise of the difference of two blocks' medians, from consecutive blocks: 1.4826 MAD
    of their differences (0 with fewer than 4 blocks)."""
    d = np.diff(np.asarray(medians, dtype=np.float64))
    if len(d) < 3:
        return 0.0
    return MAD_SIGMA * median(np.abs(d - median(d)))


def between_detrended(medians) -> float:
    """:func:`between` from second differences, ``m[i+1] - 2 m[i] + m[i-1]``, which a linear trend
    leaves at 0 (a slow descent's first differences spread with its curve): for independent block
    medians of variance v their variance is 6v, and a difference of two medians has 2v, so the
    noise is 1.4826 MAD of them over sqrt 3 (0 with fewer than 3 of them)."""
    m = np.asarray(medians, dtype=np.float64)
    d = m[2:] - 2 * m[1:-1] + m[:-2]
    if len(d) < 3:
        return 0.0
    return MAD_SIGMA * median(np.abs(d - median(d))) / math.sqrt(3)


#: The largest lag-one correlation :func:`inflation` credits (its factor is then 6.2).
MAX_PHI = 0.95


def inflation(values: np.ndarray) -> float:
    """How much the noise of a window's median exceeds the independent-noise figure, from the
    values' own correlation: fit AR(1) noise, ``e_t = phi e_(t-1) + u_t``, whose differences have
    a lag-one correlation ``r = -(1 - phi) / 2``, so ``phi = 1 + 2 r``; the variance of a long
    window's mean is then ``(1 + phi) / (1 - phi)`` times the independent figure, and the factor is
    its square root (1 with phi <= 0, at most ``MAX_PHI``'s 6.2). Differences ignore a trend (its
    slope is their median, taken out); they are clipped at 3 MADs so one spike does not set r.
    From a few hundred values the factor scatters widely where the correlation is strong (phi 0.8,
    300 values: 2.2-6.2 between the 10th and 90th percentiles around a true 3; it errs high more
    often than low), and stays near 1 on independent noise."""
    d = np.diff(np.asarray(values, dtype=np.float64))
    if len(d) < 20:
        return 1.0
    d = d - np.median(d)
    scale = MAD_SIGMA * float(np.median(np.abs(d)))
    if not scale > 0:
        return 1.0
    d = np.clip(d, -3 * scale, 3 * scale)
    r = float(np.dot(d[1:], d[:-1]) / np.dot(d, d))
    phi = min(max(1 + 2 * r, 0.0), MAX_PHI)
    return math.sqrt((1 + phi) / (1 - phi))


def blocks(values: np.ndarray, w: int) -> np.ndarray:
    """The series cut into consecutive blocks of ``w`` ending at its last value (the oldest
    values that do not fill a block are left out): shape (k, w)."""
    k = len(values) // w
    return values[len(values) - k * w:].reshape(k, w) if k else np.zeros((0, w))


def rise_from_best(values: np.ndarray, w: int):
    """Whether the last block of ``w`` values sits significantly above the best earlier block.

    Returns ``(recent, best, index of the best block, se)`` when it does, else None. ``values``
    are gaps above the floor (>= 0). The best block is the one with the lowest median among
    those before the last; the rise must exceed ``RISE_Z`` standard errors and
    ``RISE_MIN_SHARE`` of the larger of the best level and a hundredth of the first value.
    """
    b = blocks(values, w)
    if len(b) < 3:
        return None
    med = np.median(b, axis=1)
    i = int(np.argmin(med[:-1]))
    recent, best = float(med[-1]), float(med[i])
    se = max(MEDIAN_SE * math.hypot(sigma(b[-1]), sigma(b[i])) / math.sqrt(w), between(med[:-1]))
    scale = max(abs(best), 0.01 * abs(float(values[0])))
    if recent - best > RISE_Z * se and recent - best > RISE_MIN_SHARE * scale:
        return recent, best, i, se
    return None


def above_first(values: np.ndarray, w: int, min_values: int = 6) -> bool:
    """Whether the last ``w`` values' median sits above the start by more than the noise.

    The start is the median of the first 3 values (the first alone is one draw). The rise must
    exceed ``RISE_Z`` standard errors (twice that in logs shorter than ``SHORT_LOG``),
    ``1.2533 hypot(sigma_recent / sqrt(w), sigma_one / sqrt(3))``, with ``sigma_recent`` the last
    ``w`` values' :func:`sigma` and ``sigma_one`` the step-to-step noise of the first ``2w`` (their
    :func:`sigma` at lag 1: one draw's scatter, which a lag of a quarter window would average
    away when the loss wanders). A clean rise has no noise and always passes; a minibatch loss
    that starts on a low draw and jitters about a higher level does not. Under ``min_values``
    values (6, the fewest a verdict judges) the noise cannot be told from a trend: False."""
    if len(values) < min_values:
        return False
    start = float(np.median(values[:3]))
    se = MEDIAN_SE * math.hypot(sigma(values[-w:]) / math.sqrt(w), sigma(values[:2 * w], lag=1) / math.sqrt(3))
    z = RISE_Z if len(values) >= SHORT_LOG else 2 * RISE_Z  # a check looks at every step of a short log
    return float(np.median(values[-w:])) - start > z * se


def falling(values: np.ndarray) -> bool:
    """Whether a window still falls significantly: its second half's median is below its first
    half's by more than ``RISE_Z`` standard errors (a run coming back from a spike)."""
    h = len(values) // 2
    if h < 3:
        return False
    a, b = values[:h], values[h:]
    se = MEDIAN_SE * math.hypot(sigma(a), sigma(b)) / math.sqrt(h)
    return float(np.median(a) - np.median(b)) > RISE_Z * se


def alternating(values: np.ndarray, share: float) -> tuple[bool, float]:
    """Whether successive differences change sign more often than noise would: for independent
    noise a sign change has probability 2/3. True when the observed share is at least ``share``
    and a one-sided binomial test against 2/3 rejects at 1% (so a short log never qualifies)."""
    d = np.diff(values)
    d = d[d != 0]
    if len(d) < 3:
        return False, 0.0
    flips = np.sign(d[1:]) != np.sign(d[:-1])
    n, k = len(flips), int(flips.sum())
    frac = k / n
    if frac < share:
        return False, frac
    return binomial_tail(n, k, 2 / 3) < 0.01, frac


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in logs: the terms of a long log (n in the
    thousands) overflow a float as ``comb(n, j)`` and underflow as ``p ** j``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    i = np.arange(1, n + 1, dtype=np.float64)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log((n - i + 1) / i))])  # log C(n, j), j = 0..n
    j = np.arange(k, n + 1, dtype=np.float64)
    terms = log_comb[k:] + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(terms.max())
    return float(math.exp(top) * np.exp(terms - top).sum())
