"""Training of ``tec-tt``: tec-hp's transforms, frozen, and a temporal prior trained on real series.

The prior only sees latents (1/16 of the image in each direction), so training is cheap on a CPU:
latents of every series are computed once, then windows of consecutive dates are drawn with a
random quality, rotation and flip, and the estimated bits of dates t >= 1 are minimised.

    tcube train --arch tt --data ../shared/data/s2/terracodec ../shared/data/s2/nrt_romania \\
        ../shared/data/s2/worldcereal --holdout 0080717 --steps 3000 --export tcube/weights/tec-tt.safetensors
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from tcube.errors import InputError
from tcube.masks import fill_invalid
from tcube.models.registry import build_model, load_model, model_digest, save_weights

QUALITIES = (1, 4, 8, 12, 16)


@dataclass
class TemporalConfig:
    """What :func:`train_temporal` needs; recorded in the weights and the model card."""

    data: list[str]
    holdout: str = "0080717"
    init: str = "tec-hp"
    name: str = "tec-tt"
    steps: int = 3000
    window: int = 6
    hidden: int = 64
    lr: float = 3e-4
    seed: int = 0
    threads: int | None = None
    export: str | None = None
    files: list[str] = field(default_factory=list)


def _dataset_series(path: Path) -> list[tuple[str, np.ndarray]]:
    """(name, (T, 12, H, W)) per grid of a NetCDF / zarr time series; missing bands stood in."""
    from tcube.io import open_dataset
    from tcube.xarray import _plan, _read_block, _variable_meta

    ds = open_dataset(path)
    out = []
    for stack in _plan(ds, {}, "tec-hp", 8)[0]:
        if stack.tdim is None or ds.sizes[stack.tdim] < 2:
            continue
        meta = _variable_meta(ds, stack, {})
        region = {stack.tdim: slice(0, ds.sizes[stack.tdim]), stack.ydim: slice(0, ds.sizes[stack.ydim]),
                  stack.xdim: slice(0, ds.sizes[stack.xdim])}
        block = _read_block(ds, stack, meta, region)
        invalid = np.isnan(block)
        if invalid.any():
            block = fill_invalid(block, invalid, np.full(block.shape[1], 1500.0))
        out.append((f"{path.stem}:{stack.name}", block))
    return out


def load_series(paths: list[str], holdout: str) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(training, held-out) series: GeoTIFF places stacked over dates, NetCDF / zarr per grid."""
    from tcube.bench import load_cubes

    series: list[tuple[str, np.ndarray]] = []
    for p in map(Path, paths):
        netcdf = sorted(p.glob("*.nc")) if p.is_dir() else ([p] if p.suffix == ".nc" else [])
        for f in netcdf:
            series += _dataset_series(f)
        if not netcdf:
            series += [(n, c.astype(np.float32)) for n, c in load_cubes([p]) if len(c) >= 2]
    train = [(n, c) for n, c in series if holdout not in n]
    held = [(n, c) for n, c in series if holdout in n]
    return train, held


def _augment(v: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    v = torch.rot90(v, int(rng.integers(4)), (-2, -1))
    return v.flip(-1) if rng.random() < 0.5 else v


@torch.no_grad()
def coded_comparison(model, base, held: list[tuple[str, np.ndarray]]) -> list[dict]:
    """Real coded bytes and PSNR of the model and its base on held-out series, per quality."""
    from tcube.metrics import psnr_10k

    rows = []
    for quality in QUALITIES:
        row = {"quality": quality}
        for label, codec in (("tt", model), ("hp", base)):
            nbytes, psnrs = 0, []
            for _, cube in held:
                x = torch.from_numpy(cube)
                payloads = codec.compress(x, quality)
                nbytes += sum(len(s) for p in payloads for s in p.streams.values())
                psnrs.append(psnr_10k(cube, codec.decompress(payloads, quality, *cube.shape[-2:]).numpy()))
            samples = sum(c.size for _, c in held)
            row[f"bpppb_{label}"], row[f"psnr_{label}"] = 8 * nbytes / samples, float(np.mean(psnrs))
        rows.append(row)
    return rows


def train_temporal(cfg: TemporalConfig) -> dict:
    """Train the temporal prior on top of ``cfg.init``'s weights; export if ``cfg.export``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    base = load_model(cfg.init, "cpu")
    config = {k: v for k, v in asdict(base.config).items() if k not in ("arch", "nt")}
    model = build_model("tt", **config, nt=cfg.hidden)
    model.load_state_dict(base.state_dict(), strict=False)
    model.tables = base.tables
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("t_prior.")
    train, held = load_series(cfg.data, cfg.holdout)
    if not train:
        raise InputError(f"no time series of 2 or more dates in {', '.join(cfg.data)} (outside {cfg.holdout!r})")
    cfg.files = [n for n, _ in train]
    with torch.no_grad():
        latents = [model.g_a(model.pad(model.normalise(torch.from_numpy(c)))) for _, c in train]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    start = time.perf_counter()
    model.train()
    for _ in range(cfg.steps):
        ga = latents[int(rng.integers(len(latents)))]
        t0 = int(rng.integers(max(1, len(ga) - cfg.window + 1)))
        window = ga[t0:t0 + cfg.window]
        q = torch.full((len(window),), int(rng.integers(16)), dtype=torch.long)
        v = _augment(window * model.gain(q), rng)
        bits = model.sequence_bits(v, q)
        loss = bits.sum() / v[1:].numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    minutes = (time.perf_counter() - start) / 60
    report = {"steps": cfg.steps, "minutes": minutes, "series": len(train), "held_out": [n for n, _ in held],
              "comparison": coded_comparison(model, base, held) if held else []}
    if cfg.export:
        _export(model, cfg, report)
    return report


def _export(model, cfg: TemporalConfig, report: dict) -> None:
    path = Path(cfg.export)
    meta = {"tcube_model": cfg.name, "steps": str(cfg.steps), "holdout": cfg.holdout,
            "train_files": json.dumps(cfg.files), "train_config": json.dumps(asdict(cfg)),
            "base_model": cfg.init, "base_sha256": model_digest(cfg.init)}
    digest = save_weights(model, path, meta)
    lines = [f"# {cfg.name}", "",
             f"Architecture `tt`: the transforms, hyperprior and tables of `{cfg.init}` (SHA-256 "
             f"`{model_digest(cfg.init)}`), frozen, plus a temporal prior of {cfg.hidden} hidden channels "
             "(integer network) over the two previous dates.",
             f"Weights: `{path.name}`, SHA-256 `{digest}`.", "", "## Training", "",
             f"- Command: `tcube train --arch tt --data {' '.join(cfg.data)} --holdout {cfg.holdout} "
             f"--steps {cfg.steps} --export {cfg.export}`",
             f"- {cfg.steps} windows of up to {cfg.window} dates, random quality, rotation and flip; Adam lr "
             f"{cfg.lr}; {report['minutes']:.1f} min on CPU ({platform.machine()}), torch {torch.__version__}",
             f"- Training series ({len(cfg.files)}): {', '.join(cfg.files)}",
             f"- Held out: {', '.join(report['held_out'])}", "",
             "## Held-out series, real coded bytes (streams only), tec-tt against its base", "",
             "| quality | bpppb tec-tt | PSNR 10k tec-tt | bpppb base | PSNR 10k base |", "|---|---|---|---|---|"]
    lines += [f"| {r['quality']} | {r['bpppb_tt']:.4f} | {r['psnr_tt']:.2f} | {r['bpppb_hp']:.4f} | "
              f"{r['psnr_hp']:.2f} |" for r in report["comparison"]]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
