"""Write the shipped sample cube into zarr stores coded by tcube and read them back lazily.

Run:  python examples/zarr_store.py [OUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

import tcube
from tcube.zarr_codecs import TecCodec, TecZarrCodec


def main(out: Path) -> None:
    cube = tcube.data.load_sample_cube().astype(np.float32)  # (4, 12, 128, 128), held-out place
    cube[1, :, 20:50, 30:90] = np.nan  # a cloud, masked as NaN
    dims = ("time", "band", "y", "x")

    # zarr format 3, tcube as the serializer; batches of 4 chunks per model call
    with zarr.config.set({"codec_pipeline.batch_size": 4}):
        arr = zarr.create_array(out / "v3.zarr", name="reflectance", shape=cube.shape, chunks=(1, 12, 64, 64),
                                dtype="float32", fill_value=np.nan, serializer=TecZarrCodec(model="tec-fp", quality=8),
                                compressors=None, dimension_names=dims, overwrite=True)
        arr[:] = cube

    # zarr format 2, tcube as the numcodecs compressor
    arr2 = zarr.create_array(out / "v2.zarr", name="reflectance", shape=cube.shape, chunks=(1, 12, 64, 64),
                             dtype="float32", zarr_format=2, compressors=TecCodec(model="tec-fp", quality=8),
                             attributes={"_ARRAY_DIMENSIONS": list(dims)}, overwrite=True)
    arr2[:] = cube

    for name in ("v3.zarr", "v2.zarr"):
        lazy = xr.open_zarr(out / name, consolidated=False)
        var = lazy["reflectance"]  # a dask array: chunks decode when used
        decoded = var.values
        valid = ~np.isnan(cube)
        size = sum(p.stat().st_size for p in (out / name).rglob("*") if p.is_file())
        print(f"{name}: {size} bytes ({cube.nbytes / size:.0f}x smaller than float32), "
              f"NaN kept: {bool((np.isnan(decoded) == ~valid).all())}, "
              f"PSNR {tcube.metrics.psnr_10k(np.where(valid, cube, 0), np.where(valid, decoded, 0)):.2f} dB")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
