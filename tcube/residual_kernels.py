"""Compiled kernels of the residual layer (numba): a pass's predictions and contexts, and the
features its predictor is fitted on, read straight from the decoded planes.

A feature is the sum of its taps; a tap is one value of a plane (:data:`REC` the decoded values,
:data:`ERRORS` their prediction errors, :data:`BASE` the base) of one band, moved by (dy, dx) from
the pixel and mirrored at the frame's border (a border pixel is its own mirror axis). Taps are rows
of an int64 array: plane, band, dy, dx, feature. A pass covers the pixels (row0::stride,
col0::stride) where ``valid`` is set, row by row.

Everything is integer arithmetic: the same values on every machine and thread count.

Examples
--------
>>> rec = np.arange(16, dtype=np.int32).reshape(1, 4, 4); valid = np.ones((4, 4), bool)
>>> taps = np.array([[REC, 0, 0, -1, 0], [REC, 0, 0, 1, 0]])  # one feature: left + right (mirrored)
>>> features(rec, rec.astype(np.int16), rec, valid, 0, 1, 2, taps, 1, 1).tolist()
[[2, 4, 18, 20]]
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numba
import numpy as np

#: Planes a tap reads.
REC, ERRORS, BASE = 0, 1, 2
#: Fractional bits of the predictor coefficients (int16: |coefficient| < 16).
FRAC = 11

_jit = numba.njit(cache=True, nogil=True)


@numba.njit(cache=True, nogil=True, inline="always")
def _reflect(i: int, n: int) -> int:
    if i < 0:
        i = -i
    if i >= n:
        i = 2 * (n - 1) - i
    return min(max(i, 0), n - 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _value(rec, errors, base, plane, band, y, x):
    if plane == REC:
        return np.int64(rec[band, y, x])
    if plane == ERRORS:
        return np.int64(errors[band, y, x])
    return np.int64(base[band, y, x])


@numba.njit(cache=True, nogil=True)
def _flat_taps(taps, weights, plane, h, w):
    """The taps of one plane as offsets in the flat planes, and the weight (``weights`` per feature) of each."""
    keep = taps[:, 0] == plane
    offsets = taps[keep, 1] * (h * w) + taps[keep, 2] * w + taps[keep, 3]
    return offsets, weights[taps[keep, 4]]


@numba.njit(cache=True, nogil=True)
def _reach(taps, around):
    """Farthest offset (rows or columns) of the taps and of the ``around`` offsets ((k, 2)): pixels at
    least this far inside the frame read every tap without mirroring."""
    reach = 0
    for t in range(taps.shape[0]):
        reach = max(reach, abs(taps[t, 2]), abs(taps[t, 3]))
    for t in range(around.shape[0]):
        reach = max(reach, abs(around[t, 0]), abs(around[t, 1]))
    return reach


@numba.njit(cache=True, nogil=True)
def _row_starts(valid, row0, col0, stride):
    """Where each row of a pass's grid starts among its values, and their count last."""
    h, w = valid.shape
    starts = np.zeros(max(0, (h - row0 + stride - 1) // stride) + 1, np.int64)
    for r, y in enumerate(range(row0, h, stride)):
        n = 0
        for x in range(col0, w, stride):
            n += valid[y, x]
        starts[r + 1] = starts[r] + n
    return starts


def _predict(rec, errors, base, valid, row0, col0, stride, taps, weights, constant,
             band, around, texture, previous, earlier, spacing, lut, first_context):
    """Prediction and context of every value of a pass.

    Prediction: (sum of ``weights`` x features + ``constant``) >> FRAC. Context: ``first_context``
    + ``lut`` of the activity (clipped to its last entry): the mean absolute difference of the
    band's own neighbours ``around`` ((k, 2) offsets) from the prediction, plus, where
    ``texture``, the base's own detail (|4 x centre - its four neighbours| / 4), plus, where
    ``previous`` >= 0, the absolute prediction error of that band at the pixel x ``earlier`` //
    ``spacing``. Returns (predictions, contexts), int64. Pixels farther from the border than
    every tap read the flat planes at fixed offsets; the others mirror each tap.
    """
    h, w = valid.shape
    starts = _row_starts(valid, row0, col0, stride)
    pred = np.empty(starts[-1], np.int64)
    ctx = np.empty(starts[-1], np.int64)
    flat_rec, flat_errors, flat_base = rec.ravel(), errors.ravel(), base.ravel()
    rec_at, rec_w = _flat_taps(taps, weights, REC, h, w)
    errors_at, errors_w = _flat_taps(taps, weights, ERRORS, h, w)
    base_at, base_w = _flat_taps(taps, weights, BASE, h, w)
    around_at = band * (h * w) + around[:, 0] * w + around[:, 1]
    reach = _reach(taps, around)
    top = len(lut) - 1
    for r in numba.prange(len(starts) - 1):
        y = row0 + r * stride
        k = starts[r]
        for x in range(col0, w, stride):
            if not valid[y, x]:
                continue
            acc = np.int64(constant)
            inside = reach <= y < h - reach and reach <= x < w - reach
            if inside:
                at = y * w + x
                for t in range(len(rec_at)):
                    acc += rec_w[t] * flat_rec[at + rec_at[t]]
                for t in range(len(errors_at)):
                    acc += errors_w[t] * flat_errors[at + errors_at[t]]
                for t in range(len(base_at)):
                    acc += base_w[t] * flat_base[at + base_at[t]]
            else:
                for t in range(taps.shape[0]):
                    yy, xx = _reflect(y + taps[t, 2], h), _reflect(x + taps[t, 3], w)
                    acc += weights[taps[t, 4]] * _value(rec, errors, base, taps[t, 0], taps[t, 1], yy, xx)
            p = acc >> FRAC
            pred[k] = p
            act = np.int64(0)
            if around.shape[0]:
                spread = np.int64(0)
                for t in range(around.shape[0]):
                    if inside:
                        near = np.int64(flat_rec[y * w + x + around_at[t]])
                    else:
                        near = np.int64(rec[band, _reflect(y + around[t, 0], h), _reflect(x + around[t, 1], w)])
                    spread += abs(near - p)
                act += spread >> 2
            if texture:
                centre = np.int64(base[band, y, x])
                cross = (np.int64(base[band, y, _reflect(x - 1, w)]) + np.int64(base[band, y, _reflect(x + 1, w)])
                         + np.int64(base[band, _reflect(y - 1, h), x]) + np.int64(base[band, _reflect(y + 1, h), x]))
                act += abs(4 * centre - cross) >> 2
            if previous >= 0:
                e = abs(np.int64(errors[previous, y, x]))
                act += e if earlier == spacing else e * earlier // spacing
            ctx[k] = first_context + lut[min(act, top)]
            k += 1
    return pred, ctx


def _named(f: Callable, name: str) -> Callable:
    """``f`` under another name: numba caches compiled functions by name, and the serial and parallel
    builds of one function must not share a cache entry."""
    g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = name
    return g


_predict_serial = _jit(_predict)
_predict_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_named(_predict, "_predict_parallel"))
#: Least values of a pass predicted on every thread (fewer do not pay for starting them).
PARALLEL_VALUES = 1 << 12


def predict(rec: np.ndarray, errors: np.ndarray, base: np.ndarray, valid: np.ndarray, row0: int, col0: int,
            stride: int, taps: np.ndarray, weights: np.ndarray, constant: int, band: int, around: np.ndarray,
            texture: bool, previous: int, earlier: int, spacing: int, lut: np.ndarray, first_context: int,
            threads: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and context of every value of a pass (see :func:`_predict`), with ``threads`` on
    every thread for large passes (numba's threads wait for work a while after each pass: the
    encoder, whose least squares run on BLAS's own threads between passes, stays on one)."""
    large = threads and valid[row0::stride, col0::stride].size >= PARALLEL_VALUES
    kernel = _predict_parallel if large else _predict_serial
    return kernel(rec, errors, base, valid, row0, col0, stride, taps, weights, constant, band, around, texture,
                  previous, earlier, spacing, lut, first_context)


@_jit
def features(rec, errors, base, valid, row0, col0, stride, taps, count, every):
    """The ``count`` features (int32, (count, m)) of every ``every``-th value of a pass."""
    h, w = valid.shape
    starts = _row_starts(valid, row0, col0, stride)
    out = np.empty((count, (starts[-1] + every - 1) // every), np.int32)
    f = np.empty(count, np.int64)
    flat_rec, flat_errors, flat_base = rec.ravel(), errors.ravel(), base.ravel()
    which = np.arange(count)
    rec_at, rec_f = _flat_taps(taps, which, REC, h, w)
    errors_at, errors_f = _flat_taps(taps, which, ERRORS, h, w)
    base_at, base_f = _flat_taps(taps, which, BASE, h, w)
    reach = _reach(taps, np.zeros((0, 2), np.int64))
    k = 0
    for y in range(row0, h, stride):
        for x in range(col0, w, stride):
            if not valid[y, x]:
                continue
            if k % every == 0:
                f[:] = 0
                if reach <= y < h - reach and reach <= x < w - reach:
                    at = y * w + x
                    for t in range(len(rec_at)):
                        f[rec_f[t]] += flat_rec[at + rec_at[t]]
                    for t in range(len(errors_at)):
                        f[errors_f[t]] += flat_errors[at + errors_at[t]]
                    for t in range(len(base_at)):
                        f[base_f[t]] += flat_base[at + base_at[t]]
                else:
                    for t in range(taps.shape[0]):
                        yy, xx = _reflect(y + taps[t, 2], h), _reflect(x + taps[t, 3], w)
                        f[taps[t, 4]] += _value(rec, errors, base, taps[t, 0], taps[t, 1], yy, xx)
                for j in range(count):
                    out[j, k // every] = f[j]
            k += 1
    return out


@_jit
def entropy_bits(values, contexts):
    """Bits of coding ``values`` with an ideal table per context (``contexts`` >= 0; joint and
    per-context counts by sorting)."""
    n = len(values)
    if n == 0:
        return 0.0
    lo, hi = np.int64(values.min()), np.int64(values.max())
    keys = np.sort(contexts.astype(np.int64) * (hi - lo + 1) + (values.astype(np.int64) - lo))
    bits = 0.0
    run, context_run = 1, 1
    span = hi - lo + 1
    for i in range(1, n + 1):
        if i < n and keys[i] == keys[i - 1]:
            run += 1
        else:
            bits -= run * np.log2(run)
            run = 1
        if i < n and keys[i] // span == keys[i - 1] // span:
            context_run += 1
        else:
            bits += context_run * np.log2(context_run)
            context_run = 1
    return bits


@_jit
def copy_estimate(neighbours, target, q, contexts, bound, nodata, has_nodata, pattern_lut, escape):
    """Bits of a pass (its values ``target``, quantised errors ``q`` in ``contexts``) coded plainly,
    and in copy mode before its tables: each value repeats the first of its four ``neighbours``
    (rows) within ``bound`` (a neighbour equal to ``nodata`` repeats nothing and equals nothing),
    the symbol coded per pattern of equal neighbours (``pattern_lut`` of the six pairwise
    equalities), the others (symbol ``escape``) coded plainly. Returns (plain bits, copy bits,
    patterns seen, symbols (uint8), patterns (uint8)): ideal tables per context, the encoder's estimate."""
    m = len(target)
    sym = np.empty(m, np.uint8)
    pattern = np.empty(m, np.uint8)
    seen = np.zeros(len(pattern_lut), np.bool_)
    escaped = 0
    for i in range(m):
        s = escape
        for k in range(neighbours.shape[0]):
            v = np.int64(neighbours[k, i])
            if not (has_nodata and v == nodata) and abs(v - np.int64(target[i])) <= bound:
                s = k
                break
        sym[i] = s
        escaped += s == escape
        code, bit = 0, 0
        for a in range(neighbours.shape[0]):
            for b in range(a + 1, neighbours.shape[0]):
                va = neighbours[a, i]
                same = va == neighbours[b, i] and not (has_nodata and va == nodata)
                code |= np.int64(same) << bit
                bit += 1
        pattern[i] = pattern_lut[code]
        seen[pattern[i]] = True
    plain = entropy_bits(q, contexts)
    if escaped == m:
        return plain, np.inf, 0, sym, pattern
    esc = sym == escape
    copy = entropy_bits(sym, pattern) + entropy_bits(q[esc], contexts[esc])
    return plain, copy, int(seen.sum()), sym, pattern
