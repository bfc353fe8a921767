"""Training of ``tec-tt``: the frozen transforms of ``--init`` (tec-fp), and an entropy model
(hyperprior plus temporal prior) trained together on real time series.

The entropy model only sees latents (1/16 of the image in each direction), so training is cheap on
a CPU: the latents of every series are computed once, then windows of dates (every 1st..6th date)
are drawn with a random quality, crop, rotation and flip, and the log of each window's estimated
bits is minimised.

    tcube train --arch tt --init tec-fp --data ../shared/data/s2/terracodec ../shared/data/s2/nrt_romania \
        ../shared/data/s2/worldcereal --holdout 0080717 --steps 6000 --lr 1e-3 --threads 1 \
        --export tcube/weights/tec-tt.safetensors
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
from tcube.models.registry import (
    build_model,
    copy_matching,
    file_digest,
    lineage,
    load_init,
    load_model,
    save_weights,
    weights_file,
)
from tcube.models.tt import TemporalCodec
from tcube.outputs import SAFETENSORS, check_file_output
from tcube.train.trainer import TrainConfig

QUALITIES = (1, 4, 8, 12, 16)
#: Models the held-out comparison codes next to the new one.
REFERENCES = ("tec-hp", "tec-fp")


@dataclass
class TemporalConfig:
    """What :func:`train_temporal` needs; recorded in the weights and the model card."""

    data: list[str]
    holdout: str = "0080717"
    init: str = "tec-fp"
    name: str = "tec-tt"
    steps: int = 3000
    batch: int = 4
    window: int = 4
    max_stride: int = 6
    crop: int = 24
    hidden: int = 64
    lr: float = 1e-3
    seed: int = 0
    threads: int | None = None
    export: str | None = None
    files: list[str] = field(default_factory=list)


def _dataset_series(path: Path) -> list[tuple[str, np.ndarray]]:
    """(name, (T, 12, H, W)) per grid of a NetCDF / zarr time series; missing bands stood in."""
    from tcube.readers import open_dataset
    from tcube.stacks import plan, read_block, variable_meta

    ds = open_dataset(path)
    out = []
    for stack in plan(ds, {}, "tec-hp", 8)[0]:
        if stack.tdim is None or ds.sizes[stack.tdim] < 2:
            continue
        meta = variable_meta(ds, stack, {})
        region = {stack.tdim: slice(0, ds.sizes[stack.tdim]), stack.ydim: slice(0, ds.sizes[stack.ydim]),
                  stack.xdim: slice(0, ds.sizes[stack.xdim])}
        block = read_block(ds, stack, meta, region)
        invalid = np.isnan(block)
        if invalid.any():
            block = fill_invalid(block, invalid, np.full(block.shape[1], 1500.0))
        out.append((f"{path.stem}:{stack.name}", block))
    return out


def load_series(paths: list[str], holdout: str) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(training, held-out) series: GeoTIFF places stacked over dates, NetCDF / zarr per grid."""
    from tcube.readers import load_cubes

    series: list[tuple[str, np.ndarray]] = []
    for p in map(Path, paths):
        netcdf = sorted(p.glob("*.nc")) if p.is_dir() else ([p] if p.suffix == ".nc" else [])
        for f in netcdf:
            series += _dataset_series(f)
        if not netcdf:
            series += [(n, c.astype(np.float32)) for n, c in load_cubes([p]) if len(c) >= 2]
    held = [(n, c) for n, c in series if holdout and holdout in n]
    train = [(n, c) for n, c in series if not (holdout and holdout in n)]
    return train, held


def _coded(codec, cube: np.ndarray, quality: int, per_date: bool) -> tuple[int, np.ndarray]:
    """Stream bytes and decoded cube of ``cube`` (dates coded alone when ``per_date``)."""
    parts = [cube[t:t + 1] for t in range(len(cube))] if per_date else [cube]
    nbytes, out = 0, []
    for part in parts:
        payloads = codec.compress(torch.from_numpy(part), quality)
        nbytes += sum(len(s) for p in payloads for s in p.streams.values())
        out.append(codec.decompress(payloads, quality, *part.shape[-2:]).numpy())
    return nbytes, np.concatenate(out)


