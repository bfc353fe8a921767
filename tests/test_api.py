import numpy as np
import pytest
import torch

import tcube
import tcube.metrics
from tcube.errors import InputError, TcubeError, UnknownModelError
from tcube.models import load_model

MODELS = tcube.list_models()


def test_list_models():
    assert MODELS == ["tec-fp", "tec-hp", "tec-tt"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("t", [1, 3])
def test_round_trip_equals_model_reconstruction(model, t, sample):
    cube = sample[:t, :, :48, :80]
    blob = tcube.encode(cube, model=model, quality=9)
    out = tcube.decode(blob)
    ref = load_model(model).reconstruct(torch.from_numpy(cube.astype(np.float32)), 9).numpy()
    expected = np.clip(np.floor(ref + 0.5), -32768, 32767).astype(np.int16)
    assert out.shape == cube.shape and out.dtype == cube.dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_dtypes_and_odd_sizes(model, dtype, small):
    cube = small[:1].astype(dtype)  # 1 x 12 x 37 x 61
    out = tcube.decode(tcube.encode(cube, model=model, quality=12))
    assert out.dtype == np.dtype(dtype) and out.shape == (1, 12, 37, 61)
    err = np.abs(out.astype(np.float64) - cube).mean()
    assert err < 0.1 * cube.mean()


def test_three_dim_cube_keeps_shape(small):
    cube = small[0]
    out = tcube.decode(tcube.encode(cube, model="tec-hp", quality=3))
    assert out.shape == cube.shape


def test_float32_output_is_not_rounded(small):
    out = tcube.decode(tcube.encode(small[:1].astype(np.float32), model="tec-fp", quality=5))
    assert not np.all(out == np.round(out))


@pytest.mark.parametrize("model", MODELS)
def test_quality_is_monotone(model, sample, s2_dir):
    import tifffile

    place = np.moveaxis(tifffile.imread(s2_dir / "terracodec" / "ssl4eos12_val_0080717_2.tif"), -1, 0)
    for cube in (sample, place[None, :, :128, :128]):
        sizes, psnrs = [], []
        for q in range(1, 17):
            blob = tcube.encode(cube, model=model, quality=q)
            sizes.append(len(blob))
            psnrs.append(tcube.metrics.psnr_10k(cube, tcube.decode(blob)))
        assert np.all(np.diff(sizes) > 0), sizes
        assert np.all(np.diff(psnrs) > 0), psnrs


def test_info(small):
    blob = tcube.encode(small, model="tec-fp", quality=2)
    d = tcube.info(blob)
    assert d["model"] == "tec-fp" and d["quality"] == 2 and d["dtype"] == "int16"
    assert d["shape"] == list(small.shape) and d["bytes"] == len(blob) and len(d["frames"]) == 2
    assert d["bpppb"] == pytest.approx(8 * len(blob) / small.size)


@pytest.mark.parametrize(
    "cube, kwargs, match",
    [
        (np.zeros((2, 11, 16, 16), np.uint16), {}, "11 bands"),
        (np.zeros((12, 16), np.uint16), {}, "dims"),
        (np.zeros((1, 2, 12, 16, 16), np.uint16), {}, "dims"),
        (np.zeros((1, 12, 16, 16), np.float64), {}, "dtype"),
        (np.zeros((1, 12, 16, 16), np.uint8), {}, "dtype"),
        (np.zeros((0, 12, 16, 16), np.uint16), {}, "empty"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"nodata": -1}, "not a uint16 value"),
        (np.zeros((1, 12, 16, 16), np.int16), {"nodata": 0.5}, "not a int16 value"),
        (np.zeros((1, 12, 16, 16), np.int16), {"nodata": "zero"}, "number or None"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"batch_size": 0}, "batch_size must be a whole number"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"batch_size": -1}, "batch_size must be a whole number"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"batch_size": 2.0}, "batch_size must be a whole number"),
        (np.zeros((1, 12, 16, 16), np.float32), {"scale": 0}, "scale must be a finite number above 0"),
        (np.zeros((1, 12, 16, 16), np.float32), {"offset": np.nan}, "offset must be a finite number"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"scale": 1e-4}, "apply to float32 cubes"),
        (np.full((1, 12, 16, 16), 0.25, np.float32), {}, "float reflectance"),
        (np.broadcast_to(np.uint16(900), (1, 12, 8200, 8200)), {}, "beyond one blob's limits"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"quality": 0}, "quality"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"quality": 17}, "quality"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"quality": 2.5}, "quality"),
        ([[[1]]], {}, "numpy array"),
    ],
)
def test_bad_input(cube, kwargs, match):
    with pytest.raises(InputError, match=match):
        tcube.encode(cube, **kwargs)


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="unknown model 'tec-xx'.*tec-fp"):
        tcube.encode(np.zeros((12, 16, 16), np.uint16), model="tec-xx")
    assert issubclass(UnknownModelError, TcubeError)


def test_single_nan_pixel_round_trips(small):
    cube = small[:1].astype(np.float32)
    cube[0, 3, 4, 5] = np.nan
    out = tcube.decode(tcube.encode(cube))
    assert np.isnan(out[0, 3, 4, 5]) and np.isnan(out).sum() == 1
