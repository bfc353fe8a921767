"""Training of ``tec-hx``'s detail-coefficient predictor: a regression on (decoded, original) pairs.

Frames of the corpus (random crops, every band set) go through the spectral transform and the
HEVC engine at every quality. The predictor gives the coefficients of each component's own detail
bands from features the decoder computes from that component alone (:meth:`HybridCodec.predict`);
the prediction is linear in the weights, so the squared error of the components after the
predicted correction is quadratic in them: per quality, the weights solve the normal equations
summed over every frame and component (ridge-regularised). Closed form: minutes on a CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import numpy as np
import torch

from tcube.models.base import N_QUALITIES
from tcube.models.hx import FEATURES, RADII, Grams, HybridCodec, HybridConfig, default_steps, detail_bands
from tcube.outputs import SAFETENSORS, check_file_output
from tcube.train.corpus import Group, corpus, split
from tcube.train.spectral import data_lines, time_line, validation_tables
from tcube.train.trainer import TrainConfig

#: Ridge regularisation relative to the mean diagonal of the normal equations.
RIDGE = 1e-3


def sample_frames(groups: list[Group], count: int, crop: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``count`` random crops (C, h, w) of random frames, groups drawn in proportion to the square
    root of their size (small sets are not drowned)."""
    rng = np.random.default_rng(seed)
    weight = np.sqrt([g.values for g in groups])
    out = []
    for _ in range(count):
        g = groups[rng.choice(len(groups), p=weight / weight.sum())]
        frame = g.frames[rng.integers(len(g.frames))]
        h, w = frame.shape[-2:]
        r, c = rng.integers(max(1, h - crop + 1)), rng.integers(max(1, w - crop + 1))
        out.append((g.name, frame[:, r: r + crop, c: c + crop].astype(np.float64)))
    return out


def normal_equations(model: HybridCodec, x: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """The normal equations of the predictor's weights at ``quality`` from one frame: the squared
    error of the decoded components after adding the predicted correction of their own detail is
    quadratic in the weights (the prediction is linear in them). Normalised by the frame's squared
    error, so that every frame counts alike."""
    planes = model.code_planes(torch.from_numpy(x[None]), quality)
    decoded, err = planes.decoded, planes.target - planes.decoded
    bands = detail_bands(decoded)
    grams = Grams(bands)
    k, pixels = len(decoded), decoded[0].size
    n = len(RADII) * FEATURES
    lhs, rhs = np.zeros((n, n)), np.zeros(n)
    scale = 1.0 / max(float((err**2).mean()), 1e-6) / pixels / k
    for j in range(k):
        design = np.zeros((pixels, n))
        for b, r in enumerate(RADII):
            h = bands[j][b].ravel().astype(np.float64) / float((2 * r + 1) ** 2)
            for m, f in enumerate(model.features(grams[(b, j, j)], planes.side.qp, pixels, r)):
                design[:, b * FEATURES + m] = f * h
        lhs += scale * design.T @ design
        rhs += scale * design.T @ err[j].ravel()
    return lhs, rhs


def fit_predictor(normal: dict[int, tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
    """Weights (N_QUALITIES, bands, FEATURES) solving each quality's normal equations, with the
    columns scaled to unit diagonal and a ridge of :data:`RIDGE` on each."""
    w = torch.zeros(N_QUALITIES, len(RADII), FEATURES, dtype=torch.float64)
    for q, (lhs, rhs) in normal.items():
        scale = 1.0 / np.sqrt(np.maximum(np.diag(lhs), 1e-12))
        solved = scale * np.linalg.solve(scale[:, None] * lhs * scale + RIDGE * np.eye(len(lhs)), scale * rhs)
        w[q - 1] = torch.from_numpy(solved.reshape(len(RADII), FEATURES))
    return w


def train_hx(cfg: TrainConfig, log=print) -> HybridCodec:
    """Fit the predictor on ``cfg.steps`` random crops (``cfg.crop`` pixels a side) of the
    corpus at every quality; export weights and a model card to ``cfg.export``."""
    started = time.time()
    groups = [g for source in cfg.data for g in corpus(source)]
    train_groups, held = split(groups) if cfg.holdout else (groups, [])
    model = HybridCodec(HybridConfig(arch="hx", steps=default_steps()))
    n = len(RADII) * FEATURES
    normal = {q: (np.zeros((n, n)), np.zeros(n)) for q in range(1, N_QUALITIES + 1)}
    frames = sample_frames(train_groups, cfg.steps, cfg.crop, cfg.seed)
    for i, (name, x) in enumerate(frames):
        for q in range(1, N_QUALITIES + 1):
            lhs, rhs = normal_equations(model, x, q)
            normal[q][0][...] += lhs
            normal[q][1][...] += rhs
        log(json.dumps({"frame": i + 1, "of": len(frames), "group": name, "bands": x.shape[0],
                        "minutes": round((time.time() - started) / 60, 2)}))
    model.predictor.copy_(fit_predictor(normal))
    if cfg.export:
        export_hx(model, cfg, len(frames), time.time() - started, train_groups, held, log)
    return model


def export_hx(model: HybridCodec, cfg: TrainConfig, frames: int, seconds: float, train_groups: list[Group],
              held: list[Group], log=print) -> None:
    """Write safetensors weights and a model card (held-out RD with real bytes) beside them."""
    from tcube.models.registry import save_weights

    meta = {"tcube_model": cfg.name, "steps": str(frames), "train_files": json.dumps([g.name for g in train_groups]),
            "holdout": ", ".join(g.name for g in held), "train_config": json.dumps(asdict(cfg)),
            "cumulative_steps": str(frames), "cumulative_seconds": f"{seconds:.0f}"}
    path = check_file_output(cfg.export, SAFETENSORS, overwrite=True)
    digest = save_weights(model, path, meta)
    card = [
        f"# {cfg.name}", "",
        "Architecture `hx`: a per-date exact integer KLT, the components as the frames of one HEVC stream "
        f"(x265 preset {model.preset}, constant QP, 12-bit gray; the clear dates of one call share one KLT and code "
        f"each component's clear dates as one video at preset {model.time_preset}, bright dates each on its own "
        "with its own KLT, and each date's transfer also borrows the previous date's decoded detail), and a "
        "cross-component detail transfer whose "
        f"coefficients the encoder fits per frame; a regression predicts the coefficients of each component's own "
        f"detail from its decoded energy ({model.predictor.numel()} weights: {N_QUALITIES} qualities x {len(RADII)} "
        f"bands x {FEATURES} features), and only the correction of the prediction travels. Decoder exact "
        "(HEVC is bit-exact by standard; the rest is integer arithmetic).",
        f"Weights: `{path.name}`, SHA-256 `{digest}`.", "",
        "## Training", "",
        f"- Command: `{cfg.command}`",
        f"- Data: {frames} random crops up to {cfg.crop} x {cfg.crop} (seed {cfg.seed}), each coded at the "
        f"{N_QUALITIES} qualities; per quality, the weights minimise the squared error of the decoded "
        f"components after the predicted transfer (normal equations over every frame and component, ridge {RIDGE})",
        time_line(seconds, "cpu"),
        *data_lines(train_groups, held),
        "## Validation (held out, real bytes incl. side information, PSNR per REFERENCE.md)", "",
    ]
    card += validation_tables(model, held)
    path.with_suffix(".md").write_text("\n".join(card))
    log(f"exported {path} ({path.stat().st_size / 1e3:.1f} kB), card {path.with_suffix('.md')}")