@torch.no_grad()
def coded_comparison(model, held: list[tuple[str, np.ndarray]],
                     references: tuple[str, ...] = REFERENCES) -> list[dict]:
    """Real coded bytes and PSNR on held-out series per quality: the model over time, the model
    date by date (what the temporal prior adds) and each reference model."""
    from tcube.metrics import psnr_10k

    codecs = {"tt": (model, False), "tt_per_date": (model, True),
              **{r: (load_model(r, "cpu"), False) for r in references}}
    samples = sum(c.size for _, c in held)
    rows = []
    for quality in QUALITIES:
        row: dict = {"quality": quality}
        for label, (codec, per_date) in codecs.items():
            coded = [_coded(codec, cube, quality, per_date) for _, cube in held]
            row[f"bpppb_{label}"] = 8 * sum(n for n, _ in coded) / samples
            row[f"psnr_{label}"] = float(np.mean([psnr_10k(c, d) for (_, c), (_, d) in zip(held, coded)]))
        rows.append(row)
    return rows


#: Parameters taken from ``--init`` and kept frozen: the transforms and the quality gains.
TRANSFORM_KEYS = ("g_a.", "g_s.", "gain_base", "gain_steps", "log_inv_gain", "mean", "std", "lambdas")


def _augment(v: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    v = torch.rot90(v, int(rng.integers(4)), (-2, -1))
    return v.flip(-1) if rng.random() < 0.5 else v


def _window(latents: torch.Tensor, cfg: TemporalConfig, rng: np.random.Generator) -> torch.Tensor:
    """Up to ``cfg.window`` dates in order, every ``stride``-th (sparser revisits), random crop."""
    stride = int(rng.integers(1, 1 + min(cfg.max_stride, max(1, (len(latents) - 1) // (cfg.window - 1)))))
    span = stride * (cfg.window - 1) + 1
    t0 = int(rng.integers(max(1, len(latents) - span + 1)))
    v = latents[t0:t0 + span:stride]
    h, w = v.shape[-2:]
    y0, x0 = int(rng.integers(max(1, h - cfg.crop + 1))), int(rng.integers(max(1, w - cfg.crop + 1)))
    return _augment(v[..., y0:y0 + cfg.crop, x0:x0 + cfg.crop], rng)


def init_from(base, hidden: int):
    """A ``tt`` model with ``base``'s transforms and gains (and its entropy model when it has a
    hyperprior); only the entropy model trains."""
    config = {k: v for k, v in asdict(base.config).items() if k not in ("arch", "nt")}
    model = build_model("tt", **config, nt=hidden)
    copy_matching(base, model, lambda k: k.startswith(TRANSFORM_KEYS) or base.config.arch in ("hp", "tt"))
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith(TRANSFORM_KEYS)
    return model


def train_tt(cfg: TrainConfig, log=print) -> TemporalCodec:
    """``tcube train --arch tt``: :func:`train_temporal` with the run's data, hold-out, start
    (default :attr:`TemporalConfig.init`), name, steps, seed, threads, export and learning rate;
    its report goes to ``log``."""
    model, report = _train(TemporalConfig(data=cfg.data, holdout=cfg.holdout, init=cfg.init or TemporalConfig.init,
                                          name=cfg.name, steps=cfg.steps, seed=cfg.seed, threads=cfg.threads,
                                          export=cfg.export, lr=cfg.lr))
    log(json.dumps(report, indent=2))
    return model


def train_temporal(cfg: TemporalConfig) -> dict:
    """Train the entropy model (hyperprior + temporal prior) on ``cfg.init``'s frozen transforms; its
    report (steps, time, loss log, held-out comparison).

    The loss of each window is the log of its estimated bits, so every quality weighs the same.
    """
    return _train(cfg)[1]


def _train(cfg: TemporalConfig) -> tuple[TemporalCodec, dict]:
    if cfg.export:  # before training: replace only weights, in a folder that exists
        check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = init_from(load_init(cfg.init), cfg.hidden)
    train, held = load_series(cfg.data, cfg.holdout)
    if not train:
        raise InputError(f"no time series of 2 or more dates in {', '.join(cfg.data)} (outside {cfg.holdout!r})")
    cfg.files = [n for n, _ in train]
    with torch.no_grad():
        latents = [model.g_a(model.pad(model.normalise(torch.from_numpy(c)))) for _, c in train]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr / 30)
    start, log = time.perf_counter(), []
    model.train()
    for step in range(cfg.steps):
        loss = torch.zeros(())
        for _ in range(cfg.batch):
            window = _window(latents[int(rng.integers(len(latents)))], cfg, rng)
            q = torch.full((len(window),), int(rng.integers(16)), dtype=torch.long)
            loss = loss + torch.log(model.sequence_bits(window * model.gain(q))) / cfg.batch
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if (step + 1) % max(1, cfg.steps // 20) == 0:
            log.append({"step": step + 1, "minutes": round((time.perf_counter() - start) / 60, 2),
                        "log_bits": round(loss.item(), 4)})
            print(json.dumps(log[-1]), flush=True)
    model.eval()
    model.export_tables()
    minutes = (time.perf_counter() - start) / 60
    report = {"steps": cfg.steps, "minutes": minutes, "series": len(train), "held_out": [n for n, _ in held],
              "log": log, "comparison": coded_comparison(model, held) if held else []}
    if cfg.export:
        _export(model, cfg, report)
    return model, report


def _export(model, cfg: TemporalConfig, report: dict) -> None:
    path = check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    command = (f"tcube train --arch tt --init {cfg.init} --data {' '.join(cfg.data)} --holdout {cfg.holdout} "
               f"--steps {cfg.steps} --lr {cfg.lr} --threads {cfg.threads} --export {cfg.export}")
    earlier, base_digest = lineage(cfg.init), file_digest(weights_file(cfg.init))
    meta = {"tcube_model": cfg.name, "steps": str(cfg.steps), "holdout": str(cfg.holdout),
            "train_files": json.dumps(cfg.files), "train_config": json.dumps(asdict(cfg)),
            "base_model": cfg.init, "base_sha256": base_digest, "command": command,
            "lineage": json.dumps(earlier)}
    digest = save_weights(model, path, meta)
    labels = {"tt": cfg.name, "tt_per_date": f"{cfg.name}, dates alone", **{r: r for r in REFERENCES}}
    lines = [f"# {cfg.name}", "",
             f"Architecture `tt`: the transforms and quality gains of `{cfg.init}` (SHA-256 "
             f"`{base_digest}`), frozen; a mean-scale hyperprior and a temporal prior of "
             f"{cfg.hidden} hidden channels (integer networks) over the two previous dates, trained together.",
             f"Weights: `{path.name}`, SHA-256 `{digest}`.", "", "## Training", "",
             *[f"- Earlier stage {i + 1}: `{c}`" for i, c in enumerate(earlier)],
             f"- Command: `{command}`",
             f"- {cfg.steps} steps of {cfg.batch} windows of up to {cfg.window} dates (every 1st..{cfg.max_stride}th "
             f"date), crops of {cfg.crop} x {cfg.crop} latents, random quality, rotation and flip; loss: log of "
             f"the estimated bits of each window; Adam lr {cfg.lr}, cosine decay; {report['minutes']:.1f} min on CPU "
             f"({platform.machine()}), torch {torch.__version__}",
             f"- Training series ({len(cfg.files)}): {', '.join(cfg.files)}",
             f"- Held out: {', '.join(report['held_out'])}", "",
             "## Held-out series, real coded bytes (streams only), PSNR 10k", "",
             "| quality | " + " | ".join(f"{labels[k]} bpppb | dB" for k in labels) + " |",
             "|---|" + "---|---|" * len(labels)]
    lines += ["| " + " | ".join([str(r["quality"])] + [f"{r[f'bpppb_{k}']:.4f} | {r[f'psnr_{k}']:.2f}" for k in labels])
              + " |" for r in report["comparison"]]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
