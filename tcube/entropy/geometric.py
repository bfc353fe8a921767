"""Two-sided geometric (discrete Laplace) tables for prediction residuals, built in integers.

Table ``j`` gives value ``v`` a frequency proportional to ``ratio_j ** |v|`` over a finite support
(an escape beyond it). The frequencies come from integer recurrences on 16-bit fixed-point ratios,
so every machine builds bit-identical tables without storing them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tcube.entropy.tables import TableSet

#: Mean absolute values the tables are built for: geometric from 1/8 to 4096 steps, then (tables 46 on,
#: which streams of format 10 may use) from 1/10 down to 1/256: a value that is nearly always zero (a large
#: error bound on smooth data) then costs 0.01-0.3 bits instead of at least 0.32. Append only: a table's
#: index never changes meaning.
SCALES = tuple(2.0 ** (k / 3) for k in range(-9, 37)) + tuple(2.0 ** (k / 3) for k in range(-10, -25, -1))
#: Most entries on either side of zero in one table.
MAX_SUPPORT = 8191
_ONE = 1 << 16
_TOP = 1 << 40


def _ratio(scale: float) -> int:
    """16-bit fixed-point ratio of the geometric law whose mean absolute value is about ``scale``."""
    theta = scale / (1.0 + scale) if scale < 1 else math.exp(-1.0 / scale)
    return min(_ONE - 1, max(1, round(_ONE * theta)))


def _frequencies(ratio: int) -> np.ndarray:
    """Integer frequencies of 0, 1, 2... until they fall below one part in 2**40, or the support ends."""
    freq = [_TOP]
    while len(freq) <= MAX_SUPPORT and freq[-1] > 1 << 4:
        freq.append(freq[-1] * ratio >> 16)
    return np.array(freq, dtype=np.float64)


@functools.cache
def geometric_tables() -> TableSet:
    """One zero-centred table per entry of :data:`SCALES` (built once per process).

    Examples
    --------
    >>> ts = geometric_tables()
    >>> ts.n_tables == len(SCALES), ts.support(0)
    (True, (-12, 12))
    """
    pmfs, offsets, escapes = [], [], []
    for scale in SCALES:
        ratio = _ratio(scale)
        one_side = _frequencies(ratio)
        both = np.concatenate([one_side[:0:-1], one_side])
        tail = 2.0 * one_side[-1] * ratio / (_ONE - ratio)  # both tails beyond the support
        total = both.sum() + tail
        pmfs.append(both / total)
        offsets.append(-(len(one_side) - 1))
        escapes.append(max(tail / total, 2.0**-24))
    return TableSet.from_pmfs(pmfs, offsets, escapes)


@functools.cache
def geometric_costs(largest: int = 1 << 12) -> np.ndarray:
    """Bits of coding ``|v|`` = 0..``largest`` (the sign included) with each table, (tables, largest + 1);
    values beyond a table's support cost its escape plus 32 raw bits."""
    ts = geometric_tables()
    out = np.empty((ts.n_tables, largest + 1))
    v = np.arange(largest + 1)
    for t in range(ts.n_tables):
        pmf = ts.table(t).astype(np.float64)
        lo, hi = ts.support(t)
        inside = v <= hi
        bits = np.full(largest + 1, -np.log2(pmf[-1]) + 32.0)
        bits[inside] = -np.log2(pmf[v[inside] - lo])
        out[t] = bits
    return out
