"""Dense time series: tcube's models against xarrayvideo's KLT + x265 video, whole and in chunks.

    python benchmarks/dense.py [DATA] [--chunks 0 8 16] [--models tec-hx] [--variants ...] [--full]
    python benchmarks/dense.py --report   # rebuild dense.md and dense.png from the CSVs

The results in ``benchmarks/results/dense*`` come from ``--dates 0 --chunks 8 16 --qualities 3 5 7 9 11 13
15 --variants tec-hx/per-date tec-hx/no-cross-date tec-hx/no-transfer --full`` (two processes: the
WorldCereal series and nrt_romania), then ``--report``.

DATA: the ``shared/data/s2`` folder (default ``../shared/data/s2``). The series are the first
``dates`` dates (0: all; every date with 95 % of its values present, clouds included) of the held-out
WorldCereal series at 10 m (4 bands) and 20 m (6 bands) and of nrt_romania at 10 m (4 bands;
tec-pc saw this place in training, so its figures there flatter it). Each series is coded whole
(chunk 0) and in chunks of each ``--chunks`` size, as a user stores it: every codec on the same
chunks, side by side through :mod:`tcube.bench` (real byte lengths, PSNR per REFERENCE.md).
``x265-video-pca`` is xarrayvideo's PCA layout (one KLT per cube, one video per component over
time). ``--variants`` adds ablations of tec-hx (:data:`VARIANTS`: each changes the model's encoder
settings; blobs decode as any). Writes ``dense_<series>_<chunking>.csv/.png/.md``, ``dense.md`` (per
series and chunking the BD-rate of each model against ``x265-video-pca`` over 35-50 dB (10k), the
cost of chunking (each codec's BD-rate on chunks against its own whole-series curve) and each
ablation against tec-hx) and ``dense.png`` (RD curves, whole and in chunks of 16 dates).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import tcube
from tcube.baselines import BASELINES as BASELINE_CODECS
from tcube.bench import BD_RANGE, QUALITIES, QUICK_QUALITIES, Codec, codecs, curves, run, write
from tcube.metrics import bd_rate, psnr_10k
from tcube.models import load_model
from tcube.train.corpus import read_netcdf

sys.path.insert(0, str(Path(__file__).parent))

#: Series: name -> file under DATA.
SERIES = {
    "worldcereal_10m": "worldcereal/S2_L2A_10m_00002806639B424A_32631_2017-08-01_2018-11-30.nc",
    "worldcereal_20m": "worldcereal/S2_L2A_20m_00002806639B424A_32631_2017-08-01_2018-11-30.nc",
    "nrt_romania_10m": "nrt_romania/sentinel2_cube_subset_romania_10m.nc",
}
BASELINES = ["jpeg2000-pca", "x265-video", "x265-video-pca"]
REFERENCE = "x265-video-pca"
#: Ablations of tec-hx (``--variants``): name -> the model attributes it changes.
VARIANTS = {
    "tec-hx/per-date": {"over_time": False},
    "tec-hx/no-cross-date": {"cross_date": False},
    "tec-hx/no-transfer": {"transfer": False},
    "tec-hx/none-alone": {"cloud_factor": float("inf")},
    "tec-hx/cqp": {"time_rate": "cqp"},
    "tec-hx/ipb": {"time_rate": "ipb"},
    "tec-hx/crf": {"time_rate": "crf"},
    "tec-hx/ultrafast": {"time_preset": "ultrafast"},
    "tec-hx/veryfast": {"time_preset": "veryfast"},
    "tec-hx/slow": {"time_preset": "slow"},
}


@contextmanager
def knobs(model: str, changes: dict):
    """``model`` (the registry's cached instance) with ``changes`` to its attributes, restored after."""
    instance = load_model(model)
    before = {k: getattr(instance, k) for k in changes}
    for k, v in changes.items():
        setattr(instance, k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(instance, k, v)


def variant(name: str, qualities: tuple) -> Codec:
    """tec-hx with the changes of :data:`VARIANTS` ``name`` while it encodes (blobs decode as any)."""
    def encode(cube: np.ndarray, q: float) -> bytes:
        with knobs("tec-hx", VARIANTS[name]):
            return tcube.encode(cube, model="tec-hx", quality=int(q))

    return Codec(name, qualities, encode, lambda blob, shape: tcube.decode(blob))


def chunked(name: str, cube: np.ndarray, size: int) -> list[tuple[str, np.ndarray]]:
    """``cube`` cut into chunks of ``size`` dates (0: whole), each named by its dates."""
    size = size or len(cube)
    return [(f"{name}[{t}:{t + size}]", cube[t: t + size]) for t in range(0, len(cube), size)]


def _bd(curve: tuple, reference: tuple) -> str:
    value = bd_rate(*curve, *reference, BD_RANGE)
    return "no overlap" if value is None or not np.isfinite(value) else f"{value:+.1f}"


def summary(results: dict[tuple[str, int], list[dict]], models: list[str]) -> str:
    """BD-rates against x265-video-pca per series and chunking, and the cost of each chunking."""
    lines = ["### BD-rate against x265-video-pca on the same chunks (psnr_10k, %, 35-50 dB; negative: fewer bits)",
             "", "| series | chunk | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for (series, size), rows in results.items():
        c = curves(rows)
        lines.append(f"| {series} | {size or 'whole'} | " + " | ".join(_bd(c[m], c[REFERENCE]) for m in models) + " |")
    codecs_ = [*models, REFERENCE]
    lines += ["", "### Cost of chunking: each codec on chunks against its own whole-series curve (%, 35-50 dB)", "",
              "| series | chunk | " + " | ".join(codecs_) + " |", "|---|---|" + "---|" * len(codecs_)]
    for (series, size), rows in results.items():
        if size:
            whole, c = curves(results[(series, 0)]), curves(rows)
            lines.append(f"| {series} | {size} | " + " | ".join(_bd(c[m], whole[m]) for m in codecs_) + " |")
    ablations = [m for m in models if "/" in m]
    if ablations:
        lines += ["", "### Ablations: each variant against tec-hx on the same chunks (%, 35-50 dB; positive: what "
                  "the part removed saves)", "", "| series | chunk | " + " | ".join(ablations) + " |",
                  "|---|---|" + "---|" * len(ablations)]
        for (series, size), rows in results.items():
            c = curves(rows)
            lines.append(f"| {series} | {size or 'whole'} | " + " | ".join(_bd(c[m], c["tec-hx"]) for m in ablations)
                         + " |")
    return "\n".join(lines) + "\n"


def read_rows(path: Path) -> list[dict]:
    """Rows of a CSV that :func:`tcube.bench.write` wrote, numbers as floats."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in r:
            if k not in ("codec", "cube"):
                r[k] = float(r[k])
    return rows


def overview(results: dict[tuple[str, int], list[dict]], models: list[str], path: Path) -> None:
    """One RD panel per series: each model and the reference, whole and in chunks of 16 dates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(k for k, _ in results))
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 4.5), squeeze=False)
    for ax, key in zip(axes[0], series):
        for size, style in ((0, "-"), (16, "--")):
            if (key, size) not in results:
                continue
            c = curves(results[(key, size)])
            for i, codec in enumerate([*models, REFERENCE]):
                rates, psnrs = c[codec]
                order = np.argsort(rates)
                ax.plot(rates[order], psnrs[order], style, color=f"C{i}", marker="o" if codec in models else ".",
                        label=f"{codec}, {'whole' if not size else f'chunks of {size}'}")
        ax.set(xscale="log", xlabel="bits per pixel per band (real bytes)", ylabel="PSNR 10k (dB)", title=key,
               ylim=(33, 52))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: Speed runs (``--speed``): x265 presets of chunks coded over time, and tec-hx per date.
