"""Assertions and inputs shared by the tests."""

import numpy as np
import torch
import xarray as xr

from tcube.metrics import psnr_full


def assert_same(ds: xr.Dataset, back: xr.Dataset, min_psnr: float = 30.0, coded=None) -> None:
    """Everything intact: names, order, dims, dtypes, coordinates, attributes, encodings, CRS;
    reflectance within tolerance with its NaN / no-data exact, everything else equal."""
    assert list(back.data_vars) == list(ds.data_vars)
    assert set(back.coords) == set(ds.coords)
    np.testing.assert_equal(back.attrs, ds.attrs)
    coded = coded if coded is not None else [n for n in ds.data_vars if str(n).startswith("B")]
    for name, var in ds.variables.items():
        got = back[name]
        assert got.dims == var.dims and got.dtype == var.dtype, name
        np.testing.assert_equal(dict(got.attrs), dict(var.attrs))
        for key in {"dtype", "scale_factor", "add_offset", "_FillValue"} & set(var.encoding):
            expected, found = var.encoding[key], got.encoding.get(key)
            same = (np.dtype(found) == np.dtype(expected) if key == "dtype"
                    else np.array_equal(found, expected, equal_nan=True))
            assert same, (name, key, found, expected)
        a, b = var.values, got.values
        if name in ds.coords or name not in coded:
            np.testing.assert_array_equal(b, a, err_msg=str(name))
        else:
            nan = np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
            np.testing.assert_array_equal(np.isnan(b) if b.dtype.kind == "f" else nan, nan)
            scale = var.encoding.get("scale_factor", 1.0) if a.dtype.kind == "f" else 1.0
            assert psnr_full(np.where(nan, 0, a / scale)[None], np.where(nan, 0, b / scale)[None]) > min_psnr, name


def correlated_frames(bands: int, n: int = 2, h: int = 40, w: int = 52, seed: int = 0) -> torch.Tensor:
    """Frames (n, bands, h, w) of correlated bands with shared spatial structure, like reflectance."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(0, 30, (n, 1, h, w)), -1), -2)
    mix = rng.uniform(0.5, 1.5, (1, bands, 1, 1))
    x = 1500 + base * mix + rng.normal(0, 20, (n, bands, h, w))
    return torch.from_numpy(np.clip(x, 0, 10000).round())


def legacy_header(header: dict) -> dict:
    """A header read from a format version 9 blob, as versions 1 to 8 write it (the digest's first
    16 bytes, a package version)."""
    from tcube.models import list_models, model_digest

    weights = header["weights"]
    if header["model"] in list_models() and model_digest(header["model"]).startswith(weights):
        weights = model_digest(header["model"])
    return {**header, "tcube": header.get("tcube") or "0", "weights": weights[:32].ljust(32, "0")}
