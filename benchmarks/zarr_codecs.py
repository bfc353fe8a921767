"""tcube as a zarr codec against imagecodecs JPEG2000 and numcodecs Zstd, same cube, same chunks.

Run:  python benchmarks/zarr_codecs.py [--data FILES_OR_DIR ...] [--chunk 88] [--repeats 3]

Default data: the four seasons of the held-out place 0080717 of ``../shared/data/s2/terracodec``
(4 x 12 x 264 x 264 uint16), chunks (1, 12, 88, 88): 36 chunks, one date each. Every codec
writes a zarr array in a LocalStore under a temporary folder; the store size is the sum of the
bytes of its chunk files. Write and read MB/s count raw uint16 bytes (median of ``--repeats``).

- tcube (tec-fp, tec-hp; qualities 4, 8, 12) as the zarr format 3 serializer with
  ``codec_pipeline.batch_size`` 1, 4 and 16, and as the numcodecs compressor of format 2;
- JPEG2000 (imagecodecs, OpenJPEG): all 12 bands of a chunk in one codestream, target PSNR 50
  to 65 dB (OpenJPEG's level, relative to the 16-bit range), zarr format 2;
- Zstd (numcodecs, level 5), lossless, zarr format 2: the ratios are against its store size.

The summary gives each lossy codec's store size at 40 dB (10k convention, interpolated in log
rate) and its ratio to JPEG2000's. Writes ``zarr_codecs.csv``, ``zarr_codecs.png`` and
``zarr_codecs.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from common import write_rows
from numcodecs import Zstd
from zarr.storage import LocalStore

from tcube.metrics import bpppb, psnr_10k, psnr_full, rate_at_psnr
from tcube.readers import find_cubes, read_cube
from tcube.zarr_codecs import TecCodec, TecZarrCodec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "s2" / "terracodec"
HOLDOUT = "0080717"
JPEG2000_LEVELS = (50, 54, 56, 58, 60, 65)
TARGET_DB = 40.0


def load(paths: list[str]) -> np.ndarray:
    files = [p for p in find_cubes(paths) if HOLDOUT in p.name] or find_cubes(paths)
    if not files:
        sys.exit(f"no cube found in {paths}")
    return np.concatenate([read_cube(p) for p in files]).astype(np.uint16)


def configurations() -> list[tuple[str, str, int, int, dict]]:
    """(codec, setting, zarr format, batch size, create_array codec arguments)."""
    from imagecodecs.numcodecs import Jpeg2k, register_codecs

    register_codecs()
    out = []
    for model in ("tec-fp", "tec-hp"):
        for q in (4, 8, 12):
            for batch in (1, 4, 16):
                out.append((model, f"q{q}", 3, batch, {"serializer": TecZarrCodec(model=model, quality=q),
                                                       "compressors": None}))
            out.append((model, f"q{q}", 2, 1, {"compressors": TecCodec(model=model, quality=q)}))
    for level in JPEG2000_LEVELS:
        out.append(("jpeg2000", f"level{level}", 2, 1, {"compressors": Jpeg2k(level=level, planar=True)}))
    out.append(("zstd", "level5", 2, 1, {"compressors": Zstd(level=5)}))
    return out


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json")))


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def measure(cube: np.ndarray, chunks: tuple[int, ...], config: tuple, repeats: int, tmp: Path) -> dict:
    codec, setting, fmt, batch, kwargs = config
    root = tmp / f"{codec}-{setting}-v{fmt}-b{batch}.zarr"
    mb = cube.nbytes / 1e6
    with zarr.config.set({"codec_pipeline.batch_size": batch}):
        arr = zarr.create_array(LocalStore(root), shape=cube.shape, chunks=chunks, dtype=cube.dtype,
                                zarr_format=fmt, overwrite=True, **kwargs)
        arr[:1] = cube[:1]  # warm-up: model loading and first calls
        t_write, _ = median_time(lambda: arr.__setitem__(slice(None), cube), repeats)
        reader = zarr.open_array(LocalStore(root, read_only=True))
        reader[:1]
        t_read, decoded = median_time(lambda: reader[:], repeats)
    size = store_bytes(root)
    return {"codec": codec, "setting": setting, "zarr_format": fmt, "batch_size": batch, "store_bytes": size,
            "bpppb": bpppb(size, cube.shape), "psnr_10k": psnr_10k(cube, decoded),
            "psnr_full": psnr_full(cube, decoded), "write_MBps": mb / t_write, "read_MBps": mb / t_read}


def add_ratios(rows: list[dict]) -> None:
    zstd = next(r["store_bytes"] for r in rows if r["codec"] == "zstd")
    for r in rows:
        r["ratio_vs_zstd"] = zstd / r["store_bytes"]


def at_target(rows: list[dict]) -> list[str]:
    """Store bytes at TARGET_DB per lossy codec and the ratio of JPEG2000's to it."""
    curves = {}
    for codec in dict.fromkeys(r["codec"] for r in rows if r["codec"] != "zstd"):
        rs = [r for r in rows if r["codec"] == codec and r["batch_size"] == 1 and r["zarr_format"] == 2]
        curves[codec] = rate_at_psnr(np.array([r["store_bytes"] for r in rs], float),
                                     np.array([r["psnr_10k"] for r in rs]), TARGET_DB)
    j2k = curves.get("jpeg2000", float("nan"))
    return [f"- {codec}: {size:.0f} bytes at {TARGET_DB:g} dB, JPEG2000 needs {j2k / size:.2f}x as many"
            for codec, size in curves.items() if codec != "jpeg2000"]


