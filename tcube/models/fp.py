"""``tec-fp``: factorized-prior codec (one learned density per latent channel)."""

from __future__ import annotations

import torch
from torch import Tensor

from tcube.entropy import FactorizedDensity
from tcube.models.base import LatentCodec, TransformConfig
from tcube.models.layers import round_ste


class FactorizedPriorCodec(LatentCodec):
    """Analysis/synthesis transforms with a per-channel factorized prior and quality gains."""

    stream_names = ("y",)

    def __init__(self, config: TransformConfig):
        super().__init__(config)
        self.prior = FactorizedDensity(config.m)

    def forward(self, xn: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: reconstruction (normalised) and estimated bits per item."""
        g = self.gain(q)
        v = self.g_a(xn) * g
        bits = self.prior.bits(v + torch.empty_like(v).uniform_(-0.5, 0.5), g)
        return self.g_s(round_ste(v) * self.inv_gain(q)), bits

    def analyse(self, y: Tensor, q: Tensor) -> dict[str, Tensor]:
        return {"y": torch.floor(y * self.gain(q) + 0.5).long()}

    def table_index(self, name: str, syms: dict[str, Tensor], q: Tensor, shape: tuple[int, ...]) -> Tensor:
        m = self.config.m
        channel = torch.arange(m, device=q.device).view(1, m, 1, 1)
        return (q.view(-1, 1, 1, 1) * m + channel).expand(-1, *shape)

    def decoded_latents(self, syms: dict[str, Tensor], q: Tensor) -> Tensor:
        return syms["y"].float() * self.inv_gain(q)

    def latent_shapes(self, hp: int, wp: int) -> dict[str, tuple[int, ...]]:
        return {"y": (self.config.m, hp // self.stride, wp // self.stride)}

    def export_tables(self) -> None:
        gains = torch.exp(self.log_gain.detach()).double().cpu().numpy()
        self.tables = {"y": self.prior.tables(gains)}
