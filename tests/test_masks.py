"""NaN, infinities and no-data pixels: exact round trips, no spoiled rate, damaged mask streams."""

from pathlib import Path

import numpy as np
import pytest

import tcube
from tcube.api import MASK_STREAM, decode_batch, encode_batch
from tcube.bitstream import pack, unpack
from tcube.errors import BitstreamError, CorruptBlobError
from tcube.masks import avoid_nodata, fill_invalid, invalid_mask, pack_mask, unpack_mask
from tcube.metrics import psnr_10k

FIXTURE = Path(__file__).parent / "fixtures" / "v2_tec-hp_q7_float32_nan.tcube"


def _cloud(shape, seed=0, frac=0.3):
    """A blobby boolean mask over (H, W), about ``frac`` of the pixels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros(shape, bool)
    while mask.mean() < frac:
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 14)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    return mask


@pytest.fixture(scope="module")
def clouded(sample):
    """Float cube with NaN clouds on date 0, +inf on a few pixels, a whole NaN band plane on date 1."""
    cube = sample[:2, :, :64, :72].astype(np.float32)
    cube[0][:, _cloud((64, 72))] = np.nan
    cube[0, 3, 5, 5:9] = np.inf
    cube[1, 7] = np.nan
    return cube


def test_nan_and_inf_survive_bit_exactly(clouded):
    out = tcube.decode(tcube.encode(clouded, quality=10))
    bad = ~np.isfinite(clouded)
    np.testing.assert_array_equal(out[bad].view(np.uint32), clouded[bad].view(np.uint32))
    assert np.isfinite(out[~bad]).all()
    assert psnr_10k(np.nan_to_num(clouded)[~bad], out[~bad]) > 35


@pytest.mark.parametrize("dtype, nodata", [("uint16", 0), ("int16", -9999), ("uint16", 65535)])
def test_nodata_survives_and_is_never_produced(sample, dtype, nodata):
    cube = np.clip(sample[:1, :, :48, :48], 0, None).astype(dtype)
    cube[0][:, _cloud((48, 48), seed=1)] = nodata
    cube[0, :, 20:30, 20:30] = 1  # valid dark pixels next to no-data 0: decoding must not turn them into 0
    out = tcube.decode(tcube.encode(cube, model="tec-fp", quality=1, nodata=nodata))
    masked = cube == nodata
    np.testing.assert_array_equal(out[masked], cube[masked])
    assert not (out[~masked] == nodata).any()


def _model_bytes(blob):
    return sum(len(v) for f in unpack(blob).frames for k, v in f.items() if k != MASK_STREAM)


def test_masked_pixels_do_not_spoil_the_rate(sample):
    cube = sample[:1, :, :96, :96].astype(np.float32)
    cloudy = cube.copy()
    cloudy[0][:, _cloud((96, 96), seed=2, frac=0.4)] = np.nan
    clear = tcube.encode(cube, quality=8)
    cloudy_blob = tcube.encode(cloudy, quality=8)
    zero_filled = tcube.encode(np.nan_to_num(cloudy), quality=8)
    assert _model_bytes(cloudy_blob) < _model_bytes(clear)  # the smooth fill is cheaper than the scene it hides
    assert _model_bytes(cloudy_blob) < 0.75 * _model_bytes(zero_filled)  # and far cheaper than zeros
    assert len(cloudy_blob) < len(zero_filled)  # mask included


def test_all_masked_frame_and_batch(sample):
    empty = np.full((1, 12, 20, 30), np.nan, np.float32)
    clear = sample[:1, :, :20, :30].astype(np.float32)
    blobs = encode_batch([empty, clear], model="tec-fp", quality=3)
    out = decode_batch(blobs)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    assert len(blobs[0]) < len(blobs[1])


def test_fill_is_smooth_and_keeps_valid_pixels():
    x = np.tile(np.linspace(0, 100, 32, dtype=np.float32), (1, 1, 32, 1))
    invalid = np.zeros_like(x, bool)
    invalid[..., 8:24, 8:24] = True
    filled = fill_invalid(np.where(invalid, 0, x), invalid, np.zeros(1))
    np.testing.assert_array_equal(filled[~invalid], x[~invalid])
    assert np.abs(np.diff(filled, axis=-1)).max() < 15  # a ramp, no step to zero
    whole = fill_invalid(x, np.ones_like(invalid), np.array([7.0]))
    np.testing.assert_array_equal(whole, 7.0)


def test_mask_helpers():
    frame = np.array([[[1, 0, 3], [0, 5, 6]]], np.uint16)
    invalid = invalid_mask(frame, 0)
    stream = pack_mask(invalid, frame)
    back, values, array_mask = unpack_mask(stream, frame.shape, frame.dtype)
    assert array_mask is None
    np.testing.assert_array_equal(back, invalid)
    np.testing.assert_array_equal(values, [0])  # one shared value
    mixed = np.array([[[np.nan, 1.0]], [[-np.inf, 2.0]]], np.float32)
    back, values, _ = unpack_mask(pack_mask(invalid_mask(mixed, None), mixed), mixed.shape, mixed.dtype)
    assert back.sum() == 2 and np.isnan(values[0]) and values[1] == -np.inf
    assert invalid_mask(frame, None) is None and pack_mask(None, frame) == b""
    assert unpack_mask(b"", frame.shape, frame.dtype) is None
    with pytest.raises(CorruptBlobError, match="mask stream"):
        unpack_mask(b"garbage", frame.shape, frame.dtype)
    with pytest.raises(CorruptBlobError, match="mask stream"):
        unpack_mask(stream, (1, 5, 4), frame.dtype)
    np.testing.assert_array_equal(avoid_nodata(np.array([0.0, 1.0], np.float32), 0.0) > 0, [True, True])
    assert avoid_nodata(np.array([65535], np.uint16), 65535)[0] == 65534


def test_mask_stream_mismatch_is_reported(sample):
    cube = sample[:1, :, :16, :16].astype(np.float32)
    cube[0, 0, 0, 0] = np.nan
    container = unpack(tcube.encode(cube, model="tec-fp"))
    h = container.header
    frames = [{**f, MASK_STREAM: pack_mask(np.ones((12, 4, 4), bool), np.zeros((12, 4, 4), np.float32))}
              for f in container.frames]
    with pytest.raises(BitstreamError):  # version 3: the frame's checksum covers its mask stream
        tcube.decode(pack(h, frames))
    old = unpack(FIXTURE.read_bytes())  # version 2: the mask stream is checked on its own
    frames = [{**f, MASK_STREAM: pack_mask(np.ones((12, 4, 4), bool), np.zeros((12, 4, 4), np.float32))}
              for f in old.frames]
    with pytest.raises(CorruptBlobError, match="mask stream"):
        tcube.decode(pack(old.header, frames, version=2))


def test_values_beyond_the_coded_range_come_back_exactly():
    cube = np.full((12, 16, 16), 3e7, np.float32)
    cube[0, 0, 0] = np.nan
    np.testing.assert_array_equal(tcube.decode(tcube.encode(cube)), cube)
