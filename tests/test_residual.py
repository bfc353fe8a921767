"""Error-bounded coding: the bound holds on every valid pixel, decoding is exact, damage is caught."""

import numpy as np
import pytest
import torch

import tcube
from tcube import residual
from tcube.bitstream import pack, unpack
from tcube.errors import BitstreamError, CorruptBlobError, InputError, SymbolChecksumError
from tcube.residual import decode_frame, encode_frame

BOUNDS = (0, 1, 4, 16, 64)


def _max_abs(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> int:
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int(d.max() if where is None else d[where].max())


@pytest.fixture(scope="module")
def crop(sample) -> np.ndarray:
    """Two real dates with odd sizes."""
    return np.ascontiguousarray(sample[:2, :, 7:40, 3:52])


@pytest.mark.parametrize("bound", BOUNDS)
def test_bound_holds_on_a_real_cube(crop, bound):
    out = tcube.decode(tcube.encode(crop, max_error=bound))
    assert out.dtype == crop.dtype and out.shape == crop.shape
    assert _max_abs(out, crop) <= bound
    if bound == 0:
        assert np.array_equal(out, crop)


@pytest.mark.parametrize("bound", (0, 4, 64))
def test_bound_holds_for_uint16_with_nodata_saturation_and_bright_pixels(crop, bound):
    cube = crop.astype(np.uint16) * 4  # snow- and cloud-bright: up to about 60000
    cube[0, :, :4, :6] = 0  # no data
    cube[1, 2, 10:13, 20:30] = 65535  # saturated
    cube[1, 5, 3, 4] = 1  # next to the no-data value
    out = tcube.decode(tcube.encode(cube, max_error=bound, nodata=0))
    valid = cube != 0
    assert _max_abs(out, cube, valid) <= bound
    assert (out[~valid] == 0).all() and (out[valid] != 0).all()
    assert (out[1, 2, 10:13, 20:30] >= 65535 - bound).all()


@pytest.mark.parametrize("bands", (1, 13))
def test_any_band_count_and_odd_sizes(sample, bands):
    cube = np.ascontiguousarray(np.concatenate([sample[0], sample[0, :1]])[:bands, 3:20, 1:10])
    for bound in (0, 16):
        out = tcube.decode(tcube.encode(cube, max_error=bound))
        assert out.shape == cube.shape and _max_abs(out, cube) <= bound


def test_nodata_is_never_produced_at_valid_pixels():
    rng = np.random.default_rng(3)
    cube = rng.integers(990, 1010, (2, 3, 16, 16)).astype(np.uint16)
    cube[cube == 1000] = 1001
    cube[0, 0, 0, :4] = 1000
    out = tcube.decode(tcube.encode(cube, max_error=8, nodata=1000))
    valid = cube != 1000
    assert _max_abs(out, cube, valid) <= 8
    assert (out[valid] != 1000).all() and (out[~valid] == 1000).all()


@pytest.mark.parametrize("quality", (0, 2))
def test_decoding_does_not_depend_on_threads_or_batching(crop, quality):
    blob = tcube.encode(crop, max_error=4, quality=quality)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = tcube.decode(blob, batch=1)
        blob_1 = tcube.encode(crop, max_error=4, quality=quality, batch=1)
        torch.set_num_threads(2)
        two = tcube.decode(blob, batch=8)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)
    assert blob_1 == blob


def test_info_shows_mode_and_bound(crop):
    d = tcube.info(tcube.encode(crop[:1], max_error=16))
    assert d["mode"] == "max_error" and d["max_error"] == 16.0 and d["model"] == "tec-hx"
    assert d["quality"] in (0, 2)  # the smaller of the residual layer alone and over a quality-2 base
    assert tcube.info(tcube.encode(crop[:1], model="tec-pc", quality=3))["mode"] == "quality"


@pytest.mark.parametrize("quality", (0, 6))
def test_given_quality_is_the_base(crop, quality):
    blob = tcube.encode(crop[:1], max_error=4, quality=quality)
    assert tcube.info(blob)["quality"] == quality
    assert set(unpack(blob).frames[0]) == ({"mask", "residual"} | ({"side", "hevc"} if quality else set()))
    assert _max_abs(tcube.decode(blob), crop[:1]) <= 4


def test_quality_0_needs_an_error_bound(crop):
    with pytest.raises(InputError, match="quality"):
        tcube.encode(crop[:1], model="tec-pc", quality=0)


@pytest.mark.parametrize("bad", (-1, 1.5, True, "4", 1 << 20))
def test_bad_bounds_are_refused(crop, bad):
    with pytest.raises(InputError, match="max_error"):
        tcube.encode(crop[:1], max_error=bad)


