"""Compare tec-pc checkpoints (real coded bytes) with the KLT baselines on the held-out sets.

    python benchmarks/pc_proxy.py data_cache/corpus.npz runs/proxy_A [runs/proxy_B ...]

Prints, per held-out set, bpppb and PSNR (10k) per quality, and the BD-rate (10k PSNR, over the
range the curves share) of each checkpoint against ``jpeg2000-pca`` and ``x265-intra-pca``. The
baselines' curves are cached in ``benchmarks/results/pc_proxy_baselines.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import heldout
import numpy as np
import torch

from tcube.baselines import get_baseline
from tcube.metrics import bd_rate, psnr_10k, psnr_full
from tcube.models.registry import build_model

QUALITIES = (1, 3, 5, 7, 9, 11, 13, 15, 16)
CACHE = Path(__file__).parent / "results" / "pc_proxy_baselines.json"


def held_out_sets(path: str) -> dict[str, np.ndarray]:
    """The held-out sets of :mod:`heldout` but the slow cloudy tile, 12 dates per series."""
    return {k: v for k, v in heldout.held_out_sets(path, dates=12).items() if "s2cloudless" not in k}


def curve(encode, decode, settings, cube) -> tuple[list[float], list[float], list[float]]:
    rates, p10, pfull = [], [], []
    for s in settings:
        blob = encode(cube, s)
        dec = decode(blob, cube.shape)
        rates.append(8 * len(blob) / cube.size)
        p10.append(psnr_10k(cube, dec))
        pfull.append(psnr_full(cube, dec))
    return rates, p10, pfull


def model_curve(model, cube: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    x = torch.from_numpy(cube.astype(np.float64))
    rates, p10, pfull = [], [], []
    for q in QUALITIES:
        payloads = model.compress(x, q)
        n = sum(len(s) for p in payloads for s in p.streams.values())
        dec = model.decompress(payloads, q, *cube.shape[-2:], bands=cube.shape[1])
        dec = np.clip(np.floor(dec.numpy() + 0.5), 0, 65535).astype(np.uint16)
        rates.append(8 * n / cube.size)
        p10.append(psnr_10k(cube, dec))
        pfull.append(psnr_full(cube, dec))
    return rates, p10, pfull


def baselines(sets: dict[str, np.ndarray]) -> dict:
    cached = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    for name, cube in sets.items():
        for b in ("jpeg2000-pca", "x265-intra-pca"):
            if f"{name}|{b}" not in cached:
                base = get_baseline(b)
                cached[f"{name}|{b}"] = curve(base.encode, base.decode, base.settings, cube)
    CACHE.parent.mkdir(exist_ok=True)
    CACHE.write_text(json.dumps(cached))
    return cached


def load_checkpoint(run: str):
    state = torch.load(Path(run) / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(state["history"])
    shapes = {k: v.shape for k, v in state["model"].items()}
    keys = [k for k in shapes if k.startswith("g_a.") and k.endswith(".weight") and len(shapes[k]) == 4
            and shapes[k][-1] == 5]
    convs = [shapes[k][0] for k in sorted(keys, key=lambda k: int(k.split(".")[1]))]
    model = build_model("pc", widths=convs[:-1], m=convs[-1], nh=shapes["h_a.0.weight"][0])
    model.load_state_dict(state["model"])
    model.eval().export_tables()
    return model, state["step"], cfg


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    sets = held_out_sets(argv[0])
    base = baselines(sets)
    for run in argv[1:]:
        model, step, _ = load_checkpoint(run)
        print(f"== {run} at step {step}")
        for name, cube in sets.items():
            r, p10, pf = model_curve(model, cube)
            row = " ".join(f"{a:.3f}/{b:.1f}" for a, b in zip(r, p10))
            bd = {b: bd_rate(np.array(r), np.array(p10), *map(np.array, base[f"{name}|{b}"][:2]))
                  for b in ("jpeg2000-pca", "x265-intra-pca")}
            print(f"{name:24s} {row}")
            print(f"{'':24s} BD-rate 10k: " + ", ".join(f"vs {k} {v:+.1f} %" for k, v in bd.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
