"""Reading Sentinel-2 cubes from files and folders into (T, C, H, W) arrays in L2A band order."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from tcube.bands import L1C_BANDS, L2A_BANDS, band_name
from tcube.errors import InputError


def existing(path: str | Path) -> Path:
    """``path`` as a Path, or an :class:`InputError` when nothing is there."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return path

def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def _to_dn(a: np.ndarray) -> np.ndarray:
    """Float reflectance (0..~1.5) to digital numbers; integer data unchanged."""
    if np.issubdtype(a.dtype, np.floating) and np.nanmax(a) < 3.0:
        return a * 10000.0
    return a


def _resample(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of a 2-D band to ``shape`` (for 20 m / 60 m bands)."""
    if a.shape == shape:
        return a.astype(np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(a.astype(np.float32))[None, None]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def _select(bands: dict[str, np.ndarray], source: str) -> np.ndarray:
    missing = [b for b in L2A_BANDS if b not in bands]
    if missing:
        raise InputError(f"{source}: missing bands {', '.join(missing)} (need the 12 L2A bands {', '.join(L2A_BANDS)})")
    shape = max((bands[b].shape[-2:] for b in L2A_BANDS), key=lambda s: s[0] * s[1])
    if all(bands[b].shape[-2:] == shape for b in L2A_BANDS):
        return np.stack([bands[b] for b in L2A_BANDS], axis=-3)
    return np.stack([_resample(bands[b], shape) for b in L2A_BANDS], axis=-3)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    a = tifffile.imread(str(path))
    if a.ndim == 3 and a.shape[-1] in (12, 13) and a.shape[0] not in (12, 13):
        a = np.moveaxis(a, -1, 0)
    return a


def _from_channels(a: np.ndarray, source: str) -> np.ndarray:
    """(…, C, H, W) with C = 12 (L2A order) or 13 (L1C order, B10 left out, with a warning) -> (T, 12, H, W)."""
    if a.ndim == 3:
        a = a[None]
    if a.shape[1] == len(L1C_BANDS):
        warnings.warn(f"{source}: 13 L1C bands; read_cube leaves out B10 (cirrus), the models code the 12 L2A "
                      "bands (tcube compress and open_dataset keep it, stored losslessly)", stacklevel=3)
        a = np.delete(a, L1C_BANDS.index("B10"), axis=1)
    if a.ndim != 4 or a.shape[1] != len(L2A_BANDS):
        raise InputError(f"{source}: expected 12 or 13 bands, got array of shape {a.shape}")
    return a


def _read_folder(path: Path) -> np.ndarray:
    """Per-band GeoTIFFs (one date), or multi-band GeoTIFFs (one per date, sorted by name)."""
    tifs = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    named = {band_name(p.name): p for p in tifs if band_name(p.name)}
    if named and all(b in named for b in L2A_BANDS):
        return _select({b: _read_tiff(p) for b, p in named.items()}, str(path))[None]
    if not tifs:
        raise InputError(f"{path}: no GeoTIFF files")
    return np.concatenate([_from_channels(_read_tiff(p), str(p)) for p in tifs])


def _read_xarray(path: Path) -> np.ndarray:
    import xarray as xr

    ds = xr.open_zarr(str(path)) if path.suffix == ".zarr" or path.is_dir() else xr.open_dataset(str(path))
    with ds:
        bands = {}
        for name, var in ds.data_vars.items():
            b = band_name(str(name))
            if b and var.ndim >= 2:
                dims = [d for d in var.dims if d not in ("y", "x", "lat", "lon")] + list(var.dims[-2:])
                bands[b] = np.asarray(var.transpose(*dims).values)
        cube = _select(bands, str(path))
    return cube if cube.ndim == 4 else cube[None]


def read_cube(path: str | Path) -> np.ndarray:
    """Read a Sentinel-2 cube as float32 digital numbers, shape (T, 12, H, W), L2A band order.

    Accepts a multi-band GeoTIFF, a folder of per-band or per-date GeoTIFFs, ``.npy`` arrays
    ((T, H, W, C) or (T, C, H, W) with 12 or 13 bands; float reflectance is scaled by 1e4),
    NetCDF and zarr with band variables named like ``B02``. L1C inputs lose B10 (with a warning):
    this reader feeds training and benchmarks; :func:`open_dataset` keeps every band as it is.

    Examples
    --------
    >>> from tcube.data import sample_cube_path
    >>> read_cube(sample_cube_path()).shape[1]
    12
    """
    path = existing(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        a = _from_channels(_read_tiff(path), str(path))
    elif suffix in (".npy", ".npz"):
        a = _from_channels(_load_array(path), str(path))
    elif suffix in (".nc", ".zarr") or (path.is_dir() and (path / "zarr.json").exists()):
        a = _read_xarray(path)
    elif path.is_dir():
        a = _read_folder(path)
    else:
        raise InputError(f"{path}: unsupported file type {suffix!r}")
    return _to_dn(np.asarray(a)).astype(np.float32)


def _load_array(path: Path) -> np.ndarray:
    """A .npy array, or the first array of a .npz, as (T, C, H, W) when its last axis holds the bands."""
    a = np.load(path, allow_pickle=False)
    if path.suffix.lower() == ".npz":
        with a as z:
            a = z[z.files[0]]
    if a.ndim == 4 and a.shape[-1] in (12, 13) and a.shape[1] not in (12, 13):
        a = np.moveaxis(a, -1, 1)
    return a[None] if a.ndim == 3 else a


def find_cubes(paths: list[str | Path]) -> list[Path]:
    """Expand folders into the cubes they hold (files, per-band folders, zarr stores)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() or p.suffix == ".zarr" or (p / "zarr.json").exists():
            out.append(p)
        elif p.is_dir():
            entries = sorted(p.iterdir())
            if any(band_name(e.name) for e in entries if e.is_file()):
                out.append(p)
            else:
                out.extend(find_cubes([e for e in entries if e.is_dir() or e.suffix.lower() in
                                       (".tif", ".tiff", ".npy", ".npz", ".nc", ".zarr")]))
    return out


def _open_netcdf(path: Path):
    """NetCDF with CF decoding, or without it when xarray cannot apply it to some variable (integer
    variables with a fill value, as in WorldCereal's angle variables): then values stay as stored and
    CF attributes (scale_factor, _FillValue) stay in ``attrs``, where xarray2tec reads them. Grid
    mapping variables (the CRS) are coordinates, as rioxarray expects."""
    import xarray as xr

    # lazily indexed (a region reads only itself from disk); grid mappings (the CRS) as coordinates,
    # the way rioxarray and CF writers keep them
    ds = xr.open_dataset(str(path), decode_coords="all")
    try:
        for var in ds.data_vars.values():
            np.asarray(var.isel({d: 0 for d in var.dims}))
    except ValueError:
        ds.close()
        ds = xr.open_dataset(str(path), mask_and_scale=False, decode_coords="all")
    return ds


def open_dataset(path: str | Path):
    """Open a Sentinel-2 dataset as an xarray Dataset (lazy where the format allows).

    Accepts zarr stores (dask) and NetCDF files (lazily indexed, read region by region), and
    through rioxarray (:mod:`tcube.geo`, lazy, window by window) GeoTIFFs and COGs: a multi-band
    file (bands named by their descriptions, or 12 in L2A order, 13 in L1C order), a folder of
    single-band files named after their bands (one date; each resolution keeps its own grid) or a
    folder of multi-band files (one date each, in name order; dim ``time`` with the file names as
    a coordinate). CRS and transform become a ``spatial_ref`` coordinate (``crs_wkt``,
    ``GeoTransform``) named by each band's ``grid_mapping``, with x/y coordinates of pixel centres.

    Examples
    --------
    >>> from tcube.data import sample_cube_path
    >>> open_dataset(sample_cube_path())["B04"].dims
    ('time', 'y', 'x')
    """
    import xarray as xr

    path = existing(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr" or (path.is_dir() and any((path / m).exists() for m in ("zarr.json", ".zgroup"))):
        consolidated = (path / ".zmetadata").exists() or '"consolidated_metadata": {' in _text(path / "zarr.json")
        return xr.open_zarr(str(path), consolidated=consolidated, decode_coords="all")
    if suffix in (".nc", ".nc4", ".netcdf"):
        return _open_netcdf(path)
    if suffix in (".tif", ".tiff"):
        from tcube.geo import open_geotiff

        return open_geotiff(path)
    if suffix in (".npy", ".npz"):  # values as they are, every band (B10 of L1C too)
        cube = _load_array(path)
        names = {len(L2A_BANDS): L2A_BANDS, len(L1C_BANDS): L1C_BANDS}.get(cube.shape[1] if cube.ndim == 4 else 0)
        if names is None:
            raise InputError(f"{path}: expected (T, C, H, W) or (T, H, W, C) with 12 or 13 bands, got {cube.shape}")
        return xr.Dataset({b: (("time", "y", "x"), plane) for b, plane in zip(names, np.moveaxis(cube, 1, 0))})
    if path.is_dir():
        from tcube.geo import open_geotiff_folder

        return open_geotiff_folder(path)
    raise InputError(f"{path}: unsupported file type {suffix!r}")


def place_name(path: Path) -> str:
    """Files of one place over dates share a name up to a short trailing _<index> (terracodec seasons).

    Examples
    --------
    >>> place_name(Path("ssl4eos12_val_0080717_2.tif"))
    'ssl4eos12_val_0080717'
    """
    return re.sub(r"_\d{1,3}$", "", path.stem)


def load_cubes(paths: list[str | Path], holdout: str | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint16 (T, 12, H, W) cube) per place: the dates of a place (``*_0.tif``, ``*_1.tif``...)
    stack along time; a folder of per-band files is one date. ``holdout`` keeps names containing it.

    Examples
    --------
    >>> from tcube.data import sample_cube_path
    >>> [(n, c.shape) for n, c in load_cubes([sample_cube_path()])]
    [('sample_l2a_0080717', (4, 12, 128, 128))]
    """
    groups: dict[str, list[Path]] = {}
    for path in find_cubes([str(p) for p in paths]):
        if holdout is None or holdout in str(path):
            groups.setdefault(place_name(path) if path.is_file() else path.name, []).append(path)
    if not groups:
        where = ", ".join(map(str, paths)) + (f" matching {holdout!r}" if holdout else "")
        raise InputError(f"no cube found in {where}")
    cubes = []
    for name, files in groups.items():
        cube = np.concatenate([read_cube(p) for p in sorted(files)])
        cubes.append((name, np.clip(np.round(cube), 0, 65535).astype(np.uint16)))
    return cubes
