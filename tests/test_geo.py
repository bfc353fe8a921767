"""GeoTIFF / COG in and out through rioxarray, and STAC-shaped cubes through the stores: CRS (WKT),
transform (exact), no-data and band order survive every round trip."""

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from rasterio.crs import CRS
from rasterio.transform import Affine
from zarr.storage import MemoryStore

from tcube.cli import main
from tcube.datasets import tec2xarray, xarray2tec
from tcube.errors import InputError
from tcube.geo import open_geotiff
from tcube.readers import open_dataset
from tcube.stacks import stacks_in

BANDS = ("B02", "B03", "B04", "B08")
CUSTOM_WKT = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=15.5 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 "
                            "+units=m +no_defs").to_wkt()
KINDS = {
    "utm": ("EPSG:32633", Affine(10, 0, 399960, 0, -10, 5000040), "Area"),
    "wkt_only": (CUSTOM_WKT, Affine(10, 0, 399960, 0, -10, 5000040), "Area"),
    "rotated": ("EPSG:32633", Affine(8.660254, -5, 400000, -5, -8.660254, 5000000), "Area"),
    "pixel_is_point": ("EPSG:32633", Affine(20, 0, 399970, 0, -20, 5000030), "Point"),
}


def _bands(sample, dates: int = 1, side: int = 48) -> np.ndarray:
    """(dates, 4, side, side) uint16 of the shipped sample, with no-data (0) in a corner."""
    cube = np.clip(sample[:dates, [1, 2, 3, 7], :side, :side], 1, None).astype(np.uint16)
    cube[:, :, :3, :5] = 0
    return cube


def _write(path, cube: np.ndarray, crs: str, transform: Affine, area_or_point: str = "Area",
           descriptions=BANDS) -> None:
    """A GeoTIFF written by rioxarray: CRS, transform, no-data 0, AREA_OR_POINT, band descriptions."""
    attrs = {"AREA_OR_POINT": area_or_point, **({"long_name": tuple(descriptions)} if descriptions else {})}
    da = xr.DataArray(cube, dims=("band", "y", "x"), attrs=attrs)
    da = da.rio.write_crs(CRS.from_user_input(crs)).rio.write_transform(transform).rio.write_nodata(0)
    da.rio.to_raster(path)


def _assert_georeferenced_like(back, source) -> None:
    assert back.rio.crs.to_wkt() == source.rio.crs.to_wkt()
    assert back.rio.transform() == source.rio.transform()


@pytest.mark.parametrize("kind", list(KINDS))
def test_geotiff_round_trips_through_store_and_cog(sample, tmp_path, kind, capsys):
    crs, transform, area_or_point = KINDS[kind]
    src = tmp_path / f"{kind}.tif"
    cube = _bands(sample)[0]
    _write(src, cube, crs, transform, area_or_point)
    ds = open_dataset(src)
    assert list(ds.data_vars) == list(BANDS) and ds["B04"].attrs["_FillValue"] == 0
    assert ds["B04"].chunks is not None  # lazy: compress reads it window by window
    store = tmp_path / "c.zarr"
    xarray2tec(ds, str(store), model="tec-pc", quality=12)
    back = tec2xarray(str(store))
    _assert_georeferenced_like(back, ds)
    assert list(back.data_vars) == list(BANDS)
    assert all(back[b].attrs["_FillValue"] == 0 for b in BANDS)
    np.testing.assert_array_equal(back["B04"].values == 0, cube[2] == 0)  # no-data where it was, nowhere else
    back.rio.to_raster(tmp_path / "rio.tif")  # rioxarray writes what comes back
    cog = tmp_path / "out.tif"
    capsys.readouterr()
    assert main(["decompress", str(store), str(cog), "--quiet"]) == 0
    assert f"-> {cog} (a Cloud-Optimized GeoTIFF)" in capsys.readouterr().out  # the file, not "1 ... in ."
    with rasterio.open(cog) as f, rasterio.open(src) as original:
        assert f.profile["tiled"] and f.nodata == 0 and f.descriptions == BANDS
        assert f.tags().get("AREA_OR_POINT") == area_or_point
        assert f.transform == original.transform and f.crs.to_wkt() == original.crs.to_wkt()  # as GDAL reads them
    again = open_geotiff(cog)
    _assert_georeferenced_like(again, ds)
    assert list(again.data_vars) == list(BANDS)
    np.testing.assert_array_equal(again["B08"].values, back["B08"].values)