@pytest.mark.parametrize("bound", (0, 4))
def test_float32_digital_numbers_with_nan_keep_the_bound(crop, bound):
    cube = crop.astype(np.float32)
    cube[0, 1, 2:5, 3:9] = np.nan
    cube[1, 0, 0, 0] = np.inf
    out = tcube.decode(tcube.encode(cube, max_error=bound))
    valid = np.isfinite(cube)
    assert out.dtype == np.float32 and np.isnan(out[~valid][:-1]).all() and out[1, 0, 0, 0] == np.inf
    assert float(np.abs(out[valid] - cube[valid]).max()) <= bound
    if bound == 0:
        assert np.array_equal(out, cube, equal_nan=True)


def test_fractional_floats_and_inexact_models_are_refused(crop):
    with pytest.raises(InputError, match="whole digital numbers"):
        tcube.encode(crop[:1].astype(np.float32) * np.float32(1e-4), max_error=4, scale=1e-4)
    with pytest.raises(InputError, match="decodes exactly"):
        tcube.encode(crop[:1], model="tec-hp", max_error=4)


def _edited(blob: bytes, **changes) -> bytes:
    c = unpack(blob)
    header = {k: v for k, v in c.header.items() if k != "version"}
    header.update(changes)
    return pack(header, c.frames)


def test_damaged_or_forged_residuals_are_caught(crop):
    blob = tcube.encode(crop[:1], max_error=4)
    for quality in (0, 2):  # another bound: the frames' checksums are bound to it
        with pytest.raises(BitstreamError):
            tcube.decode(_edited(tcube.encode(crop[:1], max_error=4, quality=quality), max_error=5.0))
    c = unpack(blob)
    header = {k: v for k, v in c.header.items() if k != "version"}
    frames = [dict(f) for f in c.frames]
    data = bytearray(frames[0]["residual"])
    data[-5] ^= 0x40
    frames[0]["residual"] = bytes(data)
    with pytest.raises(BitstreamError):
        tcube.decode(pack(header, frames))
    for cut, error in ((5, CorruptBlobError), (21, CorruptBlobError), (22, BitstreamError), (300, BitstreamError)):
        frames[0]["residual"] = c.frames[0]["residual"][:cut]
        with pytest.raises(error):
            tcube.decode(pack(header, frames))
    with pytest.raises(BitstreamError, match="inconsistent"):
        tcube.decode(_edited(blob, max_error=2.5))


def test_frame_coder_alone_without_base():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.integers(-30, 31, (4, 11, 13)), axis=2) + 5000
    valid = rng.random(x.shape) > 0.1
    for bound in BOUNDS:
        data, rec = encode_frame(x, None, valid, bound, (0, 65535), None, seed=7)
        assert _max_abs(rec, x, valid) <= bound
        assert (rec[~valid] == 0).all()  # pixels outside valid are left alone
        back = decode_frame(data, None, valid, bound, (0, 65535), None, seed=7)
        assert np.array_equal(back, rec)
        with pytest.raises(SymbolChecksumError):
            decode_frame(data, None, valid, bound, (0, 65535), None, seed=8)


