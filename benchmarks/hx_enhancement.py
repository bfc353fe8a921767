"""Decoder-side enhancement variants of ``tec-hx`` on held-out data, every side bit counted.

    python benchmarks/hx_enhancement.py [DATA] [--sets NAME ...] [--qualities 4 6 8 10 12 14]
        [--out benchmarks/results] [--train-minutes 10] [--cache /tmp/tcube_hx_enhancement]

Every frame of the held-out sets (:func:`heldout.held_out_sets`: terracodec place 0080717, the
WorldCereal series 00002806639B424A at 10 m and 20 m, crops of the s2cloudless L1C tile; frames
larger than ``--crop`` are cropped) goes once per quality through tec-hx's spectral transform and
HEVC engine (:meth:`HybridCodec.code_planes`). Every variant then corrects the same decoded
components; its rate is the HEVC streams plus tec-hx's side information with the variant's own
syntax in place of the shipped detail fields (Exp-Golomb, bits exact, rounded up to whole bytes per
frame; no container), its quality the "10k" and full-range PSNR of the reconstructed bands
(:func:`tcube.metrics.frame_psnr`, REFERENCE.md). BD-rates (:func:`tcube.metrics.bd_rate` over
:data:`tcube.bench.BD_RANGE`) against ``none`` and against ``ls``. Variants:

- ``none``: the decoded components (the shipped syntax with every transfer off);
- ``ls``: tec-hx as shipped (``_choose_detail`` / ``enhance``: per-chunk least squares of the 3 x 3
  and 7 x 7 box-difference bands of the component and of the 4 leading components, coefficients
  coded relative to the learned predictor); ``ls-nopred``: the same with the predictor at zero,
  recomputed here (a check of this script's syntax and arithmetic against the shipped code);
- ``cls2`` / ``cls4``: the same transfer with coefficients per local-activity class (2 or 4
  classes of equal population; activity: 5 x 5 sum of the absolute 3 x 3 band of the decoded
  leading component, so the decoder repeats the classification), per class a flag, a grid and the
  coefficients, the shipped rate/distortion rule;
- ``ls-r4``: four bands per source (box radii 1, 2, 3, 5); ``ls-lead8``: the 8 leading components;
- ``nn``: a small convolutional network trained offline on (decoded, original) pairs of the
  TRAINING sets only (random crops of every set but the held-out places and WorldCereal, several
  qualities):
  input the two detail bands of the component and of 4 leading components, signs of the leading
  ones normalised by their decoded correlation with the component, all in units of the engine's
  quantiser step through ``asinh``; output the component's error in quantiser steps; odd in its
  input (bias-free convolutions, tanh), so KLT sign flips do not matter; quality enters through
  per-channel gains. Sent: nothing (``nn``), a per-component gain (``nn-gain``: flag, grid and the
  gain's correction of 1), or the network's output as one more regressor of the least-squares
  transfer, predicted at gain 1 (``ls+nn``, ``cls4+nn``, ``ls-r4+nn``);
- ``ls>nn``: the shipped transfer (predictor at zero), then a second network of the same shape,
  trained the same way on the components AFTER the transfer, with the transfer's correction as a
  third input channel of its own (it learns what the per-scene fit leaves), at a per-component gain
  predicted 1 (flag, grid, correction).

Each network trains for ``--train-minutes`` of wall clock on the CPU (data included); weights are
cached under ``--cache`` (not in the package). Writes ``hx_enhancement.csv`` (per set,
variant, quality) and ``hx_enhancement.md`` (BD-rates, side bytes, decode operations per pixel).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tcube.bench import BD_RANGE, curves
from tcube.entropy.golomb import signed_bits
from tcube.metrics import bd_rate, frame_psnr
from tcube.models import load_model
from tcube.models.hx import (
    BASIS_ORDER,
    COEF_FRAC,
    COEF_MAX,
    LOW_ORDER,
    MEAN_ORDER,
    OUT_FRAC,
    SHIFT_BITS,
    HybridCodec,
    Side,
)
from tcube.train.corpus import corpus, split
from tcube.train.hybrid import sample_frames

sys.path.insert(0, str(Path(__file__).parent))
from common import write_rows  # noqa: E402
from heldout import held_out_sets  # noqa: E402

VARIANTS = ("none", "ls", "ls-nopred", "cls2", "cls4", "ls-r4", "ls-lead8", "nn", "nn-gain", "ls+nn", "cls4+nn",
            "ls-r4+nn", "ls>nn")
#: Variants of the network trained on the decoded components (the rest of "nn" ones: after the transfer).
RAW_NN = ("nn", "nn-gain", "ls+nn", "cls4+nn", "ls-r4+nn")
#: Input channels of the network: 2 bands of the component (3 with its least-squares correction for
#: the network that follows the transfer), 2 of each of NN_LEADS leading components.
NN_LEADS = 4
#: Qualities the network trains on (every quality a held-out run uses lies inside).
TRAIN_QUALITIES = tuple(range(3, 16))


# -- side information ---------------------------------------------------------------------------------
def header_bits(side: Side) -> int:
    """Bits of tec-hx's side information before its detail fields (exactly what :meth:`Side.pack` writes)."""
    k = len(side.basis)
    return (4 + signed_bits([side.plane_exp]) + 6 + 4 + 2 * (k + 1).bit_length() - 1
            + signed_bits(side.mean.tolist(), MEAN_ORDER)
            + signed_bits(side.basis.ravel().tolist(), max(0, side.frac - BASIS_ORDER))
            + signed_bits(side.low.tolist(), LOW_ORDER))