def test_folder_of_per_band_files_keeps_each_grid(sample, tmp_path, capsys):
    folder = tmp_path / "tile"
    folder.mkdir()
    cube = _bands(sample)[0]
    for band, plane in zip(("B02", "B04"), cube[[0, 2]]):
        _write(folder / f"T33UUB_{band}_10m.tif", plane[None], "EPSG:32633", KINDS["utm"][1], descriptions=None)
    coarse = cube[3].reshape(24, 2, 24, 2).mean(axis=(1, 3)).astype(np.uint16)
    _write(folder / "T33UUB_B8A_20m.tif", coarse[None], "EPSG:32633", Affine(20, 0, 399960, 0, -20, 5000040),
           descriptions=None)
    ds = open_dataset(folder)
    assert list(ds.data_vars) == ["B02", "B04", "B8A"] and ds["B8A"].dims == ("y_2", "x_2")
    store = tmp_path / "c.zarr"
    xarray2tec(ds, str(store), model="tec-pc")
    back = tec2xarray(str(store))
    for band in ds.data_vars:
        assert back[band].rio.transform() == ds[band].rio.transform()
        assert back[band].rio.crs.to_wkt() == ds[band].rio.crs.to_wkt()
        assert back[band].attrs["_FillValue"] == 0 and back[band].rio.nodata == 0
    cog = tmp_path / "10m.tif"
    assert main(["decompress", str(store), str(cog), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["left_out"] == ["B8A"]  # another grid: said, not dropped silently
    assert list(open_geotiff(cog).data_vars) == ["B02", "B04"]


def test_folder_of_dates_to_folder_of_cogs(sample, tmp_path):
    folder = tmp_path / "dates"
    folder.mkdir()
    cube = _bands(sample, dates=3)
    for t in range(3):
        _write(folder / f"S2_2020010{t + 1}.tif", cube[t], "EPSG:32633", KINDS["utm"][1])
    ds = open_dataset(folder)
    assert ds.sizes["time"] == 3 and list(ds["file"].values)[0] == "S2_20200101.tif"
    store, out = tmp_path / "c.zarr", tmp_path / "cogs"
    assert main(["compress", str(folder), str(store), "--model", "tec-pc", "--quiet"]) == 0
    out.mkdir()
    assert main(["decompress", str(store), str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"S2_2020010{t}.tif" for t in (1, 2, 3)]
    for t in range(3):
        date = open_geotiff(out / f"S2_2020010{t + 1}.tif")
        _assert_georeferenced_like(date, ds)
        assert list(date.data_vars) == list(BANDS) and all(date[b].attrs["_FillValue"] == 0 for b in BANDS)
        np.testing.assert_array_equal(date["B02"].values == 0, cube[t, 0] == 0)
    assert main(["decompress", str(store), str(tmp_path / "one.tif")]) == 3  # 3 dates do not fit one file
    assert main(["decompress", str(store), str(out), "--quiet"]) == 3  # the COGs exist: only with --overwrite
    (tmp_path / "notes.tif").write_text("my notes")
    assert main(["decompress", str(store), str(tmp_path / "notes.tif"), "--overwrite"]) == 3


def test_unnamed_bands_get_a_clear_error(sample, tmp_path):
    path = tmp_path / "four.tif"
    _write(path, _bands(sample)[0], "EPSG:32633", KINDS["utm"][1], descriptions=None)
    with pytest.raises(InputError, match="which Sentinel-2 band"):
        open_dataset(path)


def _stac_coords(names: list[str], dates: int, side: int) -> dict:
    return {"band": names, "time": pd.date_range("2021-05-01", periods=dates, freq="5D"),
            "y": 5000035.0 - 10 * np.arange(side), "x": 399965.0 + 10 * np.arange(side),
            "common_name": ("band", ["blue", "green", "red", "nir"]),
            "center_wavelength": ("band", [0.49, 0.56, 0.665, 0.842]),
            "id": ("time", [f"S2B_33UUB_2021050{i}_0_L2A" for i in range(dates)]),
            "eo:cloud_cover": ("time", [3.5, 70.1, 12.0][:dates]), "epsg": 32633}


@pytest.mark.parametrize("names", [["blue", "green", "red", "nir"], ["B02", "B03", "B04", "B08"]])
def test_stackstac_shaped_dataarray_round_trips(sample, names):
    """(time, band, y, x) with asset names (Earth Search or Planetary Computer) on the band axis,
    per-band and per-date coordinates: the bands are learned-coded and come back with every
    coordinate and attribute."""
    cube = _bands(sample, dates=3, side=64).astype(np.float64)
    da = xr.DataArray(cube, dims=("time", "band", "y", "x"), coords=_stac_coords(names, 3, 64), name="stackstac",
                      attrs={"crs": "epsg:32633", "resolution": 10.0})
    store = MemoryStore()
    xarray2tec(da, store, model="tec-pc")
    assert [m for meta in stacks_in(store).values() for m in meta["variables"]] == ["stackstac"]
    back = tec2xarray(store)["stackstac"]
    assert back.dims == da.dims and back.attrs == da.attrs
    for name, coord in da.coords.items():
        np.testing.assert_array_equal(back[name].values, coord.values)
    assert float(np.abs(back.values - da.values).mean()) < 50  # coded, not stored losslessly, and close


def test_odc_stac_shaped_dataset_round_trips(sample):
    """odc-stac: a variable per asset (time, y, x), a spatial_ref coordinate, nodata attributes."""
    cube = _bands(sample, dates=2, side=64)
    coords = {k: v for k, v in _stac_coords(["blue", "green", "red", "nir"], 2, 64).items()
              if k in ("time", "y", "x")}
    ds = xr.Dataset({name: (("time", "y", "x"), cube[:, i], {"nodata": 0, "units": "1"})
                     for i, name in enumerate(("blue", "green", "red", "nir08"))}, coords=coords)
    ds = ds.rio.write_crs("EPSG:32633")
    store = MemoryStore()
    xarray2tec(ds, store, model="tec-pc")
    meta = next(iter(stacks_in(store).values()))
    assert meta["bands"] == ["B02", "B03", "B04", "B8A"]
    back = tec2xarray(store)
    assert list(back.data_vars) == list(ds.data_vars) and all(back[v].attrs == ds[v].attrs for v in ds.data_vars)
    _assert_georeferenced_like(back, ds)
    for name in ds.coords:
        np.testing.assert_array_equal(back[name].values, ds[name].values)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_crs_of_netcdf_and_zarr_sources_survives(sample, tmp_path, suffix):
    """A rioxarray-georeferenced dataset saved as NetCDF or zarr: tec2xarray gives back its CRS
    and transform (the spatial_ref grid mapping with crs_wkt and GeoTransform)."""
    src = tmp_path / "utm.tif"
    _write(src, _bands(sample)[0], *KINDS["utm"][:2])
    ds = open_dataset(src).load()
    path = tmp_path / f"source{suffix}"
    ds.to_netcdf(path) if suffix == ".nc" else ds.to_zarr(path, zarr_format=3, consolidated=False)
    source = open_dataset(path)
    _assert_georeferenced_like(source, ds)
    store = tmp_path / "c.zarr"
    xarray2tec(source, str(store), model="tec-pc")
    back = tec2xarray(str(store))
    _assert_georeferenced_like(back, ds)
    assert back["spatial_ref"].attrs["GeoTransform"] == ds["spatial_ref"].attrs["GeoTransform"]


def test_stackstac_object_coordinates_and_attributes_survive(sample):
    """stackstac also gives object coordinates (``proj:transform`` tuples per band) and attributes
    JSON cannot hold (an Affine, a RasterSpec): the coordinates come back equal, the attributes as
    their JSON form."""
    import dataclasses

    from affine import Affine

    @dataclasses.dataclass
    class RasterSpec:
        epsg: int
        bounds: tuple

    cube = _bands(sample, dates=2, side=64).astype(np.float64)
    coords = _stac_coords(["blue", "green", "red", "nir"], 2, 64)
    transforms = np.empty(4, dtype=object)
    transforms[:] = [(10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0)] * 4
    coords["proj:transform"] = ("band", transforms)
    da = xr.DataArray(cube, dims=("time", "band", "y", "x"), coords=coords, name="stackstac-5f1e",
                      attrs={"transform": Affine(10, 0, 399960, 0, -10, 5000040), "resolution": 10,
                             "spec": RasterSpec(32633, (399960.0, 4999400.0, 400600.0, 5000040.0))})
    store = MemoryStore()
    xarray2tec(da, store, model="tec-pc")
    back = tec2xarray(store)["stackstac-5f1e"]
    assert list(back["proj:transform"].values) == list(transforms) and back["proj:transform"].dtype == object
    for name in coords:
        assert list(np.ravel(back[name].values)) == list(np.ravel(da[name].values)), name
    assert back.attrs == {"transform": [10.0, 0.0, 399960.0, 0.0, -10.0, 5000040.0, 0.0, 0.0, 1.0], "resolution": 10,
                          "spec": {"epsg": 32633, "bounds": [399960.0, 4999400.0, 400600.0, 5000040.0]}}


def test_odc_stac_to_array_round_trips(sample):
    """odc-stac's Dataset as one (band, time, y, x) DataArray (``to_array``): band first."""
    cube = _bands(sample, dates=2, side=64)
    coords = {k: v for k, v in _stac_coords(["red", "nir08"], 2, 64).items() if k in ("time", "y", "x")}
    ds = xr.Dataset({n: (("time", "y", "x"), cube[:, i]) for i, n in enumerate(("red", "nir08"))}, coords=coords)
    da = ds.rio.write_crs("EPSG:32633").to_array("band", name="odc")
    store = MemoryStore()
    xarray2tec(da, store, model="tec-pc")
    assert next(iter(stacks_in(store).values()))["bands"] == ["B04", "B8A"]
    back = tec2xarray(store)["odc"]
    assert back.dims == da.dims and list(back["band"].values) == ["red", "nir08"]
    assert back.rio.crs.to_epsg() == 32633 and back.rio.transform() == da.rio.transform()


def test_cog_of_a_dataset_without_crs(sample, tmp_path):
    """No CRS in the store: the GeoTIFF has none either (and is written, not refused)."""
    ds = xr.Dataset({b: (("y", "x"), _bands(sample)[0, i]) for i, b in enumerate(BANDS)})
    store = tmp_path / "c.zarr"
    xarray2tec(ds, str(store), model="tec-pc")
    assert main(["decompress", str(store), str(tmp_path / "plain.tif"), "--quiet"]) == 0
    back = open_geotiff(tmp_path / "plain.tif")
    assert back.rio.crs is None and list(back.data_vars) == list(BANDS)


def test_dates_at_one_time_get_files_of_their_own(sample, tmp_path):
    """Two acquisitions with the same timestamp (overlapping tiles in a STAC search): one COG each."""
    cube = _bands(sample, dates=3, side=64)
    times = np.array(["2021-05-01T10:00:00", "2021-05-01T10:00:00", "2021-05-06T10:00:00"], "datetime64[ns]")
    ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(BANDS)},
                    coords={"time": times, "y": 5000035.0 - 10 * np.arange(64), "x": 399965.0 + 10 * np.arange(64)})
    store, out = tmp_path / "c.zarr", tmp_path / "cogs"
    xarray2tec(ds.rio.write_crs("EPSG:32633"), str(store), model="tec-pc")
    out.mkdir()
    assert main(["decompress", str(store), str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["2021-05-01T100000_0.tif", "2021-05-01T100000_1.tif",
                                                      "2021-05-06T100000.tif"]
