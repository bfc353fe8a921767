"""Dense time series: per-date tec-pc against the video layouts of x265 and per-date KLT + JPEG2000.

    python benchmarks/dense.py [CORPUS] [--dates 48] [--out benchmarks/results] [--full]

CORPUS: a corpus file of ``python -m tcube.train.corpus`` (default ``data_cache/corpus.npz``). The
series are ``dates`` consecutive dates of nrt_romania at 10 m (4 bands, 100 x 100; tec-pc saw this
place in training, so its figures there flatter it) and of the held-out WorldCereal series at 10 m
(4 bands, 64 x 64). Every codec runs side by side through :mod:`tcube.bench` (real byte lengths,
PSNR per REFERENCE.md). ``x265-video-pca`` is xarrayvideo's PCA layout (one KLT per cube, one video
per component over time). Writes ``dense_<series>.csv/.png/.md`` (4 qualities and 5 baseline
settings unless ``--full``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tcube.bench import codecs, run, write
from tcube.train.corpus import corpus

SERIES = {"nrt_romania_10m": "sentinel2_cube_subset_romania_10m", "worldcereal_10m": "S2_L2A_10m_00002806639B424A"}
BASELINES = ["jpeg2000-pca", "x265-video", "x265-video-pca"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default="data_cache/corpus.npz")
    parser.add_argument("--dates", type=int, default=48)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--full", action="store_true", help="every quality and baseline setting")
    args = parser.parse_args()
    groups = corpus(args.corpus)
    for key, needle in SERIES.items():
        group = next(g for g in groups if needle in g.name)
        cube = group.frames[: args.dates]
        suite = codecs(["tec-pc"], BASELINES, quick=not args.full)
        rows = run([(key, cube)], suite, lambda done, total, n=key: print(f"\r{n}: {done}/{total}", end="", flush=True))
        print()
        title = f"dense series {key} {cube.shape} ({', '.join(group.bands)}), {args.dates} consecutive dates"
        print(write(rows, Path(args.out), f"dense_{key}", ["tec-pc"], title))


if __name__ == "__main__":
    main()
