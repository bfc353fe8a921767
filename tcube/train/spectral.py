"""Training of ``tec-pc`` (KLT per frame + a learned codec shared by the components) on every band set.

Each step draws one group of the corpus (:mod:`tcube.train.corpus`; groups are drawn in proportion
to the square root of their size, so small sets count), a batch of random crops of it with flips
and rotations, and per crop a quality step. Crops go through their own KLT, and the loss is the
estimated rate (bits per pixel per band) plus ``lmbda`` times the squared error in units of the
step, which makes one trade-off serve every quality: the step sets it.

Resumable (``OUT/checkpoint.pt``), exportable to safetensors with a model card, like
:mod:`tcube.train.trainer`, whose configuration it shares.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from tcube.models.pc import AMP_STEPS, spectral_fit
from tcube.models.registry import build_model, copy_matching, load_init
from tcube.outputs import SAFETENSORS, check_file_output
from tcube.train.corpus import HOLDOUT, Group, corpus, split
from tcube.train.trainer import TrainConfig, _lr, _save_checkpoint

#: Step exponents drawn in training (the step is 2 ** (e / 4) digital numbers): a margin on
#: both sides of the 16 qualities.
TRAIN_EXPONENTS = (10, 48)
#: Weight of the squared error (in steps) against bits per pixel per band.
LMBDA = 10.0


class GroupSampler:
    """Batches of random crops from one group at a time (groups drawn by the square root of size)."""

    def __init__(self, groups: list[Group], crop: int, seed: int):
        self.groups = [g for g in groups if min(g.frames.shape[-2:]) >= 32]
        w = np.sqrt([g.values for g in self.groups])
        self.p = w / w.sum()
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[np.ndarray, str]:
        g = self.groups[self.rng.choice(len(self.groups), p=self.p)]
        n, c, h, w = g.frames.shape
        s = min(self.crop, h // 16 * 16, w // 16 * 16)
        out = np.empty((size, c, s, s), np.float64)
        for i in range(size):
            f = g.frames[self.rng.integers(n)]
            y, x = self.rng.integers(0, h - s + 1), self.rng.integers(0, w - s + 1)
            crop = np.rot90(f[:, y: y + s, x: x + s], k=int(self.rng.integers(4)), axes=(1, 2))
            out[i] = crop[:, :, ::-1] if self.rng.random() < 0.5 else crop
        return out, g.name


def step_inputs(x: torch.Tensor, exponents: torch.Tensor, drop: float) -> tuple[torch.Tensor, ...]:
    """Components in steps, amplitude planes and coded flags of crops ``x`` (B, C, H, W) float64."""
    _, _, comps, amp = spectral_fit(x)
    rel = (amp - AMP_STEPS * exponents.view(-1, 1) / 4) / AMP_STEPS
    step = 2.0 ** (exponents.view(-1, 1, 1, 1) / 4)
    return (comps / step).float(), rel.float(), rel >= drop


def train_pc(cfg: TrainConfig, log=print, lmbda: float = LMBDA):
    """Train (or resume) ``tec-pc`` as ``cfg`` says (``cfg.data``: a corpus file or data folder;
    ``cfg.holdout``: comma-separated names held out, default :data:`HOLDOUT`)."""
    if cfg.export:
        check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    holdout = tuple(cfg.holdout.split(",")) if cfg.holdout and cfg.holdout != "0080717" else HOLDOUT
    train_groups, held = split(corpus(cfg.data[0]), holdout)
    log(f"training groups: {len(train_groups)}; held out: {', '.join(g.name for g in held)}")
    model = build_model("pc", **cfg.model).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt = out / "checkpoint.pt"
    step, history, elapsed = 0, [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=cfg.device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, history, elapsed = state["step"], json.loads(state["history"]), state["elapsed"]
        log(f"resumed from {ckpt} at step {step}")
    elif cfg.init:
        copied = copy_matching(load_init(cfg.init), model)
        log(f"initialised {len(copied)} of {len(model.state_dict())} tensors from {cfg.init}")
    sampler = GroupSampler(train_groups, cfg.crop, cfg.seed + step)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    started = time.time() - elapsed
    model.train()
    run = {"loss": 0.0, "bpppb": 0.0, "mse": 0.0, "n": 0}
    while step < cfg.steps:
        if cfg.max_minutes and time.time() - started > 60 * cfg.max_minutes:
            log(f"time budget of {cfg.max_minutes} min reached at step {step}")
            break
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        x, _ = sampler.batch(cfg.batch)
        e = torch.randint(*TRAIN_EXPONENTS, (cfg.batch,), generator=gen).double()
        u, plane, coded = step_inputs(torch.from_numpy(x), e, model.config.drop)
        u, plane, coded = u.to(cfg.device), plane.to(cfg.device), coded.to(cfg.device)
        u_hat, bits = model(u, plane, coded)
        bpppb = bits / u[0].numel()
        mse = (u_hat - u).pow(2).flatten(1).mean(1)
        loss = (bpppb + lmbda * mse).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run["loss"] += float(loss)
        run["bpppb"] += float(bpppb.mean())
        run["mse"] += float(mse.mean())
        run["n"] += 1
        if step % cfg.epoch_steps == 0 or step == cfg.steps:
            row = {"step": step, "minutes": round((time.time() - started) / 60, 2),
                   **{k: round(v / run["n"], 5) for k, v in run.items() if k != "n"}}
            run = {"loss": 0.0, "bpppb": 0.0, "mse": 0.0, "n": 0}
            history.append(row)
            log(json.dumps(row))
            _save_checkpoint(ckpt, model, opt, step, history, time.time() - started)
    _save_checkpoint(ckpt, model, opt, step, history, time.time() - started)
    log(json.dumps({"config": asdict(cfg)}))
    return model, step, history, time.time() - started, train_groups, held