SPEED_VARIANTS = {"tec-hx (over time, medium)": {}, "tec-hx (over time, fast)": {"time_preset": "fast"},
                  "tec-hx (over time, ultrafast)": {"time_preset": "ultrafast"},
                  "tec-hx (per date, ultrafast)": {"over_time": False}}


SPEED_CRF = 30.0


def _speed_row(chunk_name: str, codec: str, chunk: np.ndarray, encode: Callable[[], object],
               decode: Callable[[object], object]) -> dict:
    from common import mb_per_s

    coded = encode()
    size = len(coded) if isinstance(coded, bytes) else sum(len(v) for p in coded for v in p.streams.values())
    decoded = np.asarray(decode(coded))
    return {"chunk": chunk_name, "codec": codec, "encode_mb_s": round(mb_per_s(chunk, encode), 2),
            "decode_mb_s": round(mb_per_s(chunk, lambda: decode(coded)), 2), "payload_bytes": size,
            "psnr_10k": round(psnr_10k(chunk, np.round(decoded)), 2)}


def speed(data: str, out: Path) -> str:
    """Encode and decode MB/s (raw uint16, 2 threads, quality 8, best of 3; and as multiples of the
    reference's, run side by side) of tec-hx and
    ``x265-video-pca`` on a chunk as xarray2tec cuts it (16 dates of 4 bands, 256 x 256: the first 16
    dates of nrt_romania 10 m, 100 x 100, tiled 3 x 3 and cropped, so that the frames have the size of a
    stored chunk) and on the four dates of 0080717 (12 bands, 256 x 256)."""
    from common import write_rows
    from heldout import held_out_sets

    torch.set_num_threads(2)
    [group] = read_netcdf(Path(data) / SERIES["nrt_romania_10m"], "nrt_romania_10m")
    chunks = {"nrt_romania_10m tiled, 16 x 4 x 256 x 256": np.tile(group.frames[:16], (1, 1, 3, 3))[..., :256, :256],
              "0080717, 4 x 12 x 256 x 256": held_out_sets(data, dates=8)["0080717"][:, :, :256, :256]}
    model, video, rows = load_model("tec-hx"), BASELINE_CODECS[REFERENCE], []
    for name, chunk in chunks.items():
        x, h, w = torch.from_numpy(chunk.astype(np.float64)), *chunk.shape[-2:]
        for label, changes in SPEED_VARIANTS.items():
            with knobs("tec-hx", changes):
                rows.append(_speed_row(name, label, chunk, lambda x=x: model.compress(x, 8),
                                       lambda p, h=h, w=w, c=chunk.shape[1]: model.decompress(p, 8, h, w, bands=c)))
        rows.append(_speed_row(name, f"{REFERENCE} (crf {SPEED_CRF:g})", chunk,
                               lambda c=chunk: video.encode(c, SPEED_CRF), lambda b, s=chunk.shape: video.decode(b, s)))
        print(rows[-1], flush=True)
    for r in rows:  # side by side: machines and runs differ, the ratios less
        video_row = next(v for v in rows if v["chunk"] == r["chunk"] and v["codec"].startswith(REFERENCE))
        r["encode_vs_video"] = round(r["encode_mb_s"] / video_row["encode_mb_s"], 2)
        r["decode_vs_video"] = round(r["decode_mb_s"] / video_row["decode_mb_s"], 2)
    write_rows(rows, out / "dense_speed.csv")
    text = "\n".join(["| chunk | codec | encode MB/s (x video) | decode MB/s (x video) | bytes | PSNR 10k (dB) |",
                      "|---|---|---|---|---|---|",
                      *[f"| {r['chunk']} | {r['codec']} | {r['encode_mb_s']} ({r['encode_vs_video']}) | "
                        f"{r['decode_mb_s']} ({r['decode_vs_video']}) | {r['payload_bytes']} | {r['psnr_10k']} |"
                        for r in rows]]) + "\n"
    (out / "dense_speed.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/s2"))
    parser.add_argument("--dates", type=int, default=0, help="the first DATES dates of each series (0: all)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 8, 16])
    parser.add_argument("--models", nargs="+", default=["tec-hx"])
    parser.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS), help="ablations of tec-hx")
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument("--baselines", nargs="+", default=[REFERENCE], help=f"always with {REFERENCE}")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--full", action="store_true", help="every quality and baseline setting")
    parser.add_argument("--qualities", type=int, nargs="+", help="tcube's qualities (default: 4, every with --full)")
    parser.add_argument("--report", action="store_true", help="only rebuild dense.md/.png from the CSVs in --out")
    parser.add_argument("--speed", action="store_true", help="only the speed run (dense_speed.csv/.md)")
    args = parser.parse_args()
    out, results = Path(args.out), {}
    if args.speed:
        print(speed(args.data, out))
        return
    names = [*args.models, *args.variants]
    for key in args.series:
        if args.report:
            results.update({(key, size): read_rows(out / f"dense_{key}_{size or 'whole'}.csv")
                            for size in sorted(set([0, *args.chunks]))})
            continue
        [group] = read_netcdf(Path(args.data) / SERIES[key], key)
        cube = group.frames[: args.dates or None]
        qualities = tuple(args.qualities or (QUALITIES if args.full else QUICK_QUALITIES))
        suite = [replace(c, settings=qualities) if c.name in args.models else c
                 for c in codecs(args.models, list(dict.fromkeys([REFERENCE, *args.baselines])),
                                 quick=not args.full)]
        suite += [variant(v, qualities) for v in args.variants]
        for size in sorted(set([0, *args.chunks])):
            label = f"{key}_{size or 'whole'}"
            rows = run(chunked(key, cube, size), suite,
                       lambda done, total, n=label: print(f"\r{n}: {done}/{total}", end="", flush=True))
            print()
            title = (f"dense series {key} {cube.shape} ({', '.join(group.bands)}), {len(cube)} consecutive dates, "
                     f"chunks of {size or len(cube)} dates")
            write(rows, out, f"dense_{label}", names, title)
            results[(key, size)] = rows
    text = summary(results, names)
    (out / "dense.md").write_text(text)
    overview(results, args.models, out / "dense.png")
    print(text)


if __name__ == "__main__":
    main()
