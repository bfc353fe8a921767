"""Copy mode of the residual layer: bands resampled with nearest neighbour at any ratio and alignment."""

import numpy as np
import pytest

from tcube import residual, residual_copies
from tcube.errors import BitstreamError
from tcube.residual import decode_frame, encode_frame

LIMITS = (0, 65535)


def _nearest(band: np.ndarray, ratio: float, shift: float = 0.3) -> np.ndarray:
    """``band`` resampled with nearest neighbour onto a grid ``ratio`` times finer, offset by ``shift``
    of a pixel (what a reprojection to a finer grid does: runs of 1 to 3 equal pixels)."""
    h, w = band.shape
    rows = np.minimum((np.arange(h) / ratio + shift).astype(int), h - 1)
    cols = np.minimum((np.arange(w) / ratio + shift).astype(int), w - 1)
    return band[rows][:, cols]


@pytest.fixture(scope="module")
def resampled(sample) -> np.ndarray:
    """Real bands: two at 10 m resampled 1.3 times finer, three at 20 m (one grid) 2.6 times finer."""
    bands = sample[0, [1, 2, 4, 5, 6], :96, :80].astype(np.int64)
    return np.stack([_nearest(b, 1.3) for b in bands[:2]] + [_nearest(b, 2.6) for b in bands[2:]])


@pytest.mark.parametrize("bound", (0, 1, 4, 16))
def test_copies_keep_the_bound_and_decode_exactly(resampled, bound):
    valid = np.ones(resampled.shape, bool)
    valid[1, 10:30, 5:25] = False
    data, rec = encode_frame(resampled, None, valid, bound, LIMITS, None, seed=3)
    assert int(np.abs(rec - resampled)[valid].max()) <= bound
    assert np.array_equal(decode_frame(data, None, valid, bound, LIMITS, None, seed=3), rec)
    with pytest.raises(BitstreamError):  # read as format 9 (no copies): caught, never garbage
        decode_frame(data, None, valid, bound, LIMITS, None, seed=3, layout=9)


def test_copies_halve_the_bits_of_nearest_resampled_bands(resampled, monkeypatch):
    valid = np.ones(resampled.shape, bool)
    copied = len(encode_frame(resampled, None, valid, 0, LIMITS, None)[0])
    monkeypatch.setattr(residual, "COPY_LAYOUT", 99)  # no copy mode
    plain = len(encode_frame(resampled, None, valid, 0, LIMITS, None)[0])
    assert copied < 0.5 * plain


def test_copies_never_give_the_nodata_value(resampled):
    """Valid values within the bound of no-data neighbours must not copy them."""
    cube = resampled.copy()
    cube[:, 20:40, 20:40] = 0  # no-data
    cube[:, 40:44, 20:40] = 2  # valid values next to it, within the bound of 0
    valid = cube != 0
    for bound in (0, 4):
        data, rec = encode_frame(cube, None, valid, bound, LIMITS, 0)
        assert (rec[valid] != 0).all() and int(np.abs(rec - cube)[valid].max()) <= bound
        assert np.array_equal(decode_frame(data, None, valid, bound, LIMITS, 0), rec)


def test_same_grid_bands_reference_each_other(resampled):
    """The third to fifth bands come from one 20 m grid: each takes an earlier one of them as its copy
    reference, which makes its symbols nearly free."""
    valid = np.ones(resampled.shape, bool)
    data, _ = encode_frame(resampled, None, valid, 0, LIMITS, None)
    seen = {}
    original = residual._read_copies

    def spy(reader, copied, reach):
        out = original(reader, copied, reach)
        seen["references"] = list(copied.references)
        return out

    try:
        residual._read_copies = spy
        decode_frame(data, None, valid, 0, LIMITS, None)
    finally:
        residual._read_copies = original
    assert seen["references"][3] == 2 and seen["references"][4] in (2, 3)


def test_smooth_bands_stay_out_of_copy_mode(sample, monkeypatch):
    """A band with no repeated neighbours codes to the very bytes it gave without copy mode but the flags."""
    cube = sample[0, [1, 2, 3], :64, :64].astype(np.int64)
    valid = np.ones(cube.shape, bool)
    data = encode_frame(cube, None, valid, 0, LIMITS, None)[0]
    monkeypatch.setattr(residual, "COPY_LAYOUT", 99)
    assert len(data) - len(encode_frame(cube, None, valid, 0, LIMITS, None)[0]) <= 16


def test_forged_copy_side_is_refused(resampled):
    valid = np.ones(resampled.shape, bool)
    data, _ = encode_frame(resampled, None, valid, 0, LIMITS, None)
    rng = np.random.default_rng(0)
    for _ in range(40):
        forged = bytearray(data)
        at = int(rng.integers(residual._HEAD.size, len(data)))
        forged[at] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError):
            decode_frame(bytes(forged), None, valid, 0, LIMITS, None)


def test_symbols_patterns_and_contexts():
    cands = np.array([[5, 1, 3], [5, 2, 3], [6, 1, 3], [5, 2, 3]])
    assert residual_copies.symbols(np.array([6, 2, 9]), cands, 0).tolist() == [2, 1, residual_copies.ESCAPE]
    assert residual_copies.symbols(np.array([7, 2, 9]), cands, 1).tolist() == [2, 0, residual_copies.ESCAPE]
    pattern = residual_copies.patterns(cands)
    assert pattern[2] == 0 and len(set(pattern.tolist())) == 3
    reference = np.array([residual_copies.NONE, 1, 4], np.uint8)
    assert residual_copies.contexts(pattern, reference).tolist() == [
        pattern[0], residual_copies.PATTERNS + 1, residual_copies.PATTERNS + 4]
    assert sorted(set(residual_copies.pattern_lut().tolist())) == list(range(residual_copies.PATTERNS))


def test_count_tables_follow_the_counts():
    codes = residual_copies.quantised_counts(np.array([[1000, 10, 0, 0, 1]]))
    table = residual_copies.count_tables(codes).table(0)
    assert table[0] > 0.95 and table[2] < 1e-6 and table[4] > 0


def test_second_half_sees_the_symbols_above_and_below():
    """Values on odd rows of a pass's grid take the symbol the values above and below agree on as
    their context (unless the reference band has one), else their pattern."""
    pattern = np.array([3, 3, 3])
    agree = np.array([1, residual_copies.SYMBOLS, 0])
    own = residual_copies.PATTERNS + residual_copies.SYMBOLS
    assert residual_copies.contexts(pattern, None, agree).tolist() == [own + 1, 3, own]
    reference = np.array([residual_copies.NONE, 2, residual_copies.NONE], np.uint8)
    assert residual_copies.contexts(pattern, reference, agree).tolist() == [own + 1, residual_copies.PATTERNS + 2, own]
    assert residual_copies.CONTEXTS == own + residual_copies.SYMBOLS
