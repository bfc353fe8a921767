"""Error-bounded residual layer over a decoded base: every valid value ends within ``max_error``.

A frame (bands, height, width) of integers is coded band after band, each band in passes over a
pyramid of its pixels (:func:`passes`): a coarse grid first, then, level by level, the centres
and edges of its squares. A value is predicted from the decoded base (the learned codec's
output), the neighbours of its band that earlier passes decoded and two earlier bands (the
encoder's choice) at the same place, with their prediction errors there, by a fixed-point linear
predictor that the encoder fits per band and pass (its coefficients travel in the stream, as
coarse as the pass affords). A band resampled from a coarser grid gets wide neighbourhoods on
the finest level (:func:`wide_passes`, :func:`wide_bands`). The prediction error is quantised
with step ``2 E + 1``, so the decoded value is within ``E`` of the original (``E = 0``:
lossless), and range coded with two-sided geometric tables chosen per band and context. The
context is the local activity in quantiser steps (spread of the neighbours around the
prediction, the previous band's error at the same place): the encoder picks the best table per
band, kind of pass and context and stores the choice.

A band whose valid values all lie on a lattice ``offset + k x spacing`` (data stored at a
coarser precision) is coded in lattice units with the bound ``E // spacing`` (:func:`lattices`).

Everything is integer arithmetic (numpy, and the compiled per-pass kernels of
:mod:`tcube.residual_kernels`), so the decoded values are the same on every machine, thread count
and device. Values the reconstruction would turn into the no-data value are kept
exactly in a short list. Pixels outside ``valid`` are neither coded nor changed.
"""

from __future__ import annotations

import functools
import itertools
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tcube import residual_copies as copies
from tcube import residual_kernels as kernels
from tcube.entropy.coder import SymbolReader, SymbolWriter
from tcube.entropy.geometric import SCALES, geometric_costs, geometric_tables
from tcube.entropy.tables import TableSet
from tcube.errors import CorruptBlobError, SymbolChecksumError
from tcube.residual_kernels import FRAC

#: Most levels of the pyramid of passes, and the least size of its coarsest grid.
MAX_LEVELS = 4
MIN_COARSE = 8
#: Least pixels of a pass (above the finest level) whose neighbours are separate features of the
#: prediction (fewer pixels cannot pay for the coefficients).
APART_PIXELS = 1024
#: Previous bands a prediction looks at.
SPECTRAL = 2
#: Activity contexts per band and kind of pass (the finest level, the coarser ones).
CONTEXTS = 20
_COEF_LIMIT = (1 << 15) - 1
_HEAD = struct.Struct("<IIBB")  # CRC32 of the decoded values, count of kept values, side information tables
#: Table of the reference band numbers (mean about 4) and of the neighbourhood choices.
_REF_TABLE = 15
#: Reach (pixels) of the wide neighbourhoods of the finest level: its centres, then its edges.
WIDE_REACH = (5, 3)
#: Least saving (bits per pixel of the band) that makes a band use its wide neighbourhoods.
WIDE_MARGIN = 0.1
#: The stream layout :func:`encode_frame` writes (the container format version that brought it).
LAYOUT = 10
#: The first layout with passes in copy mode (:mod:`tcube.residual_copies`).
COPY_LAYOUT = 10
#: Bits the encoder counts for each context table a pass in copy mode needs (five quantised counts).
_COPY_TABLE_BITS = 24
#: Values of an even sample of a pass that first tells whether copy mode may pay.
COPY_SAMPLE = 4096
#: Largest lattice spacing a band can be coded in (larger ones are coded as they are).
LATTICE_LIMIT = 1 << 15


def step(max_error: int) -> int:
    """Quantiser step for a bound of ``max_error``."""
    return 2 * int(max_error) + 1


def _thresholds(s: int) -> np.ndarray:
    """Activity (in values) at which each context above the first starts: sqrt(2)-spaced from one
    step (integers only: the same on every machine)."""
    return np.array([s * math.isqrt(1 << (k + 16)) >> 8 for k in range(CONTEXTS - 1)], dtype=np.int64)


@dataclass(frozen=True)
class _Pass:
    """Pixels (row0::stride, col0::stride) and their neighbours decoded by earlier passes."""

    row0: int
    col0: int
    stride: int
    neighbours: tuple[tuple[int, int], ...] = ()
    apart: bool = False  # neighbours as separate features (else their sum)

    def __hash__(self) -> int:  # computed once: passes key the index caches
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.row0, self.col0, self.stride, self.neighbours, self.apart))

    @property
    def finest(self) -> bool:
        return self.stride == 2

    def grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(self.row0, h, self.stride), np.arange(self.col0, w, self.stride)