def table(rows: list[dict], cube_shape: tuple, chunks: tuple, threads: int) -> str:
    lines = [f"Cube {cube_shape} uint16 ({np.prod(cube_shape) * 2 / 1e6:.1f} MB), chunks {chunks}, "
             f"{threads} torch threads, LocalStore. Ratio: Zstd store size / codec store size.", "",
             "| codec | setting | zarr | batch | store bytes | bpppb | PSNR 10k dB | PSNR full dB | ratio vs zstd "
             "| write MB/s | read MB/s |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['codec']} | {r['setting']} | v{r['zarr_format']} | {r['batch_size']} | {r['store_bytes']} "
                     f"| {r['bpppb']:.4f} | {r['psnr_10k']:.2f} | {r['psnr_full']:.2f} | {r['ratio_vs_zstd']:.1f} "
                     f"| {r['write_MBps']:.1f} | {r['read_MBps']:.1f} |")
    return "\n".join(lines + [""] + at_target(rows))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rd, ax_speed) = plt.subplots(1, 2, figsize=(12, 4.5))
    lossy = [r for r in rows if r["codec"] != "zstd" and r["batch_size"] == 1 and r["zarr_format"] == 2]
    for codec in dict.fromkeys(r["codec"] for r in lossy):
        rs = sorted((r for r in lossy if r["codec"] == codec), key=lambda r: r["bpppb"])
        ax_rd.plot([r["bpppb"] for r in rs], [r["psnr_10k"] for r in rs], "o-", label=codec)
    ax_rd.set(xscale="log", xlabel="bits per pixel per band (store bytes)", ylabel="PSNR (10k convention), dB",
              title="zarr store size vs quality")
    ax_rd.grid(True, which="both", alpha=0.3)
    ax_rd.legend()
    batched = [r for r in rows if r["zarr_format"] == 3 and r["setting"] == "q8"]
    for model in dict.fromkeys(r["codec"] for r in batched):
        rs = [r for r in batched if r["codec"] == model]
        ax_speed.plot([r["batch_size"] for r in rs], [r["write_MBps"] for r in rs], "o-", label=f"{model} write")
        ax_speed.plot([r["batch_size"] for r in rs], [r["read_MBps"] for r in rs], "s--", label=f"{model} read")
    for r in rows:
        if r["codec"] in ("zstd", "jpeg2000") and r["setting"] in ("level5", "level56"):
            ax_speed.axhline(r["read_MBps"], ls=":", color="grey")
            ax_speed.annotate(f"{r['codec']} read", (1, r["read_MBps"]), fontsize=8)
    ax_speed.set(xscale="log", xlabel="codec_pipeline.batch_size (chunks per model call)", ylabel="MB/s (raw uint16)",
                 yscale="log", title="tcube zarr v3 throughput (q8)")
    ax_speed.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    parser.add_argument("--chunk", type=int, default=88, help="chunk height and width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    cube = load(args.data)
    chunks = (1, cube.shape[1], args.chunk, args.chunk)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configurations():
            rows.append(measure(cube, chunks, config, args.repeats, Path(tmp)))
            r = rows[-1]
            print(f"{r['codec']:9s} {r['setting']:8s} v{r['zarr_format']} batch {r['batch_size']:2d}: "
                  f"{r['store_bytes']:9d} B {r['psnr_10k']:6.2f} dB  write {r['write_MBps']:6.1f}  "
                  f"read {r['read_MBps']:6.1f} MB/s", flush=True)
    add_ratios(rows)
    out = Path(args.out)
    write_rows(rows, out / "zarr_codecs.csv")
    text = table(rows, cube.shape, chunks, torch.get_num_threads())
    (out / "zarr_codecs.md").write_text(text + "\n")
    plot(rows, out / "zarr_codecs.png")
    print(text)


if __name__ == "__main__":
    main()
