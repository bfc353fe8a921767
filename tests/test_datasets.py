"""Whole datasets through xarray2tec / tec2xarray: real files, masks, rules, dask inputs."""

import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import assert_same
from zarr.storage import MemoryStore

import tcube.zarr_codecs
from tcube import jobs
from tcube.datasets import tec2xarray, xarray2tec
from tcube.errors import InputError
from tcube.metrics import psnr_full
from tcube.readers import open_dataset


def _store(tmp_path, name="out.zarr"):
    return str(tmp_path / name)


@pytest.mark.parametrize("resolution", ["10m", "20m"])
def test_nrt_romania_round_trip(s2_dir, tmp_path, resolution):
    ds = xr.open_dataset(s2_dir / "nrt_romania" / f"sentinel2_cube_subset_romania_{resolution}.nc").isel(
        time=slice(40, 52))
    rows = xarray2tec(ds, _store(tmp_path), compute_stats=True)
    back = tec2xarray(_store(tmp_path))
    assert isinstance(back["B4"].data, __import__("dask").array.Array)
    assert_same(ds, back, min_psnr=20)  # dates 50 and 51 are thick cloud (B2 ~ 9000 DN): about 20-25 dB
    stats = {r["variable"]: r for r in rows}
    assert stats["SCL"]["psnr_10k"] == np.inf and stats["B4"]["ratio"] > 10 and 0 < stats["B4"]["ssim"] <= 1
    assert back["spatial_ref"].attrs["spatial_ref"].startswith("PROJCS")


@pytest.mark.parametrize("which", ["10m", "20m"])
def test_worldcereal_round_trip(s2_dir, tmp_path, which):
    path = sorted((s2_dir / "worldcereal").glob(f"S2_L2A_{which}_*.nc"))[0]
    # the 20 m files have integer angle variables with a fill value that xarray cannot CF-decode:
    # open_dataset falls back to the stored values there (and CF-decodes the 10 m file)
    ds = open_dataset(path).isel(timestamp=slice(0, 10))
    xarray2tec(ds, _store(tmp_path))
    back = tec2xarray(_store(tmp_path))
    assert_same(ds, back, min_psnr=20)  # cloudy dates included (B02 up to ~4400 DN on average)
    band = "B04" if which == "10m" else "B05"
    scale = back[band].encoding.get("scale_factor", back[band].attrs.get("scale_factor"))
    assert scale == 1e-4  # reflectance 0..1 (10 m) or raw integers (20 m), coded as digital numbers


@pytest.mark.slow
def test_terracodec_folder_of_dates(s2_dir, tmp_path):
    folder = tmp_path / "dates"
    folder.mkdir()
    for p in sorted((s2_dir / "terracodec").glob("*0080717_*.tif")):
        (folder / p.name).symlink_to(p)
    ds = open_dataset(folder)
    assert ds.sizes["time"] == 4 and list(ds.data_vars)[:2] == ["B01", "B02"]
    xarray2tec(ds, _store(tmp_path), quality=12)
    back = tec2xarray(_store(tmp_path))
    assert_same(ds, back, min_psnr=35)
    assert list(back["file"].values) == list(ds["file"].values)


def test_bigearthnet_mixed_resolutions(s2_dir, tmp_path):
    folder = sorted(p for p in (s2_dir / "bigearthnet_example").iterdir() if p.is_dir())[0]
    ds = open_dataset(folder)
    xarray2tec(ds, _store(tmp_path))
    group = zarr.open_group(_store(tmp_path), mode="r")
    assert [k for k in group.array_keys() if k.startswith("tcube_")] == ["tcube_y_x"]  # 20 and 60 m nest in 10 m
    meta = group["tcube_y_x"].attrs["tcube"]["variables"]
    assert meta["B05"]["grid"] == ["y_2", "x_2", 2] and meta["B01"]["grid"] == ["y_6", "x_6", 6]
    back = tec2xarray(_store(tmp_path))
    assert_same(ds, back, min_psnr=30)
    assert back.rio.crs.to_epsg() == 32633 == ds.rio.crs.to_epsg()
    for band in ("B02", "B05", "B01"):  # each resolution keeps its own grid mapping and transform
        assert back[band].encoding["grid_mapping"] == ds[band].encoding["grid_mapping"]
        assert back[band].rio.transform() == ds[band].rio.transform()
    native = tmp_path / "native.zarr"
    xarray2tec(ds, str(native), rules={"*": {"native_grid": True}})
    assert sorted(k for k in zarr.open_group(str(native), mode="r").array_keys() if k.startswith("tcube_")) == [
        "tcube_y_2_x_2", "tcube_y_6_x_6", "tcube_y_x"]