def qstep(qp: int) -> float:
    """The engine's quantiser step in 12-bit levels at ``qp``."""
    return 2.0 ** ((qp - 4) / 6)


# -- detail bands and classes -------------------------------------------------------------------------
def box_sum(planes: np.ndarray, radius: int) -> np.ndarray:
    """Sums over (2r+1)^2 boxes of (K, H, W) planes, edges replicated (float64, exact on integers)."""
    n = 2 * radius + 1
    p = np.pad(np.asarray(planes, np.float64), [(0, 0), (radius, radius), (radius, radius)], mode="edge")
    c = np.concatenate([np.zeros_like(p[:, :1]), np.cumsum(p, axis=1)], axis=1)
    rows = c[:, n:] - c[:, :-n]
    c = np.concatenate([np.zeros_like(rows[:, :, :1]), np.cumsum(rows, axis=2)], axis=2)
    return c[:, :, n:] - c[:, :, :-n]


def box_detail(planes: np.ndarray, radius: int) -> np.ndarray:
    """(2r+1)^2 L - (box sum of L): the shipped detail band for radius 1 and 3, any radius here."""
    return (2 * radius + 1) ** 2 * np.asarray(planes, np.float64) - box_sum(planes, radius)


def class_map(lead: np.ndarray, n: int) -> np.ndarray:
    """Activity class (0..n-1, equal population) of each pixel of a decoded leading component
    (H, W): the 5 x 5 sum of the absolute 3 x 3 detail band; thresholds are order statistics the
    decoder computes from the same decoded plane."""
    if n == 1:
        return np.zeros(lead.shape, np.int64)
    act = box_sum(np.abs(box_detail(lead[None], 1)), 2)[0]
    order = np.sort(act.ravel())
    thresholds = [order[(i * order.size) // n] for i in range(1, n)]
    return np.searchsorted(np.array(thresholds), act, side="right")


# -- least-squares transfer with the shipped rate/distortion rule -----------------------------------------
def choose(gram: np.ndarray, cross: np.ndarray, pred: np.ndarray, lam: float) -> tuple[np.ndarray, int]:
    """Integer coefficients (:data:`COEF_FRAC` fractional bits) and the bits they cost (flag included):
    the prediction ``pred`` when sending does not pay, else the best grid and corrections. The rule
    of :meth:`HybridCodec._choose_detail` (one bit of margin per step)."""
    pred = np.asarray(pred, np.float64)
    c0 = pred / 2.0**COEF_FRAC
    best, best_cost, best_bits = pred, -(2 * c0 @ cross - c0 @ gram @ c0), 1
    if not np.trace(gram) > 0:
        return best, best_bits
    fit = np.linalg.lstsq(gram + 1e-9 * np.eye(len(gram)) * np.trace(gram), cross, rcond=None)[0]
    ideal = fit * 2.0**COEF_FRAC
    for shift in range(1 << SHIFT_BITS):
        res = np.floor((ideal - pred) / 2.0**shift + 0.5)
        coef = np.clip(pred + res * 2.0**shift, -COEF_MAX, COEF_MAX)
        c = coef / 2.0**COEF_FRAC
        bits = 1 + SHIFT_BITS + signed_bits(res.astype(np.int64).tolist())
        cost = lam * bits - (2 * c @ cross - c @ gram @ c)
        if cost < best_cost - lam:
            best, best_cost, best_bits = coef, cost, bits
    return best, best_bits


@dataclass(frozen=True)
class LsSpec:
    """A least-squares transfer: box radii of the bands, leading components, activity classes,
    and whether the network's output is one more regressor (predicted at gain 1)."""

    radii: tuple[int, ...] = (1, 3)
    leads: int = 4
    classes: int = 1
    with_nn: bool = False
    with_bands: bool = True


def ls_transfer(decoded: np.ndarray, target: np.ndarray, spec: LsSpec, nn_out: np.ndarray | None = None,
                lam: float | None = None) -> tuple[np.ndarray, int]:
    """Corrected components (levels with :data:`OUT_FRAC` fractional bits, as float64 levels) and the
    side bits of the transfer ``spec`` (per component and class: flag, grid, corrections); ``lam``
    (squared levels per bit) defaults to the shipped slope of the engine's error."""
    k = len(decoded)
    err = target - decoded
    if lam is None:
        lam = 2 * math.log(2) * max(float((err**2).mean()), 1e-3)
    bands = {r: box_detail(decoded, r) for r in spec.radii} if spec.with_bands else {}
    classes = class_map(decoded[0], spec.classes)
    masks = [classes == c for c in range(spec.classes)]
    out = decoded.astype(np.float64) * 2.0**OUT_FRAC
    down = 2.0 ** (COEF_FRAC - OUT_FRAC)
    bits = 0
    for j in range(k):
        srcs = sorted(set(range(min(spec.leads, k))) | {j})
        regs = [bands[r][s] for s in srcs for r in spec.radii] if spec.with_bands else []
        pred = [0.0] * len(regs)
        if spec.with_nn:
            regs.append(nn_out[j])
            pred.append(2.0**COEF_FRAC)
        x = np.stack(regs).reshape(len(regs), -1)
        e = err[j].ravel()
        for m in masks:
            mm = m.ravel()
            xm = x[:, mm]
            coef, b = choose(xm @ xm.T, xm @ e[mm], np.array(pred), lam)
            bits += b
            if np.any(coef):
                flat = out[j].reshape(-1)  # a view
                flat[mm] += np.floor(coef @ xm / down + 0.5)
    return out / 2.0**OUT_FRAC, bits


# -- the learned corrector ------------------------------------------------------------------------------
class OddNet(nn.Module):
    """Bias-free 3 x 3 convolutions with tanh between them (odd in the input), per-channel gains
    from the quantiser step (``z``); output in quantiser steps."""

    def __init__(self, n_in: int, width: int = 24, depth: int = 4):
        super().__init__()
        chans = [n_in] + [width] * (depth - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in zip(chans, chans[1:]))
        self.film = nn.Linear(1, width * (depth - 1))
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.width, self.depth = width, depth

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gains = torch.exp(self.film(z)).view(len(x), self.depth - 1, self.width, 1, 1)
        for i, conv in enumerate(self.convs[:-1]):
            x = torch.tanh(conv(x) * gains[:, i])
        return self.convs[-1](x)[:, 0]

    def macs(self) -> int:
        """Multiply-accumulates per pixel and component."""
        return sum(c.weight.numel() for c in self.convs)


def nn_features(levels: np.ndarray, qp: int, corr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per component, the network's own channels (K, 2 or 3, H, W) float32: the bands
    ``asinh(band / (gain * step))`` of ``levels`` and, where given, ``asinh(corr / step)`` of the
    transfer's correction ``corr``; and the sign of each pair's 3 x 3 band correlation (K, K)."""
    bands = np.stack([box_detail(levels, 1), box_detail(levels, 3)], axis=1)
    feats = np.arcsinh(bands / (np.array([9.0, 49.0])[None, :, None, None] * qstep(qp))).astype(np.float32)
    if corr is not None:
        feats = np.concatenate([feats, np.arcsinh(corr / qstep(qp))[:, None].astype(np.float32)], axis=1)
    r1 = bands[:, 0].reshape(len(bands), -1)
    signs = np.where(r1 @ r1.T >= 0, 1.0, -1.0).astype(np.float32)
    return feats, signs


def nn_inputs(feats: np.ndarray, signs: np.ndarray, j: int, rows: slice = slice(None), cols: slice = slice(None)
              ) -> np.ndarray:
    """Input (n_in, h, w) of component ``j``: its channels, then the bands of the first NN_LEADS other
    components (sign-normalised; zero where there are fewer)."""
    k, n = feats.shape[:2]
    others = [s for s in range(k) if s != j][:NN_LEADS]
    own = feats[j][:, rows, cols]
    x = np.zeros((n_inputs(n), *own.shape[1:]), np.float32)
    x[:n] = own
    for i, s in enumerate(others):
        x[n + 2 * i: n + 2 + 2 * i] = signs[j, s] * feats[s][:2, rows, cols]
    return x


def n_inputs(own: int) -> int:
    return own + 2 * NN_LEADS


def z_of(qp: int) -> float:
    return (qp - 24) / 12.0


@torch.no_grad()
def nn_correction(net: OddNet, levels: np.ndarray, qp: int, corr: np.ndarray | None = None) -> np.ndarray:
    """The network's correction of every component (K, H, W), in levels, rounded to the decoder's
    :data:`OUT_FRAC` fractional bits."""
    feats, signs = nn_features(levels, qp, corr)
    x = torch.from_numpy(np.stack([nn_inputs(feats, signs, j) for j in range(len(levels))]))
    z = torch.full((len(x), 1), z_of(qp))
    out = net(x, z).double().numpy() * qstep(qp)
    return np.floor(out * 2.0**OUT_FRAC + 0.5) / 2.0**OUT_FRAC


def training_items(model: HybridCodec, data: str, frames: int, crop: int, seed: int, post: bool, log
                   ) -> list[dict]:
    """(features, signs, error in steps, z) of random crops of the training sets (no held-out place,
    no WorldCereal), each at 3 random qualities; with ``post``, of the components after the
    least-squares transfer (and its correction as a feature)."""
    groups, held = split(corpus(data))
    groups = [g for g in groups if "worldcereal" not in g.name and min(g.frames.shape[-2:]) >= 96]
    log(f"training groups: {len(groups)} ({', '.join(sorted({g.name.split('/')[0] for g in groups}))}); "
        f"held out: {', '.join(g.name for g in held)}")
    rng = np.random.default_rng(seed)
    items = []
    for i, (_, x) in enumerate(sample_frames(groups, frames, crop, seed)):
        for q in rng.choice(TRAIN_QUALITIES, 3, replace=False):
            planes = model.code_planes(torch.from_numpy(x[None]), int(q))
            levels, corr = planes.decoded.astype(np.float64), None
            if post:
                levels, _ = ls_transfer(planes.decoded, planes.target, LsSpec())
                corr = levels - planes.decoded
            feats, signs = nn_features(levels, planes.side.qp, corr)
            err = ((planes.target - levels) / qstep(planes.side.qp)).astype(np.float32)
            items.append({"feats": feats, "signs": signs, "err": err, "z": z_of(planes.side.qp)})
        if (i + 1) % 16 == 0:
            log(f"  coded {i + 1}/{frames} training crops")
    return items


def batch(items: list[dict], rng: np.random.Generator, size: int, patch: int) -> tuple[torch.Tensor, ...]:
    xs, ys, zs = [], [], []
    for _ in range(size):
        it = items[rng.integers(len(items))]
        k, h, w = it["err"].shape
        j = int(rng.integers(k))
        r, c = rng.integers(h - patch + 1), rng.integers(w - patch + 1)
        rows, cols = slice(r, r + patch), slice(c, c + patch)
        sign = 1.0 if rng.random() < 0.5 else -1.0  # odd network: a no-op, kept for other architectures
        xs.append(sign * nn_inputs(it["feats"], it["signs"], j, rows, cols))
        ys.append(sign * it["err"][j, rows, cols])
        zs.append([it["z"]])
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), torch.tensor(zs, dtype=torch.float32)


def train_nn(args, log, post: bool = False) -> tuple[OddNet, dict]:
    """The network (``post``: the one that follows the least-squares transfer) from the cache, or
    trained for ``args.train_minutes`` and cached."""
    cache = Path(args.cache)
    tag = (f"oddnet{'_post' if post else ''}_w{args.width}_d{args.depth}_f{args.train_frames}"
           f"_m{args.train_minutes:g}_s{args.seed}")
    path, meta_path = cache / f"{tag}.pt", cache / f"{tag}.json"
    net = OddNet(n_inputs(3 if post else 2), args.width, args.depth)
    if path.exists() and meta_path.exists() and not args.retrain:
        net.load_state_dict(torch.load(path))
        meta = json.loads(meta_path.read_text())
        log(f"network from {path}: {meta}")
        return net.eval(), meta
    torch.manual_seed(args.seed)
    started = time.time()
    model = load_model("tec-hx", "cpu")
    items = training_items(model, args.data, args.train_frames, 128, args.seed, post, log)
    items = [it for it in items if min(it["err"].shape[1:]) >= args.patch]
    val_items, fit_items = items[: len(items) // 10], items[len(items) // 10:]
    data_s = time.time() - started
    rng = np.random.default_rng(args.seed)
    val = [batch(val_items, np.random.default_rng(1000 + i), 32, args.patch) for i in range(4)]
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    budget = 60 * args.train_minutes - data_s  # wall clock: the schedule follows time, not steps
    step, t0 = 0, time.time()
    log(f"  {len(fit_items)} training items, {data_s:.0f} s of data; {budget:.0f} s of training")
    while step < args.max_steps and (frac := (time.time() - t0) / budget) < 1.0:
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * frac))
        x, y, z = batch(fit_items, rng, args.batch, args.patch)
        loss = ((net(x, z) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(f"  step {step} loss {loss.item():.4f} ({time.time() - started:.0f} s)")
    net.eval()
    with torch.no_grad():
        ratio = float(np.mean([((net(x, z) - y) ** 2).mean().item() / (y**2).mean().item() for x, y, z in val]))
    meta = {"steps": step, "batch": args.batch, "patch": args.patch, "items": len(fit_items),
            "train_frames": args.train_frames, "data_seconds": round(data_s), "seconds": round(time.time() - started),
            "val_mse_ratio": round(ratio, 4), "params": sum(p.numel() for p in net.parameters()),
            "macs_per_pixel": net.macs(), "threads": torch.get_num_threads()}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    meta_path.write_text(json.dumps(meta))
    log(f"trained network cached at {path}: {meta}")
    return net, meta


# -- measurement ------------------------------------------------------------------------------------------
def to_bands(levels: np.ndarray, side: Side) -> np.ndarray:
    """Bands (C, H, W) uint16 from corrected component levels (tec-hx's inverse transform and rounding)."""
    k, h, w = levels.shape
    fine = np.floor(levels * 2.0**OUT_FRAC + 0.5) + (side.low * 2**OUT_FRAC).astype(np.float64)[:, None, None]
    acc = side.basis.T.astype(np.float64) @ fine.reshape(k, -1)
    acc *= 2.0 ** (side.plane_exp - OUT_FRAC - side.frac)
    acc += side.mean.astype(np.float64)[:, None]
    return np.clip(np.floor(acc + 0.5), 0, 65535).astype(np.uint16).reshape(-1, h, w)


LS_SPECS = {"ls-nopred": LsSpec(), "cls2": LsSpec(classes=2), "cls4": LsSpec(classes=4),
            "ls-r4": LsSpec(radii=(1, 2, 3, 5)), "ls-lead8": LsSpec(leads=8),
            "ls+nn": LsSpec(with_nn=True), "cls4+nn": LsSpec(classes=4, with_nn=True),
            "ls-r4+nn": LsSpec(radii=(1, 2, 3, 5), with_nn=True),
            "nn-gain": LsSpec(with_nn=True, with_bands=False)}


def variants_of(model: HybridCodec, planes, quality: int, nets: dict[str, OddNet], names: tuple[str, ...]):
    """Per variant name: (corrected levels, side bytes, seconds of the encoder's fit and the correction)."""
    side, dec, target = planes.side, planes.decoded, planes.target
    k = len(dec)
    head = header_bits(side)
    none_bytes = len(side.pack())
    assert none_bytes == -(-(head + k) // 8), "header bit count differs from Side.pack"
    out = {"none": (dec.astype(np.float64), none_bytes, 0.0)}
    if "ls" in names:
        t = time.perf_counter()
        ls_side = Side(side.plane_exp, side.qp, side.frac, side.mean, side.basis, side.low,
                       model._choose_detail(dec, target, side.qp, quality))
        fine = model.enhance(dec.astype(np.uint16), ls_side, quality) / 2.0**OUT_FRAC
        out["ls"] = (fine, len(ls_side.pack()), time.perf_counter() - t)
    nn_out, nn_s = None, 0.0
    if "raw" in nets and any(n in RAW_NN for n in names):
        t = time.perf_counter()
        nn_out = nn_correction(nets["raw"], dec.astype(np.float64), side.qp)
        nn_s = time.perf_counter() - t
        if "nn" in names:
            out["nn"] = (dec + nn_out, -(-head // 8), nn_s)
    for name, spec in LS_SPECS.items():
        if name not in names or (spec.with_nn and nn_out is None):
            continue
        t = time.perf_counter()
        fine, bits = ls_transfer(dec, target, spec, nn_out)
        out[name] = (fine, -(-(head + bits) // 8), time.perf_counter() - t + (nn_s if spec.with_nn else 0.0))
    if "post" in nets and "ls>nn" in names:  # the transfer, then the network that knows its correction
        t = time.perf_counter()
        fine_ls, bits_ls = ls_transfer(dec, target, LsSpec())
        post = nn_correction(nets["post"], fine_ls, side.qp, fine_ls - dec)
        lam = 2 * math.log(2) * max(float(((target - dec) ** 2).mean()), 1e-3)
        fine, bits = ls_transfer(fine_ls, target, LsSpec(with_nn=True, with_bands=False), post, lam)
        out["ls>nn"] = (fine, -(-(head + bits_ls + bits) // 8), time.perf_counter() - t)
    return out


def eval_sets(data: str, names: list[str] | None, crop: int, dates: int) -> dict[str, np.ndarray]:
    """Held-out frames (N, C, h, w) per set, frames larger than ``crop`` cut into up to 4 crops."""
    out = {}
    for name, cube in held_out_sets(data, dates=dates).items():
        if names and name not in names:
            continue
        h, w = cube.shape[-2:]
        if max(h, w) <= crop + 16:
            out[name] = cube[..., :crop, :crop]
            continue
        corners = [(r, c) for r in range(0, h - crop + 1, crop) for c in range(0, w - crop + 1, crop)]
        pick = np.linspace(0, len(corners) - 1, min(4, len(corners))).round().astype(int)
        out[name] = np.concatenate([cube[:, :, r: r + crop, c: c + crop] for r, c in (corners[i] for i in pick)])
    return out


def ops_per_pixel(name: str, nets: dict[str, OddNet]) -> str:
    """Approximate decoder operations per pixel and component beyond HEVC and the inverse KLT: a
    band costs 6 (running box sums: 2 additions and 2 subtractions; a multiplication and a
    subtraction), a coefficient 2 (multiply-accumulate), the rounding 3; the activity classes 7 per
    pixel on the leading component (absolute value, 5 x 5 running sum, comparisons)."""
    def ls(radii: int, sources: int, extra: int = 0) -> int:
        return 6 * radii + 2 * radii * sources + 3 + extra

    fixed = {"none": (0, "nothing"), "ls": (ls(2, 5), "2 bands, <= 10 MAC"),
             "ls-nopred": (ls(2, 5), "2 bands, <= 10 MAC"),
             "cls2": (ls(2, 5, 7), "2 bands, <= 10 MAC, classes"), "cls4": (ls(2, 5, 7), "2 bands, <= 10 MAC, classes"),
             "ls-r4": (ls(4, 5), "4 bands, <= 20 MAC"), "ls-lead8": (ls(2, 9), "2 bands, <= 18 MAC")}
    if name in fixed:
        ops, what = fixed[name]
        return f"~{ops} ({what})"
    net = nets.get("raw" if name in RAW_NN else "post")
    if net is None:
        return ""
    macs, hidden = net.macs(), net.width * (net.depth - 1)
    # features: 2 bands (with the transfer's, 3 asinh), scaling and asinh of its own, 8 sign
    # multiplications of the leads' inputs; the output's scaling and rounding
    nn_ops = 2 * macs + hidden * 2 + 12 + 2 + 2 + 8 + 4
    extra = {"nn": 0, "nn-gain": 3, "ls+nn": ls(2, 5, 2) - 12, "cls4+nn": ls(2, 5, 9) - 12,
             "ls-r4+nn": ls(4, 5, 2) - 12, "ls>nn": ls(2, 5, 5) - 12}.get(name, 0)
    return f"~{nn_ops + extra} ({macs} MAC, {hidden} tanh{', + LS' if extra > 3 else ''})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/s2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--sets", nargs="*", help="only these held-out sets (default: all four)")
    parser.add_argument("--qualities", nargs="*", type=int, default=[4, 6, 8, 10, 12, 14])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--crop", type=int, default=256, help="side of the crops of large frames")
    parser.add_argument("--dates", type=int, default=8, help="dates per time series")
    parser.add_argument("--cache", default="/tmp/tcube_hx_enhancement", help="folder of the trained weights")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--train-minutes", type=float, default=10.0, help="data and training, wall clock")
    parser.add_argument("--train-frames", type=int, default=96)
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
    names = tuple(v for v in VARIANTS if v in args.variants or v == "none")
    nets, metas = {}, {}
    if any(n in RAW_NN for n in names):
        nets["raw"], metas["raw"] = train_nn(args, log)
    if "ls>nn" in names:
        nets["post"], metas["post"] = train_nn(args, log, post=True)
    model = load_model("tec-hx", "cpu")
    out = Path(args.out)
    rows, summary = [], []
    for set_name, frames in eval_sets(args.data, args.sets, args.crop, args.dates).items():
        log(f"{set_name}: {frames.shape}")
        per: dict[tuple[str, int], dict] = {}
        for q in args.qualities:
            for frame in frames:
                x = torch.from_numpy(frame[None].astype(np.float64))
                planes = model.code_planes(x, q)
                hevc_bytes = sum(map(len, planes.streams))  # one tile per frame: no tile lengths
                for name, (levels, side_bytes, secs) in variants_of(model, planes, q, nets, names).items():
                    rec = to_bands(levels, planes.side)
                    acc = per.setdefault((name, q), {"bytes": 0, "side": 0, "samples": 0, "p10": [], "pf": [],
                                                     "secs": 0.0})
                    acc["bytes"] += side_bytes + hevc_bytes
                    acc["side"] += side_bytes
                    acc["samples"] += frame.size
                    acc["p10"].append(float(frame_psnr(frame, rec, "10k")[0]))
                    acc["pf"].append(float(frame_psnr(frame, rec, "full")[0]))
                    acc["secs"] += secs
            log(f"  q{q}: " + ", ".join(f"{n} {np.mean(per[(n, q)]['p10']):.2f} dB "
                                        f"{8 * per[(n, q)]['bytes'] / per[(n, q)]['samples']:.4f}"
                                        for n in names if (n, q) in per))
        set_rows = [{"set": set_name, "codec": n, "setting": q, "bytes": a["bytes"], "side_bytes": a["side"],
                     "bpppb": 8 * a["bytes"] / a["samples"], "psnr_10k": float(np.mean(a["p10"])),
                     "psnr_full": float(np.mean(a["pf"])),
                     "enhance_us_per_pixel": 1e6 * a["secs"] / (a["samples"] / frames.shape[1])}
                    for (n, q), a in per.items()]
        rows += set_rows
        write_rows(rows, out / "hx_enhancement.csv")
        for metric in ("psnr_10k", "psnr_full"):
            cv = curves(set_rows, metric)
            for n in names:
                if n not in cv:
                    continue
                side = sum(r["side_bytes"] for r in set_rows if r["codec"] == n)
                total = sum(r["bytes"] for r in set_rows if r["codec"] == n)
                summary.append({"set": set_name, "shape": "x".join(map(str, frames.shape)), "metric": metric,
                                "variant": n, "bd_vs_none": round(bd_rate(*cv[n], *cv["none"], BD_RANGE), 2),
                                "bd_vs_ls": round(bd_rate(*cv[n], *cv["ls"], BD_RANGE), 2) if "ls" in cv else "",
                                "side_share": round(100 * side / total, 2)})
        write_markdown(summary, rows, metas, nets, args, names, out)
    log("done")


def write_markdown(summary: list[dict], rows: list[dict], metas: dict, nets: dict, args, names, out: Path
                   ) -> None:
    sets = list(dict.fromkeys(s["set"] for s in summary))
    shapes = {s["set"]: s["shape"] for s in summary}
    lines = ["# tec-hx decoder-side enhancement variants on held-out data", "",
             f"BD-rate (%, over {BD_RANGE[0]:g}-{BD_RANGE[1]:g} dB where both curves reach; negative: fewer bits) "
             f"of each variant against no enhancement (`none`) and against tec-hx as shipped (`ls`), PSNR in the "
             f"10k convention of REFERENCE.md (full range in brackets). Rate: HEVC streams + side information with "
             f"every coefficient bit (Exp-Golomb, whole bytes per frame), no container. Qualities "
             f"{' '.join(map(str, args.qualities))}; frames: " + ", ".join(f"{s} {shapes[s]}" for s in sets) + ".",
             "", "| variant | " + " | ".join(f"{s} vs none | {s} vs ls" for s in sets) + " | side % (first set) |"
             " decode ops / pixel / component |", "|---" * (2 + 2 * len(sets)) + "|---|"]
    get = {(s["set"], s["metric"], s["variant"]): s for s in summary}
    for n in names:
        cells = []
        for s in sets:
            a, b = get.get((s, "psnr_10k", n)), get.get((s, "psnr_full", n))
            if a is None:
                cells += ["", ""]
                continue
            cells += [f"{a['bd_vs_none']} ({b['bd_vs_none']})", f"{a['bd_vs_ls']} ({b['bd_vs_ls']})"]
        first = get.get((sets[0], "psnr_10k", n))
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {first['side_share'] if first else ''} | "
                     f"{ops_per_pixel(n, nets)} |")
    lines += ["", "Time of the encoder's fit plus the correction (us per pixel, all components, mean over qualities; "
              "2 CPU cores shared with other work, so only a rough guide):", ""]
    for s in sets:
        timing = {}
        for r in rows:
            if r["set"] == s:
                timing.setdefault(r["codec"], []).append(r["enhance_us_per_pixel"])
        lines.append(f"- {s}: " + ", ".join(f"{n} {np.mean(v):.2f}" for n, v in timing.items()))
    for key, meta in metas.items():
        what = ("`nn`, `nn-gain`, `ls+nn`, `cls4+nn`, `ls-r4+nn`: on the decoded components" if key == "raw" else
                "`ls>nn`: after the least-squares transfer, its correction as one more input")
        lines += ["", f"Network ({what}): {meta.get('params')} parameters, {meta.get('macs_per_pixel')} MAC per pixel "
                  f"and component, {meta.get('steps')} Adam steps of {meta.get('batch')} patches "
                  f"{meta.get('patch')} x {meta.get('patch')} on {meta.get('items')} (crop, quality) items from "
                  f"{meta.get('train_frames')} training crops (held-out places and WorldCereal excluded); "
                  f"{meta.get('seconds')} s in all on {meta.get('threads')} CPU threads ({meta.get('data_seconds')} s "
                  f"coding the training crops); validation MSE / MSE without correction "
                  f"{meta.get('val_mse_ratio')}. Float32 inference (a shipped decoder would need fixed point)."]
    (out / "hx_enhancement.md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
