"""Rate-distortion training over random quality levels, with resumable checkpoints and export."""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from tcube.api import to_dtype
from tcube.metrics import bpppb, psnr_10k, psnr_full
from tcube.models.base import N_QUALITIES, Model
from tcube.models.registry import build_model, copy_matching, lineage, load_init, save_weights
from tcube.outputs import SAFETENSORS, check_file_output
from tcube.train.data import CropSampler, load_frames

VAL_QUALITIES = (1, 4, 8, 12, 16)


@dataclass
class TrainConfig:
    """Settings of one training run (recorded in the checkpoint and the model card)."""

    arch: str
    name: str
    data: list[str]
    holdout: str | None = "0080717"
    out: str = "runs/model"
    steps: int = 4000
    epoch_steps: int = 250
    batch: int = 8
    crop: int = 96
    lr: float = 5e-4
    max_minutes: float | None = None
    threads: int | None = None
    seed: int = 0
    device: str = "cpu"
    export: str | None = None
    model: dict = field(default_factory=dict)  # model config overrides (widths, m, nh, kernels)
    init: str | None = None  # start from these weights (a model name or a safetensors path)
    lmbda: float = 10.0  # pc: weight of the squared error (in quality steps) against bits per pixel per band
    command: str = field(default_factory=lambda: " ".join(["tcube", *sys.argv[1:]]))


def _lr(cfg: TrainConfig, step: int) -> float:
    """Constant, then cosine decay to a tenth over the last 30 % of the steps."""
    start = 0.7 * cfg.steps
    if step < start:
        return cfg.lr
    t = (step - start) / max(1.0, cfg.steps - start)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def estimate_rd(model: Model, frames: list[np.ndarray], qualities=VAL_QUALITIES) -> list[dict]:
    """Validation with likelihood-estimated rates (fast; the export reports real bytes)."""
    model.eval()
    rows = []
    for quality in qualities:
        bits, psnrs = 0.0, []
        for f in frames:
            x = torch.from_numpy(f)[None].to(model.device)
            xn = model.pad(model.normalise(x))
            q = model.quality_index(quality, 1)
            x_hat, b = model(xn, q)
            dec = model.denormalise(x_hat)[..., : f.shape[-2], : f.shape[-1]].cpu().numpy()[0]
            bits += float(b.sum())
            psnrs.append(psnr_10k(f, dec))
        rate = bits / sum(f.size for f in frames)
        rows.append({"quality": quality, "bpppb_est": rate, "psnr_10k": float(np.mean(psnrs))})
    model.train()
    return rows


@torch.no_grad()
def coded_rd(model: Model, frames: list[np.ndarray], qualities=range(1, N_QUALITIES + 1)) -> list[dict]:
    """Validation with real entropy-coded payload bytes (tables must be exported)."""
    model.eval()
    rows = []
    for quality in qualities:
        n_bytes, p10, pfull = 0, [], []
        for f in frames:
            x = torch.from_numpy(f)[None].to(model.device)
            payload = model.compress(x, quality)[0]
            n_bytes += sum(len(s) for s in payload.streams.values())
            dec = model.decompress([payload], quality, *f.shape[-2:]).cpu().numpy()[0]
            dec = to_dtype(dec, "uint16")
            p10.append(psnr_10k(f, dec))
            pfull.append(psnr_full(f, dec))
        rows.append({"quality": quality, "bpppb": bpppb(n_bytes, (len(frames), *frames[0].shape)),
                     "psnr_10k": float(np.mean(p10)), "psnr_full": float(np.mean(pfull))})
    return rows


def _save_checkpoint(path: Path, model, opt, step: int, history: list, elapsed: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "history": json.dumps(history), "elapsed": elapsed}, tmp)
    tmp.replace(path)


def within_budget(cfg: TrainConfig, opt: torch.optim.Optimizer, step: int, started: float, log=print) -> bool:
    """Whether step ``step`` runs within ``cfg.max_minutes`` (then at the scheduled learning rate)."""
    if cfg.max_minutes and time.time() - started > 60 * cfg.max_minutes:
        log(f"time budget of {cfg.max_minutes} min reached at step {step}")
        return False
    for g in opt.param_groups:
        g["lr"] = _lr(cfg, step)
    return True


