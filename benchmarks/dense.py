"""Dense time series: tcube's models against the video layouts of x265 and per-date KLT + JPEG2000.

    python benchmarks/dense.py [DATA] [--dates 48] [--chunks 0 8 16] [--models tec-hx tec-pc] [--full]

DATA: the ``shared/data/s2`` folder (default ``../shared/data/s2``). The series are the first
``dates`` dates (every date with 95 % of its values present, clouds included) of the held-out
WorldCereal series at 10 m (4 bands) and 20 m (6 bands) and of nrt_romania at 10 m (4 bands;
tec-pc saw this place in training, so its figures there flatter it). Each series is coded whole
(chunk 0) and in chunks of each ``--chunks`` size, as a user stores it: every codec on the same
chunks, side by side through :mod:`tcube.bench` (real byte lengths, PSNR per REFERENCE.md).
``x265-video-pca`` is xarrayvideo's PCA layout (one KLT per cube, one video per component over
time). Writes ``dense_<series>_<chunking>.csv/.png/.md`` and ``dense.md``: per series and chunking
the BD-rate of each model against ``x265-video-pca`` over 35-50 dB (10k), and the cost of chunking
(each codec's BD-rate on chunks against its own whole-series curve).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

import tcube
from tcube.bench import BD_RANGE, QUALITIES, QUICK_QUALITIES, Codec, codecs, curves, run, write
from tcube.metrics import bd_rate
from tcube.models import load_model
from tcube.train.corpus import read_netcdf

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
    "tec-hx/no-intra": {"cloud_factor": float("inf")},
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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/s2"))
    parser.add_argument("--dates", type=int, default=48)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 8, 16])
    parser.add_argument("--models", nargs="+", default=["tec-hx", "tec-pc"])
    parser.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS), help="ablations of tec-hx")
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument("--baselines", nargs="+", default=BASELINES, help=f"always with {REFERENCE}")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--full", action="store_true", help="every quality and baseline setting")
    parser.add_argument("--qualities", type=int, nargs="+", help="tcube's qualities (default: 4, every with --full)")
    args = parser.parse_args()
    out, results = Path(args.out), {}
    for key in args.series:
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
            write(rows, out, f"dense_{label}", [*args.models, *args.variants], title)
            results[(key, size)] = rows
    text = summary(results, [*args.models, *args.variants])
    (out / "dense.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
