"""Benchmark scenes as users get them from STAC tools: Sentinel-2 bands at their native resolutions
(10, 20, 60 m) reprojected onto one 10 m web-mercator grid, as odc-stac and stackstac do.

    python benchmarks/resampled.py [DATA]   # prints each set's shape and runs of equal pixels

Web mercator (EPSG:3857) at 10 m is a non-integer ratio of every native grid (about 7.9 m of ground
at 18SVG, 6.6 m at 33UUB) and turns a little, so a 20 m band resampled with ``nearest`` comes in runs
of 2 and 3 equal pixels with staircase edges, a 60 m band in runs of 7 to 9, and ``bilinear`` and
``cubic`` interpolate between source pixels at shifting phases. Sets (one date, ``(1, C, 512, 512)``
uint16, the centre of the reprojected scene):

- ``l1c_18SVG_nearest``: the 13 L1C bands of ``l1c_18SVG`` (B01..B12 with B8A; winter, mostly water).
- ``dsen2_nearest``, ``dsen2_bilinear``, ``dsen2_cubic``: the 12 L1C bands of ``dsen2_T33UUB``
  (vegetated central Europe; its files carry no georeference, so they are given the UTM 33N grid of
  their tile's corner, ``DSEN2_ORIGIN``).
"""

from __future__ import annotations

import argparse
import functools
import warnings
from pathlib import Path

import numpy as np

#: Target grid: web mercator at 10 m (what web-map and many STAC pipelines ask for).
TARGET_CRS, TARGET_RESOLUTION = "EPSG:3857", 10.0
#: Side of the square each set is cropped to (the centre of the reprojected scene).
SIDE = 512
#: Band files of each scene, in band order.
L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
DSEN2_BANDS = tuple(b for b in L1C_BANDS if b != "B10")
#: UTM 33N corner given to the dsen2 files (near tile 33UUB, about 48.7 N 12.3 E) and its CRS.
DSEN2_CRS, DSEN2_ORIGIN = "EPSG:32633", (300000.0, 5400000.0)
#: (folder, file pattern, bands, resampling methods) per scene.
SCENES = {
    "l1c_18SVG": ("l1c_18SVG", "S2_L1C_18SVG_20160112_{}.tif", L1C_BANDS, ("nearest",)),
    "dsen2": ("dsen2_T33UUB", "S2A_MSIL1C_20170527_T33UUB_{}.tif", DSEN2_BANDS, ("nearest", "bilinear", "cubic")),
}


def _open(path: Path):
    """One band as a georeferenced DataArray (the dsen2 files get their tile's grid, 10 m x their
    upsampling factor)."""
    import rioxarray
    from affine import Affine

    with warnings.catch_warnings():  # the dsen2 files: no georeference (given below)
        warnings.simplefilter("ignore")
        band = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    if band.rio.crs is None:
        size = 10.0 * 600 / band.shape[-1]  # the 10 m bands are 600 x 600
        x0, y0 = DSEN2_ORIGIN
        band = band.rio.write_crs(DSEN2_CRS).rio.write_transform(Affine(size, 0, x0, 0, -size, y0))
        band = band.assign_coords(x=x0 + size * (np.arange(band.shape[-1]) + 0.5),
                                  y=y0 - size * (np.arange(band.shape[-2]) + 0.5))
    return band


def reprojected(data: str, scene: str, method: str) -> np.ndarray:
    """(1, C, SIDE, SIDE) uint16: the bands of ``scene`` reprojected with ``method`` onto the 10 m web
    mercator grid of its first 10 m band, cropped to the centre."""
    from rasterio.enums import Resampling

    folder, pattern, bands, _ = SCENES[scene]
    files = [Path(data) / folder / pattern.format(b) for b in bands]
    grid = _open(files[bands.index("B02")]).rio.reproject(TARGET_CRS, resolution=TARGET_RESOLUTION,
                                                         resampling=Resampling.nearest)
    out = np.stack([_open(f).rio.reproject_match(grid, resampling=Resampling[method]).values for f in files])
    h, w = out.shape[1:]
    top, left = (h - SIDE) // 2, (w - SIDE) // 2
    crop = out[:, top: top + SIDE, left: left + SIDE]
    if crop.shape[1:] != (SIDE, SIDE) or not crop[bands.index("B02")].all():  # B02 has no zeros of its own
        raise ValueError(f"{scene} reprojected with {method} does not cover a {SIDE} x {SIDE} centre")
    return np.ascontiguousarray(crop[None].astype(np.uint16))


@functools.lru_cache(maxsize=8)
def resampled_sets(data: str) -> dict[str, np.ndarray]:
    """Every set of this module, by name (``<scene>_<method>``)."""
    return {f"{scene}_{method}": reprojected(data, scene, method)
            for scene, (*_, methods) in SCENES.items() for method in methods}


def runs(band: np.ndarray) -> float:
    """Mean length of the horizontal runs of equal values in a band."""
    changes = int((np.diff(band, axis=-1) != 0).sum())
    return band.size / (changes + band.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/s2")
    args = parser.parse_args()
    for name, cube in resampled_sets(args.data).items():
        print(name, cube.shape, "runs per band:", " ".join(f"{runs(b):.2f}" for b in cube[0]))


if __name__ == "__main__":
    main()