def start(cfg: TrainConfig) -> Path:
    """Checks and settings before a run: the export path (before hours of training: replace only
    weights, in a folder that exists), threads, seed; returns the run folder (created)."""
    if cfg.export:
        check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def resume(ckpt: Path, cfg: TrainConfig, model: Model, opt: torch.optim.Optimizer, log=print
           ) -> tuple[int, list, float]:
    """Load ``ckpt`` into ``model`` and ``opt`` when it exists (else start from ``cfg.init``, if
    any); returns (step, history, elapsed seconds) to continue from."""
    if ckpt.exists():
        state = torch.load(ckpt, map_location=cfg.device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        log(f"resumed from {ckpt} at step {state['step']}")
        return state["step"], json.loads(state["history"]), state["elapsed"]
    if cfg.init:
        copied = copy_matching(load_init(cfg.init), model)
        log(f"initialised {len(copied)} of {len(model.state_dict())} tensors from {cfg.init}")
    return 0, [], 0.0


def train_transforms(cfg: TrainConfig, log=print) -> Model:
    """Train (or resume) a transform codec (``fp``, ``hp``) as ``cfg`` says; export weights and model
    card if asked."""
    out = start(cfg)
    frames, val, train_files, val_files = load_frames(cfg.data, cfg.holdout, cfg.crop)
    log(f"training frames: {len(frames)} from {len(train_files)} files; validation frames: {len(val)}")
    model = build_model(cfg.arch, **cfg.model).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt = out / "checkpoint.pt"
    step, history, elapsed = resume(ckpt, cfg, model, opt, log)
    sampler = CropSampler(frames, cfg.crop, seed=cfg.seed + step)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    started = time.time() - elapsed
    model.train()
    while step < cfg.steps and within_budget(cfg, opt, step, started, log):
        x = sampler.batch(cfg.batch).to(cfg.device)
        q = torch.randint(0, N_QUALITIES, (cfg.batch,), generator=gen).to(cfg.device)
        xn = model.normalise(x)
        x_hat, bits = model(xn, q)
        rd = model.rd_loss(x_hat, xn, bits, q)
        opt.zero_grad()
        rd["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.epoch_steps == 0 or step == cfg.steps:
            row = {"step": step, "minutes": round((time.time() - started) / 60, 2), "loss": float(rd["loss"].detach()),
                   "val": estimate_rd(model, val) if val else []}
            history.append(row)
            log(json.dumps(row))
            _save_checkpoint(ckpt, model, opt, step, history, time.time() - started)
    _save_checkpoint(ckpt, model, opt, step, history, time.time() - started)
    if cfg.export:
        export(model, cfg, step, history, time.time() - started, train_files, val_files, val, log)
    return model


def export(model, cfg: TrainConfig, step, history, seconds, train_files, val_files, val, log=print) -> None:
    """Write safetensors weights and a Markdown model card beside them."""
    model.eval().cpu()
    earlier = lineage(cfg.init) if cfg.init else []
    meta = {"tcube_model": cfg.name, "steps": str(step), "train_files": json.dumps(train_files),
            "holdout": str(cfg.holdout), "train_config": json.dumps(asdict(cfg)), "lineage": json.dumps(earlier)}
    path = check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    digest = save_weights(model, path, meta)
    rows = coded_rd(model, val) if val else []
    card = [
        f"# {cfg.name}", "",
        f"Architecture `{cfg.arch}`: analysis widths {model.config.widths}, kernels {model.config.kernels}, "
        f"{model.config.m} latent channels" + (f", {model.config.nh} hyper-latent channels" if cfg.arch == "hp" else "")
        + "; "
        f"{sum(p.numel() for p in model.parameters())} parameters.",
        f"Weights: `{path.name}`, SHA-256 `{digest}`.", "",
        "## Training", "",
        *[f"- Earlier stage {i + 1}: `{c}`" for i, c in enumerate(earlier)],
        f"- Command: `{cfg.command}`",
        f"- Steps: {step} of batch {cfg.batch}, crops {cfg.crop}x{cfg.crop}, Adam lr {cfg.lr}, "
        f"random quality 1..16 per sample, seed {cfg.seed}",
        f"- Time: {seconds / 60:.1f} min on {cfg.device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}",
        f"- Training data ({len(train_files)} cubes, Copernicus Sentinel-2): " + ", ".join(train_files),
        f"- Held out for validation (place `{cfg.holdout}`): " + ", ".join(val_files), "",
        "## Validation (held-out place, real entropy-coded bytes, PSNR per REFERENCE.md)", "",
        "| quality | bpppb | PSNR 10k (dB) | PSNR full (dB) |", "|---|---|---|---|",
        *[f"| {r['quality']} | {r['bpppb']:.4f} | {r['psnr_10k']:.2f} | {r['psnr_full']:.2f} |" for r in rows],
        "", "## Training curve (estimated rates on the held-out place)", "",
        "```", *[json.dumps(h) for h in history], "```", "",
    ]
    path.with_suffix(".md").write_text("\n".join(card))
    log(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB), card {path.with_suffix('.md')}")