@functools.lru_cache(maxsize=64)
def passes(height: int, width: int) -> tuple[_Pass, ...]:
    """The coding order of a frame's pixels: a coarse grid with no spatial context, then per level
    the centres, then the edges of its squares, each predicted from the four decoded neighbours.

    Examples
    --------
    >>> [(p.row0, p.col0, p.stride) for p in passes(16, 20)]
    [(0, 0, 2), (1, 1, 2), (0, 1, 2), (1, 0, 2)]
    >>> len(passes(264, 264)), len(passes(5, 300))
    (13, 1)
    """
    levels = 0
    while levels < MAX_LEVELS and min(height, width) >> (levels + 1) >= MIN_COARSE:
        levels += 1
    out = [_Pass(0, 0, 1 << levels)]
    for level in range(levels, 0, -1):
        s = 1 << (level - 1)
        diagonal = ((-s, -s), (-s, s), (s, -s), (s, s))
        cross = ((0, -s), (0, s), (-s, 0), (s, 0))
        fine = level == 1 or (height // (2 * s)) * (width // (2 * s)) >= APART_PIXELS
        far = ((-2 * s, -s), (-2 * s, s), (2 * s, -s), (2 * s, s))  # the coarser grid, two rows away
        wide = ((-s, -3 * s), (-s, 3 * s), (s, -3 * s), (s, 3 * s), (-3 * s, -s), (-3 * s, s), (3 * s, -s), (3 * s, s))
        out += [_Pass(s, s, 2 * s, diagonal + wide, fine), _Pass(0, s, 2 * s, cross + far, fine),
                _Pass(s, 0, 2 * s, cross + diagonal, fine)]  # the diagonals: the previous pass's pixels
    return tuple(out)  # the same objects for every frame of a size: cheap cache keys


@functools.lru_cache(maxsize=64)
def wide_passes(height: int, width: int) -> tuple[_Pass, ...]:
    """:func:`passes` with the finest level's neighbourhoods widened to every decoded pixel within
    :data:`WIDE_REACH`: what a band resampled from a coarser grid (the 20 m and 60 m bands of a
    10 m stack) needs, as its finest pixels are then nearly a fixed filter of the others.

    Examples
    --------
    >>> [len(p.neighbours) for p in wide_passes(16, 20)[1:]]
    [36, 24, 40]
    """
    return tuple(_widen(p) if p.finest else p for p in passes(height, width))


def _widen(p: _Pass) -> _Pass:
    """A finest-level pass seeing every pixel of the phases decoded before it within its reach."""
    phases = [(0, 0), (1, 1), (0, 1), (1, 0)]  # the coarser levels, then the finest level's passes in order
    earlier = phases[: phases.index((p.row0, p.col0))]
    reach = WIDE_REACH[0] if p.row0 and p.col0 else WIDE_REACH[1]
    extra = sorted(((dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
                    if ((p.row0 + dy) % 2, (p.col0 + dx) % 2) in earlier and (dy, dx) not in p.neighbours),
                   key=lambda d: (d[0] ** 2 + d[1] ** 2, d))
    return _Pass(p.row0, p.col0, p.stride, p.neighbours + tuple(extra), p.apart)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored into 0..n-1 (a border pixel is its own mirror axis)."""
    index = np.where(index < 0, -index, index)
    index = np.where(index >= n, 2 * (n - 1) - index, index)
    return np.minimum(np.maximum(index, 0), n - 1)


#: Kinds of pass with their own contexts: the coarser levels, then the three passes of the finest.
KINDS = 4
#: Tables of copy symbols a band may have: per kind of pass and context.
COPY_SLOTS = KINDS * copies.CONTEXTS


def _kind(p: _Pass) -> int:
    if not p.finest:
        return 0
    return 1 if p.row0 and p.col0 else (2 if not p.row0 else 3)


def _flat(p: _Pass, h: int, w: int, dy: int, dx: int) -> np.ndarray:
    """Flat indices of the pass's pixels moved by (dy, dx), mirrored at the borders."""
    rows, cols = p.grid(h, w)
    return (_reflect(rows + dy, h)[:, None] * w + _reflect(cols + dx, w)[None, :]).ravel()


class _Band:
    """One band and pass: where its values lie and the taps of its predictor's features (read by
    the kernels of :mod:`tcube.residual_kernels` straight from the decoded planes)."""

    def __init__(self, coding: _Coding, c: int, refs: tuple[int, ...], p: _Pass) -> None:
        self.coding, self.c, self.pass_ = coding, c, p
        self.grid = coding.valid[c][p.row0:: p.stride, p.col0:: p.stride]  # the pass's valid places
        self.columns = self.grid.shape[1]
        self.where = self.grid.reshape(-1)
        self.every = bool(self.where.all())
        self.taps, self.count = _taps(c, refs, p, coding.base is not None, coding.layout)

    def sample(self, every: int) -> np.ndarray:
        """The features (int32, (count, m)) of every ``every``-th value of the pass."""
        return self._read(self.taps, self.count, every)

    def neighbours(self, every: int = 1) -> np.ndarray:
        """The band's own first four neighbours (int32, (k, m)) at every ``every``-th value of the pass."""
        return self._read(_own_taps(self.c, self.pass_), len(self.pass_.neighbours[:4]), every)

    def _read(self, taps: np.ndarray, count: int, every: int) -> np.ndarray:
        coding, p = self.coding, self.pass_
        return kernels.features(coding.rec, coding.errors, coding.planes_base, coding.valid[self.c], p.row0, p.col0,
                                p.stride, taps, count, every)

    def gather(self, a: np.ndarray) -> np.ndarray:
        """The values of plane ``a`` (H, W) at the pass's valid pixels."""
        p = self.pass_
        view = a[p.row0:: p.stride, p.col0:: p.stride]
        return view.reshape(-1) if self.every else view[self.grid]

    def put(self, a: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` into plane ``a`` (H, W) at the pass's valid pixels."""
        p = self.pass_
        view = a[p.row0:: p.stride, p.col0:: p.stride]
        if self.every:
            view[...] = values.reshape(view.shape)
        else:
            view[self.grid] = values


@functools.lru_cache(maxsize=4096)
def _own_taps(c: int, p: _Pass) -> np.ndarray:
    """Taps of band ``c``'s first four neighbours in pass ``p``, each its own feature."""
    taps = np.array([(kernels.REC, c, dy, dx, k) for k, (dy, dx) in enumerate(p.neighbours[:4])], np.int64)
    taps = taps.reshape(-1, 5)
    taps.flags.writeable = False
    return taps


@functools.lru_cache(maxsize=4096)
def _taps(c: int, refs: tuple[int, ...], p: _Pass, has_base: bool, layout: int) -> tuple[np.ndarray, int]:
    """The taps (rows: plane, band, dy, dx, feature) of the features of band ``c`` in pass ``p``, in
    the order of its coefficients, and their count: its base, its own neighbours (apart, or their
    sum), then per reference band its error, value and base at the pixel and its nearest
    neighbours (apart on the finest level of a pass with apart neighbours, else their sum)."""
    rows: list[tuple[int, int, int, int, int]] = []
    count = 0

    def feature(plane: int, band: int, offsets: tuple[tuple[int, int], ...] = ((0, 0),)) -> None:
        nonlocal count
        rows.extend((plane, band, dy, dx, count) for dy, dx in offsets)
        count += 1

    if has_base:
        feature(kernels.BASE, c)
    if p.neighbours and p.apart:
        for d in p.neighbours:
            feature(kernels.REC, c, (d,))
    elif p.neighbours:
        feature(kernels.REC, c, p.neighbours)
    for b in refs:
        if _error_feature(p, layout):
            feature(kernels.ERRORS, b)
        feature(kernels.REC, b)
        if has_base:
            feature(kernels.BASE, b)
        if p.neighbours and p.apart and p.finest:
            for d in p.neighbours[:4]:
                feature(kernels.REC, b, (d,))
        elif p.neighbours:
            feature(kernels.REC, b, p.neighbours[:4])
    taps = np.array(rows, np.int64).reshape(-1, 5)
    taps.flags.writeable = False  # shared by every frame
    return taps, count


def _error_feature(p: _Pass, layout: int) -> bool:
    """Whether a pass predicts from its reference bands' prediction errors at the same place."""
    return p.apart and layout >= 7


def _detail(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A band's local detail (value minus the mean of its four neighbours) at valid pixels, subsampled."""
    a = a.astype(np.float64)
    h, w = a.shape
    mirrored = np.pad(a, 1, mode="reflect")  # what _reflect gives one pixel out
    around = sum(mirrored[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w] for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0))) / 4
    d = (a - around)[valid]
    return d[:: max(1, d.size // 65536)]


def references(values: np.ndarray, valid: np.ndarray) -> list[tuple[int, ...]]:
    """Per band, the earlier bands (up to :data:`SPECTRAL`) whose local detail correlates most with
    its own: what its prediction looks at (the encoder's choice; the stream records it).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.normal(size=(2, 16, 16)) * 100 + 1000
    >>> references(np.stack([a, b, a + 3]).astype(int), np.ones((3, 16, 16), bool))
    [(), (0,), (0, 1)]
    """
    both = valid.all(0)
    detail = np.stack([_detail(values[c], both) for c in range(len(values))])
    score = np.zeros((len(values), len(values)))
    if detail.shape[1] >= 2:
        moving = detail.std(axis=1) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            score[np.ix_(moving, moving)] = np.abs(np.corrcoef(detail[moving]))
    return [tuple(sorted(int(b) for b in np.argsort(score[c, :c], kind="stable")[::-1][:SPECTRAL]))
            for c in range(len(values))]


#: Pixels of a band that decide its neighbourhoods (an even subsample of its finest level).
WIDE_SAMPLE = 4096
#: Bits a predictor coefficient costs in the stream, about.
_COEF_BITS = 12


def wide_bands(values: np.ndarray, valid: np.ndarray, max_error: int) -> list[bool]:
    """Per band, whether its finest level pays for :func:`wide_passes` (the encoder's choice; the
    stream records it): least-squares fits of both neighbourhoods to a sample of its values.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> fine = rng.normal(1000, 100, (64, 64))
    >>> coarse = np.kron(rng.normal(1000, 100, (32, 32)), np.ones((2, 2)))  # a 20 m band at 10 m
    >>> smooth = (coarse + np.roll(coarse, 1, 0) + np.roll(coarse, 1, 1) + np.roll(coarse, (1, 1), (0, 1))) / 4
    >>> wide_bands(np.stack([fine, smooth]).round().astype(int), np.ones((2, 64, 64), bool), 0)
    [False, True]
    """
    h, w = values.shape[1:]
    narrow, wide = passes(h, w), wide_passes(h, w)
    if len(narrow) < 4:
        return [False] * len(values)
    extra = sum(len(b.neighbours) - len(a.neighbours) for a, b in zip(narrow, wide))
    edge, wide_edge = narrow[-2], wide[-2]  # the first edges of the finest level: what decides
    flat = _shared_flat if h * w <= SHARED_INDEX_PIXELS else _flat  # a series of small dates shares them
    at = flat(edge, h, w, 0, 0)
    sample = np.arange(0, len(at), max(1, len(at) // WIDE_SAMPLE))
    around = np.stack([flat(wide_edge, h, w, dy, dx)[sample] for dy, dx in wide_edge.neighbours])
    floor = step(max_error) ** 2 / 12  # the quantiser's own error
    out = []
    for c in range(len(values)):
        keep = valid[c].ravel()[at[sample]]
        pixels = int(valid[c].sum()) * 3 / 4
        if keep.sum() < 4 * len(wide_edge.neighbours):
            out.append(False)
            continue
        band = values[c].ravel()
        f = band[around[:, keep]].astype(np.float64)
        target = band[at[sample][keep]].astype(np.float64)
        saving = 0.5 * math.log2((_spread(f[: len(edge.neighbours)], target) + floor)
                                 / (_spread(f, target) + floor))
        out.append(saving * pixels > extra * _COEF_BITS + WIDE_MARGIN * pixels)
    return out


def lattices(values: np.ndarray, valid: np.ndarray, max_error: int) -> list[tuple[int, int]]:
    """Per band, the (spacing, offset) of the lattice its valid values lie on, where coding in its
    units (bound ``max_error // spacing``) quantises at least as coarsely; else (1, 0). The
    encoder's choice; the stream records it.

    Examples
    --------
    >>> x = np.stack([np.arange(16).reshape(4, 4) * 4 + 1, np.arange(16).reshape(4, 4)])
    >>> ok = np.ones(x.shape, bool)
    >>> lattices(x, ok, 0), lattices(x, ok, 2)
    ([(4, 1), (1, 0)], [(1, 0), (1, 0)])
    """
    out = []
    for c in range(len(values)):
        every = max(1, values[c].size // 4096)
        v = values[c].ravel()[::every][valid[c].ravel()[::every]]  # a sample first: cheap
        g = int(np.gcd.reduce(v - v[0])) if v.size > 1 else 2
        if g > 1:  # whole values < 2**25; all of them congruent to any one modulo the spacing
            v = values[c][valid[c]]
            g = int(np.gcd.reduce(v - v[0])) if v.size else 0
        fits = 1 < g <= LATTICE_LIMIT and g * step(max_error // g) >= step(max_error)
        out.append((g, int(v[0]) % g) if fits else (1, 0))
    return out


def _to_units(a: np.ndarray, lattice: list[tuple[int, int]]) -> np.ndarray:
    """A frame (int32) in its bands' lattice units: (value - offset) // spacing (``a`` itself when
    every spacing is 1)."""
    a = np.ascontiguousarray(a, dtype=np.int32)
    if all(g == 1 for g, _ in lattice):
        return a
    a = a.copy()
    for c, (g, r) in enumerate(lattice):
        if g > 1:
            a[c] = (a[c] - r) // g
    return a


def _spread(features: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error of the least-squares fit (with an intercept) of ``target`` on ``features``."""
    w, d, t, _ = _centred_solve(features, target, 1e-9 * len(features))
    return float(np.mean((t - w @ d) ** 2))


def _centred_solve(features: np.ndarray, target: np.ndarray, ridge: float) -> tuple[np.ndarray, ...]:
    """Least squares on centred float64 ``features`` (n, m) and ``target`` (m,), the Gram matrix's
    diagonal raised by ``ridge`` x its mean: (weights, centred features, centred target, Gram matrix)."""
    d = features - features.mean(1, keepdims=True)
    t = target - target.mean()
    gram = d @ d.T
    return _ridge_solve(gram, d @ t, ridge), d, t, gram


def _ridge_solve(gram: np.ndarray, moment: np.ndarray, ridge: float) -> np.ndarray:
    """The weights of the normal equations ``gram`` w = ``moment``, the Gram matrix's diagonal raised
    (in place) by ``ridge`` x its mean."""
    gram += np.eye(len(gram)) * (ridge * np.trace(gram) / len(gram) + 1e-9)
    return np.linalg.solve(gram, moment)


#: Largest frame (pixels) whose pass indices stay cached between frames (a series of small dates
#: shares them: at most 16 MB in all).
SHARED_INDEX_PIXELS = 1 << 14


@functools.lru_cache(maxsize=512)
def _shared_flat(p: _Pass, h: int, w: int, dy: int, dx: int) -> np.ndarray:
    index = _flat(p, h, w, dy, dx)
    index.flags.writeable = False  # shared by every frame of its size
    return index


#: Most values a predictor is fitted on (an even subsample of larger passes).
FIT_VALUES = 1 << 12


#: Coarsest precision of the predictor weights: multiples of 2**(MAX_SHIFT - FRAC).
MAX_SHIFT = 8


def _fit(sample: np.ndarray, values: np.ndarray, pixels: int, s: int) -> tuple[np.ndarray, int]:
    """Fixed-point least-squares coefficients (int16, intercept last) predicting the ``pixels``
    values of a pass at quantiser step ``s`` from features ``sample`` (n, m) of ``values`` (an even
    subsample, :func:`_sample_step`), and the shift: the weights are multiples of 2**shift (see
    :func:`_precision`)."""
    n = sample.shape[0]
    coefs = np.zeros(n + 1, dtype=np.int64)
    if pixels == 0:
        return coefs, 0
    shift = 0
    if n:
        w, d, t, gram = _centred_solve(sample.astype(np.float64), values.astype(np.float64), 1e-6)
        w = _reweighted(w, d, t, 1e-6)
        shift = _precision(w, gram / len(t), float(np.mean(np.square(t - w @ d))), pixels, s)
        coefs[:-1] = np.clip(np.round(w * (1 << (FRAC - shift))), -(_COEF_LIMIT >> shift), _COEF_LIMIT >> shift)
        coefs[:-1] <<= shift
    # the intercept: what the rounded coefficients leave of the target's mean
    offset = values.mean() - (coefs[:-1] @ sample.mean(axis=1) if n else 0.0) / (1 << FRAC)
    coefs[-1] = int(np.clip(np.round(offset), -_COEF_LIMIT, _COEF_LIMIT))
    return coefs, shift


def _reweighted(w: np.ndarray, d: np.ndarray, t: np.ndarray, ridge: float) -> np.ndarray:
    """One step of iteratively reweighted least squares from the weights ``w`` of centred features
    ``d`` and target ``t``: each value weighs 1 / its absolute error (at least the median one), so
    the fit leans to the absolute errors the entropy coder pays for, not to a few outliers (edges,
    clouds, a band that follows another only on land). The encoder's choice: the decoder reads the
    coefficients. 0.9-1.9 % fewer bits lossless and 1.2-2.2 % at E = 16 on l1c_18SVG, 0080717 and
    dsen2 bilinear than plain least squares."""
    error = np.abs(t - w @ d)
    weight = 1.0 / np.maximum(error, max(float(np.median(error)), 1.0))
    weighted = d * weight
    return _ridge_solve(weighted @ d.T, weighted @ t, ridge)


def _precision(w: np.ndarray, moments: np.ndarray, spread: float, pixels: int, s: int) -> int:
    """The shift (0 to :data:`MAX_SHIFT`) of the least-squares weights ``w`` (of features with
    second moments ``moments``, leaving a mean squared error ``spread``) that codes a pass of
    ``pixels`` values in the fewest bits, estimated: half a bit per value per halving of the
    squared error (plus the quantiser's, at step ``s``), against about 2 log2 bits per weight."""
    floor = max(spread, 0.0) + s * s / 12
    shifts = np.arange(MAX_SHIFT + 1)
    q = np.round(w[None, :] * np.exp2(FRAC - shifts)[:, None])  # the weights at each precision
    miss = q * np.exp2(shifts - FRAC)[:, None] - w
    added = ((miss @ moments) * miss).sum(axis=1)
    bits = pixels / 2 * np.log2(floor + added) + 2 * np.log2(1 + np.abs(q)).sum(axis=1)
    return int(np.argmin(bits))


def _sample_step(n: int) -> int:
    """Step of an even subsample of ``n`` values to at most :data:`FIT_VALUES`: 1, or a prime of at
    least 5, so that the sample does not fall on one phase of a band resampled by 2, 3 or 6.

    Examples
    --------
    >>> [_sample_step(n) for n in (FIT_VALUES, FIT_VALUES + 1, 7 * FIT_VALUES)]
    [1, 5, 7]
    """
    every = -(-n // FIT_VALUES)
    if every == 1:
        return 1
    every = max(every, 5)
    while any(every % k == 0 for k in range(2, math.isqrt(every) + 1)):
        every += 1
    return every


def _quantise(error: np.ndarray, s: int) -> np.ndarray:
    """Index of the step that holds ``error`` (rounded to the nearest multiple of ``s``)."""
    return np.sign(error) * ((np.abs(error) + s // 2) // s)


class _Coding:
    """State shared by the encoder and the decoder of one frame: the reconstruction so far."""

    def __init__(self, base: np.ndarray | None, valid: np.ndarray, max_error: int, limits: tuple[int, int],
                 nodata: int | None, lattice: list[tuple[int, int]], layout: int = LAYOUT, decoding: bool = False
                 ) -> None:
        self.layout = layout
        self.lattice = lattice  # everything below is in the bands' lattice units
        self.given_base = base
        self.base = None if base is None else _to_units(base, lattice)  # whole values < 2**25
        self.valid = np.ascontiguousarray(valid, dtype=bool)
        self.s = [step(max_error // g) for g, _ in lattice]
        self.limits = [(-((r - limits[0]) // g), (limits[1] - r) // g) for g, r in lattice]
        self.nodata = [None if nodata is None or (nodata - r) % g else (nodata - r) // g for g, r in lattice]
        self.rec = np.zeros(valid.shape, np.int32) if base is None else self.base.copy()
        # signed prediction errors, clipped to their dtype (layouts before 7 saw them whole, as int32)
        self.errors = np.zeros(valid.shape, np.int16 if layout >= 7 else np.int32)
        luts = {s: _context_lut(s) for s in set(self.s)}
        self.context_of = [luts[s] for s in self.s]
        self.planes_base = np.zeros((1, 1, 1), np.int32) if base is None else self.base  # what the kernels read
        self.decoding = decoding  # predicts on every thread

    def band(self, c: int, refs: tuple[int, ...], p: _Pass) -> _Band:
        return _Band(self, c, refs, p)

    def predict(self, band: _Band, coefs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction of each value of a band's pass with ``coefs`` (fixed point: (sum of coefficient x
        feature + intercept x 2**FRAC + half) >> FRAC) and its context: the kind of pass, then the
        local activity (spread of the neighbours around the prediction, the base's detail, the
        previous band's error there) against the thresholds."""
        c, p = band.c, band.pass_
        earlier, spacing = (self.lattice[c - 1][0], self.lattice[c][0]) if c else (1, 1)
        return kernels.predict(self.rec, self.errors, self.planes_base, self.valid[c], p.row0, p.col0, p.stride,
                               band.taps, np.ascontiguousarray(coefs[:-1], np.int64),
                               (int(coefs[-1]) << FRAC) + (1 << (FRAC - 1)), c, _around(p),
                               self.base is not None and not p.neighbours, c - 1, earlier, spacing,
                               self.context_of[c], _kind(p) * CONTEXTS, self.decoding)

    def reconstruct(self, c: int, pred: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``pred + q x step`` within the dtype's range, and where that is the no-data value (those
        values are kept exactly instead)."""
        rec = np.clip(pred + q * self.s[c], *self.limits[c])
        nodata = self.nodata[c]
        hit = rec == nodata if nodata is not None else np.zeros(len(rec), bool)
        return rec, hit

    def store(self, c: int, band: _Band, pred: np.ndarray, rec: np.ndarray) -> None:
        """Keep the decoded values and their prediction errors (what later bands look at)."""
        band.put(self.rec[c], rec)
        limit = np.iinfo(self.errors.dtype).max
        band.put(self.errors[c], np.clip(rec - pred, -limit, limit))

    def values(self) -> np.ndarray:
        """The decoded frame in values (int32; pixels outside ``valid`` as the base left them)."""
        if all(g == 1 for g, _ in self.lattice):
            return self.rec
        out = self.rec.copy()
        for c, (g, r) in enumerate(self.lattice):
            if g > 1:
                keep = self.valid[c]
                out[c] = 0 if self.given_base is None else self.given_base[c]
                out[c][keep] = self.rec[c][keep] * g + r
        return out


@functools.lru_cache(maxsize=512)
def _around(p: _Pass) -> np.ndarray:
    """The offsets (k, 2) of the neighbours a pass's activity looks at: its first four."""
    around = np.array(p.neighbours[:4], np.int64).reshape(-1, 2)
    around.flags.writeable = False
    return around


def _context_lut(s: int) -> np.ndarray:
    """Context of each activity up to the last threshold of step ``s`` (a lookup)."""
    thresholds = _thresholds(s)
    return np.searchsorted(thresholds, np.arange(thresholds[-1] + 1), side="right").astype(np.int64)


def encode_frame(values: np.ndarray, base: np.ndarray | None, valid: np.ndarray, max_error: int,
                 limits: tuple[int, int], nodata: int | None, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """Code ``values`` (int, (C, H, W)) within ``max_error`` of the original at ``valid`` pixels.

    ``base`` is the decoded base (same shape, or None), ``limits`` the dtype's range, ``nodata``
    a value the reconstruction must not produce at valid pixels, ``seed`` the start of the
    checksum of the decoded values. Returns the stream and the decoded frame (int32, what
    :func:`decode_frame` gives).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.integers(900, 1100, (3, 9, 7)); ok = np.ones(x.shape, bool)
    >>> data, rec = encode_frame(x, None, ok, 4, (0, 65535), None)
    >>> int(np.abs(rec - x).max()) <= 4, bool((decode_frame(data, None, ok, 4, (0, 65535), None) == rec).all())
    (True, True)
    """
    values = np.asarray(values, dtype=np.int32)
    lattice = lattices(values, valid, max_error)
    coding = _Coding(base, valid, max_error, limits, nodata, lattice)
    units = _to_units(values, lattice)
    coefs_all, shifts, symbols, contexts, kept = [], [], [], [], []
    orders = passes(*values.shape[1:]), wide_passes(*values.shape[1:])
    refs = references(values, valid)
    wide = wide_bands(values, valid, max_error)
    copied = _Copies(values.shape[0])
    for c in range(values.shape[0]):
        for i, p in enumerate(orders[wide[c]]):
            band = coding.band(c, refs[c], p)
            target = band.gather(units[c])
            every = _sample_step(len(target))
            coefs, shift = _fit(band.sample(every), target[::every], len(target), coding.s[c])
            pred, ctx = coding.predict(band, coefs)
            q = _quantise(target - pred, coding.s[c])
            rec, hit = coding.reconstruct(c, pred, q)
            copy = _copy_choice(coding, c, band, target, q, ctx)
            copied.flags[c].append(copy is not None)
            if copy is not None:
                sym, cands, pattern = copy
                esc = sym == copies.ESCAPE
                rec, hit, q, ctx = np.where(esc, rec, _chosen(cands, sym)), hit & esc, q[esc], ctx[esc]
                copied.add(c, i, _kind(p), band, sym, pattern)
            if hit.any():
                rec[hit] = target[hit]
                kept.append(target[hit])
            contexts.append((c, ctx.astype(np.uint8)))  # kept small: memory
            coding.store(c, band, pred, rec)
            coefs_all.append(np.append(coefs[:-1] >> shift, coefs[-1]))
            shifts.append(shift)
            symbols.append(q.astype(np.int32))
    choice = _choose_tables(symbols, contexts, values.shape[0])
    copied.finish()
    coefs = np.concatenate(coefs_all)
    if coding.layout >= COPY_LAYOUT:  # table choices as places in the order of their scales, from table 0's
        steps = np.diff(_scale_rank()[choice], axis=1, prepend=_scale_rank()[0]).ravel()
    else:
        steps = np.diff(choice, axis=1, prepend=0).ravel()
    side = (_best_table(coefs), _best_table(steps))
    writer, tables = SymbolWriter(), geometric_tables()
    writer.write([b for r in refs for b in r], np.full(sum(map(len, refs)), _REF_TABLE), tables)
    writer.write(np.array(wide, np.int64), np.full(len(wide), _REF_TABLE), tables)
    _write_lattice(writer, lattice)
    writer.write(np.array(shifts, np.int64), np.full(len(shifts), _REF_TABLE), tables)
    writer.write(coefs, np.full(len(coefs), side[0]), tables)
    writer.write(steps, np.full(len(steps), side[1]), tables)
    if coding.layout >= COPY_LAYOUT:
        copied.write_side(writer)
    coded = iter(copied.coded)
    for q, (c, ctx), copy in zip(symbols, contexts, itertools.chain.from_iterable(copied.flags)):
        if copy:
            for values, table in next(coded):  # the halves, as the decoder reads them
                writer.write(values, table, copied.tables)
        writer.write(q, choice[c][ctx], tables)
    kept_values = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    decoded = coding.values()
    head = _HEAD.pack(_crc(decoded, valid, seed), len(kept_values), *side)
    return head + kept_values.astype("<i4").tobytes() + writer.finish(), decoded


def _chosen(cands: np.ndarray, sym: np.ndarray) -> np.ndarray:
    """The neighbour each symbol repeats (anything for an escape)."""
    return cands[np.minimum(sym, copies.ESCAPE - 1), np.arange(cands.shape[1])]


def _copy_choice(coding: _Coding, c: int, band: _Band, target: np.ndarray, q: np.ndarray,
                 ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The copy symbols, candidates and patterns of a pass where copy mode codes it in fewer bits (the
    encoder's estimate: ideal tables per context, each table paid for), else None."""
    if coding.layout < COPY_LAYOUT or len(band.pass_.neighbours) < copies.NEIGHBOURS or not len(target):
        return None
    every = max(1, len(target) // COPY_SAMPLE)
    if len(target) > COPY_SAMPLE and _copies_of(coding, c, band, target, q, ctx, every) is None:
        return None  # an even sample says it does not pay: spare the whole pass the work
    return _copies_of(coding, c, band, target, q, ctx, 1)


def _copies_of(coding: _Coding, c: int, band: _Band, target: np.ndarray, q: np.ndarray, ctx: np.ndarray,
               every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Copy mode on every ``every``-th value of a pass: its symbols, candidates and patterns where it
    codes them in fewer bits (:func:`~tcube.residual_kernels.copy_estimate`, each table paid for), else None."""
    neighbours, nodata = band.neighbours(every), coding.nodata[c]
    plain, copy, patterns, sym, pattern = kernels.copy_estimate(
        neighbours, target[::every], q[::every], ctx[::every], coding.s[c] // 2, 0 if nodata is None else nodata,
        nodata is not None, copies.pattern_lut(), copies.ESCAPE)
    if copy + _COPY_TABLE_BITS * patterns / every >= plain:
        return None
    return sym, copies.candidates(neighbours, nodata), pattern


class _Copies:
    """The passes a frame codes in copy mode: their symbols, each band's copy reference and the
    tables of the symbols (see :mod:`tcube.residual_copies`)."""

    def __init__(self, bands: int) -> None:
        self.bands = bands
        self.flags: list[list[bool]] = [[] for _ in range(bands)]  # per band, per pass: in copy mode
        self.grids: dict[tuple[int, int], np.ndarray] = {}  # (band, pass): symbols on the pass's grid
        self.passes: list[tuple[int, int, int, np.ndarray, int, np.ndarray, np.ndarray]] = []
        self.references = [-1] * bands
        self.coded: list[list[tuple[np.ndarray, np.ndarray]]] = []  # per pass: each half's symbols, tables
        self.codes = np.zeros((0, copies.SYMBOLS), np.int64)
        self.slots: list[np.ndarray] = []
        self.tables = copies.count_tables(np.ones((1, copies.SYMBOLS)))

    def add(self, c: int, i: int, kind: int, band: _Band, sym: np.ndarray, pattern: np.ndarray) -> None:
        """A pass the encoder codes in copy mode: its symbols (at the band's values of the pass) and
        their patterns."""
        self.record(c, i, band, sym)
        self.passes.append((c, i, kind, band.where, band.columns, sym, pattern))

    def record(self, c: int, i: int, band: _Band, sym: np.ndarray) -> None:
        """The symbols of a pass in copy mode on its grid (what later bands take as reference)."""
        grid = np.full(band.where.size, copies.NONE, np.uint8)
        grid[band.where] = sym
        self.grids[c, i] = grid

    def reference_symbols(self, b: int, i: int, where: np.ndarray) -> np.ndarray | None:
        grid = self.grids.get((b, i)) if b >= 0 else None
        return None if grid is None else grid[where]

    def halves(self, b: int, i: int, where: np.ndarray, columns: int, pattern: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Each half's values (indices) and the contexts of the first, and what gives the second's
        contexts from the first half's symbols; ``b``: the copy reference."""
        places, first, second = copies.halves(where, columns)
        reference = self.reference_symbols(b, i, where)
        pick = (lambda half: None) if reference is None else (lambda half: reference[half])  # noqa: E731

        def second_contexts(first_symbols: np.ndarray) -> np.ndarray:
            grid = np.full(where.size, copies.NONE, np.uint8)
            grid[places[first]] = first_symbols
            agree = copies.agreement(grid, columns, places[second])
            return copies.contexts(pattern[second], pick(second), agree)

        return places, first, second, copies.contexts(pattern[first], pick(first)), second_contexts

    def _slots(self, b: int, i: int, kind: int, where: np.ndarray, columns: int, sym: np.ndarray,
               pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The encoder's view of :meth:`halves`: each half's values and their slots (kind and context)."""
        _, first, second, ctx, second_contexts = self.halves(b, i, where, columns, pattern)
        base = kind * copies.CONTEXTS
        return first, second, base + ctx, base + second_contexts(sym[first])

    def finish(self) -> None:
        """Choose each band's reference (the earlier band whose symbols say most of its own), count
        the tables and give every symbol its table."""
        for c in range(self.bands):
            own = [r for r in self.passes if r[0] == c]
            if not own:
                continue
            options = [-1] + [b for b in range(c) if any(self.flags[b])]
            costs = []
            for b in options:
                cost = 0.0
                for _, i, kind, where, columns, sym, pattern in own:
                    first, second, slot1, slot2 = self._slots(b, i, kind, where, columns, sym, pattern)
                    cost += copies.entropy_bits(np.concatenate([sym[first], sym[second]]),
                                                np.concatenate([slot1, slot2]))
                costs.append(cost)
            self.references[c] = options[int(np.argmin(costs))]
        counts = np.zeros((self.bands, COPY_SLOTS, copies.SYMBOLS), np.int64)
        keys = []
        for c, i, kind, where, columns, sym, pattern in self.passes:
            first, second, slot1, slot2 = self._slots(self.references[c], i, kind, where, columns, sym, pattern)
            halves = [(slot1, sym[first]), (slot2, sym[second])]
            for slot, values in halves:
                np.add.at(counts[c], (slot, values), 1)
            keys.append((c, halves))
        used = counts.sum(2) > 0
        index = np.cumsum(used.ravel()).reshape(used.shape) - 1
        self.slots = [np.flatnonzero(used[c]) for c in range(self.bands)]
        self.codes = copies.quantised_counts(counts[used])
        if len(self.codes):
            self.tables = copies.count_tables(self.codes)
        self.coded = [[(values, index[c][slot]) for slot, values in halves] for c, halves in keys]

    def write_side(self, writer: SymbolWriter) -> None:
        """Flags, references, used slots and their quantised counts (layout 10 on)."""
        tables = geometric_tables()
        flags = np.array([f for band in self.flags for f in band], np.int64)
        writer.write(flags, np.full(len(flags), _REF_TABLE), tables)
        refs = np.array(self.references, np.int64) + 1
        writer.write(refs, np.full(len(refs), _REF_TABLE), tables)
        for c in range(self.bands):
            if any(self.flags[c]):
                gaps = np.diff(self.slots[c], prepend=-1) - 1
                writer.write(np.array([len(gaps)]), np.full(1, _REF_TABLE), tables)  # read in two calls
                writer.write(gaps, np.full(len(gaps), _REF_TABLE), tables)
        table = _best_table(self.codes.ravel()) if len(self.codes) else 0
        writer.write(np.array([table]), np.full(1, _REF_TABLE), tables)
        writer.write(self.codes.ravel(), np.full(self.codes.size, table), tables)


def _write_lattice(writer: SymbolWriter, lattice: list[tuple[int, int]]) -> None:
    """Each band's lattice spacing less one, then the offsets of the bands that have one."""
    tables = geometric_tables()
    writer.write(np.array([g - 1 for g, _ in lattice], np.int64), np.full(len(lattice), _REF_TABLE), tables)
    offsets = np.array([r for g, r in lattice if g > 1], np.int64)
    writer.write(offsets, np.full(len(offsets), _REF_TABLE), tables)


def _read_lattice(reader: SymbolReader, bands: int) -> list[tuple[int, int]]:
    """What :func:`_write_lattice` wrote, checked."""
    tables = geometric_tables()
    spacing = reader.read(np.full(bands, _REF_TABLE), tables) + 1
    if ((spacing < 1) | (spacing > LATTICE_LIMIT)).any():
        raise CorruptBlobError("residual stream names value lattices that cannot exist")
    offsets = reader.read(np.full(int((spacing > 1).sum()), _REF_TABLE), tables)
    if ((offsets < 0) | (offsets >= spacing[spacing > 1])).any():
        raise CorruptBlobError("residual stream names lattice offsets outside their spacing")
    it = iter(offsets.tolist())
    return [(int(g), next(it) if g > 1 else 0) for g in spacing]


def _best_table(values: np.ndarray) -> int:
    """The geometric table that codes ``values`` in the fewest bits."""
    costs = geometric_costs()
    return int(np.argmin(costs[:, np.minimum(np.abs(values), costs.shape[1] - 1)].sum(axis=1)))


def decode_frame(data: bytes, base: np.ndarray | None, valid: np.ndarray, max_error: int,
                 limits: tuple[int, int], nodata: int | None, seed: int = 0, frame: int = 0,
                 layout: int = LAYOUT) -> np.ndarray:
    """Inverse of :func:`encode_frame`: the decoded frame (int32), checked against its CRC32.

    ``layout`` is the format version that wrote the stream: 5 has no choice of neighbourhood (every
    band uses :func:`passes`), 5 and 6 code every band in its values with full-precision weights.

    Raises :class:`~tcube.errors.CorruptBlobError` for a stream that does not fit the frame and
    :class:`~tcube.errors.SymbolChecksumError` when the decoded values fail the checksum.
    """
    bands = valid.shape[0]
    orders = passes(*valid.shape[1:]), wide_passes(*valid.shape[1:])
    n_refs = [min(c, SPECTRAL) for c in range(bands)]
    slots = KINDS * CONTEXTS
    tables = geometric_tables()
    if len(data) < _HEAD.size:
        raise CorruptBlobError(f"residual stream truncated: {len(data)} bytes, needs at least {_HEAD.size}")
    crc, n_kept, coef_table, step_table = _HEAD.unpack_from(data)
    if _HEAD.size + 4 * n_kept > len(data) or max(coef_table, step_table) >= tables.n_tables:
        raise CorruptBlobError("residual stream header is inconsistent (exact values or tables it cannot have)")
    kept = np.frombuffer(data, "<i4", n_kept, _HEAD.size).astype(np.int64)
    if (len(data) - _HEAD.size - 4 * n_kept) % 4:
        raise CorruptBlobError(f"residual stream truncated or corrupt: {len(data)} bytes do not end on a whole "
                               "range-coder word")
    reader = SymbolReader(data[_HEAD.size + 4 * n_kept:])
    listed = reader.read(np.full(sum(n_refs), _REF_TABLE), tables)
    refs = [tuple(int(b) for b in r) for r in np.split(listed, np.cumsum(n_refs)[:-1])]
    if any(not 0 <= b < c or len(set(r)) < len(r) for c, r in enumerate(refs) for b in r):
        raise CorruptBlobError("residual stream names reference bands that are not earlier bands")
    wide = reader.read(np.full(bands, _REF_TABLE), tables) if layout >= 6 else np.zeros(bands, np.int64)
    if ((wide != 0) & (wide != 1)).any():
        raise CorruptBlobError("residual stream names neighbourhoods that do not exist")
    band_lattice = _read_lattice(reader, bands) if layout >= 7 else [(1, 0)] * bands
    n_coefs = [_taps(c, refs[c], p, base is not None, layout)[1] + 1 for c in range(bands) for p in orders[wide[c]]]
    shifts = reader.read(np.full(len(n_coefs), _REF_TABLE), tables) if layout >= 7 else np.zeros(len(n_coefs), int)
    if ((shifts < 0) | (shifts > MAX_SHIFT)).any():
        raise CorruptBlobError("residual stream names predictor precisions that do not exist")
    splits = np.cumsum([0, *n_coefs])
    stored = reader.read(np.full(sum(n_coefs), coef_table), tables)
    weights = [_widen_weights(stored[a:b], int(k)) for a, b, k in zip(splits[:-1], splits[1:], shifts)]
    choice = np.cumsum(reader.read(np.full(bands * slots, step_table), tables).reshape(bands, slots), axis=1)
    if layout >= COPY_LAYOUT:
        choice += _scale_rank()[0]
    if (choice < 0).any() or (choice >= tables.n_tables).any() or any((np.abs(w) > _COEF_LIMIT).any() for w in weights):
        raise CorruptBlobError("residual stream names entropy tables or coefficients that cannot exist")
    if layout >= COPY_LAYOUT:  # format 10 codes the choices as places in the order of the tables' scales
        choice = _scale_order()[choice]
    coding = _Coding(base, valid, max_error, limits, nodata, band_lattice, layout, decoding=True)
    copied = _Copies(bands)
    if layout >= COPY_LAYOUT:
        copy_slots = _read_copies(reader, copied, [[bool(p.neighbours) for p in orders[wide[c]]] for c in range(bands)])
    else:
        copied.flags = [[False] * len(orders[wide[c]]) for c in range(bands)]
    used, i = 0, 0
    for c in range(bands):
        for j, p in enumerate(orders[wide[c]]):
            band = coding.band(c, refs[c], p)
            pred, ctx = coding.predict(band, weights[i])
            i += 1
            if copied.flags[c][j]:
                rec, hit = _read_copy_pass(reader, coding, copied, copy_slots[c], c, j, band, pred, ctx, choice[c])
            else:
                rec, hit = coding.reconstruct(c, pred, reader.read(choice[c][ctx], tables))
            n = int(hit.sum())
            if n:
                if used + n > n_kept:
                    raise CorruptBlobError("residual stream holds fewer exact values than it needs")
                rec[hit] = kept[used: used + n]
                used += n
            coding.store(c, band, pred, rec)
    decoded = coding.values()
    if _crc(decoded, valid, seed) != crc:
        raise SymbolChecksumError(f"frame {frame}: residual layer decodes to values that fail its checksum "
                                  "(corrupt or forged stream, or an edited header)", frame=frame)
    return decoded


def _read_copies(reader: SymbolReader, copied: _Copies, reach: list[list[bool]]) -> list[np.ndarray]:
    """What :meth:`_Copies.write_side` wrote, checked, into ``copied`` (flags, references, tables);
    per band, the table of each slot (-1: none). ``reach``: per band and pass, whether it has neighbours."""
    tables = geometric_tables()
    bands = len(reach)
    flags = reader.read(np.full(sum(map(len, reach)), _REF_TABLE), tables)
    if ((flags != 0) & (flags != 1)).any() or (flags.astype(bool) & ~np.concatenate([[], *reach]).astype(bool)).any():
        raise CorruptBlobError("residual stream puts passes in copy mode that cannot be")
    flags_per_band = np.split(flags.astype(bool), np.cumsum(list(map(len, reach)))[:-1])
    copied.flags = [f.tolist() for f in flags_per_band]
    references = reader.read(np.full(bands, _REF_TABLE), tables) - 1
    if any(not -1 <= r < c for c, r in enumerate(references)):
        raise CorruptBlobError("residual stream names copy references that are not earlier bands")
    copied.references = references.tolist()
    slot_tables, used = [np.full(COPY_SLOTS, -1, np.int64) for _ in range(bands)], 0
    for c in range(bands):
        if not any(copied.flags[c]):
            continue
        (n,) = reader.read(np.full(1, _REF_TABLE), tables)
        gaps = reader.read(np.full(n, _REF_TABLE), tables) if 0 < n <= COPY_SLOTS else np.full(1, -1)
        slots = np.cumsum(gaps + 1) - 1
        if (gaps < 0).any() or slots[-1] >= COPY_SLOTS:
            raise CorruptBlobError("residual stream names copy tables that do not exist")
        slot_tables[c][slots] = used + np.arange(n)
        used += int(n)
    (table,) = reader.read(np.full(1, _REF_TABLE), tables)
    if not 0 <= table < tables.n_tables:
        raise CorruptBlobError("residual stream names an entropy table that does not exist")
    codes = reader.read(np.full(used * copies.SYMBOLS, table), tables)
    if ((codes < 0) | (codes > copies.MAX_COUNT_CODE)).any():
        raise CorruptBlobError("residual stream holds copy counts that cannot be")
    if used:
        copied.tables = copies.count_tables(codes)
    return slot_tables


def _read_copy_pass(reader: SymbolReader, coding: _Coding, copied: _Copies, slot_table: np.ndarray, c: int, i: int,
                    band: _Band, pred: np.ndarray, ctx: np.ndarray, choice: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The decoded values of a pass in copy mode, and where they are the no-data value."""
    cands = copies.candidates(band.neighbours(), coding.nodata[c])
    pattern = copies.patterns(cands)
    _, first, second, ctx_first, second_contexts = copied.halves(copied.references[c], i, band.where,
                                                                 band.columns, pattern)
    base = _kind(band.pass_) * copies.CONTEXTS
    sym = np.empty(len(pattern), np.int64)
    sym[first] = _read_copy_symbols(reader, slot_table[base + ctx_first], copied.tables)
    sym[second] = _read_copy_symbols(reader, slot_table[base + second_contexts(sym[first].astype(np.uint8))],
                                     copied.tables)
    esc = sym == copies.ESCAPE
    rec = _chosen(cands, sym)
    if (rec[~esc] < coding.limits[c][0]).any():
        raise CorruptBlobError("residual stream copies values that cannot be copied")
    copied.record(c, i, band, sym.astype(np.uint8))
    escaped, escaped_hit = coding.reconstruct(c, pred[esc], reader.read(choice[ctx[esc]], geometric_tables()))
    rec[esc] = escaped
    hit = np.zeros(len(rec), bool)
    hit[esc] = escaped_hit
    return rec, hit


def _read_copy_symbols(reader: SymbolReader, table: np.ndarray, tables: TableSet) -> np.ndarray:
    """Copy symbols coded with ``table`` (per value; -1: a slot without a table), checked."""
    if (table < 0).any():
        raise CorruptBlobError("residual stream codes copy symbols without their table")
    sym = reader.read(table, tables)
    if ((sym < 0) | (sym > copies.ESCAPE)).any():
        raise CorruptBlobError("residual stream copies values that cannot be copied")
    return sym


def _widen_weights(coefs: np.ndarray, shift: int) -> np.ndarray:
    """Coefficients as stored (weights >> shift, intercept) back in fixed point."""
    out = coefs.copy()
    out[:-1] <<= shift
    return out


def _crc(rec: np.ndarray, valid: np.ndarray, seed: int) -> int:
    return zlib.crc32(np.ascontiguousarray(rec[valid], dtype="<i4").tobytes(), seed & 0xFFFFFFFF)


@functools.cache
def _scale_order() -> np.ndarray:
    """Geometric table indices from the steepest law to the widest (format 10 codes table choices as
    places in this order: neighbouring contexts take neighbouring places)."""
    return np.argsort(np.array(SCALES), kind="stable")


@functools.cache
def _scale_rank() -> np.ndarray:
    """Each table's place in :func:`_scale_order`."""
    rank = np.empty(len(SCALES), np.int64)
    rank[_scale_order()] = np.arange(len(SCALES))
    return rank


def _choose_tables(symbols: list[np.ndarray], contexts: list[tuple[int, np.ndarray]], bands: int) -> np.ndarray:
    """Per band and context, the table that codes its symbols in the fewest bits (a context without
    symbols takes the previous context's table: a zero step to code)."""
    costs = geometric_costs()
    largest = min(costs.shape[1] - 1, max((int(np.abs(q).max()) for q in symbols if len(q)), default=0))
    slots = KINDS * CONTEXTS
    keys = [(c * slots + ctx.astype(np.int64)) * (largest + 1) + np.minimum(np.abs(q), largest)
            for q, (c, ctx) in zip(symbols, contexts)]
    size = bands * slots * (largest + 1)
    hist = np.bincount(np.concatenate(keys), minlength=size) if keys else np.zeros(size, np.int64)
    hist = hist.reshape(bands, slots, largest + 1).astype(np.float64)
    seen = np.flatnonzero(hist.any(axis=(0, 1)))  # most large values never occur
    choice = np.argmin(hist[:, :, seen] @ costs[:, seen].T, axis=2)
    used = hist.sum(axis=2) > 0
    last = np.where(used, np.arange(slots), 0)
    np.maximum.accumulate(last, axis=1, out=last)  # the nearest used context at or before each
    return np.take_along_axis(choice, last, axis=1)
