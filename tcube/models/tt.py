"""``tec-tt``: per-frame transforms, a hyperprior, and a temporal prior over the previous dates.

Frame ``t`` is coded with a mean-scale Gaussian whose scale index and mean come from a residual
integer network that sees the decoded latents of the two previous dates and the hyperprior's own
(scale index, mean) for frame ``t`` (its side information). The first date of a sequence (and the
second's missing ``t - 2``) fall back to what is available: a sequence of one date is coded with the
hyperprior alone. Every input of the temporal network is an integer on a 1/16 grid and it is built
from :class:`IntegerConv2d` only, so the decoder reproduces the encoder's tables bit for bit.

The shipped weights keep tec-fp's transforms (frozen) and train the hyperprior and the temporal
prior together on real time series (:mod:`tcube.train.temporal`); the design was measured first
in ``benchmarks/temporal_prior_study.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from tcube.entropy import decode_symbols, encode_symbols
from tcube.errors import InputError
from tcube.models.base import FramePayload, HyperpriorConfig, Sink, check_symbol_crc, check_symbol_range, symbol_crc
from tcube.models.hp import MEAN_STEPS, HyperpriorCodec
from tcube.models.layers import IntegerConv2d, round_ste

#: Latents are clamped to this magnitude at the input of the temporal network.
Y_MAX = 2048.0
#: Fractional bits of every input and hidden activation of the temporal network (1/16 grid).
T_FRAC = 4


@dataclass
class TemporalPriorConfig(HyperpriorConfig):
    """tec-hp's config and the temporal prior's hidden channels."""

    nt: int = 64


class TemporalCodec(HyperpriorCodec):
    """Sequences of frames: ``compress``/``decompress`` take the dates of one cube, in order."""

    config_type = TemporalPriorConfig
    temporal = True

    def __init__(self, config: TemporalPriorConfig):
        super().__init__(config)
        m, hidden = config.m, config.nt
        self.t_prior = nn.ModuleList([
            IntegerConv2d(4 * m, hidden, in_frac=T_FRAC, out_frac=T_FRAC),
            IntegerConv2d(hidden, hidden, in_frac=T_FRAC, out_frac=T_FRAC),
            IntegerConv2d(hidden, 2 * m, in_frac=T_FRAC, out_frac=0, relu=False),
        ])
        with torch.no_grad():  # start as tec-hp: no correction
            self.t_prior[-1].weight.zero_()

    # -- temporal prior -------------------------------------------------------------------
    def temporal_params(self, prev1: Tensor, prev2: Tensor, idx: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        """Training-time (simulated fixed point) scale index and mean of frame t."""
        prev = [p.float().clamp(-Y_MAX, Y_MAX) for p in (prev1, prev2)]
        h = torch.cat([*prev, idx.float(), mean], dim=1)
        for layer in self.t_prior[:-1]:
            h = layer(h)
        out = self.t_prior[-1](h)
        m = self.config.m
        new_idx = (idx + round_ste(out[:, :m])).clamp(0, self.gaussian.levels - 1)
        return new_idx, mean + round_ste(out[:, m:] * MEAN_STEPS) / MEAN_STEPS

    @torch.no_grad()
    def temporal_exact(self, prev1: Tensor, prev2: Tensor, idx: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
        """Bit-exact scale index (long) and mean (float32) of frame t from decoded integers."""
        grid = 2.0**T_FRAC
        h = torch.cat([(prev1.double().clamp(-Y_MAX, Y_MAX) * grid).round(),
                       (prev2.double().clamp(-Y_MAX, Y_MAX) * grid).round(),
                       idx.double() * grid, (mean.double() * grid).round()], dim=1)
        for layer in self.t_prior[:-1]:
            h = layer.forward_exact(h)
        acc = self.t_prior[-1].forward_exact(h)
        m, frac = self.config.m, T_FRAC + IntegerConv2d.W_FRAC
        d_idx = torch.floor((acc[:, :m] + 2.0 ** (frac - 1)) / 2.0**frac)
        shift = frac - int(np.log2(MEAN_STEPS))
        d_mean = torch.floor((acc[:, m:] + 2.0 ** (shift - 1)) / 2.0**shift) / MEAN_STEPS
        new_idx = (idx.double() + d_idx).clamp(0, self.gaussian.levels - 1)
        return new_idx.long(), (mean.double() + d_mean).float()

    def date_params(self, idx: Tensor, mean: Tensor, y_hat: list[Tensor], exact: bool) -> tuple[Tensor, Tensor]:
        """Scale index and mean of the date after ``y_hat`` (the decoded latents of the dates before
        it, oldest first) from its hyperprior's ``idx`` and ``mean``: unchanged for the first date,
        else corrected by the temporal prior (``exact``: the coder's integer path)."""
        if not y_hat:
            return idx, mean
        prev2 = y_hat[-2] if len(y_hat) >= 2 else y_hat[-1]
        return (self.temporal_exact if exact else self.temporal_params)(y_hat[-1], prev2, idx, mean)

    def date_bits(self, v: Tensor, y_hat: list[Tensor], noise: bool) -> tuple[Tensor, Tensor]:
        """Estimated bits of one date's scaled latents ``v`` (1, m, h, w) after the dates ``y_hat``,
        and the mean it is coded around (training path; ``noise``: uniform noise for quantisation)."""
        z = self.h_a(v)
        z_in, v_in = z, v
        if noise:
            z_in, v_in = z + torch.empty_like(z).uniform_(-0.5, 0.5), v + torch.empty_like(v).uniform_(-0.5, 0.5)
        idx, mean = self.date_params(*self._params(round_ste(z), v.shape[-2:]), y_hat, exact=False)
        return self.prior.bits(z_in).sum() + self.gaussian.bits(v_in, mean, self.gaussian.scale(idx)).sum(), mean

    @torch.no_grad()
    def date_symbols(self, v: Tensor, y_hat: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Integer hyper-latents, latent symbols, their table indices and the decoded latents
        (float64) of one date's scaled latents ``v`` (1, m, h, w) after the dates ``y_hat``, as coded."""
        z = torch.floor(self.h_a(v) + 0.5).long()
        idx, mean = self.date_params(*self.params_exact(z, v.shape[-2:]), y_hat, exact=True)
        sym = torch.floor(v - mean + 0.5).long()
        return z, sym, idx, sym.double() + mean.double()

    # -- coding -----------------------------------------------------------------------------
    def _check_sequence(self, n: int) -> None:
        if n < 1:
            raise InputError("a sequence needs at least one date")

    @torch.no_grad()
    def compress(self, x: Tensor, quality: int, seeds: list[int] | None = None) -> list[FramePayload]:
        """Code the dates ``x`` (T, C, H, W) of one cube, in time order; one payload per date (its
        symbol CRC started from ``seeds[t]``, default 0)."""
        self._check_sequence(len(x))
        q = self.quality_index(quality, x.shape[0])
        v = self.analysis(x) * self.gain(q)
        y_hat: list[Tensor] = []
        payloads = []
        seeds = seeds or [0] * len(x)
        for t in range(len(x)):
            z, sym, idx, y = self.date_symbols(v[t:t + 1], y_hat)
            check_symbol_range([sym, z])
            y_hat.append(y)
            z_tables = self.table_index("z", {"z": z}, q[:1], tuple(z.shape[1:])).cpu().numpy()
            streams = {"z": encode_symbols(z[0].cpu().numpy(), z_tables[0], self.tables["z"]),
                       "y": encode_symbols(sym[0].cpu().numpy(), idx[0].cpu().numpy(), self.tables["y"])}
            crc = symbol_crc([z[0].cpu().numpy(), sym[0].cpu().numpy()], seeds[t])
            payloads.append(FramePayload(streams, crc, seeds[t]))
        return payloads

    @torch.no_grad()
    def decompress(self, payloads: list[FramePayload], quality: int, height: int, width: int,
                   sink: Sink | None = None, bands: int | None = None) -> Tensor | None:
        """Decode the payloads of :meth:`compress` (one cube's dates, in order; ``sink`` as in
        :meth:`Model.synthesis`)."""
        self._check_sequence(len(payloads))
        q = self.quality_index(quality, len(payloads))
        shapes = self.latent_shapes(*self.padded_size(height, width))
        z_tables = self.table_index("z", {}, q, shapes["z"]).cpu().numpy()
        z = torch.from_numpy(np.stack([decode_symbols(p.streams["z"], z_tables[t], self.tables["z"])
                                       for t, p in enumerate(payloads)]).reshape(len(payloads), *shapes["z"]))
        z = z.to(self.device)
        idx_hp, mean_hp = self.params_exact(z, shapes["y"][1:])
        y_hat: list[Tensor] = []
        for t, p in enumerate(payloads):
            idx, mean = self.date_params(idx_hp[t:t + 1], mean_hp[t:t + 1], y_hat, exact=True)
            sym = decode_symbols(p.streams["y"], idx[0].cpu().numpy(), self.tables["y"]).reshape(shapes["y"])
            check_symbol_crc([z[t].cpu().numpy(), sym], p, t)
            y_hat.append(torch.from_numpy(sym).to(self.device)[None].double() + mean.double())
        return self.synthesis(torch.cat(y_hat).float() * self.inv_gain(q), height, width, sink)

    def reconstruct(self, x: Tensor, quality: int) -> Tensor:
        """Decoded image of a sequence, without entropy coding (for tests and validation)."""
        payloads = self.compress(x, quality)
        return self.decompress(payloads, quality, *x.shape[-2:])

    # -- training on frozen transforms ---------------------------------------------------------
    def sequence_bits(self, v: Tensor) -> Tensor:
        """Estimated bits of one sequence's scaled latents ``v`` (T, m, h, w), dates coded in order."""
        bits, y_hat = torch.zeros((), device=v.device), []
        for t in range(len(v)):
            date, mean = self.date_bits(v[t:t + 1], y_hat, noise=True)
            bits = bits + date
            y_hat.append((torch.floor(v[t:t + 1] - mean + 0.5) + mean).detach())
        return bits
