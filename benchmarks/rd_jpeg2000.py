"""Rate-distortion and speed of tec-fp / tec-hp against JPEG2000 on held-out Sentinel-2 data.

Run:  python benchmarks/rd_jpeg2000.py [--data DIR_OR_FILES ...] [--out benchmarks/results]

Default data: the four seasons of place 0080717 of ``../shared/data/s2/terracodec`` (kept out of
training). Writes ``rd_jpeg2000.csv`` and ``rd_jpeg2000.png`` and prints, per codec, the bpppb
needed for 35 / 40 / 45 dB ("10k" convention and full range, see REFERENCE.md), the ratios of
tec-hp against each JPEG2000 variant, and encode / decode MB/s (raw uint16) on this machine.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from common import write_rows

import tcube
from tcube.baselines import J2K_MODES, j2k_decode, j2k_encode
from tcube.demo import timed
from tcube.io import find_cubes, read_cube
from tcube.metrics import bpppb, psnr_10k, psnr_full, rate_at_psnr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "s2" / "terracodec"
TARGETS = (35.0, 40.0, 45.0)
J2K_LEVELS = np.arange(40.0, 80.0, 1.0)


def load(paths: list[str], holdout: str | None) -> np.ndarray:
    files = [p for p in find_cubes(paths) if holdout is None or holdout in str(p)]
    if not files:
        sys.exit(f"no cube found in {paths} (holdout filter {holdout!r})")
    return np.concatenate([read_cube(p) for p in files]).astype(np.uint16)


def measure(codec: str, setting: float, cube: np.ndarray, encode, decode) -> dict:
    blob, t_enc = timed(encode)
    dec, t_dec = timed(decode, blob)
    mb = cube.nbytes / 1e6
    return {"codec": codec, "setting": setting, "bytes": len(blob), "bpppb": bpppb(len(blob), cube.shape),
            "psnr_10k": psnr_10k(cube, dec), "psnr_full": psnr_full(cube, dec),
            "encode_MBps": mb / t_enc, "decode_MBps": mb / t_dec}


def run(cube: np.ndarray) -> list[dict]:
    rows = []
    for model in tcube.list_models():
        tcube.decode(tcube.encode(cube[:1], model=model, quality=1))  # warm-up
        for q in range(1, 17):
            rows.append(measure(model, q, cube, partial(tcube.encode, cube, model, q), tcube.decode))
            print(f"{model} q{q}: {rows[-1]['bpppb']:.4f} bpppb, {rows[-1]['psnr_10k']:.2f} dB", flush=True)
    for mode in J2K_MODES:
        for level in J2K_LEVELS:
            rows.append(measure(f"jpeg2000-{mode}", level, cube, partial(j2k_encode, cube, level, mode),
                                partial(j2k_decode, shape=cube.shape, mode=mode)))
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for codec in dict.fromkeys(r["codec"] for r in rows):
        rs = [r for r in rows if r["codec"] == codec]
        s = {"codec": codec}
        for metric in ("psnr_10k", "psnr_full"):
            for t in TARGETS:
                s[f"{metric}@{t:g}"] = rate_at_psnr(np.array([r["bpppb"] for r in rs]),
                                                    np.array([r[metric] for r in rs]), t)
        s["max_psnr_10k"] = max(r["psnr_10k"] for r in rs)
        # speed at the settings that land between 35 and 45 dB
        mid = [r for r in rs if 35 <= r["psnr_10k"] <= 45] or rs
        s["encode_MBps"] = float(np.median([r["encode_MBps"] for r in mid]))
        s["decode_MBps"] = float(np.median([r["decode_MBps"] for r in mid]))
        out.append(s)
    return out


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("psnr_10k", "psnr_full")):
        for codec in dict.fromkeys(r["codec"] for r in rows):
            rs = sorted((r for r in rows if r["codec"] == codec), key=lambda r: r["bpppb"])
            ax.plot([r["bpppb"] for r in rs], [r[metric] for r in rs], marker=".", label=codec)
        ax.set_xscale("log")
        ax.set_xlim(0.005, 3)
        ax.set_ylim(25, 60)
        ax.set_xlabel("bpppb (bits per pixel per band, real bytes)")
        ax.set_ylabel(f"PSNR ({'10k convention' if metric == 'psnr_10k' else 'full range'}), dB")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Held-out place 0080717 (4 seasons, 12 bands, 264x264)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _fmt(value: float, digits: int) -> str:
    return "not reached" if np.isnan(value) else f"{value:.{digits}f}"


def markdown(summary: list[dict]) -> str:
    """Summary as a Markdown table (bpppb at each PSNR, ratio to tec-hp, MB/s)."""
    hp = next(s for s in summary if s["codec"] == "tec-hp")
    head = ["codec"] + [f"bpppb @{t:g} dB {m}" for m in ("10k", "full") for t in TARGETS]
    head += ["ratio to tec-hp @40 dB 10k", "best PSNR 10k", "encode MB/s", "decode MB/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        rates = [s[f"{m}@{t:g}"] for m in ("psnr_10k", "psnr_full") for t in TARGETS]
        ratio = s["psnr_10k@40"] / hp["psnr_10k@40"]
        cells = [s["codec"], *(_fmt(r, 4) for r in rates), _fmt(ratio, 2), f"{s['max_psnr_10k']:.2f}",
                 f"{s['encode_MBps']:.1f}", f"{s['decode_MBps']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    ap.add_argument("--holdout", default="0080717", help="only cubes whose path contains this ('' for all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cube = load(args.data, args.holdout or None)
    print(f"cube {cube.shape}, {cube.nbytes / 1e6:.1f} MB raw uint16, torch threads {args.threads}")
    rows = run(cube)
    out = Path(args.out)
    write_rows(rows, out / "rd_jpeg2000.csv")
    plot(rows, out / "rd_jpeg2000.png")
    summary = summarise(rows)
    keys = [k for k in summary[0] if k != "codec"]
    print("\nbpppb needed for a PSNR (10k convention / full range), and single-process MB/s of raw uint16")
    print(f"{'codec':>20} " + " ".join(f"{k:>14}" for k in keys))
    for s in summary:
        print(f"{s['codec']:>20} " + " ".join(f"{s[k]:>14.4f}" for k in keys))
    hp = next(s for s in summary if s["codec"] == "tec-hp")
    print("\nratio: baseline bpppb / tec-hp bpppb at equal PSNR (>1: tec-hp needs fewer bits)")
    for s in summary:
        if s["codec"].startswith("jpeg2000"):
            ratios = " ".join(f"{m}@{t:g}: {s[f'{m}@{t:g}'] / hp[f'{m}@{t:g}']:.2f}"
                              for m in ("psnr_10k", "psnr_full") for t in TARGETS)
            print(f"{s['codec']:>20} {ratios}")
    (out / "rd_jpeg2000.md").write_text(markdown(summary) + "\n")
    print(f"\nwrote {out / 'rd_jpeg2000.csv'}, .png and .md (the README table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
