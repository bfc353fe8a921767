"""Peak memory of ``tcube compress`` reading a full-tile single-band COG window by window.

    python benchmarks/cog_memory.py [--side 10980] [--out benchmarks/results] [--work DIR]

Writes a ``side`` x ``side`` uint16 Cloud-Optimized GeoTIFF (band B04, EPSG:32633, 10 m; the
shipped sample's B04 mirrored into a tile, plus noise, so that it codes like real data), then runs
``tcube compress`` on it in a child process (tec-pc, quality 8) and records the child's peak
resident memory (``ru_maxrss``) against the size of the band, beside the same for reading the
whole band with rioxarray (the baseline: what holding it costs).
Writes ``cog_memory.csv`` and ``cog_memory.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_rows  # noqa: E402

READ_WHOLE = "import rioxarray, sys; a = rioxarray.open_rasterio(sys.argv[1]).values; print(a.shape)"
COMPRESS = "import sys; from tcube.cli import main; sys.exit(main(sys.argv[1:]))"
#: Runs a command and prints the peak resident memory (kB) of its process: one wrapper per
#: measurement, as ru_maxrss of children is the largest of all children so far.
MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def make_tile(path: Path, side: int) -> None:
    """A ``side``-pixel square COG of B04 built from the shipped sample, written block by block."""
    import rasterio
    from rasterio.transform import Affine

    import tcube

    b04 = tcube.data.load_sample_cube()[0, 3].astype(np.float64)
    block = np.block([[b04, b04[:, ::-1]], [b04[::-1], b04[::-1, ::-1]]])  # mirrored: seamless
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=side, height=side, count=1, dtype="uint16", crs="EPSG:32633",
                   transform=Affine(10, 0, 300000, 0, -10, 5100000), nodata=0, tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", BIGTIFF="YES")
    plain = path.with_suffix(".plain.tif")
    with rasterio.open(plain, "w", **profile) as dst:
        dst.set_band_description(1, "B04")
        rows = 1024
        for top in range(0, side, rows):
            h = min(rows, side - top)
            reps = (-(-h // block.shape[0]) + 1, -(-side // block.shape[1]) + 1)
            tile = np.tile(block, reps)[(top % block.shape[0]):][:h, :side]
            noisy = tile + rng.normal(0, 20, tile.shape)
            dst.write(np.clip(noisy, 1, 65535).astype(np.uint16)[None], window=((top, top + h), (0, side)))
    from rasterio.shutil import copy

    copy(plain, path, driver="COG", compress="DEFLATE", BIGTIFF="YES")
    plain.unlink()


def peak_of(argv: list[str]) -> tuple[float, float]:
    """(peak resident MB, seconds) of a child process running ``argv``."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", MEASURE, *argv], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return int(out.stdout.split()[-1]) / 1024, seconds


#: Side of the small tile whose peak is the fixed part (interpreter, torch, model, zarr).
REFERENCE_SIDE = 2048


def _row(run: str, side: int, peak: float, seconds: float) -> dict:
    band_mb = side * side * 2 / 2**20
    return {"run": run, "side": side, "band_MB": round(band_mb, 1), "peak_MB": round(peak, 1),
            "peak_vs_band": round(peak / band_mb, 3), "seconds": round(seconds, 1),
            "MBps": round(side * side * 2 / 1e6 / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10980)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--work", default=None, help="folder for the tiles (made once, reused) and a new folder of "
                        "stores per run (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp())
    stores = Path(tempfile.mkdtemp(dir=work))  # new stores every run: nothing of the folder is replaced
    rows = []
    for side in dict.fromkeys((REFERENCE_SIDE, args.side)):  # the small tile: what the process, torch, the model take
        tile = work / f"T33UUB_B04_{side}.tif"
        if not tile.exists():
            make_tile(tile, side)
        store = stores / f"tile_{side}.zarr"
        peak, seconds = peak_of([sys.executable, "-c", COMPRESS, "compress", str(tile), str(store), "--model", "tec-pc",
                                 "--quality", "8", "--quiet"])
        rows.append(_row(f"tcube compress, {side} x {side} (tec-pc q8, 256 px chunks, batch 8)", side, peak, seconds))
    peak, seconds = peak_of([sys.executable, "-c", READ_WHOLE, str(tile)])
    rows.append(_row(f"rioxarray reading the whole {args.side} x {args.side} band (baseline)", args.side, peak,
                     seconds))
    out = Path(args.out)
    write_rows(rows, out / "cog_memory.csv")
    lines = ["| run | band MB | peak resident MB | peak / band | s | MB/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['band_MB']} | {r['peak_MB']} | {r['peak_vs_band']} | {r['seconds']} | {r['MBps']} |"
              for r in rows]
    (out / "cog_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