def test_any_band_model_codes_four_bands_natively(s2_dir, tmp_path):
    """A 4-band 10 m series (held out of tec-pc's training): a stack of exactly those bands."""
    path = sorted((s2_dir / "worldcereal").glob("S2_L2A_10m_00002806639B424A_*.nc"))[0]
    ds = open_dataset(path).isel(timestamp=slice(0, 6))
    xarray2tec(ds, _store(tmp_path), model="tec-pc", quality=8)
    stack = zarr.open_group(_store(tmp_path), mode="r")["tcube_y_x"]
    bands = [b for b in ("B02", "B03", "B04", "B08") if b in ds]
    assert stack.shape[1] == len(bands) == 4 and stack.attrs["tcube"]["bands"] == bands
    assert_same(ds, tec2xarray(_store(tmp_path)), min_psnr=30)


@pytest.mark.slow
def test_any_band_model_keeps_b10_of_l1c_in_the_stack(s2_dir, tmp_path):
    """13 L1C bands at 10, 20 and 60 m: one stack on the 10 m grid, B10 learned-coded with the rest."""
    # the files' grids start at different edges: crop where the 10, 20 and 60 m pixels line up
    ds = open_dataset(s2_dir / "l1c_18SVG").isel(y=slice(4, 196), x=slice(5, 197), y_2=slice(2, 98),
                                                  x_2=slice(3, 99), y_6=slice(1, 33), x_6=slice(1, 33))
    xarray2tec(ds, _store(tmp_path), model="tec-pc", quality=12)
    group = zarr.open_group(_store(tmp_path), mode="r")
    assert [k for k in group.array_keys() if k.startswith("tcube_")] == ["tcube_y_x"]
    assert group["tcube_y_x"].shape == (1, 13, 192, 192)
    assert group["tcube_y_x"].attrs["tcube"]["bands"] == list(tcube.bands.L1C_BANDS)
    back = tec2xarray(_store(tmp_path))
    assert_same(ds, back, min_psnr=35)
    assert back["B10"].dims == ("y_6", "x_6") and back["B10"].dtype == np.uint16
    hp = tmp_path / "hp.zarr"
    xarray2tec(ds, str(hp), model="tec-hp")  # a 12-band model: B10 stays exact, beside the stack
    np.testing.assert_array_equal(tec2xarray(str(hp))["B10"].values, ds["B10"].values)
    assert zarr.open_group(str(hp), mode="r")["tcube_y_x"].shape[1] == 12


@pytest.fixture()
def synthetic(sample):
    """Held-out sample with NaN clouds, an integer mask, a missing band and an unknown band name."""
    cube = sample[:, :, :80, :96].astype(np.float32)
    names = [b for b in tcube.bands.L2A_BANDS if b != "B09"]  # B09 missing
    data = {b: (("time", "y", "x"), cube[:, tcube.bands.L2A_BANDS.index(b)]) for b in names}
    ds = xr.Dataset(data, coords={"time": np.arange(4), "y": np.arange(80) * 10.0, "x": np.arange(96) * 10.0},
                    attrs={"title": "synthetic", "history": "made in a test"})
    ds["B04"][1, 10:30, 20:50] = np.nan
    ds = ds.rename({"B8A": "narrow_nir"})  # a band tcube cannot recognise by name
    ds["cloud_mask"] = (("time", "y", "x"), np.isnan(ds["B04"].values).astype(np.uint8))
    ds["B02"].attrs = {"long_name": "blue", "units": "DN"}
    return ds


