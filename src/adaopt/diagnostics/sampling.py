"""Which coordinates the monitor reads: a few contiguous blocks of every tensor it watches,
copied into one sample vector, and the thinned copy of them the state summary reads."""

from __future__ import annotations

import numpy as np

#: About how many coordinates the state summary reads (a thinned copy of the sample).
SUMMARY_SAMPLE = 256


class Sample:
    """The sampled coordinates of tensors of ``sizes`` coordinates, about ``sample`` in all.

    ``spans[i]`` are the blocks ``(start, end)`` read of tensor ``i``; the sample vector
    holds them in order (``size`` coordinates, tensor ``i``'s at ``where[i]``, taken from its
    positions ``index[i]``). The state summary reads every ``thin``-th coordinate of each
    block: ``thin_index`` are their positions in the sample vector.
    """

    def __init__(self, sizes: list[int], sample: int):
        total = sum(sizes)
        self.spans = [spans(m, sample, total) for m in sizes]
        self.size = sum(b - a for blocks in self.spans for a, b in blocks)
        self.thin = max(1, self.size // SUMMARY_SAMPLE)
        self.thin_index = thin_index(self.spans, self.thin)
        self.index = [np.concatenate([np.arange(a, b) for a, b in blocks]) for blocks in self.spans]
        ends = np.cumsum([0] + [len(i) for i in self.index])
        self.where = list(zip(ends[:-1], ends[1:]))

    def take(self, flats, out=None) -> np.ndarray:
        """The sampled coordinates of flat arrays, as one float64 vector (written into ``out``)."""
        if out is None:
            out = np.empty(self.size)
        if len(flats) == 1 and isinstance(flats[0], np.ndarray):
            np.take(flats[0], self.index[0], out=out) if flats[0].dtype == np.float64 else \
                np.copyto(out, flats[0][self.index[0]])
            return out
        for f, index, (lo, hi) in zip(flats, self.index, self.where):
            # a tensor without a gradient this step (frozen, unused) is not stepped: its
            # gradient counts as zero, as its update is
            out[lo:hi] = 0.0 if f is None else f[index]
        return out


def gather(a: np.ndarray, spans, thin: int) -> np.ndarray:
    """Every ``thin``-th coordinate of the blocks ``spans`` of a flat array, as float64."""
    if len(spans) == 1:
        lo, hi = spans[0]
        return a[lo:hi:thin].astype(np.float64)
    return np.concatenate([a[lo:hi:thin] for lo, hi in spans], dtype=np.float64)


def thin_index(spans_per_tensor, thin: int) -> np.ndarray:
    """Positions in the sample vector of the coordinates the state summary reads."""
    out, at = [], 0
    for blocks in spans_per_tensor:
        for a, b in blocks:
            out.append(np.arange(at, at + (b - a), thin))
            at += b - a
    return np.concatenate(out) if out else np.zeros(0, dtype=np.intp)


def spans(m: int, sample: int, total: int) -> list[tuple[int, int]]:
    """Which coordinates of a flat tensor of ``m`` the monitor reads: all of them when the
    model has at most ``sample`` in all, else its share of ``sample`` in up to 4 contiguous
    blocks spread evenly over the tensor (contiguous reads cost far less than a stride)."""
    if total <= sample:
        return [(0, m)]
    share = min(m, max(1, round(sample * m / total)))
    blocks = min(4, max(1, share // 256))
    length = share // blocks
    starts = np.linspace(0, m - length, blocks).astype(int)
    return [(int(a), int(a) + length) for a in starts]
