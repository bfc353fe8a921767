"""Whole datasets: :func:`xarray2tec` writes an xarray Dataset to a tcube-coded zarr store,
:func:`tec2xarray` gives it back, lazily.

A store is a zarr format 3 group:

- reflectance bands (variables named like Sentinel-2 bands, L2A or L1C spelling, or variables
  with a ``band`` dimension whose labels are band names) are stacked per grid into one array
  ``tcube_<y>_<x>`` of dims (time, 12, y, x), float32 digital numbers, coded by
  :class:`~tcube.codecs.TecZarrCodec`. Its ``tcube`` attribute records every original variable:
  name, band, dims, dtype, scale and offset to digital numbers, no-data, attributes, encoding.
  Bands the dataset lacks are filled from the spectrally nearest present band (moment-matched with
  the SSL4EO statistics), so the model codes them cheaply; they are never read back.
- everything else (masks, SCL, angles, other variables, coordinates, the CRS variable) is written
  by xarray with zarr's defaults, which are lossless (Zstd).

Bands at different resolutions (10, 20, 60 m) live on different grids and are coded in separate
stacks, each at its native resolution.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
import zarr

from tcube.bands import L2A_BANDS, L2A_MEAN, L2A_STD, nearest_present
from tcube.codecs import TecZarrCodec
from tcube.errors import InputError
from tcube.io import band_name
from tcube.metrics import ssim

STACK_PREFIX = "tcube_"
ORDER_ATTR = "tcube:variables"
ENCODINGS_ATTR = "tcube:encodings"
FILL_ATTR = "tcube:fill_value_attrs"  # variables whose own attributes had a _FillValue
RULE_KEYS = frozenset({"model", "quality", "chunks", "lossless", "skip", "band", "scale", "offset", "nodata"})
DEFAULT_CHUNKS = {"time": 1, "y": 256, "x": 256}
_Y_NAMES = ("y", "lat", "latitude", "row", "rows", "northing")
_X_NAMES = ("x", "lon", "longitude", "col", "cols", "easting")
_BAND_DIMS = ("band", "bands", "spectral_band")
_KEPT_ENCODING = ("dtype", "_FillValue", "scale_factor", "add_offset", "units", "calendar")


@dataclass
class _Member:
    """One band of one original variable."""

    name: str
    band: str
    label: Any = None  # the label on the variable's band dimension, if it has one


@dataclass
class _Stack:
    name: str
    tdim: str | None
    ydim: str
    xdim: str
    model: str
    quality: int
    chunks: tuple[int, int, int]
    members: list[_Member] = field(default_factory=list)


def _json_safe(value: Any) -> Any:
    """Attributes and encodings as JSON (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _rules_for(rules: Mapping[str, Mapping], name: str) -> dict:
    return {**rules.get("*", {}), **rules.get(name, {})}


def _check_rules(ds: xr.Dataset, rules: Mapping[str, Mapping]) -> None:
    for name, rule in rules.items():
        if name != "*" and name not in ds.data_vars:
            raise InputError(f"rules name {name!r}, which is not a data variable of the dataset "
                             f"(variables: {', '.join(map(str, ds.data_vars))})")
        unknown = set(rule) - RULE_KEYS
        if unknown:
            raise InputError(f"rule for {name!r} has unknown keys {sorted(unknown)} (known: {sorted(RULE_KEYS)})")
        if "band" in rule and rule["band"] not in L2A_BANDS:
            raise InputError(f"rule for {name!r}: band {rule['band']!r} is not one of {', '.join(L2A_BANDS)}")


def _find_dim(dims: tuple, names: tuple[str, ...]) -> str | None:
    return next((d for d in dims if str(d).lower() in names), None)


def _band_dim(da: xr.DataArray) -> str | None:
    """The dimension holding Sentinel-2 bands, if ``da`` has one (by name or by its labels)."""
    for dim in da.dims:
        labels = da[dim].values if dim in da.coords else None
        if labels is not None and all(band_name(str(v)) in L2A_BANDS for v in labels):
            return dim
        if str(dim).lower() in _BAND_DIMS and labels is not None:
            return dim
    return None


def _layout(da: xr.DataArray, band_dim: str | None) -> tuple[str | None, str, str] | None:
    """(time, y, x) dims of a codable variable, or None when it does not fit (time, y, x)."""
    dims = tuple(d for d in da.dims if d != band_dim)
    if len(dims) not in (2, 3):
        return None
    ydim = _find_dim(dims, _Y_NAMES) or dims[-2]
    xdim = _find_dim(dims, _X_NAMES) or dims[-1]
    rest = [d for d in dims if d not in (ydim, xdim)]
    if ydim == xdim or len(rest) > 1:
        return None
    return (rest[0] if rest else None), ydim, xdim


def _chunks(rule: Mapping, sizes: tuple[int, int, int]) -> tuple[int, int, int]:
    chunks = rule.get("chunks", DEFAULT_CHUNKS)
    if isinstance(chunks, Mapping):
        chunks = (chunks.get("time", 1), chunks.get("y", 256), chunks.get("x", 256))
    if len(chunks) != 3 or any(int(c) < 1 for c in chunks):
        raise InputError(f"chunks must be (time, y, x) sizes >= 1, got {chunks!r}")
    return tuple(min(int(c), s) for c, s in zip(chunks, sizes))


def _plan(ds: xr.DataArray, rules: Mapping[str, Mapping], model: str, quality: int) -> tuple[list[_Stack], list[str]]:
    """Which variables go to which stack, and which are skipped."""
    stacks: dict[tuple, _Stack] = {}
    skipped = []
    for name, da in ds.data_vars.items():
        rule = _rules_for(rules, name)
        if rule.get("skip"):
            skipped.append(name)
            continue
        if rule.get("lossless"):
            continue
        bdim = _band_dim(da)
        layout = _layout(da, bdim)
        if layout is None or da.dtype.kind not in "fiu":
            continue
        if bdim is not None:
            members = [_Member(name, band_name(str(v)), v) for v in da[bdim].values]
        else:
            band = rule.get("band") or band_name(str(name))
            if band not in L2A_BANDS:
                continue
            members = [_Member(name, band)]
        tdim, ydim, xdim = layout
        sizes = (ds.sizes[tdim] if tdim else 1, ds.sizes[ydim], ds.sizes[xdim])
        key = (tdim, ydim, xdim, rule.get("model", model), int(rule.get("quality", quality)), _chunks(rule, sizes))
        if key not in stacks:
            suffix = "" if not any(k[1:3] == (ydim, xdim) for k in stacks) else f"_{len(stacks)}"
            stacks[key] = _Stack(f"{STACK_PREFIX}{ydim}_{xdim}{suffix}", *key)
        stack = stacks[key]
        taken = {m.band for m in stack.members}
        for m in members:
            if m.band in taken:
                raise InputError(f"band {m.band} appears twice on grid ({ydim}, {xdim}): in {m.name!r} and another "
                                 "variable; skip one or map it with rules")
            taken.add(m.band)
        stack.members.extend(members)
    return list(stacks.values()), skipped


def _to_dn_params(da: xr.DataArray, rule: Mapping) -> tuple[float, float, float | None]:
    """(scale, offset, no-data) with value = DN * scale + offset; no-data for integer variables."""
    if da.dtype.kind == "f":  # CF-decoded: value = stored * scale_factor + add_offset
        scale = float(rule.get("scale", da.encoding.get("scale_factor", 1.0)))
        offset = float(rule.get("offset", da.encoding.get("add_offset", 0.0)))
    else:  # values as stored (CF attributes, if any, describe them, so they are already digital numbers)
        scale, offset = float(rule.get("scale", 1.0)), float(rule.get("offset", 0.0))
    nodata = rule.get("nodata", da.attrs.get("_FillValue", da.encoding.get("_FillValue")))
    if da.dtype.kind not in "iu":
        nodata = None
    return scale, offset, None if nodata is None else float(nodata)


def _variable_meta(ds: xr.Dataset, stack: _Stack, rules: Mapping) -> dict:
    meta = {}
    for name in dict.fromkeys(m.name for m in stack.members):
        da = ds[name]
        scale, offset, nodata = _to_dn_params(da, _rules_for(rules, name))
        bdim = _band_dim(da)
        meta[name] = {
            "dims": [str(d) for d in da.dims], "dtype": da.dtype.str, "band_dim": bdim,
            "bands": {str(m.label if bdim else m.band): L2A_BANDS.index(m.band)
                      for m in stack.members if m.name == name},
            "scale": scale, "offset": offset, "nodata": nodata,
            "attrs": _json_safe(da.attrs), "encoding": _json_safe({k: v for k, v in da.encoding.items()
                                                                   if k in _KEPT_ENCODING}),
        }
    return meta


def _read_block(ds: xr.Dataset, stack: _Stack, meta: dict, region: dict) -> np.ndarray:
    """(t, 12, h, w) float32 digital numbers of one region; missing bands stand in from present ones."""
    tn = region[stack.tdim].stop - region[stack.tdim].start if stack.tdim else 1
    hn, wn = (region[d].stop - region[d].start for d in (stack.ydim, stack.xdim))
    block = np.full((tn, len(L2A_BANDS), hn, wn), np.nan, np.float32)
    for name, info in meta.items():
        da = ds[name].isel({d: s for d, s in region.items() if d in ds[name].dims})
        order = [d for d in (info["band_dim"], stack.tdim, stack.ydim, stack.xdim) if d]
        values = da.transpose(*order).values.astype(np.float64)
        if info["band_dim"] is None:
            values = values[None]
        if stack.tdim is None:
            values = values[:, None]
        if info["nodata"] is not None:
            values[values == info["nodata"]] = np.nan
        dn = ((values - info["offset"]) / info["scale"]).astype(np.float32)
        for i, index in enumerate(info["bands"].values()):
            block[:, index] = dn[i]
    present = [b for b in L2A_BANDS if any(b == m.band for m in stack.members)]
    for i, band in enumerate(L2A_BANDS):
        if band not in present:
            j = L2A_BANDS.index(nearest_present(band, present))
            block[:, i] = (block[:, j] - L2A_MEAN[j]) / L2A_STD[j] * L2A_STD[i] + L2A_MEAN[i]
    return block


def _regions(stack: _Stack, sizes: Mapping, batch: int):
    """Regions of ``batch`` chunks along time by one chunk in y and x."""
    t = sizes[stack.tdim] if stack.tdim else 1
    tc, hc, wc = stack.chunks
    for t0, y0, x0 in itertools.product(range(0, t, tc * batch), range(0, sizes[stack.ydim], hc),
                                        range(0, sizes[stack.xdim], wc)):
        region = {stack.ydim: slice(y0, min(y0 + hc, sizes[stack.ydim])),
                  stack.xdim: slice(x0, min(x0 + wc, sizes[stack.xdim]))}
        if stack.tdim:
            region[stack.tdim] = slice(t0, min(t0 + tc * batch, t))
        yield region


def _stack_slices(stack: _Stack, region: dict) -> tuple:
    t = region.get(stack.tdim, slice(0, 1)) if stack.tdim else slice(0, 1)
    return t, slice(None), region[stack.ydim], region[stack.xdim]


def _kept_encoding(var: xr.Variable) -> dict:
    return {k: v for k, v in var.encoding.items() if k in _KEPT_ENCODING}


def _clean_encodings(ds: xr.Dataset, rules: Mapping) -> xr.Dataset:
    """A shallow copy to write with zarr defaults: values as they are in memory (no CF packing, which
    NetCDF files often carry in forms the zarr writer refuses); :func:`tec2xarray` restores the
    original encodings from the store's attributes."""
    out = ds.copy()
    for name, var in out.variables.items():
        rule = _rules_for(rules, name) if name in ds.data_vars else {}
        var.encoding = {"chunks": tuple(rule["chunks"])} if "chunks" in rule else {}
    return out


def xarray2tec(ds: xr.Dataset, store: Any, rules: Mapping[str, Mapping] | None = None, *,
               model: str = "tec-hp", quality: int = 8, compute_stats: bool = False, batch_chunks: int = 8,
               progress: Callable[[int, int], None] | None = None) -> list[dict] | None:
    """Write ``ds`` to a zarr store: reflectance learned-coded, everything else lossless.

    Parameters
    ----------
    ds : xarray.Dataset
        Band variables (``B02``, ``B8A``, ``B2``...) or variables with a band dimension, plus
        anything else; numpy-, lazily- or dask-backed (processed region by region, never loaded whole).
    store : path or zarr store
        Where to write (overwritten).
    rules : dict, optional
        Per variable name (``"*"`` for all): ``model``, ``quality``, ``chunks`` ((time, y, x)),
        ``lossless`` (store as is), ``skip`` (leave out), ``band`` (the Sentinel-2 band of a
        variable with another name), ``scale``/``offset`` (value = digital number * scale +
        offset; default from the CF encoding), ``nodata`` (integer variables).
    model, quality
        Defaults for the learned codec.
    compute_stats : bool
        Decode again and return (and print) per variable: bytes, bpppb, ratio, PSNR, SSIM.
    batch_chunks : int
        Chunks per model call.
    progress : callable, optional
        Called as ``progress(done, total)`` after each region.

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
    rules = dict(rules or {})
    _check_rules(ds, rules)
    stacks, skipped = _plan(ds, rules, model, quality)
    coded = [m.name for s in stacks for m in s.members]
    kept = ds.drop_vars(list(dict.fromkeys(coded + skipped)))
    rest = _clean_encodings(kept, rules)
    rest.attrs[ORDER_ATTR] = [str(n) for n in ds.data_vars if n not in skipped]
    rest.attrs[ENCODINGS_ATTR] = _json_safe({str(n): _kept_encoding(v) for n, v in kept.variables.items()})
    rest.attrs[FILL_ATTR] = [str(n) for n, v in kept.variables.items() if "_FillValue" in v.attrs]
    rest.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
    group = zarr.open_group(store, mode="a")
    jobs = [(s, r) for s in stacks for r in _regions(s, ds.sizes, batch_chunks)]
    metas = {}
    with zarr.config.set({"codec_pipeline.batch_size": batch_chunks}):
        for stack in stacks:
            metas[stack.name] = _variable_meta(ds, stack, rules)
            t = ds.sizes[stack.tdim] if stack.tdim else 1
            group.create_array(
                stack.name, shape=(t, len(L2A_BANDS), ds.sizes[stack.ydim], ds.sizes[stack.xdim]), dtype="float32",
                chunks=(stack.chunks[0], len(L2A_BANDS), *stack.chunks[1:]), fill_value=np.nan,
                serializer=TecZarrCodec(model=stack.model, quality=stack.quality), compressors=None,
                dimension_names=(stack.tdim or f"{stack.name}_time", f"{stack.name}_band", stack.ydim, stack.xdim),
                attributes={"tcube": {"version": 1, "time_dim": stack.tdim, "variables": metas[stack.name]}})
        arrays = {s.name: zarr.open_array(store, path=s.name, mode="a") for s in stacks}
        for done, (stack, region) in enumerate(jobs, 1):
            arrays[stack.name][_stack_slices(stack, region)] = _read_block(ds, stack, metas[stack.name], region)
            if progress:
                progress(done, len(jobs))
    if not compute_stats:
        return None
    rows = _stats(ds, store, stacks, metas, rest, batch_chunks)
    print(format_stats(rows))
    return rows


def _restore(stack_da: xr.DataArray, info: dict, time_dim: str | None) -> xr.DataArray:
    """One original variable from its stack: units, dtype, no-data, dims, attributes, encoding."""
    name_b, tname = stack_da.dims[:2]
    parts = [stack_da.isel({name_b: index}) * info["scale"] + info["offset"] for index in info["bands"].values()]
    da = xr.concat(parts, dim=info["band_dim"]) if info["band_dim"] else parts[0]
    if time_dim is None:
        da = da.isel({tname: 0}, drop=True)
    dtype = np.dtype(info["dtype"])
    if dtype.kind in "iu":
        nodata = info["nodata"]
        lim = np.iinfo(dtype)
        da = da.round().clip(lim.min, lim.max)
        if nodata is not None:
            nudged = nodata + 1 if nodata < lim.max else nodata - 1
            da = xr.where(da == nodata, nudged, da)
        da = da.fillna(nodata if nodata is not None else 0)
    da = da.astype(dtype).transpose(*info["dims"])
    da.attrs = dict(info["attrs"])
    da.encoding = dict(info["encoding"])
    return da


def tec2xarray(store: Any, chunks: Mapping | None = None) -> xr.Dataset:
    """Open a store written by :func:`xarray2tec`: a lazy (dask) Dataset like the original.

    Original variable names, order, dims, dtypes, coordinates, attributes, encodings and CRS
    variable; reflectance decodes chunk by chunk when used.

    Examples
    --------
    See :func:`xarray2tec`.
    """
    ds = xr.open_zarr(store, consolidated=False, chunks=chunks if chunks is not None else {}, mask_and_scale=False)
    stacks = [n for n in ds.data_vars if str(n).startswith(STACK_PREFIX) and "tcube" in ds[n].attrs]
    restored = {}
    for name in stacks:
        meta = ds[name].attrs["tcube"]
        if not isinstance(meta, Mapping):
            meta = json.loads(meta)
        for var, info in meta["variables"].items():
            band_coord = info["band_dim"]
            da = _restore(ds[name].transpose(f"{name}_band", ...), info, meta["time_dim"])
            if band_coord and band_coord in ds.coords:
                da = da.assign_coords({band_coord: ds.coords[band_coord]})
            restored[var] = da
    drop = stacks + [d for n in stacks for d in ds[n].dims if d.startswith(n) and d in ds.variables]
    out = ds.drop_vars(drop)
    order = out.attrs.pop(ORDER_ATTR, list(out.data_vars) + list(restored))
    own_fill = set(out.attrs.pop(FILL_ATTR, []))
    for name, enc in out.attrs.pop(ENCODINGS_ATTR, {}).items():
        if name in out.variables:
            out[name].encoding.update(enc)
            if name not in own_fill:  # the zarr writer's, not the dataset's
                out[name].attrs.pop("_FillValue", None)
    merged = {n: restored[n] if n in restored else out[n] for n in order}
    result = xr.Dataset(merged, coords=out.coords, attrs=out.attrs)
    for dim in [d for d in result.dims if str(d).startswith(STACK_PREFIX)]:
        result = result.drop_dims(dim)
    return result


def _stats(ds: xr.Dataset, store: Any, stacks: list[_Stack], metas: dict, rest: xr.Dataset,
           batch: int) -> list[dict]:
    """Per variable: bytes, bpppb, ratio, PSNR (10k convention, valid pixels) and SSIM."""
    rows = []
    for stack in stacks:
        arr = zarr.open_array(store, path=stack.name, mode="r")
        share = arr.nbytes_stored() / len(stack.members)
        for name, info in metas[stack.name].items():
            sq: dict[int, list[float]] = {}
            ssims, weights = [], []
            for region in _regions(stack, ds.sizes, batch):
                original = _read_block(ds, stack, {name: info}, region)
                decoded = arr[_stack_slices(stack, region)]
                t0 = region[stack.tdim].start if stack.tdim else 0
                for index in info["bands"].values():
                    a, b = original[:, index], decoded[:, index]
                    valid = ~np.isnan(a)
                    ca = np.clip(np.nan_to_num(a) - 1000, 0, 10000)
                    cb = np.clip(np.nan_to_num(b) - 1000, 0, 10000)
                    err = np.where(valid, (ca - cb) ** 2, 0.0)
                    for t in range(len(a)):
                        acc = sq.setdefault(t0 + t, [0.0, 0.0])
                        acc[0] += float(err[t].sum())
                        acc[1] += float(valid[t].sum())
                    ssims.append(ssim(np.where(valid, a, 0), np.where(valid, b, 0)))
                    weights.append(a.size)
            psnrs = [10 * np.log10(1e8 / (s / n)) if s > 0 else np.inf for s, n in sq.values() if n > 0]
            n_bands = len(info["bands"])
            size = share * n_bands
            values = ds[name].size
            rows.append({"variable": name, "stored_as": f"{stack.name} ({stack.model} q{stack.quality})",
                         "bytes": int(size), "bpppb": 8 * size / values, "ratio": ds[name].nbytes / size,
                         "psnr_10k": float(np.mean(psnrs)) if psnrs else float("nan"),
                         "ssim": float(np.average(ssims, weights=weights))})
    for name in rest.data_vars:
        if str(name) == ORDER_ATTR:
            continue
        size = zarr.open_array(store, path=str(name), mode="r").nbytes_stored()
        rows.append({"variable": name, "stored_as": "zarr default (lossless)", "bytes": int(size),
                     "bpppb": 8 * size / max(rest[name].size, 1), "ratio": rest[name].nbytes / size,
                     "psnr_10k": float("inf"), "ssim": 1.0})
    return rows


def format_stats(rows: list[dict]) -> str:
    """The rows of ``compute_stats`` as an aligned text table."""
    head = f"{'variable':>18} {'stored as':>30} {'bytes':>10} {'bpppb':>8} {'ratio':>8} {'PSNR dB':>8} {'SSIM':>7}"
    lines = [head]
    for r in rows:
        lines.append(f"{str(r['variable']):>18} {r['stored_as']:>30} {r['bytes']:>10d} {r['bpppb']:>8.4f} "
                     f"{r['ratio']:>8.1f} {r['psnr_10k']:>8.2f} {r['ssim']:>7.4f}")
    total = sum(r["bytes"] for r in rows)
    lines.append(f"{'total':>18} {'':>30} {total:>10d}")
    return "\n".join(lines)
