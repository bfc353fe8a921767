"""Rate-distortion of the tcube models and the strongest classical baselines on the held-out sets.

    python benchmarks/heldout.py [DATA] [--out benchmarks/results] [--quick]

DATA: ``shared/data/s2`` or a corpus file of ``python -m tcube.train.corpus`` (default
``../shared/data/s2``). The held-out sets are those of :data:`tcube.train.corpus.HOLDOUT`: the four
seasons of terracodec place 0080717 (12 bands), 24 dates of the WorldCereal series
00002806639B424A at 10 m (4 bands: B02, B03, B04, B08) and at 20 m (6 bands), and the cloudy
s2cloudless tile (13 L1C bands). Every codec runs side by side through :mod:`tcube.bench` (real
byte lengths, PSNR per REFERENCE.md, timings on this machine); the models that code fixed 12
bands run on the 12-band set only. Writes ``heldout_<set>.csv/.png/.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tcube
from tcube.bench import QUALITIES, QUICK_QUALITIES, codecs, run, write
from tcube.train.corpus import HOLDOUT, corpus, split

BASELINES = ["jpeg2000-pca", "x265-intra-pca", "x265-video"]


def held_out_sets(source: str, dates: int = 24) -> dict[str, np.ndarray]:
    """(T, C, H, W) uint16 per held-out set (up to ``dates`` dates spread over a series)."""
    _, held = split(corpus(source), HOLDOUT)
    sets: dict[str, list[np.ndarray]] = {}
    for g in held:
        if g.name.startswith("terracodec/"):
            key = "0080717"
        elif "s2cloudless" in g.name:
            key = "s2cloudless_l1c"
        else:
            key = f"worldcereal_{len(g.bands)}bands"
        pick = np.linspace(0, len(g.frames) - 1, min(dates, len(g.frames))).round().astype(int)
        sets.setdefault(key, []).append(g.frames[pick])
    return {k: np.concatenate(v) for k, v in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/s2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--quick", action="store_true", help="4 qualities, 5 baseline settings")
    parser.add_argument("--sets", nargs="*", help="only these sets")
    args = parser.parse_args()
    for name, cube in held_out_sets(args.data).items():
        if args.sets and name not in args.sets:
            continue
        models = [m for m in tcube.list_models() if cube.shape[1] in tcube.models.load_model(m, "cpu").band_counts
                  and m != "tec-tt"]
        suite = codecs(models, BASELINES, args.quick)
        rows = run([(name, cube)], suite,
                   lambda done, total, n=name: print(f"\r{n}: {done}/{total}", end="", flush=True))
        print()
        title = f"held out: {name} {cube.shape}, qualities {QUICK_QUALITIES if args.quick else QUALITIES}"
        print(write(rows, Path(args.out), f"heldout_{name}", models, title))


if __name__ == "__main__":
    main()