def test_masks_missing_band_and_rules(synthetic):
    store = MemoryStore()
    xarray2tec(synthetic, store, rules={"narrow_nir": {"band": "B8A"}, "B01": {"skip": True},
                                        "B12": {"lossless": True}, "*": {"quality": 10}})
    back = tec2xarray(store)
    assert "B01" not in back and "B01" not in zarr.open_group(store).array_keys()
    expected = synthetic.drop_vars("B01")
    coded = [n for n in expected.data_vars if n not in ("B12", "cloud_mask")]
    assert_same(expected, back, coded=coded)
    np.testing.assert_array_equal(back["B12"].values, synthetic["B12"].values)  # lossless on request
    meta = zarr.open_array(store, path="tcube_y_x").attrs["tcube"]["variables"]
    assert meta["narrow_nir"]["bands"] == {"B8A": 7} and "B09" not in str(meta)  # the stack's own bands


def test_unknown_band_names_without_rules_are_stored_losslessly(synthetic):
    store = MemoryStore()
    xarray2tec(synthetic, store)
    back = tec2xarray(store)
    assert_same(synthetic, back)  # narrow_nir is not a band name: stored as is


@pytest.mark.parametrize("rules, match", [
    ({"B99": {"quality": 3}}, "not a data variable"), ({"B02": {"levels": 3}}, "unknown keys"),
    ({"B02": {"band": "B13"}}, "not one of"), ({"B02": {"chunks": (1, 0, 64)}}, "chunks")])
def test_bad_rules(synthetic, rules, match):
    with pytest.raises(InputError, match=match):
        xarray2tec(synthetic, MemoryStore(), rules=rules)


def test_band_dimension_larger_than_a_chunk_in_every_dim(sample):
    cube = np.tile(sample[:, :, :70, :90], (2, 1, 1, 1)).astype(np.uint16)  # 8 dates
    da = xr.DataArray(cube, dims=("time", "band", "y", "x"),
                      coords={"band": list(tcube.bands.L2A_BANDS), "time": np.arange(8)})
    ds = xr.Dataset({"reflectance": da})
    store = MemoryStore()
    xarray2tec(ds, store, rules={"reflectance": {"chunks": (3, 32, 40)}})
    arr = zarr.open_array(store, path="tcube_y_x")
    assert arr.chunks == (3, 12, 32, 40) and arr.nchunks == 3 * 3 * 3
    back = tec2xarray(store)
    assert back["reflectance"].dims == da.dims and list(back["band"].values) == list(da["band"].values)
    assert psnr_full(cube, back["reflectance"].values) > 35


def test_dask_input_is_never_loaded_whole(sample, monkeypatch):
    dask_array = pytest.importorskip("dask.array")
    cube = np.tile(sample[:, :, :64, :64], (1, 1, 2, 2)).astype(np.uint16)  # (4, 12, 128, 128)
    seen = []

    def load(block, block_info=None):
        seen.append(block.size)
        return block

    bands = {b: dask_array.from_array(cube[:, i], chunks=(1, 64, 64)).map_blocks(load, dtype=cube.dtype)
             for i, b in enumerate(tcube.bands.L2A_BANDS)}
    ds = xr.Dataset({b: (("time", "y", "x"), a) for b, a in bands.items()})
    xarray2tec(ds, MemoryStore(), rules={"*": {"chunks": (1, 64, 64)}}, batch=2)
    assert seen and max(seen) <= 64 * 64
    # every block read once, none whole; the first spatial chunk of each band at up to 8 dates spread
    # over the series (here all 4) once more, by the check that decides the units before the store is touched
    assert sum(seen) == cube.size + min(jobs.UNIT_SAMPLES, len(cube)) * 12 * 64 * 64


def test_progress_callback(synthetic):
    calls = []
    xarray2tec(synthetic, MemoryStore(), rules={"*": {"chunks": (1, 48, 48)}}, batch=2,
               progress=lambda done, total: calls.append((done, total)))
    assert [done for done, _ in calls] == [2 * i for i in range(1, 9)] and {total for _, total in calls} == {16}


def test_corrupt_stack_chunk_names_it(synthetic):
    store = MemoryStore()
    xarray2tec(synthetic, store)
    key = "tcube_y_x/c/0/0/0/0"
    raw = store._store_dict
    raw[key] = raw[key].from_bytes(raw[key].to_bytes()[:-3])
    with pytest.raises(tcube.errors.TruncatedBlobError, match="c/0/0/0/0"):
        tec2xarray(store)["B04"].load()


