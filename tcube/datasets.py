"""Whole datasets: :func:`xarray2tec` writes an xarray Dataset to a tcube-coded zarr store,
:func:`tec2xarray` gives it back, lazily.

The layout of a store is described in :mod:`tcube.stacks`; writing it is a resumable job
(:mod:`tcube.jobs`), the same one ``tcube compress`` and :mod:`tcube.parallel` run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr

import tcube.jobs as jobs
from tcube.errors import InputError
from tcube.metrics import psnr_10k, psnr_full, ssim
from tcube.outputs import check_finished
from tcube.settings import Settings
from tcube.stacks import (
    band_dim,
    candidates,
    open_store,
    stacks_in,
    stand_in,
    to_dn_params,
)
from tcube.zarr_codecs import TecCodec, TecZarrCodec

__all__ = ["band_planes", "describe_store", "format_stats", "repair_store", "stand_in", "store_stats", "tec2xarray",
           "xarray2tec"]


#: The variable a DataArray without a name is stored as.
DATAARRAY_NAME = "reflectance"


def xarray2tec(ds: xr.Dataset | xr.DataArray, store: Any, rules: Mapping[str, Mapping] | None = None, *,
               model: str | None = None, quality: int | None = None, max_error: int | None = None,
               psnr: float | None = None, metric: str = "10k", compute_stats: bool = False, batch: int = 8,
               progress: Callable[[int, int], None] | None = None, overwrite: bool = False,
               append_dim: str | None = None) -> list[dict] | None:
    """Write ``ds`` to a zarr store: reflectance learned-coded, everything else lossless.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Band variables (``B02``, ``B8A``, ``B2``, ``red``, ``nir08``...: any spelling of
        :func:`tcube.bands.band_name`) or variables with a band dimension whose labels are such
        names (what odc-stac and stackstac give), plus anything else; numpy-, lazily- or
        dask-backed (processed region by region, never loaded whole). A DataArray is stored as the
        one variable of a Dataset, under its name (or ``"reflectance"``):
        ``tec2xarray(store)[name]`` gives it back with its coordinates and attributes.
    store : path, URL or zarr store
        Where to write: new or empty, never a file ``ds`` was read from, in a folder that exists.
        A store holding the same job (same data, rules and settings) is completed: valid chunks
        are kept, missing or damaged ones written. A zarr store holding anything else is replaced
        only with ``overwrite``; anything that is not a zarr store never.
    rules : dict, optional
        Per variable name (``"*"`` for all): ``model``, ``quality``, ``max_error``, ``psnr`` and
        ``metric`` (as in :func:`tcube.encode`), ``chunks`` ((time, y, x); default
        16 dates for series of 16 dates or more coded by a model that codes dates over time, else
        one, and 256 x 256 pixels:
        :func:`tcube.stacks.default_chunks`; :func:`describe_store` lists what a store got),
        ``lossless`` (store as is), ``skip`` (leave out), ``band`` (the Sentinel-2 band of a
        variable with another name), ``scale``/``offset`` (value = digital number * scale +
        offset; default from the CF encoding), ``nodata`` (integer variables).
    model, quality, max_error, psnr, metric
        Defaults for the learned codec, as in :func:`tcube.encode` (``max_error=0``: lossless; the
        model defaults to the one of the mode).
    compute_stats : bool
        Decode again and return (and print) per variable: bytes, bpppb, ratio, PSNR, SSIM.
    batch : int
        Chunks per model call.
    progress : callable, optional
        Called as ``progress(done, total)`` (chunks) after each batch.
    overwrite : bool
        Replace a zarr store that holds something else.
    append_dim : str, optional
        Append the dates of ``ds`` along this dimension to a finished tcube store instead, coded
        with the store's own settings (so give no rules, model or quality): the same variables and
        grid, new dates. The store is unfinished (invisible to plain readers) until the append
        completes; an interrupted append completes when run again.

    Examples
    --------
    >>> import numpy as np, xarray as xr, zarr, tcube
    >>> cube = tcube.data.load_sample_cube()[:, :, :64, :64]
    >>> ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(tcube.bands.L2A_BANDS)})
    >>> ds["SCL"] = (("time", "y", "x"), np.full((4, 64, 64), 4, np.uint8))
    >>> store = zarr.storage.MemoryStore()
    >>> xarray2tec(ds, store, rules={"B01": {"quality": 4}})
    >>> back = tec2xarray(store)
    >>> list(back.data_vars) == list(ds.data_vars), back["B04"].dtype, bool((back["SCL"] == 4).all())
    (True, dtype('int16'), True)
    """
    if isinstance(ds, xr.DataArray):  # e.g. stackstac's (time, band, y, x)
        ds = ds.to_dataset(name=ds.name if ds.name is not None else DATAARRAY_NAME)
    if append_dim is not None:
        given = [k for k, v in {"rules": rules, "model": model, "quality": quality, "max_error": max_error,
                                "psnr": psnr, "overwrite": overwrite or None}.items() if v is not None]
        if given:
            raise InputError(f"append_dim codes new dates with the store's own settings: give no {', '.join(given)}")
        job = jobs.prepare_append(ds, (None, None), store, append_dim, batch=batch)
    else:
        settings = Settings.make(model, quality, max_error, psnr, metric, batch)
        job = jobs.prepare(ds, (None, None), store, rules, settings, overwrite=overwrite)
    jobs.run(job, ds, progress)
    if not compute_stats:
        return None
    rows = store_stats(ds, store)
    print(format_stats(rows))
    return rows


def tec2xarray(store: Any, chunks: Mapping | None = None) -> xr.Dataset:
    """Open a store written by :func:`xarray2tec`: a lazy (dask) Dataset like the original.

    Original variable names, order, dims, dtypes, coordinates, attributes, encodings and CRS
    variable; reflectance decodes chunk by chunk when used. A store whose job did not finish
    raises :class:`~tcube.errors.UnfinishedStoreError`; a zarr store tcube did not write,
    :class:`~tcube.errors.InputError`.

    Examples
    --------
    See :func:`xarray2tec`.
    """
    return open_store(store, chunks)


def repair_store(store: Any, progress: Callable[[int, int], None] | None = None) -> bool:
    """Repair a store that plain ``xarray.Dataset.to_zarr(store, append_dim="time")`` changed.

    Such an append replaces the store's attributes and writes the new dates as plain arrays
    beside the coded stacks (so :func:`tec2xarray` refuses the store). This codes those dates into
    the stacks with the store's settings, puts the attributes back and removes the plain copies.
    Returns whether anything needed repair. To append, use ``xarray2tec(new, store, append_dim="time")``.

    Examples
    --------
    >>> import pandas as pd, tcube
    >>> cube = tcube.data.load_sample_cube()[:, :, :32, :32]
    >>> ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(tcube.bands.L2A_BANDS)},
    ...                 coords={"time": pd.date_range("2024-01-01", periods=4)})
    >>> store = zarr.storage.MemoryStore()
    >>> xarray2tec(ds.isel(time=slice(0, 2)), store, model="tec-fp")
    >>> ds.isel(time=slice(2, 4)).to_zarr(store, append_dim="time")  # doctest: +ELLIPSIS
    <xarray.backends.zarr.ZarrStore object at ...>
    >>> repair_store(store), tec2xarray(store)["B04"].shape
    (True, (4, 32, 32))
    """
    from tcube.jobs import repair

    return repair(store, progress) is not None


def _psnr_valid(a: np.ndarray, b: np.ndarray, valid: np.ndarray, psnr, floor: float) -> float:
    """``psnr`` (a :mod:`tcube.metrics` convention, which clamps values at ``floor``) over the valid
    pixels of one date; NaN (undefined) if there are none or the convention sees nothing above its floor."""
    a, b = a[valid], b[valid]
    if not a.size or ((a <= floor).all() and (b <= floor).all()):
        return float("nan")
    return psnr(a[None], b[None])


def _variable_quality(original: xr.DataArray, decoded: xr.DataArray, info: dict, tdim: str | None) -> dict:
    """Mean over dates of PSNR (10k and full range, digital numbers, valid pixels) and SSIM.

    In the 10k convention dark bands of data without the +1000 offset clamp to zero on many dates;
    those dates (PSNR undefined) are left out of the mean."""
    psnr10, psnrf, ssims = [], [], []
    for t in range(original.sizes[tdim] if tdim else 1):
        a = (original.isel({tdim: t}) if tdim else original).values.astype(np.float64)
        b = (decoded.isel({tdim: t}) if tdim else decoded).values.astype(np.float64)
        valid = ~np.isnan(a) & (a != info["nodata"] if info["nodata"] is not None else True)
        a, b = (a - info["offset"]) / info["scale"], (b - info["offset"]) / info["scale"]
        psnr10.append(_psnr_valid(a, b, valid, psnr_10k, 1000.0))
        psnrf.append(_psnr_valid(a, b, valid, psnr_full, 0.0))
        ssims.append(ssim(np.where(valid, a, 0), np.where(valid, b, 0)))
    return {"psnr_10k": _mean_db(psnr10), "psnr_full": _mean_db(psnrf), "ssim": float(np.nanmean(ssims))}


def _mean_db(values: list[float]) -> float:
    """Mean over dates of finite PSNRs; NaN (undefined) when no date has one, e.g. when every value
    clamps to zero in the 10k convention. Infinite only when every date decoded exactly."""
    finite = [v for v in values if np.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    return float("inf") if values and all(v == np.inf for v in values) else float("nan")


def store_stats(ds: xr.Dataset, store: Any) -> list[dict]:
    """Per variable of ``ds`` written to ``store``: stored bytes, bpppb, ratio; PSNR and SSIM of coded ones.

    A stack's bytes are shared by its variables in proportion to their number of values.
    """
    back = tec2xarray(store)
    stacks = stacks_in(store)
    rows = []
    for stack, meta in stacks.items():
        arr = zarr.open_array(store, path=stack, mode="r")
        stored, values = arr.nbytes_stored(), sum(ds[name].size for name in meta["variables"])
        for name, info in meta["variables"].items():
            size = stored * ds[name].size / values
            rows.append({"variable": name, "stored_as": f"{stack} ({codec_text(arr).removeprefix('tcube ')})",
                         "bytes": int(size), "bpppb": 8 * size / ds[name].size, "ratio": ds[name].nbytes / size,
                         **_variable_quality(ds[name], back[name], info, meta["time_dim"])})
    coded = {n for meta in stacks.values() for n in meta["variables"]}
    for name in [n for n in back.data_vars if n not in coded]:
        size = zarr.open_array(store, path=str(name), mode="r").nbytes_stored()
        rows.append({"variable": name, "stored_as": "zarr default (lossless)", "bytes": int(size),
                     "bpppb": 8 * size / max(ds[name].size, 1), "ratio": ds[name].nbytes / size,
                     "psnr_10k": float("inf"), "psnr_full": float("inf"), "ssim": 1.0})
    return rows


def codec_text(arr: zarr.Array) -> str:
    """What codes the chunks of ``arr``: ``"tcube MODEL qQ"`` (with ``max error E``, ``lossless`` or
    ``psnr T dB (METRIC)``), or the names of its codecs.

    Examples
    --------
    >>> arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), dtype="uint8")
    >>> codec_text(arr)
    'ZstdCodec'
    """
    codecs = [*arr.filters, *arr.compressors, *([arr.serializer] if arr.serializer is not None else [])]
    tec = next((c for c in codecs if isinstance(c, TecCodec | TecZarrCodec)), None)
    if tec is not None:
        parts = [f"tcube {tec.model}"] + ([f"q{tec.quality}"] if tec.quality is not None else [])
        if tec.max_error is not None:
            parts.append("lossless" if tec.max_error == 0 else f"max error {tec.max_error}")
        if tec.psnr is not None:
            parts.append(f"psnr {tec.psnr:g} dB ({tec.metric})")
        return " ".join(parts)
    names = [type(c).__name__ for c in (*arr.filters, *arr.compressors)]
    return ", ".join(names) or "uncompressed"


def _open_node(store: Any) -> zarr.Group | zarr.Array:
    try:
        return zarr.open(store, mode="r")
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.NodeNotFoundError) as exc:
        raise InputError(f"{store}: not a zarr store ({exc})") from exc


def describe_store(store: Any) -> dict:
    """Arrays of a zarr store (a group, or a single array of either zarr format): codec, stored and
    raw bytes, and the variables each holds (the original variables, for tcube stacks).

    Raises :class:`~tcube.errors.UnfinishedStoreError` for a store whose job did not finish.

    Examples
    --------
    >>> import numpy as np, xarray as xr, zarr, tcube
    >>> ds = xr.Dataset({"B04": (("y", "x"), np.full((32, 32), 900, np.uint16))})
    >>> store = zarr.storage.MemoryStore()
    >>> xarray2tec(ds, store)
    >>> [(a["name"], a["codec"], a["variables"]) for a in describe_store(store)["arrays"]]
    [('tcube_y_x', 'tcube tec-hx q8', ['B04'])]
    """
    check_finished(store)
    node = _open_node(store)
    if isinstance(node, zarr.Array):
        members, stacks = [(node.basename or "/", node)], {}
    else:
        members = sorted((k, v) for k, v in node.members(max_depth=None) if isinstance(v, zarr.Array))
        stacks = stacks_in(store)
    arrays = []
    for key, arr in members:
        if key in stacks:
            t, _, h, w = arr.shape
            variables = stacks[key]["variables"]
            raw = sum(t * h * w // info["grid"][2] ** 2 * len(info["bands"]) * np.dtype(info["dtype"]).itemsize
                      for info in variables.values())
            names = list(variables)
        else:
            raw, names = arr.nbytes, [key]
        arrays.append({"name": key, "codec": codec_text(arr), "stored_bytes": arr.nbytes_stored(),
                       "raw_bytes": int(raw), "variables": names, "zarr_format": arr.metadata.zarr_format,
                       "chunks": list(arr.chunks)})
    stored, raw = sum(a["stored_bytes"] for a in arrays), sum(a["raw_bytes"] for a in arrays)
    return {"store": str(store), "arrays": arrays, "stored_bytes": stored, "raw_bytes": raw,
            "ratio": raw / max(stored, 1)}


def format_stats(rows: list[dict]) -> str:
    """The rows of ``compute_stats`` as an aligned text table."""
    head = (f"{'variable':>18} {'stored as':>30} {'bytes':>10} {'bpppb':>8} {'ratio':>8} {'PSNR 10k':>8} "
            f"{'PSNR full':>9} {'SSIM':>7}")
    lines = [head]
    for r in rows:
        lines.append(f"{str(r['variable']):>18} {r['stored_as']:>30} {r['bytes']:>10d} {r['bpppb']:>8.4f} "
                     f"{r['ratio']:>8.1f} {_db(r['psnr_10k']):>8} {_db(r['psnr_full']):>9} {r['ssim']:>7.4f}")
    total = sum(r["bytes"] for r in rows)
    lines.append(f"{'total':>18} {'':>30} {total:>10d}")
    return "\n".join(lines)


def _db(value: float) -> str:
    """A PSNR for the table: two decimals, ``inf`` for exact, ``n/a`` where undefined."""
    return "n/a" if np.isnan(value) else f"{value:.2f}"


def band_planes(ds: xr.Dataset, bands: tuple[str, ...], date: int = 0) -> dict[str, np.ndarray]:
    """Digital numbers (float64, no-data as NaN) of ``bands`` at time index ``date``, those found on
    the grid of the first one.

    Examples
    --------
    >>> ds = xr.Dataset({"B04": (("time", "y", "x"), np.full((2, 4, 4), 0.09))})
    >>> ds["B04"].encoding["scale_factor"] = 1e-4
    >>> round(float(band_planes(ds, ("B04",), date=1)["B04"][0, 0]), 6)
    900.0
    """
    coded, _ = candidates(ds, {})
    found: dict[str, np.ndarray] = {}
    grid = None
    for band in bands:
        hit = next(((name, m, layout) for name, members, layout in coded for m in members if m.band == band),
                   None)
        if hit is None or (grid is not None and hit[2][1:] != grid):
            continue
        name, member, (tdim, ydim, xdim) = hit
        grid = (ydim, xdim)
        da = ds[name]
        if member.label is not None:
            da = da.sel({band_dim(da): member.label})
        if tdim is not None:
            if not 0 <= date < ds.sizes[tdim]:
                raise InputError(f"date {date} is outside 0..{ds.sizes[tdim] - 1}")
            da = da.isel({tdim: date})
        scale, offset, nodata = to_dn_params(ds[name], {})
        values = da.transpose(ydim, xdim).values.astype(np.float64)
        if nodata is not None:
            values[values == nodata] = np.nan
        found[band] = (values - offset) / scale
    return found
