"""Quality ceiling of ``tec-pc``, date by date: is there a PSNR it cannot pass?

    python benchmarks/ceiling.py [DATA] [--out benchmarks/results]

DATA: ``shared/data/s2`` or a corpus file of ``python -m tcube.train.corpus``. Writes
``ceiling_dates.csv`` (10k and full-range PSNR of every held-out date at quality 16: the four
seasons of place 0080717, the WorldCereal series at 10 and 20 m, the cloudy s2cloudless tile) and
``ceiling_curves.csv`` / ``.png`` (PSNR against bpppb over the 16 qualities on the snow-covered date
of place 0193833, seasons 0 and 3, and on the cloudy s2cloudless tile), with
real coded bytes through the public API.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import tcube
from tcube.metrics import psnr_10k, psnr_full
from tcube.models.base import N_QUALITIES
from tcube.train.corpus import HOLDOUT, corpus, split

MODEL = "tec-pc"


def _point(frames: np.ndarray, quality: int) -> dict:
    blob = tcube.encode(frames, model=MODEL, quality=quality)
    out = tcube.decode(blob)
    return {"quality": quality, "bpppb": 8 * len(blob) / frames.size, "psnr_10k": psnr_10k(frames, out),
            "psnr_full": psnr_full(frames, out)}


def _write(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/s2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    groups = corpus(args.data)
    _, held = split(groups, HOLDOUT)
    dates = []
    for g in held:
        for t, frame in enumerate(g.frames):
            dates.append({"set": g.name, "date": t, "bands": len(g.bands), **_point(frame[None], N_QUALITIES)})
        values = [r["psnr_10k"] for r in dates if r["set"] == g.name]
        print(f"{g.name}: {len(values)} dates, quality 16: min {min(values):.2f} median {np.median(values):.2f} dB")
    _write(dates, out / "ceiling_dates.csv")
    values = [r["psnr_10k"] for r in dates]
    print(f"all held-out dates ({len(values)}): min {min(values):.2f}, median {np.median(values):.2f} dB (10k)")
    snow = {s: next(g for g in groups if g.name.endswith(f"0193833_{s}")).frames[:1] for s in (0, 3)}
    cloudy = next(g for g in held if "s2cloudless" in g.name).frames[:1]
    curves = []
    for name, frames in (("snow 0193833 season 0", snow[0]), ("snow 0193833 season 3", snow[3]),
                         ("cloudy s2cloudless", cloudy)):
        for q in range(1, N_QUALITIES + 1):
            curves.append({"cube": name, **_point(frames, q)})
        print(name, " ".join(f"{r['psnr_10k']:.1f}" for r in curves if r["cube"] == name))
    _write(curves, out / "ceiling_curves.csv")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["cube"] for r in curves):
        pts = [r for r in curves if r["cube"] == name]
        ax.plot([r["bpppb"] for r in pts], [r["psnr_10k"] for r in pts], "o-", label=name)
    ax.set_xscale("log")
    ax.set(xlabel="bpppb (real bytes)", ylabel="PSNR 10k (dB)", title=f"{MODEL}, qualities 1..16")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ceiling_curves.png", dpi=120)


if __name__ == "__main__":
    main()
