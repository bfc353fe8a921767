"""Every Sentinel-2 set of ``shared/data/s2`` as frames of its own band set, for band-agnostic models.

Each set is read at its native resolutions: a folder of per-band GeoTIFFs gives one group of
frames per resolution (10, 20 and 60 m bands apart) plus, where bands of several resolutions
exist, a group of every band resampled to the finest grid (as analysis cubes are). Values are
digital numbers (float reflectance x 1e4); no-data and NaN pixels are filled with the band mean.

``python -m tcube.train.corpus DATA OUT.npz [MAX_SIDE]`` writes the corpus to one compressed file
(it travels to a GPU machine that cannot see ``DATA``; ``MAX_SIDE`` crops the large tiles so that
the file small: 384 gives 59 MB, within a GPU machine's 64 MiB carry; 512 gives 72 MB; uncropped
299 MB).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tcube.bands import band_name
from tcube.readers import _resample

#: Held out of training by default: the validation place of the 12-band models, the second
#: held-out set (a 4-band 10 m + 6-band 20 m WorldCereal series) and a cloudy tile whose licence
#: allows tests and benchmarks only.
HOLDOUT = ("0080717", "00002806639B424A", "s2cloudless")


@dataclass
class Group:
    """Frames (N, C, H, W) of one set that share a band set and a grid."""

    name: str
    bands: tuple[str, ...]
    frames: np.ndarray  # uint16 digital numbers

    @property
    def values(self) -> int:
        return int(self.frames.size)


def _dn(a: np.ndarray) -> np.ndarray:
    """Digital numbers as uint16: reflectance floats are scaled, NaN and negatives filled."""
    a = np.asarray(a, np.float64)
    if np.nanmax(a) < 3.0:
        a = a * 10000.0
    bad = ~np.isfinite(a)
    if bad.any():
        means = np.nanmean(np.where(bad, np.nan, a), axis=(-2, -1), keepdims=True)
        a = np.where(bad, np.nan_to_num(means), a)
    return np.clip(np.round(a), 0, 65535).astype(np.uint16)


def _tiff(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(str(path))


def _per_band_folder(folder: Path, name: str) -> list[Group]:
    """Per-band GeoTIFFs of one date: a group per resolution and one of all bands resampled."""
    planes = {band_name(p.name): _tiff(p) for p in sorted(folder.glob("*.tif")) if band_name(p.name)}
    order = sorted(planes, key=_band_key)
    by_shape: dict[tuple[int, int], list[str]] = {}
    for b in order:
        by_shape.setdefault(planes[b].shape[-2:], []).append(b)
    groups = [Group(f"{name}/{shape[0]}px", tuple(bs), _dn(np.stack([planes[b] for b in bs]))[None])
              for shape, bs in by_shape.items() if len(bs) > 1 or len(by_shape) == 1]
    if len(by_shape) > 1:
        finest = max(by_shape, key=lambda s: s[0] * s[1])
        stack = np.stack([_resample(planes[b].astype(np.float32), finest) for b in order])
        groups.append(Group(f"{name}/all", tuple(order), _dn(stack)[None]))
    return groups


def _band_key(b: str) -> float:
    return 8.5 if b == "B8A" else float(b[1:])


def read_netcdf(path: Path, name: str) -> list[Group]:
    """The bands of a NetCDF time series as one group: dates mostly present (95 % of the values)."""
    import xarray as xr

    with xr.open_dataset(path) as ds:
        names = [v for v in ds.data_vars if band_name(str(v)) and ds[v].ndim >= 2]
        names.sort(key=lambda v: _band_key(band_name(str(v))))
        stack = []
        for v in names:
            var = ds[v]
            dims = [d for d in var.dims if d not in ("y", "x")] + ["y", "x"]
            stack.append(np.asarray(var.transpose(*dims).values, np.float64))
        nodata = [ds[v].attrs.get("_FillValue", ds[v].attrs.get("nodata")) for v in names]
    a = np.stack(stack, axis=1)  # (T, C, H, W)
    for c, nd in enumerate(nodata):
        if nd is not None:
            a[:, c][a[:, c] == nd] = np.nan
    a[a >= 65535] = np.nan
    a[a <= 0] = np.nan
    keep = np.isfinite(a).mean(axis=(1, 2, 3)) > 0.95  # dates mostly present
    return [Group(name, tuple(band_name(str(v)) for v in names), _dn(a[keep]))]


def read_corpus(root: str | Path) -> list[Group]:
    """Every set under ``root`` (the layout of ``shared/data/s2``) as groups of frames."""
    root = Path(root)
    groups: list[Group] = []
    l2a = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    for p in sorted((root / "terracodec").glob("*.tif")):
        groups.append(Group(f"terracodec/{p.stem}", l2a, _dn(np.moveaxis(_tiff(p), -1, 0))[None]))
    for sub in ("bigearthnet_example",):
        for folder in sorted(d for d in (root / sub).iterdir() if d.is_dir()):
            groups += _per_band_folder(folder, f"{sub}/{folder.name}")
    for sub in ("l1c_18SVG", "l2a_T42RXU_60m", "dsen2_T33UUB"):
        groups += _per_band_folder(root / sub, sub)
    for p in sorted((root / "worldcereal").glob("*.nc")) + sorted((root / "nrt_romania").glob("*.nc")):
        groups += read_netcdf(p, f"{p.parent.name}/{p.stem}")
    ref = np.load(root / "eolearn" / "REFERENCE_SCENES.npy")  # (T, H, W, 13) L1C reflectance
    l1c = (*l2a[:9], "B10", *l2a[9:])
    groups.append(Group("eolearn/REFERENCE_SCENES", l1c, _dn(np.moveaxis(ref, -1, 1))))
    ftw = _tiff(root / "ftw" / "inference-img.tif")
    ftw = ftw if ftw.shape[0] == 8 else np.moveaxis(ftw, -1, 0)
    groups.append(Group("ftw/inference-img", ("B04", "B03", "B02", "B08"), _dn(ftw.reshape(2, 4, *ftw.shape[-2:]))))
    with np.load(root / "ukis_csmask" / "sentinel2.npz") as z:
        groups.append(Group("ukis_csmask/sentinel2", ("B02", "B03", "B04", "B08", "B11", "B12"),
                            _dn(np.moveaxis(z["img"], -1, 0))[None]))
    with np.load(root / "s2cloudless" / "input_arrays.npz") as z:
        groups.append(Group("s2cloudless/input_arrays", l1c, _dn(np.moveaxis(z["s2_im"], -1, 1))))
    spy = json.loads((root / "spyndex" / "S2_10m.json").read_text())
    groups.append(Group("spyndex/S2_10m", ("B02", "B03", "B04", "B08"), _dn(np.asarray(spy))[None]))
    return groups


def split(groups: list[Group], holdout: tuple[str, ...] = HOLDOUT) -> tuple[list[Group], list[Group]]:
    """(training, held-out) groups: a group is held out when its name contains any of ``holdout``."""
    held = [g for g in groups if any(h in g.name for h in holdout)]
    return [g for g in groups if g not in held], held


def save_corpus(groups: list[Group], path: str | Path, max_side: int | None = None) -> None:
    """Write ``groups`` to one compressed ``.npz`` (frames cropped to ``max_side`` when given)."""
    arrays = {f"{i}": g.frames[..., :max_side, :max_side] if max_side else g.frames for i, g in enumerate(groups)}
    meta = json.dumps([{"name": g.name, "bands": list(g.bands)} for g in groups])
    np.savez_compressed(path, meta=np.frombuffer(meta.encode(), np.uint8), **arrays)


def load_corpus(path: str | Path) -> list[Group]:
    """Groups written by :func:`save_corpus` (plain arrays, no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        return [Group(m["name"], tuple(m["bands"]), z[str(i)]) for i, m in enumerate(meta)]


def corpus(source: str | Path) -> list[Group]:
    """Groups from a data folder (:func:`read_corpus`) or a file of :func:`save_corpus`."""
    source = Path(source)
    return load_corpus(source) if source.suffix == ".npz" else read_corpus(source)


if __name__ == "__main__":  # pragma: no cover - a data preparation command
    if Path(sys.argv[2]).exists():  # never replace a file that may not be ours
        sys.exit(f"{sys.argv[2]} exists: remove it first, or name another file")
    found = read_corpus(sys.argv[1])
    for g in found:
        print(f"{g.name:70s} {len(g.bands):2d} bands {g.frames.shape} max {g.frames.max()}")
    save_corpus(found, sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