def _resampled(fine: np.ndarray) -> np.ndarray:
    """A band as a 10 m stack holds a 20 m one: the 2x2 means, bilinearly upsampled and rounded."""
    coarse = fine.reshape(fine.shape[0] // 2, 2, fine.shape[1] // 2, 2).mean(axis=(1, 3))
    pad = np.pad(coarse, 1, mode="edge")
    rows = np.arange(fine.shape[0]) / 2 - 0.25 + 1
    cols = np.arange(fine.shape[1]) / 2 - 0.25 + 1
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    p = lambda dr, dc: pad[np.ix_(r0 + dr, c0 + dc)]  # noqa: E731
    up = (1 - fr) * ((1 - fc) * p(0, 0) + fc * p(0, 1)) + fr * ((1 - fc) * p(1, 0) + fc * p(1, 1))
    return np.round(up).astype(fine.dtype)


@pytest.mark.parametrize("bound", (0, 1, 4))
def test_resampled_bands_take_wide_neighbourhoods_and_keep_the_bound(sample, bound):
    fine = np.ascontiguousarray(sample[0, [1, 2, 3, 7], :64, :64])
    cube = np.concatenate([fine, np.stack([_resampled(b) for b in fine[:2]])])
    valid = np.ones(cube.shape, bool)
    assert residual.wide_bands(cube.astype(np.int32), valid, bound) == [False] * 4 + [True] * 2
    data, rec = encode_frame(cube, None, valid, bound, (-32768, 32767), None)
    assert _max_abs(rec, cube) <= bound
    assert np.array_equal(decode_frame(data, None, valid, bound, (-32768, 32767), None), rec)
    narrow = encode_frame(cube[4:], None, valid[4:], bound, (-32768, 32767), None)[0]
    with pytest.raises(BitstreamError):  # read as format 5 (no neighbourhoods): caught, never garbage
        decode_frame(narrow, None, valid[4:], bound, (-32768, 32767), None, layout=5)


def test_wide_neighbourhoods_save_bits_on_real_resampled_bands(sample, monkeypatch):
    cube = np.ascontiguousarray(sample[0])  # bands 4-6, 8, 10, 11 are 20 m ones resampled to 10 m
    valid = np.ones(cube.shape, bool)
    wide = len(encode_frame(cube, None, valid, 0, (-32768, 32767), None)[0])
    monkeypatch.setattr(residual, "WIDE_MARGIN", float("inf"))  # never wide
    narrow = len(encode_frame(cube, None, valid, 0, (-32768, 32767), None)[0])
    assert wide < 0.95 * narrow


@pytest.mark.parametrize("bound", BOUNDS)
def test_bands_on_a_value_lattice_are_coded_in_its_units(sample, bound, monkeypatch):
    fine = sample[0, [1, 2, 3, 7], :48, :40].astype(np.int64)
    cube = np.concatenate([fine[:2] // 4 * 4 + 3, fine[2:]])  # two bands stored at a coarser precision
    cube[0, 0, :5] = 65535  # the top of the range is on the lattice (3 + 4 k)
    valid = (cube != 3) & (np.arange(40) > 2)  # no-data 3 is on the lattice too
    assert residual.lattices(cube, valid, bound) == [(4, 3), (4, 3), (1, 0), (1, 0)]
    data, rec = encode_frame(cube, None, valid, bound, (0, 65535), 3)
    assert _max_abs(rec, cube, valid) <= bound and (rec[valid] != 3).all() and (rec[~valid] == 0).all()
    assert np.array_equal(decode_frame(data, None, valid, bound, (0, 65535), 3), rec)
    with pytest.raises(BitstreamError):  # read as format 6 (no lattices): caught, never garbage
        decode_frame(data, None, valid, bound, (0, 65535), 3, layout=6)
    monkeypatch.setattr(residual, "LATTICE_LIMIT", 1)  # no lattice
    plain = encode_frame(cube, None, valid, bound, (0, 65535), 3)[0]
    if bound <= 4:  # a step 12 / 9 coarser or more (at large bounds the two are about even)
        assert len(data) < len(plain)
    if bound == 0:  # a quarter of the values to tell apart: about 2 bits less per value
        assert (len(plain) - len(data)) * 8 > 1.5 * valid[:2].sum()


def test_weights_are_stored_as_coarse_as_the_pass_affords():
    rng = np.random.default_rng(0)
    features = rng.normal(0, 100, (6, 4096))
    target = rng.normal(0, 0.3, 6) @ features + rng.normal(0, 1, 4096)
    w, _, _, gram = residual._centred_solve(features, target, 1e-6)
    few = residual._precision(w, gram / 4096, 1.0, 64, residual.step(64))  # a coarse pass at a large bound
    many = residual._precision(w, gram / 4096, 1.0, 1 << 20, residual.step(0))
    assert many < few <= residual.MAX_SHIFT


def test_a_swapped_residual_of_a_later_date_names_the_blob(crop):
    """A stream that decodes but fails its date's checksum (the first date's, put in the second) is
    refused as a checksum error naming the date's blob, never a crash of the error's own naming."""
    c = unpack(tcube.encode(crop, max_error=4))
    header = {k: v for k, v in c.header.items() if k != "version"}
    frames = [dict(f) for f in c.frames]
    frames[1]["residual"] = frames[0]["residual"]
    with pytest.raises(SymbolChecksumError):
        tcube.decode(pack(header, frames))


def test_reweighted_fit_leans_away_from_outliers():
    """A few large errors (an edge, a cloud) pull least squares off the weights most values follow;
    one reweighted step comes back towards them."""
    rng = np.random.default_rng(3)
    features = rng.normal(0, 100, (3, 4000))
    target = np.array([0.5, -0.25, 0.75]) @ features + rng.normal(0, 1, 4000)
    target[:40] += 3000  # 1 % outliers
    w, d, t, _ = residual._centred_solve(features, target, 1e-6)
    robust = residual._reweighted(w, d, t, 1e-6)
    truth = np.array([0.5, -0.25, 0.75])
    assert np.abs(robust - truth).max() < 0.7 * np.abs(w - truth).max()
    assert np.median(np.abs(t - robust @ d)) < np.median(np.abs(t - w @ d))
