"""Feasibility study for a temporal entropy model (issue 6): how many of tec-hp's latent bits are
predictable from the previous dates?

Run:  python benchmarks/temporal_prior_study.py [--steps 1500] [--hidden 64] [--quality 8]

Freezes tec-hp, computes its quantised latents for every date of real time series, and trains a
small float conditional network that predicts each date's Gaussian mean and scale from the two
previous dates' latents and tec-hp's own hyperprior prediction. It reports, on dates and places the
network did not see, the *estimated* bits of the latents y (Gaussian likelihoods, not coded
bytes) under tec-hp's hyperprior and under the temporal prior. This bounds what a temporal model
built on tec-hp's transforms could save; it is not a codec (no integer network, no bitstream).

Data: training series are the three terracodec training places (4 seasons each) and the first
100 dates of nrt_romania 10 m (missing bands stood in as in tcube.datasets); evaluation series are
the held-out terracodec place 0080717 and the last 40 dates of nrt_romania 10 m. Writes
``benchmarks/results/temporal_prior_study.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tcube.bands import L2A_BANDS
from tcube.datasets import band_planes, stand_in
from tcube.models import load_model
from tcube.readers import load_cubes, open_dataset

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "s2"
HOLDOUT = "0080717"


def terracodec_series() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training places, held-out place), each (4 seasons, 12, 264, 264)."""
    cubes = load_cubes([DATA / "terracodec"])
    return ([c for n, c in cubes if HOLDOUT not in n], [c for n, c in cubes if HOLDOUT in n])


def nrt_series() -> np.ndarray:
    """nrt_romania 10 m as (T, 12, 100, 100) digital numbers, the 8 missing bands stood in."""
    ds = open_dataset(DATA / "nrt_romania" / "sentinel2_cube_subset_romania_10m.nc")
    frames = []
    for t in range(ds.sizes["time"]):
        planes = band_planes(ds, L2A_BANDS, t)
        block = np.full((1, 12, 100, 100), np.nan, np.float32)
        for band, values in planes.items():
            block[0, L2A_BANDS.index(band)] = values
        block = np.nan_to_num(stand_in([L2A_BANDS.index(b) for b in planes], block), nan=0.0)
        frames.append(block[0])
    return np.stack(frames)


@torch.no_grad()
def latents(model, cube: np.ndarray, q: torch.Tensor) -> dict[str, torch.Tensor]:
    """Quantised latents (on tec-hp's mean grid) and tec-hp's own (mean, scale) per date."""
    x = model.pad(model.normalise(torch.from_numpy(cube.astype(np.float32))))
    qq = q.expand(len(x))
    v = model.g_a(x) * model.gain(qq)
    z = torch.floor(model.h_a(v) + 0.5)
    idx, mean = model.params_exact(z.long(), v.shape[-2:])
    y = torch.floor(v - mean + 0.5) + mean
    return {"y": y, "mean": mean, "scale": model.gaussian.scale(idx)}


def gaussian_bits(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bits of the integer offsets y - mean under N(mean, scale) (mass of the unit interval)."""
    scale = scale.clamp(min=0.11)
    d = torch.distributions.Normal(0.0, 1.0)
    r = (y - mean).abs()
    mass = d.cdf((0.5 - r) / scale) - d.cdf((-0.5 - r) / scale)
    return -torch.log2(mass.clamp(min=1e-9)).sum()


class TemporalPrior(nn.Module):
    """(y_{t-1}, y_{t-2}, tec-hp mean and log scale of date t) -> (mean, scale) of date t."""

    def __init__(self, m: int, hidden: int = 192):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(4 * m, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * m, 3, padding=1))

    def forward(self, prev1, prev2, mean, scale):
        out = self.net(torch.cat([prev1, prev2, mean, torch.log(scale)], dim=1))
        m = mean.shape[1]
        return mean + out[:, :m], scale * torch.exp(out[:, m:])


def samples(series: list[dict[str, torch.Tensor]]):
    """(prev1, prev2, mean, scale, y) for every date t >= 1 (prev2 = prev1 at t = 1)."""
    for s in series:
        y = s["y"]
        for t in range(1, len(y)):
            prev2 = y[t - 2] if t >= 2 else y[t - 1]
            yield y[t - 1][None], prev2[None], s["mean"][t][None], s["scale"][t][None], y[t][None]


def evaluate(prior: TemporalPrior, series: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
    base = temporal = 0.0
    with torch.no_grad():
        for p1, p2, mean, scale, y in samples(series):
            base += float(gaussian_bits(y, mean, scale))
            tm, ts = prior(p1, p2, mean, scale)
            temporal += float(gaussian_bits(y, tm, ts))
    return base, temporal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--quality", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500, help="more overfits the ~110 training dates")
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model("tec-hp", "cpu")
    q = torch.tensor([args.quality - 1])
    train_tc, held_tc = terracodec_series()
    nrt = nrt_series()
    train = [latents(model, c, q) for c in train_tc] + [latents(model, nrt[:100], q)]
    held = {"terracodec 0080717 (4 seasons)": [latents(model, c, q) for c in held_tc],
            "nrt_romania 10 m, last 40 dates": [latents(model, nrt[100:], q)]}
    prior = TemporalPrior(model.config.m, args.hidden)
    with torch.no_grad():  # start as the identity: tec-hp's own prediction
        prior.net[-1].weight.zero_()
        prior.net[-1].bias.zero_()
    opt = torch.optim.Adam(prior.parameters(), lr=3e-4)
    data = list(samples(train))
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < args.minutes * 60 and steps < args.steps:
        for i in np.random.permutation(len(data)):
            k = int(np.random.randint(4))  # rotations and flips against memorising the few places
            p1, p2, mean, scale, y = (torch.rot90(a, k, (-2, -1)) for a in data[i])
            if np.random.rand() < 0.5:
                p1, p2, mean, scale, y = (a.flip(-1) for a in (p1, p2, mean, scale, y))
            tm, ts = prior(p1, p2, mean, scale)
            loss = gaussian_bits(y, tm, ts) / y.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if steps >= args.steps:
                break
    lines = [f"Temporal prior on frozen tec-hp latents, quality {args.quality}, {steps} steps in "
             f"{(time.perf_counter() - start) / 60:.1f} min (CPU). Estimated bits of y for dates t >= 1.", "",
             "| series | tec-hp hyperprior (bits) | temporal prior (bits) | change |", "|---|---|---|---|"]
    for name, series in held.items():
        base, temporal = evaluate(prior, series)
        lines.append(f"| {name} | {base:.0f} | {temporal:.0f} | {100 * (temporal / base - 1):+.1f} % |")
    base, temporal = evaluate(prior, train)
    lines.append(f"| training series (for reference) | {base:.0f} | {temporal:.0f} | "
                 f"{100 * (temporal / base - 1):+.1f} % |")
    text = "\n".join(lines)
    out = ROOT / "benchmarks" / "results" / "temporal_prior_study.md"
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
