"""Reading Sentinel-2 cubes from files and folders into (T, C, H, W) arrays in L2A band order."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tcube.bands import L1C_BANDS, L2A_BANDS
from tcube.errors import InputError

_BAND_RE = re.compile(r"(?:^|[_\-.])B(\d{1,2}A?)(?:$|[_\-.])", re.IGNORECASE)


def band_name(text: str) -> str | None:
    """Canonical band name ("B8A", "B02") found in a file or variable name, if any.

    Examples
    --------
    >>> band_name("S2A_MSIL2A_x_B8A.tif"), band_name("B2"), band_name("SCL")
    ('B8A', 'B02', None)
    """
    m = _BAND_RE.search(Path(text).stem if "." in text else text)
    if not m:
        return None
    num = m.group(1).upper()
    return "B8A" if num == "8A" else f"B{int(num):02d}"


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
    """(…, C, H, W) with C = 12 (L2A order) or 13 (L1C order, B10 dropped) -> (T, 12, H, W)."""
    if a.ndim == 3:
        a = a[None]
    if a.shape[1] == len(L1C_BANDS):
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
    NetCDF and zarr with band variables named like ``B02``. L1C inputs lose B10.

    Examples
    --------
    >>> from tcube.data import sample_cube_path
    >>> read_cube(sample_cube_path()).shape[1]
    12
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        a = _from_channels(_read_tiff(path), str(path))
    elif suffix in (".npy", ".npz"):
        a = np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with a as z:
                a = z[z.files[0]]
        if a.ndim == 4 and a.shape[-1] in (12, 13) and a.shape[1] not in (12, 13):
            a = np.moveaxis(a, -1, 1)
        a = _from_channels(a, str(path))
    elif suffix in (".nc", ".zarr") or (path.is_dir() and (path / "zarr.json").exists()):
        a = _read_xarray(path)
    elif path.is_dir():
        a = _read_folder(path)
    else:
        raise InputError(f"{path}: unsupported file type {suffix!r}")
    return _to_dn(np.asarray(a)).astype(np.float32)


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