def test_stand_ins_stay_in_the_coded_range():
    """Bright clouds extrapolate stand-ins far beyond the bands' range: they are clipped to what the
    model codes, so they never cost an exact copy in the mask stream (they are never read back)."""
    from tcube.masks import CODED_RANGE
    from tcube.stacks import stand_in

    block = np.full((1, 12, 2, 2), np.nan, np.float32)
    block[:, 1], block[:, 3] = 18000.0, 200.0  # a very bright B02 beside a dark B04
    out = stand_in([1, 3], block)
    assert CODED_RANGE[0] <= out.min() and out.max() <= CODED_RANGE[1]
    np.testing.assert_array_equal(out[:, [1, 3]], block[:, [1, 3]])


def test_error_bound_and_per_variable_modes(synthetic):
    ds = synthetic.isel(time=slice(0, 2), y=slice(0, 40), x=slice(0, 50))
    store = MemoryStore()
    xarray2tec(ds, store, rules={"narrow_nir": {"band": "B8A"}, "B02": {"max_error": 0}}, max_error=16)
    back = tec2xarray(store)
    for name in ("B02", "B04", "narrow_nir", "B12"):
        a, b = ds[name].values, back[name].values
        nan = np.isnan(a)
        assert (np.isnan(b) == nan).all(), name
        assert float(np.abs(a[~nan] - b[~nan]).max()) <= (0 if name == "B02" else 16), name
    group = zarr.open_group(store, mode="r")
    settings = {k: (v.serializer.max_error, v.serializer.model) for k, v in group.arrays() if k.startswith("tcube_")}
    assert sorted(settings.values()) == [(0, "tec-hx"), (16, "tec-hx")]


@pytest.mark.parametrize("labels", [["R", "G", "B", "N"], [1, 2, 3, 4]])
def test_band_labels_no_model_knows_are_said(small, tmp_path, labels):
    """Such a stack is refused when a model was asked for by name (nothing else to code with it), and
    stored losslessly with a warning that names the fix otherwise; never silently."""
    ds = xr.DataArray(small[:2, :4, :32, :32], dims=("time", "band", "y", "x"), coords={"band": labels},
                      name="refl").to_dataset()
    with pytest.raises(tcube.errors.InputError, match=r"'refl': its 'band' labels .* tec-hx cannot code it"):
        tcube.xarray2tec(ds, str(tmp_path / "named.zarr"), model="tec-hx")
    with pytest.warns(UserWarning, match=r"stored losslessly .*'lossless': True"):
        tcube.xarray2tec(ds, str(tmp_path / "default.zarr"))
    np.testing.assert_array_equal(tcube.tec2xarray(str(tmp_path / "default.zarr"))["refl"].values, ds["refl"].values)


def test_time_chunks_follow_the_model(s2_dir, tmp_path):
    """Models that code dates over time get chunks of 16 dates by default, the others one date; the
    store's description says what each array got."""
    from tcube.datasets import describe_store

    ds = xr.open_dataset(s2_dir / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc").isel(
        time=slice(0, 20), x=slice(0, 24), y=slice(0, 20))[["B2", "B3", "B4", "B8"]]
    chunks = {}
    for model in ("tec-hx", "tec-pc"):
        xarray2tec(ds, _store(tmp_path, model), model=model, quality=8)
        [stack] = [a for a in describe_store(_store(tmp_path, model))["arrays"] if a["name"].startswith("tcube_")]
        chunks[model] = stack["chunks"]
        assert_same(ds, tec2xarray(_store(tmp_path, model)), min_psnr=25)
    assert chunks == {"tec-hx": [16, 4, 20, 24], "tec-pc": [1, 4, 20, 24]}
    xarray2tec(ds.isel(time=slice(0, 15)), _store(tmp_path, "short"))  # not a dense series: one date a chunk
    assert zarr.open_group(_store(tmp_path, "short"))["tcube_y_x"].chunks == (1, 4, 20, 24)
    xarray2tec(ds, _store(tmp_path, "rule"), rules={"*": {"chunks": {"time": 4}}})
    assert zarr.open_group(_store(tmp_path, "rule"))["tcube_y_x"].chunks == (4, 4, 20, 24)
