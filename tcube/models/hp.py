"""``tec-hp``: mean-scale hyperprior codec whose hyper-synthesis is an exact integer network."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcube.entropy import FactorizedDensity, GaussianConditional
from tcube.models.base import HyperpriorConfig, LatentCodec
from tcube.models.layers import IntegerConv2d, hyper_analysis, round_ste

#: Hyper-latents are clamped to this magnitude at the input of the hyper-synthesis.
Z_MAX = 1024.0
#: Fractional bits of the hidden activations of the hyper-synthesis.
A_FRAC = 4
#: Means are predicted on a grid of 1 / MEAN_STEPS.
MEAN_STEPS = 16


class HyperpriorCodec(LatentCodec):
    """Factorized prior on hyper-latents ``z``; conditional Gaussian on latents ``y`` given ``z``.

    The hyper-synthesis maps integer ``z`` to an integer scale-table index and a mean on a 1/16
    grid using :class:`IntegerConv2d` only, so the decoder reproduces the encoder's tables bit for
    bit on any device.
    """

    config_type = HyperpriorConfig
    stream_names = ("z", "y")

    def __init__(self, config: HyperpriorConfig):
        super().__init__(config)
        m, nh = config.m, config.nh
        self.h_a = hyper_analysis(m, nh)
        self.h_s = nn.ModuleList([
            IntegerConv2d(nh, 4 * nh, in_frac=0, out_frac=A_FRAC),
            IntegerConv2d(nh, 4 * nh, in_frac=A_FRAC, out_frac=A_FRAC),
            IntegerConv2d(nh, 2 * m, in_frac=A_FRAC, out_frac=0, relu=False),
        ])
        self.gaussian = GaussianConditional()
        with torch.no_grad():
            self.h_s[-1].bias[:m] = self.gaussian.levels / 3
        self.prior = FactorizedDensity(nh)

    # -- hyper-synthesis ----------------------------------------------------------------
    def _params(self, z: Tensor, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Training-time (simulated fixed point) scale index and mean."""
        h = z.clamp(-Z_MAX, Z_MAX)
        for layer in self.h_s[:-1]:
            h = F.pixel_shuffle(layer(h), 2)
        out = self.h_s[-1](h)[..., : hw[0], : hw[1]]
        m = self.config.m
        idx = round_ste(out[:, :m]).clamp(0, self.gaussian.levels - 1)
        mean = round_ste(out[:, m:] * MEAN_STEPS) / MEAN_STEPS
        return idx, mean

    @torch.no_grad()
    def params_exact(self, z: Tensor, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Bit-exact scale index (long) and mean (float32) from integer hyper-latents ``z``."""
        h = z.to(torch.float64).clamp(-Z_MAX, Z_MAX)
        for layer in self.h_s[:-1]:
            h = F.pixel_shuffle(layer.forward_exact(h), 2)
        acc = self.h_s[-1].forward_exact(h)[..., : hw[0], : hw[1]]
        m, frac = self.config.m, A_FRAC + IntegerConv2d.W_FRAC
        idx = torch.floor((acc[:, :m] + 2.0 ** (frac - 1)) / 2.0**frac).clamp(0, self.gaussian.levels - 1)
        shift = frac - int(math.log2(MEAN_STEPS))
        mean = torch.floor((acc[:, m:] + 2.0 ** (shift - 1)) / 2.0**shift) / MEAN_STEPS
        return idx.long(), mean.float()

    # -- training -------------------------------------------------------------------------
    def forward(self, xn: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: reconstruction (normalised) and estimated bits per item."""
        v = self.g_a(xn) * self.gain(q)
        z = self.h_a(v)
        z_bits = self.prior.bits(z + torch.empty_like(z).uniform_(-0.5, 0.5))
        idx, mean = self._params(round_ste(z), v.shape[-2:])
        noisy = v + torch.empty_like(v).uniform_(-0.5, 0.5)
        y_bits = self.gaussian.bits(noisy, mean, self.gaussian.scale(idx))
        v_hat = round_ste(v - mean) + mean
        return self.g_s(v_hat * self.inv_gain(q)), z_bits + y_bits

    # -- coding -----------------------------------------------------------------------------
    def analyse(self, y: Tensor, q: Tensor) -> dict[str, Tensor]:
        v = y * self.gain(q)
        z = torch.floor(self.h_a(v) + 0.5).long()
        idx, mean = self.params_exact(z, v.shape[-2:])
        return {"z": z, "y": torch.floor(v - mean + 0.5).long(), "_idx": idx, "_mean": mean}

    def _side(self, syms: dict[str, Tensor], hw: tuple[int, int]) -> None:
        if "_idx" not in syms:
            syms["_idx"], syms["_mean"] = self.params_exact(syms["z"], hw)

    def table_index(self, name: str, syms: dict[str, Tensor], q: Tensor, shape: tuple[int, ...]) -> Tensor:
        if name == "z":
            nh = self.config.nh
            return torch.arange(nh, device=q.device).view(1, nh, 1, 1).expand(len(q), -1, *shape[1:])
        self._side(syms, shape[1:])
        return syms["_idx"]

    def decoded_latents(self, syms: dict[str, Tensor], q: Tensor) -> Tensor:
        self._side(syms, syms["y"].shape[-2:])
        return (syms["y"].float() + syms["_mean"]) * self.inv_gain(q)

    def latent_shapes(self, hp: int, wp: int) -> dict[str, tuple[int, ...]]:
        h, w = hp // self.stride, wp // self.stride
        zh, zw = (h + 3) // 4, (w + 3) // 4
        return {"z": (self.config.nh, zh, zw), "y": (self.config.m, h, w)}

    def export_tables(self) -> None:
        self.tables = {"z": self.prior.tables(), "y": self.gaussian.tables()}
