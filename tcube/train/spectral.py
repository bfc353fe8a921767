"""Training of ``tec-pc`` (KLT per frame + a learned codec shared by the components) on every band set.

Each step draws one group of the corpus (:mod:`tcube.train.corpus`; groups are drawn in proportion
to the square root of their size, so small sets count), a batch of random crops of it with flips
and rotations, and per crop a quality step. Crops go through their own KLT, and the loss is the
estimated rate (bits per pixel per band) plus ``TrainConfig.lmbda`` times the squared error in units of the
step, which makes one trade-off serve every quality: the step sets it.

Resumable (``OUT/checkpoint.pt``), exportable to safetensors with a model card, like
:mod:`tcube.train.trainer`, whose configuration it shares.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict

import numpy as np
import torch

from tcube.models.pc import AMP_STEPS, spectral_fit
from tcube.models.registry import build_model
from tcube.outputs import SAFETENSORS, check_file_output
from tcube.train.corpus import HOLDOUT, Group, corpus, split
from tcube.train.trainer import TrainConfig, _save_checkpoint, resume, start, within_budget

#: Step exponents drawn in training (the step is 2 ** (e / 4) digital numbers): a margin on
#: both sides of the 16 qualities.
TRAIN_EXPONENTS = (10, 48)


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


def train_pc(cfg: TrainConfig, log=print):
    """Train (or resume) ``tec-pc`` as ``cfg`` says (``cfg.data``: a corpus file or data folder;
    ``cfg.holdout``: comma-separated names held out, default :data:`HOLDOUT`)."""
    out = start(cfg)
    holdout = tuple(cfg.holdout.split(",")) if cfg.holdout and cfg.holdout != "0080717" else HOLDOUT
    train_groups, held = split(corpus(cfg.data[0]), holdout)
    log(f"training groups: {len(train_groups)}; held out: {', '.join(g.name for g in held)}")
    model = build_model("pc", **cfg.model).to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt = out / "checkpoint.pt"
    step, history, elapsed = resume(ckpt, cfg, model, opt, log)
    sampler = GroupSampler(train_groups, cfg.crop, cfg.seed + step)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    started = time.time() - elapsed
    model.train()
    run = {"loss": 0.0, "bpppb": 0.0, "mse": 0.0, "n": 0}
    while step < cfg.steps and within_budget(cfg, opt, step, started, log):
        x, _ = sampler.batch(cfg.batch)
        e = torch.randint(*TRAIN_EXPONENTS, (cfg.batch,), generator=gen).double()
        u, plane, coded = step_inputs(torch.from_numpy(x), e, model.config.drop)
        u, plane, coded = u.to(cfg.device), plane.to(cfg.device), coded.to(cfg.device)
        u_hat, bits = model(u, plane, coded)
        bpppb = bits / u[0].numel()
        mse = (u_hat - u).pow(2).flatten(1).mean(1)
        loss = (bpppb + cfg.lmbda * mse).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run["loss"] += float(loss.detach())
        run["bpppb"] += float(bpppb.detach().mean())
        run["mse"] += float(mse.detach().mean())
        run["n"] += 1
        if step % cfg.epoch_steps == 0 or step == cfg.steps:
            row = {"step": step, "minutes": round((time.time() - started) / 60, 2),
                   **{k: round(v / run["n"], 5) for k, v in run.items() if k != "n"}}
            run = {"loss": 0.0, "bpppb": 0.0, "mse": 0.0, "n": 0}
            history.append(row)
            log(json.dumps(row))
            _save_checkpoint(ckpt, model, opt, step, history, time.time() - started)
    _save_checkpoint(ckpt, model, opt, step, history, time.time() - started)
    if cfg.export:
        export_pc(model, cfg, step, history, time.time() - started, train_groups, held, log)
    return model


def earlier_training(init: str | None) -> tuple[int, float]:
    """(steps, seconds) recorded in the weights a run starts from (0, 0 without)."""
    if not init:
        return 0, 0.0
    from safetensors import safe_open

    from tcube.models.registry import weights_file

    with safe_open(str(weights_file(init)), framework="pt") as f:
        meta = f.metadata() or {}
    return int(meta.get("cumulative_steps", meta.get("steps", 0))), float(meta.get("cumulative_seconds", 0))


#: Qualities of the model card's validation table.
CARD_QUALITIES = (1, 4, 8, 12, 16)


def validation_sets(held: list[Group], dates: int = 8) -> dict[str, np.ndarray]:
    """Held-out groups as (T, C, H, W) cubes for validation: the terracodec place's seasons
    together, up to ``dates`` dates spread over each series."""
    sets: dict[str, list[np.ndarray]] = {}
    for g in held:
        key = g.name.rsplit("_", 1)[0] if g.name.startswith("terracodec/") else g.name
        pick = np.linspace(0, len(g.frames) - 1, min(dates, len(g.frames))).round().astype(int)
        sets.setdefault(key, []).append(g.frames[pick])
    return {k: np.concatenate(v) for k, v in sets.items()}


@torch.no_grad()
def coded_rd(model, cube: np.ndarray, qualities=CARD_QUALITIES) -> list[dict]:
    """Real entropy-coded bytes (side information included) and PSNR per quality on one cube."""
    from tcube.api import to_dtype
    from tcube.metrics import psnr_10k, psnr_full

    model.eval()
    x = torch.from_numpy(cube.astype(np.float64))
    rows = []
    for q in qualities:
        payloads = model.compress(x, q)
        n = sum(len(s) for p in payloads for s in p.streams.values())
        dec = to_dtype(model.decompress(payloads, q, *cube.shape[-2:], bands=cube.shape[1]).cpu().numpy(), "uint16")
        rows.append({"quality": q, "bpppb": 8 * n / cube.size, "psnr_10k": psnr_10k(cube, dec),
                     "psnr_full": psnr_full(cube, dec)})
    return rows


def time_line(seconds: float, device: str) -> str:
    """Model-card line: training time, machine and torch version."""
    return (f"- Time: {seconds / 60:.1f} min on {device} ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads), torch {torch.__version__}")


def data_lines(train_groups: list[Group], held: list[Group]) -> list[str]:
    """Model-card lines: the groups trained on and those held out."""
    return [f"- Training data ({len(train_groups)} groups of frames, Copernicus Sentinel-2, `shared/data/s2`): "
            + ", ".join(g.name for g in train_groups), "- Held out: " + ", ".join(g.name for g in held), ""]


def validation_tables(model, held: list[Group]) -> list[str]:
    """Model-card lines: per held-out set, real bytes and PSNR at :data:`CARD_QUALITIES`."""
    lines = []
    for name, cube in validation_sets(held).items():
        lines += [f"{name}: {cube.shape[0]} dates of {cube.shape[1]} bands, {cube.shape[2]} x {cube.shape[3]}", "",
                  "| quality | bpppb | PSNR 10k (dB) | PSNR full (dB) |", "|---|---|---|---|",
                  *[f"| {r['quality']} | {r['bpppb']:.4f} | {r['psnr_10k']:.2f} | {r['psnr_full']:.2f} |"
                    for r in coded_rd(model, cube)], ""]
    return lines


def export_pc(model, cfg: TrainConfig, step: int, history: list, seconds: float, train_groups: list[Group],
              held: list[Group], log=print) -> None:
    """Write safetensors weights and a Markdown model card (held-out RD with real bytes) beside them."""

    from tcube.models.registry import lineage, save_weights

    model.eval().cpu()
    earlier = lineage(cfg.init) if cfg.init else []
    before = earlier_training(cfg.init)
    total_steps, total_seconds = before[0] + step, before[1] + seconds
    meta = {"tcube_model": cfg.name, "steps": str(step), "train_files": json.dumps([g.name for g in train_groups]),
            "holdout": ", ".join(g.name for g in held), "train_config": json.dumps(asdict(cfg)),
            "lineage": json.dumps(earlier), "cumulative_steps": str(total_steps),
            "cumulative_seconds": f"{total_seconds:.0f}"}
    path = check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    digest = save_weights(model, path, meta)
    c = model.config
    card = [
        f"# {cfg.name}", "",
        f"Architecture `pc`: a KLT per frame (basis, means and amplitudes as side information), then one "
        f"learned codec shared by the components: analysis widths {c.widths}, {c.m} latent channels at "
        f"1/{model.stride}, hyperprior with {c.nh} channels conditioned on the previous component; "
        f"{sum(p.numel() for p in model.parameters())} parameters. Decoder exact (fixed point in float64).",
        f"Weights: `{path.name}`, SHA-256 `{digest}`.", "",
        "## Training", "",
        *[f"- Earlier stage {i + 1}: `{cmd}`" for i, cmd in enumerate(earlier)],
        f"- Command: `{cfg.command}`",
        f"- Steps: {step} of batch {cfg.batch}, crops up to {cfg.crop}x{cfg.crop} (one band set per step), "
        f"Adam lr {cfg.lr}, step exponents {TRAIN_EXPONENTS} drawn per crop, lambda {cfg.lmbda}, seed {cfg.seed}",
        time_line(seconds, cfg.device),
        f"- Cumulative over all stages: {total_steps} steps, {total_seconds / 3600:.2f} h",
        *data_lines(train_groups, held),
        "## Validation (held out, real entropy-coded bytes incl. side information, PSNR per REFERENCE.md)", "",
    ]
    card += validation_tables(model, held)
    card += ["## Training curve (estimated rates, squared error in steps)", "", "```",
             *[json.dumps(h) for h in history], "```", ""]
    path.with_suffix(".md").write_text("\n".join(card))
    log(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB), card {path.with_suffix('.md')}")
