"""Copies in the residual layer: values that repeat a decoded neighbour, within the bound.

A band resampled with nearest neighbour onto another grid (what odc-stac and stackstac deliver
with ``resampling="nearest"``: a 20 m band on a 10 m web-mercator grid comes in runs of 2 and 3
equal pixels at every alignment, with staircase edges) repeats its neighbours far more often than
any linear predictor can say. A pass of :mod:`tcube.residual` in copy mode codes, per value, a
symbol: which of its four nearest decoded neighbours (the pass's first four) it repeats, the first
of them within the bound, or :data:`ESCAPE`, after which the value is coded as in any pass.

A pass's symbols are coded in two halves (:func:`halves`): those on the even rows of its grid,
then those on the odd rows. A symbol's context is the pattern of equal values among its four
neighbours (:data:`PATTERNS` of them), in the second half the symbol the ones above and below it
agree on where they do (:func:`agreement`: resampling repeats rows and columns, so neighbouring
values repeat the same way), or, where the band's copy reference (an earlier band, the encoder's choice)
coded the same pass in copy mode, that band's symbol at the same place: bands resampled from the
same grid repeat the same neighbours. Probabilities are counted by the encoder and sent per band,
kind of pass and context, in half-bit steps of their logarithm (:func:`quantised_counts`).

Examples
--------
>>> cands = np.array([[5, 5], [7, 5], [5, 5], [9, 6]])  # two values' four neighbours (columns)
>>> symbols(np.array([7, 6]), cands, 0).tolist(), patterns(cands).tolist()
([1, 3], [7, 1])
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from tcube import residual_kernels as kernels
from tcube.entropy.tables import TableSet

#: Neighbours a value may repeat (a pass's first four: its nearest decoded ones).
NEIGHBOURS = 4
#: The symbol of a value that repeats none of them.
ESCAPE = NEIGHBOURS
SYMBOLS = NEIGHBOURS + 1
#: Patterns of equal values among four neighbours (the partitions of four things).
PATTERNS = 15
#: Contexts of a symbol: the patterns, the reference band's symbol, then (second half) the symbol
#: that the ones above and below agree on.
CONTEXTS = PATTERNS + SYMBOLS + SYMBOLS
#: Where a band's symbol grid has no symbol (a pixel it does not code, or a pass not in copy mode).
NONE = 255
#: Largest quantised log-count (:func:`quantised_counts`): counts up to 2**31.
MAX_COUNT_CODE = 63
_PAIRS = tuple(itertools.combinations(range(NEIGHBOURS), 2))


@functools.cache
def pattern_lut() -> np.ndarray:
    """Pattern index (0..14) of each 6-bit code of pairwise equalities (bit k: pair ``_PAIRS[k]``)."""
    lut = np.zeros(1 << len(_PAIRS), np.uint8)
    labels: list[tuple[int, ...]] = []
    for rgs in itertools.product(range(NEIGHBOURS), repeat=NEIGHBOURS):  # restricted growth strings
        if all(rgs[i] <= max(rgs[:i], default=-1) + 1 for i in range(NEIGHBOURS)):
            labels.append(rgs)
    for index, rgs in enumerate(labels):
        lut[sum((rgs[a] == rgs[b]) << k for k, (a, b) in enumerate(_PAIRS))] = index
    return lut


def candidates(neighbours: list[np.ndarray], nodata: int | None) -> np.ndarray:
    """The four nearest decoded neighbours (4, n) as int64; those equal to the no-data value (which
    no valid value may become) moved out of every bound's reach.

    Examples
    --------
    >>> candidates([np.array([3, 0])] * 4, 0)[:, 1].tolist()[0] < -2**40
    True
    """
    cands = np.stack([np.asarray(f, np.int64).reshape(-1) for f in neighbours[:NEIGHBOURS]])
    if nodata is not None:
        far = np.int64(-(1 << 41)) - np.arange(NEIGHBOURS, dtype=np.int64)[:, None] * (1 << 36)
        cands = np.where(cands == nodata, far, cands)
    return cands


def symbols(target: np.ndarray, cands: np.ndarray, bound: int) -> np.ndarray:
    """Per value, the first neighbour within ``bound`` of it, or :data:`ESCAPE` (uint8)."""
    near = np.abs(cands - np.asarray(target, np.int64)[None]) <= bound
    return np.where(near.any(0), near.argmax(0), ESCAPE).astype(np.uint8)


def patterns(cands: np.ndarray) -> np.ndarray:
    """Per value, the pattern of equal values among its four neighbours (0: all equal, 14: all differ;
    the partitions in the order of their restricted growth strings)."""
    code = np.zeros(cands.shape[1], np.int64)
    for k, (a, b) in enumerate(_PAIRS):
        code |= (cands[a] == cands[b]).astype(np.int64) << k
    return pattern_lut()[code]


def contexts(pattern: np.ndarray, reference: np.ndarray | None, agree: np.ndarray | None = None) -> np.ndarray:
    """Context of each symbol: the reference band's symbol where it has one, else (second half) the
    symbol of ``agree`` (:func:`agreement`) where there is one, else the pattern."""
    own = pattern.astype(np.int64)
    if agree is not None:
        own = np.where(agree == SYMBOLS, own, PATTERNS + SYMBOLS + agree)
    if reference is None:
        return own
    return np.where(reference == NONE, own, PATTERNS + reference.astype(np.int64))


def halves(where: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The places on a pass's grid (``columns`` wide) of its values (``where``: the grid's valid
    places, row by row), and which of the values lie on its even rows (coded first) and odd rows.

    Examples
    --------
    >>> [a.tolist() for a in halves(np.array([1, 1, 0, 1, 1, 1], bool), 2)]
    [[0, 1, 3, 4, 5], [0, 1, 3, 4], [2]]
    """
    places = np.flatnonzero(where)
    odd = (places // columns) % 2 == 1
    return places, np.flatnonzero(~odd), np.flatnonzero(odd)


def agreement(grid: np.ndarray, columns: int, places: np.ndarray) -> np.ndarray:
    """For values at ``places`` on odd rows of a pass's grid: the symbol above them (in ``grid``, the
    first half's symbols, :data:`NONE` elsewhere) where the one below is the same, else :data:`SYMBOLS`.

    Examples
    --------
    >>> grid = np.array([2, 0, NONE, NONE, 2, 1], np.uint8)  # three rows of two
    >>> agreement(grid, 2, np.array([2, 3])).tolist()
    [2, 5]
    """
    above = grid[places - columns]
    below_place = places + columns
    below = np.where(below_place < grid.size, grid[np.minimum(below_place, grid.size - 1)], NONE)
    return np.where((above == below) & (above != NONE), above, SYMBOLS).astype(np.int64)


def quantised_counts(counts: np.ndarray) -> np.ndarray:
    """Counts of the symbols (..., 5) as sent: 0 for none, else 1 + 2 log2(count), rounded.

    Examples
    --------
    >>> quantised_counts(np.array([0, 1, 2, 1000, 3])).tolist()
    [0, 1, 3, 21, 4]
    """
    counts = np.asarray(counts, np.float64)
    with np.errstate(divide="ignore"):
        code = 1 + np.round(2 * np.log2(np.maximum(counts, 1)))
    return np.where(counts > 0, np.minimum(code, MAX_COUNT_CODE), 0).astype(np.int64)


def count_tables(codes: np.ndarray) -> TableSet:
    """One table of the five symbols per row of quantised counts (what the decoder rebuilds)."""
    codes = np.asarray(codes, np.int64).reshape(-1, SYMBOLS)
    weights = np.where(codes > 0, np.exp2((codes - 1) / 2.0), 0.0)
    pmfs = [w / w.sum() if w.sum() > 0 else np.full(SYMBOLS, 1.0 / SYMBOLS) for w in weights]
    return TableSet.from_pmfs(pmfs, [0] * len(pmfs))


def entropy_bits(values: np.ndarray, context: np.ndarray) -> float:
    """Bits of coding ``values`` with an ideal table per ``context`` (the encoder's estimate).

    Examples
    --------
    >>> entropy_bits(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])), entropy_bits(np.array([0, 1]), np.array([0, 1]))
    (4.0, 0.0)
    """
    values, context = np.asarray(values, np.int64).ravel(), np.asarray(context, np.int64).ravel()
    if values.size == 0:
        return 0.0
    return float(kernels.entropy_bits(values, context - context.min()))
