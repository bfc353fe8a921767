"""Compress a zarr archive on a dask cluster, resumably, then open the result.

    python examples/scale_out.py SOURCE.zarr OUT.zarr

Without arguments it makes a small source from the shipped sample cube. Kill it half way and run it
again: the rerun writes only what is missing. With your own cluster, pass
``client=distributed.Client("tcp://scheduler:8786")`` instead of ``workers``.
"""

import sys
import tempfile
from pathlib import Path

import xarray as xr

import tcube
import tcube.parallel
from tcube.bands import L2A_BANDS


def sample_source(path: Path) -> Path:
    cube = tcube.data.load_sample_cube()  # (4 dates, 12 bands, 128, 128), int16
    ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(L2A_BANDS)})
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def main() -> None:
    work = Path(tempfile.mkdtemp())
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else sample_source(work / "source.zarr")
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else work / "tcube.zarr"
    report = tcube.parallel.compress(src, dst, model="tec-hp", quality=8, workers=2, batch=8,
                                     rules={"*": {"chunks": (1, 64, 64)}})
    print(report)
    print(tcube.tec2xarray(dst))


if __name__ == "__main__":
    main()
