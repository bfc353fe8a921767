import numpy as np
import pytest

from tcube import residual_kernels as kernels
from tcube.residual import _reflect


def _planes(rng, bands=3, h=23, w=31, limit=1 << 20):
    rec = rng.integers(-limit, limit, (bands, h, w)).astype(np.int32)
    errors = rng.integers(-32768, 32768, (bands, h, w)).astype(np.int16)
    base = rng.integers(-limit, limit, (bands, h, w)).astype(np.int32)
    valid = rng.random((h, w)) > 0.2
    return rec, errors, base, valid


def _taps(rng, count, bands, reach=7):
    rows = [(rng.integers(3), rng.integers(bands), rng.integers(-reach, reach + 1), rng.integers(-reach, reach + 1), f)
            for f in range(count) for _ in range(rng.integers(1, 4))]
    return np.array(rows, np.int64)


def _expected_features(planes, valid, row0, col0, stride, taps, count):
    """Features at a pass's valid values, tap by tap with mirrored indices (Python integers)."""
    h, w = valid.shape
    out = []
    for y in range(row0, h, stride):
        for x in range(col0, w, stride):
            if valid[y, x]:
                f = [0] * count
                for plane, band, dy, dx, k in taps:
                    yy, xx = _reflect(np.array([y + dy]), h)[0], _reflect(np.array([x + dx]), w)[0]
                    f[k] += int(planes[plane][band, yy, xx])
                out.append(f)
    return np.array(out, dtype=object).reshape(-1, count).T


@pytest.mark.parametrize("row0,col0,stride", [(0, 0, 1), (1, 0, 2), (1, 1, 2), (0, 4, 8)])
def test_features_are_the_taps_mirrored_at_the_border(row0, col0, stride):
    rng = np.random.default_rng(stride + row0)
    rec, errors, base, valid = _planes(rng)
    taps = _taps(rng, 6, 3)
    expected = _expected_features((rec, errors, base), valid, row0, col0, stride, taps, 6)
    got = kernels.features(rec, errors, base, valid, row0, col0, stride, taps, 6, 1)
    assert np.array_equal(got.astype(object), expected)
    assert np.array_equal(kernels.features(rec, errors, base, valid, row0, col0, stride, taps, 6, 5), got[:, ::5])


@pytest.mark.parametrize("parallel", [False, True])
def test_predictions_and_contexts_are_exact_on_every_thread(monkeypatch, parallel):
    monkeypatch.setattr(kernels, "PARALLEL_VALUES", 0)
    rng = np.random.default_rng(7)
    rec, errors, base, valid = _planes(rng, limit=1 << 30)
    count = 9
    taps = _taps(rng, count, 3)
    weights = rng.integers(-(1 << 15), 1 << 15, count)
    constant = (int(rng.integers(-(1 << 15), 1 << 15)) << kernels.FRAC) + (1 << (kernels.FRAC - 1))
    around = np.array([(0, -1), (0, 1), (-1, 0), (1, 0)], np.int64)
    lut = np.arange(40, dtype=np.int64) // 2
    pred, ctx = kernels.predict(rec, errors, base, valid, 1, 0, 2, taps, weights, constant, 2, around, True, 1, 3, 2,
                                lut, 100, parallel)
    f = _expected_features((rec, errors, base), valid, 1, 0, 2, taps, count)
    expected = (np.array([int(a) for a in weights], dtype=object) @ f + constant) // (1 << kernels.FRAC)
    assert np.array_equal(pred.astype(object), expected)
    near = _expected_features((rec,) * 3, valid, 1, 0, 2, np.array([(0, 2, dy, dx, k) for k, (dy, dx) in
                                                                     enumerate(around)]), 4)
    cross = _expected_features((base,) * 3, valid, 1, 0, 2, np.array([(0, 2, dy, dx, 0) for dy, dx in around]), 1)[0]
    centre = _expected_features((base, errors, base), valid, 1, 0, 2, np.array([(0, 2, 0, 0, 0), (1, 1, 0, 0, 1)]), 2)
    activity = (np.abs(near - expected).sum(0) >> 2) + (np.abs(4 * centre[0] - cross) >> 2) + np.abs(centre[1]) * 3 // 2
    assert np.array_equal(ctx, 100 + lut[np.minimum(activity.astype(np.int64), 39)])


@pytest.mark.parametrize("nodata", [None, 7])
def test_the_copy_estimate_counts_what_copy_mode_codes(nodata):
    from tcube import residual_copies as copies

    rng = np.random.default_rng(3)
    neighbours = rng.integers(0, 12, (4, 5000)).astype(np.int32)
    target = np.where(rng.random(5000) < 0.6, neighbours[rng.integers(0, 4, 5000), np.arange(5000)],
                      rng.integers(0, 12, 5000))
    q = rng.integers(-40, 40, 5000)
    ctx = rng.integers(0, 80, 5000)
    plain, copy, patterns, got_sym, got_pattern = kernels.copy_estimate(neighbours, target, q, ctx, 1, nodata or 0,
                                                           nodata is not None, copies.pattern_lut(), copies.ESCAPE)
    cands = copies.candidates(neighbours, nodata)
    sym, pattern = copies.symbols(target, cands, 1), copies.patterns(cands)
    esc = sym == copies.ESCAPE
    assert plain == pytest.approx(copies.entropy_bits(q, ctx), rel=1e-12)
    assert copy == pytest.approx(copies.entropy_bits(sym, pattern) + copies.entropy_bits(q[esc], ctx[esc]), rel=1e-12)
    assert patterns == len(np.unique(pattern))
    assert np.array_equal(got_sym, sym) and np.array_equal(got_pattern, pattern)
