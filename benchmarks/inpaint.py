"""Gap filling: ``tcube.inpaint`` (temporal prior of tec-tt) against linear temporal interpolation.

Run:  python benchmarks/inpaint.py [--steps 60] [--quality 8] [--out benchmarks/results]

Clear dates with artificial masks, so the truth is known:

- ``clouds``: random cloud-like blobs (smoothed noise above a threshold) over about 30 % of one date;
- ``date``: one whole date missing.

Each date of each series is masked in turn. Series: the four seasons of the held-out place 0080717
(``terracodec``; no model saw it) and 12 clear dates of ``nrt_romania`` 10 m (B2, B3, B4, B8 real,
the other 8 bands stood in; tec-tt's prior was trained on this series, the report says so; only
the 4 real bands are scored). Scores over the masked pixels: mean absolute error (DN) and PSNR
(10k convention). Writes ``inpaint.csv`` and ``inpaint.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import write_rows

from tcube.bands import L2A_BANDS
from tcube.gapfill import inpaint, interpolate_time
from tcube.metrics import psnr_10k
from tcube.readers import load_cubes

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "s2"
HOLDOUT = "0080717"


def cloud_mask(shape: tuple[int, int], cover: float, rng: np.random.Generator) -> np.ndarray:
    """Blobs covering about ``cover`` of the image: box-blurred noise above its quantile."""
    noise = rng.standard_normal((shape[0] // 8 + 2, shape[1] // 8 + 2))
    blurred = np.kron(noise, np.ones((8, 8)))[: shape[0], : shape[1]]
    kernel = np.ones(9) / 9
    for axis in (0, 1):
        blurred = np.apply_along_axis(np.convolve, axis, blurred, kernel, mode="same")
    return blurred > np.quantile(blurred, 1 - cover)


def nrt_clear(count: int = 12) -> np.ndarray:
    """The ``count`` clearest dates of nrt_romania 10 m as (T, 12, 100, 100) DN (stand-ins filled)."""
    from tcube.train.temporal import load_series

    series, _ = load_series([str(DATA / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc")], HOLDOUT)
    cube = series[0][1]
    brightness = cube[:, [L2A_BANDS.index(b) for b in ("B02", "B03", "B04")]].mean(axis=(1, 2, 3))
    keep = np.sort(np.argsort(brightness)[:count])  # clouds are bright: the darkest dates are the clear ones
    return cube[keep]


def score(truth: np.ndarray, filled: np.ndarray, mask: np.ndarray, bands: list[int]) -> dict:
    """MAE (DN) and PSNR 10k over the masked pixels of ``bands``."""
    sel = np.broadcast_to(mask[:, None], truth.shape)[:, bands]
    t, f = truth[:, bands][sel], filled[:, bands][sel]
    return {"mae_dn": float(np.abs(f - t).mean()), "psnr_10k": psnr_10k(t[None], f[None])}


def run(steps: int, quality: int) -> list[dict]:
    places = [(n, c) for n, c in load_cubes([DATA / "terracodec"]) if HOLDOUT in n]
    series = [(n, c.astype(np.float32), list(range(12)), "no") for n, c in places]
    series.append(("nrt_romania_10m_clear12", nrt_clear(), [L2A_BANDS.index(b) for b in ("B02", "B03", "B04", "B08")],
                   "tec-tt prior"))
    rng = np.random.default_rng(0)
    rows = []
    for name, cube, bands, trained in series:
        for kind in ("clouds", "date"):
            for t in range(len(cube)):
                mask = np.zeros((len(cube), *cube.shape[-2:]), bool)
                mask[t] = cloud_mask(cube.shape[-2:], 0.3, rng) if kind == "clouds" else True
                start = time.perf_counter()
                filled = inpaint(cube, mask, quality=quality, steps=steps)
                seconds = time.perf_counter() - start
                base = interpolate_time(cube, np.broadcast_to(mask[:, None], cube.shape))
                for method, out, secs in (("tcube.inpaint", filled, seconds), ("linear in time", base, None)):
                    rows.append({"series": name, "in_training": trained, "mask": kind, "date": t, "method": method,
                                 **score(cube, out, mask, bands), "seconds": secs})
                print(rows[-2], rows[-1], flush=True)
    return rows


def report(rows: list[dict], steps: int, quality: int) -> str:
    lines = [f"tcube.inpaint (tec-tt, quality {quality}, {steps} steps per date) against linear interpolation in "
             "time; masked pixels only, mean over the masked dates.", "",
             "| series | mask | method | MAE (DN) | PSNR 10k (dB) | s per call |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["series"], r["mask"], r["method"]) for r in rows})
    for series, kind, method in keys:
        sel = [r for r in rows if (r["series"], r["mask"], r["method"]) == (series, kind, method)]
        secs = [r["seconds"] for r in sel if r["seconds"] is not None]
        lines.append(f"| {series} | {kind} | {method} | {np.mean([r['mae_dn'] for r in sel]):.1f} | "
                     f"{np.mean([r['psnr_10k'] for r in sel]):.2f} | {f'{np.mean(secs):.1f}' if secs else '-'} |")
    trained = sorted({r["series"] for r in rows if r["in_training"] != "no"})
    lines += ["", f"In tec-tt's training data: {', '.join(trained) or 'none'}; nothing was trained for gap filling."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--quality", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    rows = run(args.steps, args.quality)
    out = Path(args.out)
    write_rows(rows, out / "inpaint.csv")
    text = report(rows, args.steps, args.quality)
    (out / "inpaint.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
