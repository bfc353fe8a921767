"""From STAC-style cubes and GeoTIFFs to a tcube store and back to Cloud-Optimized GeoTIFFs.

    python examples/stac_geotiff.py [OUT_FOLDER]

Builds what stackstac would return for four dates of the shipped sample (Earth Search asset names
on the band axis, UTM coordinates), writes each date as a COG, compresses the folder of COGs with
the learned model, and writes the decoded dates back as COGs: CRS and transform are the source's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

import tcube
from tcube.cli import main as tcube_cli
from tcube.readers import open_dataset


def stac_cube(side: int = 128) -> xr.DataArray:
    """A (time, band, y, x) DataArray shaped like stackstac's, from the shipped sample."""
    cube = tcube.data.load_sample_cube()[:, [1, 2, 3, 7], :side, :side].astype(np.uint16)
    da = xr.DataArray(cube, dims=("time", "band", "y", "x"), name="s2",
                      coords={"time": pd.date_range("2021-03-01", periods=len(cube), freq="90D"),
                              "band": ["blue", "green", "red", "nir"],
                              "common_name": ("band", ["blue", "green", "red", "nir"]),
                              "y": 5_000_035.0 - 10 * np.arange(side), "x": 399_965.0 + 10 * np.arange(side)})
    return da.rio.write_crs("EPSG:32633").rio.write_nodata(0)


def main(out: Path) -> None:
    da = stac_cube()
    tcube.xarray2tec(da, str(out / "stac.zarr"), model="tec-pc")  # the DataArray as it is
    back = tcube.tec2xarray(str(out / "stac.zarr"))["s2"]
    print("stackstac-style cube:", back.dims, back.rio.crs,
          "transform equal:", back.rio.transform() == da.rio.transform())

    dates = out / "dates"
    dates.mkdir()
    for t, day in enumerate(da["time"].values):  # one COG per date, band descriptions = band names
        scene = da.isel(time=t).drop_vars("common_name").assign_attrs(long_name=("B02", "B03", "B04", "B08"))
        scene.rio.to_raster(dates / f"S2_{str(day)[:10]}.tif", driver="COG")
    assert tcube_cli(["compress", str(dates), str(out / "dates.zarr"), "--model", "tec-pc", "--quiet"]) == 0
    cogs = out / "cogs"
    cogs.mkdir()
    assert tcube_cli(["decompress", str(out / "dates.zarr"), str(cogs), "--quiet"]) == 0
    first = open_dataset(sorted(cogs.iterdir())[0])
    source = open_dataset(sorted(dates.iterdir())[0])
    print("COGs:", sorted(p.name for p in cogs.iterdir()))
    print("CRS and transform equal:", first.rio.crs == source.rio.crs, first.rio.transform() == source.rio.transform())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
