import json

import numpy as np
import pytest
import torch

import tcube
import tcube.metrics
from tcube.errors import InputError, TcubeError, UnknownModelError
from tcube.models import load_model

MODELS = tcube.list_models()


def test_list_models():
    assert MODELS == ["tec-fp", "tec-hp", "tec-hx", "tec-pc", "tec-tt"]


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
@pytest.mark.slow
def test_quality_is_monotone(model, sample, s2_dir):
    import tifffile

    place = np.moveaxis(tifffile.imread(s2_dir / "terracodec" / "ssl4eos12_val_0080717_2.tif"), -1, 0)
    for cube in (sample[::2], place[None, :, :128, :128]):  # two seasons of the sample, a summer date there
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
        (np.zeros((2, 33, 16, 16), np.uint16), {}, "33 bands"),
        (np.zeros((2, 11, 16, 16), np.uint16), {"model": "tec-hp"}, "11 bands"),
        (np.zeros((12, 16), np.uint16), {}, "dims"),
        (np.zeros((1, 2, 12, 16, 16), np.uint16), {}, "dims"),
        (np.zeros((1, 12, 16, 16), np.float64), {}, "dtype"),
        (np.zeros((1, 12, 16, 16), np.uint8), {}, "dtype"),
        (np.zeros((0, 12, 16, 16), np.uint16), {}, "empty"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"nodata": -1}, "not a uint16 value"),
        (np.zeros((1, 12, 16, 16), np.int16), {"nodata": 0.5}, "not a int16 value"),
        (np.zeros((1, 12, 16, 16), np.int16), {"nodata": "zero"}, "number or None"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"batch": 0}, "batch must be a whole number"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"batch": -1}, "batch must be a whole number"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"batch": 2.0}, "batch must be a whole number"),
        (np.zeros((1, 12, 16, 16), np.float32), {"scale": 0}, "scale must be a finite number above 0"),
        (np.zeros((1, 12, 16, 16), np.float32), {"offset": np.nan}, "offset must be a finite number"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"scale": 1e-4}, "apply to float32 cubes"),
        (np.full((1, 12, 16, 16), 0.25, np.float32), {}, "float reflectance"),
        (np.broadcast_to(np.uint16(900), (1, 12, 8200, 8200)), {}, "beyond one blob's limits"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"quality": 0}, "quality"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"quality": 17}, "quality"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"quality": 2.5}, "quality"),
        ([[[1]]], {}, "numpy array"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"band_names": ["B01"] * 12}, "distinct"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"band_names": ["B01", "B02"]}, "2 band names for a cube of 12"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"band_names": "B01"}, "sequence of strings"),
        (np.zeros((1, 12, 16, 16), np.uint16), {"band_names": [""] + [f"b{i}" for i in range(11)]}, "non-empty"),
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


MEMORY_SCRIPT = """
import json, resource, sys, numpy as np, tcube
model, what, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[4])
cube = np.tile(tcube.data.load_sample_cube()[:1].astype(np.uint16), (1, 1, 16, 16))  # 1 x 12 x 2048 x 2048
blob = tcube.encode(cube[:, :, :64, :64], model=model, **settings)  # the model loaded, the allocator warm
tcube.decode(blob)
if what == "decode":
    blob = open(sys.argv[3], "rb").read()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if what == "encode":
    open(sys.argv[3], "wb").write(tcube.encode(cube, model=model, **settings))
else:
    out = tcube.decode(blob)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024 / cube.nbytes)
if what == "decode":
    assert out.shape == cube.shape and tcube.metrics.psnr_full(cube[:, :, :512], out[:, :, :512]) > 35
"""


@pytest.mark.parametrize(("model", "bound", "settings"), [
    ("tec-hp", 4.0, {}), ("tec-tt", 4.0, {}), ("tec-pc", 20.0, {}), ("tec-pc", 20.0, {"max_error": 4})])
@pytest.mark.slow
def test_memory_stays_bounded_for_a_large_frame(model, bound, settings, tmp_path):
    """One 1 x 12 x 2048 x 2048 uint16 date (96 MiB): the transforms run in tiles, so encoding and
    decoding each peak at under 4 times the array (fresh processes measure their own peaks); tec-pc
    holds float32 components and one component's entropy parameters at a time (measured 17x / 16x);
    with max_error=4, the residual layer's int32 planes and symbols (measured 16.5x / 13.3x)."""
    import subprocess
    import sys

    blob = tmp_path / "big.tcube"
    for what in ("encode", "decode"):
        run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, model, what, str(blob), json.dumps(settings)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert float(run.stdout.strip()) < bound, (what, run.stdout)


def test_large_frames_code_in_tiles_to_the_same_symbols(sample, monkeypatch):
    """Tiles with a margin give the latents of the whole frame: the same blob, bit for bit."""
    import tcube.models.base

    cube = np.tile(sample[:1], (1, 1, 2, 3))[:, :, :250, :330]
    whole = {m: tcube.encode(cube, model=m) for m in ("tec-fp", "tec-hp", "tec-tt")}
    monkeypatch.setattr(tcube.models.base, "PASS_PIXELS", 1 << 15)  # pieces of 80 x 80 pixels and a margin
    for m, blob in whole.items():
        assert tcube.encode(cube, model=m) == blob
        np.testing.assert_allclose(tcube.decode(blob).astype(float), tcube.decode(whole[m]).astype(float), atol=1)


# ---- target-PSNR coding -------------------------------------------------------------------------------------------

def _date_psnrs(cube, out, metric="10k"):
    from tcube.metrics import frame_psnr

    return frame_psnr(cube.astype(float), out.astype(float), metric)


@pytest.mark.parametrize(("target", "metric"), [(42.0, "10k"), (55.0, "full")])
def test_psnr_mode_meets_its_target_on_every_date(sample, target, metric):
    cube = np.ascontiguousarray(sample[:, :, 30:70, 40:90])
    blob = tcube.encode(cube, psnr=target, metric=metric)
    assert (_date_psnrs(cube, tcube.decode(blob), metric) >= target).all()
    d = tcube.info(blob)
    assert d["mode"] == "psnr" and d["psnr"] == target and d["metric"] == metric


def _snow_and_cloud(s2_dir):
    from tcube.readers import read_cube

    snow = read_cube(s2_dir / "terracodec" / "ssl4eos12_val_0193833_0.tif")[:, :, 100:164, 100:164]
    clouds = np.load(s2_dir / "s2cloudless" / "input_arrays.npz")["s2_im"][0, 300:364, 200:264]  # (y, x, 13)
    clouds = np.round(np.moveaxis(clouds, -1, 0)[None] * 10000)
    return [np.clip(np.round(a), 0, 65535).astype(np.uint16) for a in (snow, clouds)]


def test_psnr_mode_reaches_50_db_on_snow_and_clouds(s2_dir):
    for cube in _snow_and_cloud(s2_dir):
        out = tcube.decode(tcube.encode(cube, psnr=50.0))
        assert (_date_psnrs(cube, out) >= 50.0).all()


def test_psnr_mode_refuses_bad_arguments(sample):
    cube = sample[:1, :, :16, :16]
    for kwargs, match in [({"psnr": 40, "quality": 3}, "not both"), ({"psnr": 40, "max_error": 2}, "not both"),
                          ({"psnr": 5}, "decibels"), ({"psnr": "40"}, "decibels"), ({"psnr": 40, "metric": "rgb"},
                                                                                    "metric"),
                          ({"psnr": 40, "model": "tec-hp"}, "decodes exactly")]:
        with pytest.raises(InputError, match=match):
            tcube.encode(cube, **kwargs)
