"""GeoTIFF and Cloud-Optimized GeoTIFF in and out, through rioxarray (``pip install 'tcube[io]'``).

Reading gives xarray Datasets the way rioxarray and CF write them: one variable per band, lazy
(dask chunks of :data:`READ_CHUNK` pixels, read window by window), a ``spatial_ref`` coordinate
with ``crs_wkt``, ``spatial_ref`` and ``GeoTransform``, named by each band's ``grid_mapping``;
nodata, scale, offset and band descriptions as the file has them (``_FillValue``,
``scale_factor``, ``add_offset``, ``long_name``). Bands are named from their descriptions
(``B04``, ``red``...; see :func:`tcube.bands.band_name`), from the file name for single-band
files, or by position for 12 (L2A order) or 13 (L1C order) unnamed bands.

Writing makes COGs of a Dataset's bands on one grid, with its CRS, transform and nodata.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from tcube.bands import L1C_BANDS, L2A_BANDS, band_dim, band_name
from tcube.errors import InputError

#: Pixels per side of the dask chunks GeoTIFFs are read in (a region reads only the windows it needs).
READ_CHUNK = 1024
#: Attributes rioxarray gives per band (one value each in a multi-band file), kept per variable.
_PER_BAND = ("scale_factor", "add_offset", "long_name", "units")


#: GDAL's block cache (MB) when the environment does not set ``GDAL_CACHEMAX``: GDAL's own default
#: (5 % of the host's memory) would keep every block of a full tile read once, 230 MB of one band.
BLOCK_CACHE_MB = 128


def _rioxarray():
    try:
        import rasterio.env
        import rioxarray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("GeoTIFF input and output need rioxarray: pip install 'tcube[io]'") from exc
    if "GDAL_CACHEMAX" not in os.environ:
        rasterio.env.set_gdal_config("GDAL_CACHEMAX", BLOCK_CACHE_MB)  # MB; before GDAL sizes its cache
    return rioxarray


def _per_band(value: object, count: int) -> list:
    """A rioxarray attribute as one value per band (a tuple for several bands, else a scalar)."""
    if isinstance(value, tuple | list) and len(value) == count:
        return list(value)
    return [value] * count


def _names(descriptions: list, path: Path) -> list[str]:
    """The Sentinel-2 band of each band of a file: its description, the file name of a single band,
    or the position among 12 (L2A) or 13 (L1C) bands."""
    count = len(descriptions)
    named = [band_name(str(d)) if d else None for d in descriptions]
    if count == 1 and named[0] is None:
        named = [band_name(path.name)]
    if all(named) and len(set(named)) == count:
        return named
    if count in (len(L2A_BANDS), len(L1C_BANDS)) and not any(named):
        return list(L2A_BANDS if count == len(L2A_BANDS) else L1C_BANDS)
    raise InputError(f"{path}: cannot tell which Sentinel-2 band each of its {count} bands is (descriptions "
                     f"{descriptions}): set band descriptions (B02, red, nir08...), name a single-band file after "
                     "its band (e.g. *_B04.tif), or give 12 bands in L2A order or 13 in L1C order")


def open_geotiff(path: str | Path) -> xr.Dataset:
    """One GeoTIFF (COG or not) as a lazy Dataset: a (y, x) variable per band, named by its band,
    and its CRS coordinate ``spatial_ref``.

    Examples
    --------
    >>> import tempfile, numpy as np, rioxarray, xarray as xr
    >>> path = Path(tempfile.mkdtemp()) / "T33UUB_B04.tif"
    >>> da = xr.DataArray(np.full((1, 8, 8), 900, np.uint16), dims=("band", "y", "x"),
    ...                   coords={"y": 5e6 - 5 - 10 * np.arange(8), "x": 4e5 + 5 + 10 * np.arange(8)})
    >>> da.rio.write_crs("EPSG:32633").rio.write_nodata(0).rio.to_raster(path)
    >>> ds = open_geotiff(path)
    >>> list(ds.data_vars), ds.rio.crs.to_epsg(), ds["B04"].attrs["_FillValue"]
    (['B04'], 32633, np.uint16(0))
    """
    path = Path(path)
    rioxarray = _rioxarray()
    from rasterio.errors import RasterioError

    try:
        da = rioxarray.open_rasterio(path, chunks={"band": 1, "y": READ_CHUNK, "x": READ_CHUNK}, mask_and_scale=False)
    except (RasterioError, OSError) as exc:
        raise InputError(f"{path}: not a readable GeoTIFF ({exc})") from exc
    count = da.sizes["band"]
    descriptions = _per_band(da.attrs.get("long_name"), count)
    names = _names(descriptions, path)
    shared = {k: v for k, v in da.attrs.items() if k not in _PER_BAND}
    per_band = {k: _per_band(da.attrs[k], count) for k in _PER_BAND if k in da.attrs}
    variables = {}
    for i, name in enumerate(names):
        band = da.isel(band=i, drop=True)
        own = {k: v[i] for k, v in per_band.items() if v[i] is not None}
        if own.get("scale_factor") == 1.0 and own.get("add_offset", 0.0) == 0.0:  # rioxarray's default: no scaling
            own.pop("scale_factor")
            own.pop("add_offset", None)
        band.attrs = {**shared, **own}
        band.encoding = {"grid_mapping": "spatial_ref", "source": str(path)}
        variables[name] = band
    return xr.Dataset(variables)


def _grid_key(ds: xr.Dataset) -> tuple[int, int]:
    return ds.sizes["y"], ds.sizes["x"]


def _per_band_files(tifs: list[Path]) -> xr.Dataset:
    """One date of single-band GeoTIFFs; each resolution keeps its own grid (dims y, x / y_2, x_2 /
    y_6, x_6 and CRS coordinates spatial_ref / spatial_ref_2 / spatial_ref_6)."""
    opened = [open_geotiff(p) for p in tifs]
    finest = max(_grid_key(d)[0] for d in opened)
    parts = []
    for ds in opened:
        factor = finest // _grid_key(ds)[0]
        if factor > 1:
            suffix = f"_{factor}"
            ds = ds.rename({"y": f"y{suffix}", "x": f"x{suffix}", "spatial_ref": f"spatial_ref{suffix}"})
            for var in ds.data_vars.values():
                var.encoding["grid_mapping"] = f"spatial_ref{suffix}"
        parts.append(ds)
    names = [n for d in parts for n in d.data_vars]
    if len(set(names)) < len(names):
        raise InputError(f"{tifs[0].parent}: two files hold the same band ({', '.join(sorted(names))})")
    merged = xr.merge(parts, combine_attrs="drop_conflicts", join="exact", compat="equals")
    order = sorted(merged.data_vars, key=lambda b: L1C_BANDS.index(b) if b in L1C_BANDS else 99)
    return merged[order]


def _per_date_files(tifs: list[Path]) -> xr.Dataset:
    """Multi-band GeoTIFFs of one place, one date each (in name order): dim ``time`` with the file
    names as a coordinate ``file``."""
    dates = [open_geotiff(p) for p in tifs]
    first = dates[0]
    for p, ds in zip(tifs[1:], dates[1:]):
        if list(ds.data_vars) != list(first.data_vars) or _grid_key(ds) != _grid_key(first):
            raise InputError(f"{p}: its bands or size differ from {tifs[0].name}'s; one folder must hold one place")
        if ds.rio.crs != first.rio.crs or ds.rio.transform() != first.rio.transform():
            raise InputError(f"{p}: its CRS or transform differ from {tifs[0].name}'s; one folder must hold one place")
    ds = xr.concat([d.drop_vars("spatial_ref") for d in dates], dim="time", coords="minimal", compat="override",
                   join="override", combine_attrs="override")
    ds = ds.assign_coords(time=np.arange(len(tifs)), file=("time", [p.name for p in tifs]),
                          spatial_ref=first["spatial_ref"])
    for name, var in ds.data_vars.items():
        var.encoding = {**first[name].encoding, "source": str(tifs[0].parent)}
    return ds


def open_geotiff_folder(path: str | Path) -> xr.Dataset:
    """A folder of GeoTIFFs as a lazy Dataset: single-band files named after their bands (one date,
    each resolution on its own grid) or multi-band files (one date each, in name order).

    Examples
    --------
    >>> import tempfile, numpy as np, rioxarray, xarray as xr
    >>> folder = Path(tempfile.mkdtemp())
    >>> for band, side in (("B04", 8), ("B05", 4)):
    ...     da = xr.DataArray(np.full((1, side, side), 900, np.uint16), dims=("band", "y", "x"),
    ...                       coords={"y": 5e6 - (40 / side) * (np.arange(side) + 0.5),
    ...                               "x": 4e5 + (40 / side) * (np.arange(side) + 0.5)})
    ...     da.rio.write_crs("EPSG:32633").rio.to_raster(folder / f"T33UUB_{band}.tif")
    >>> ds = open_geotiff_folder(folder)
    >>> ds["B05"].dims, ds["B05"].rio.transform().a
    (('y_2', 'x_2'), 10.0)
    """
    path = Path(path)
    tifs = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not tifs:
        raise InputError(f"{path}: no GeoTIFF files")
    if len(tifs) > 1 and all(band_name(p.name) for p in tifs):
        return _per_band_files(tifs)
    return _per_date_files(tifs)


def _bands_of(ds: xr.Dataset) -> tuple[list[xr.DataArray], list[str]]:
    """The Sentinel-2 bands of ``ds`` on its (y, x) grid (the finest, in the datasets tcube reads) as
    (time?, y, x) arrays in dataset order (a variable with a band dimension gives one per label),
    and the names of the variables left out (other grids, no band)."""

    found, left = [], []
    for name, da in ds.data_vars.items():
        bdim = band_dim(da, L1C_BANDS)
        if bdim is not None:
            found += [da.sel({bdim: label}, drop=True).rename(str(label)) for label in da[bdim].values]
        elif band_name(str(name)) and {"y", "x"} <= set(da.dims):
            found.append(da)
        else:
            left.append(str(name))
    grid = [da for da in found if {"y", "x"} <= set(da.dims)]
    left += [str(da.name) for da in found if not {"y", "x"} <= set(da.dims)]
    if not grid:
        raise InputError("no Sentinel-2 band on a (y, x) grid to write as a GeoTIFF")
    return grid, left


def _georeference(bands: list[xr.DataArray]) -> tuple:
    """(CRS or None, transform, no-data or None) of the first band, as the GeoTIFF of all takes them."""
    first = bands[0]
    nodata = first.attrs.get("_FillValue", first.encoding.get("_FillValue"))
    if nodata is None and np.result_type(*[b.dtype for b in bands]).kind == "f":
        nodata = np.nan
    return first.rio.crs, first.rio.transform(), nodata


def _one_date(bands: list[xr.DataArray], tdim: str | None, date: int, georeference: tuple) -> xr.DataArray:
    """(band, y, x) of one date, with the CRS, transform and no-data of :func:`_georeference`."""
    first = bands[0]
    planes = [b.isel({tdim: date}) if tdim in b.dims else b for b in bands]
    dtype = np.result_type(*[b.dtype for b in bands])
    out = xr.concat([p.astype(dtype).drop_vars([c for c in p.coords if c not in ("y", "x")]) for p in planes],
                    dim="band", coords="minimal", compat="override", join="override")
    out = out.assign_coords(band=np.arange(1, len(bands) + 1)).transpose("band", "y", "x")
    out.attrs = {"long_name": tuple(str(b.name) for b in bands)}
    if "AREA_OR_POINT" in first.attrs:
        out.attrs["AREA_OR_POINT"] = first.attrs["AREA_OR_POINT"]
    for key, per_band, identity in (("scale_factor", "scales", 1.0), ("add_offset", "offsets", 0.0)):
        if any(key in b.attrs for b in bands):  # rioxarray writes per-band values from these
            out.attrs[per_band] = tuple(float(b.attrs.get(key, identity)) for b in bands)
    crs, transform, nodata = georeference
    if crs is not None:  # a dataset without one gives a TIFF without one
        out = out.rio.write_crs(crs)
    out = out.rio.write_transform(transform)
    return out.rio.write_nodata(nodata) if nodata is not None else out


def date_labels(ds: xr.Dataset, tdim: str | None) -> list[str]:
    """A distinct file name stem per date: the source file's (coordinate ``file``), the time of a
    datetime coordinate, or the index; labels that repeat (two acquisitions at one time, files
    ``a.tif`` and ``a.tiff``) get the date's index appended, so no date takes another's file.

    Examples
    --------
    >>> ds = xr.Dataset(coords={"time": np.array(["2021-05-01", "2021-05-01", "2021-05-06"], "datetime64[s]")})
    >>> date_labels(ds, "time")
    ['2021-05-01T000000_0', '2021-05-01T000000_1', '2021-05-06T000000']
    """
    if tdim is None:
        return [""]
    width = len(str(ds.sizes[tdim] - 1))
    values = ds[tdim].values if tdim in ds.coords else None
    if "file" in ds.coords and ds["file"].dims == (tdim,):
        labels = [Path(str(f)).stem for f in ds["file"].values]
    elif values is not None and np.issubdtype(values.dtype, np.datetime64):
        labels = [str(np.datetime_as_string(v, unit="s")).replace(":", "") for v in values]
    else:
        return [f"{i:0{width}d}" for i in range(ds.sizes[tdim])]
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{label}_{i:0{width}d}" if label in repeated else label for i, label in enumerate(labels)]


def _time_dim(bands: list[xr.DataArray]) -> str | None:
    return next((d for b in bands for d in b.dims if d not in ("y", "x")), None)


def cog_paths(ds: xr.Dataset, target: Path, stem: str) -> list[Path]:
    """Where :func:`write_cogs` puts each date of ``ds``: ``target`` itself for a single date, or one
    file per date (named by :func:`date_labels`, ``stem`` for a dataset without dates) in the
    folder ``target``."""
    bands, _ = _bands_of(ds)
    tdim = _time_dim(bands)
    if target.is_dir():
        return [target / f"{label or stem}.tif" for label in date_labels(ds, tdim)]
    dates = ds.sizes[tdim] if tdim else 1
    if dates != 1:
        raise InputError(f"{target}: {dates} dates do not fit one GeoTIFF; give a folder (it must exist) for one "
                         "Cloud-Optimized GeoTIFF per date")
    return [target]


def write_cogs(ds: xr.Dataset, paths: Sequence[Path]) -> list[str]:
    """Write the Sentinel-2 bands of ``ds`` on its finest grid as Cloud-Optimized GeoTIFFs, one per
    date (``paths``, one per date), with the dataset's CRS, transform, no-data, scale and offset;
    band descriptions are the band names. Returns the variables left out (other grids, no band).

    Examples
    --------
    >>> import tempfile, numpy as np, rioxarray, xarray as xr
    >>> ds = xr.Dataset({b: (("y", "x"), np.full((8, 8), v, np.uint16)) for b, v in (("B04", 900), ("B08", 2500))},
    ...                 coords={"y": 5e6 - 5 - 10 * np.arange(8), "x": 4e5 + 5 + 10 * np.arange(8)})
    >>> path = Path(tempfile.mkdtemp()) / "out.tif"
    >>> write_cogs(ds.rio.write_crs("EPSG:32633"), [path])
    []
    >>> back = open_geotiff(path)
    >>> list(back.data_vars), back.rio.crs.to_epsg(), int(back["B08"].max())
    (['B04', 'B08'], 32633, 2500)
    """
    _rioxarray()
    bands, left = _bands_of(ds)
    tdim = _time_dim(bands)
    dates = ds.sizes[tdim] if tdim else 1
    if len(paths) != dates:
        raise InputError(f"{dates} dates need {dates} GeoTIFF paths, got {len(paths)}")
    georeference = _georeference(bands)
    for date, path in enumerate(paths):
        image = _one_date(bands, tdim, date, georeference)
        image.rio.to_raster(path, driver="COG", compress="DEFLATE", predictor=3 if image.dtype.kind == "f" else 2)
    return left
