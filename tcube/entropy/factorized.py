"""Factorized (non-parametric, per channel) prior: a learned monotone CDF per latent channel.

The density of each channel is the derivative of a small per-channel network whose weights are
constrained so that its output is increasing (Balle et al. 2018, appendix 6.1). Symbols are coded
at an optional per-channel gain: the bin of integer ``k`` at gain ``g`` is ``[(k-1/2)/g, (k+1/2)/g]``
in the unscaled domain, so one density serves every quality level.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcube.entropy.tables import TableSet, discretise_cdf

#: Tail probability left out of a table on each side (coded with the escape symbol).
TAIL = 1e-6
#: Largest number of entries of one table.
MAX_TABLE = 4096


class FactorizedDensity(nn.Module):
    """Per-channel learned univariate density.

    Examples
    --------
    >>> d = FactorizedDensity(4)
    >>> x = torch.zeros(4, 10)
    >>> d.bin_likelihood(x - 0.5, x + 0.5).shape
    torch.Size([4, 10])
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def cdf_logits(self, x: Tensor) -> Tensor:
        """Logit of the CDF at ``x`` of shape (channels, n)."""
        h = x.unsqueeze(1)
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            h = torch.matmul(F.softplus(m), h) + b
            if i < len(self.factors):
                h = h + torch.tanh(self.factors[i]) * torch.tanh(h)
        return h.squeeze(1)

    def bin_likelihood(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Probability mass between ``lower`` and ``upper`` (both (channels, n))."""
        lo, up = self.cdf_logits(lower), self.cdf_logits(upper)
        sign = -torch.sign(lo + up).detach()
        return torch.abs(torch.sigmoid(sign * up) - torch.sigmoid(sign * lo)).clamp_min(1e-9)

    def bits(self, v: Tensor, gain: Tensor | None = None) -> Tensor:
        """Bits per batch item of noisy latents ``v`` (B, C, H, W) coded at ``gain`` (B, C, 1, 1)."""
        g = torch.ones_like(v) if gain is None else gain.expand_as(v)
        flat = lambda t: t.transpose(0, 1).reshape(self.channels, -1)  # noqa: E731
        lik = self.bin_likelihood(flat((v - 0.5) / g), flat((v + 0.5) / g))
        lik = lik.reshape(self.channels, v.shape[0], -1)
        return -torch.log2(lik).sum(dim=(0, 2))

    @torch.no_grad()
    def _cdf64(self, x: np.ndarray) -> np.ndarray:
        """CDF in float64 at points ``x`` of shape (channels, n)."""
        cpu = [p.detach().double().cpu() for p in self.parameters()]
        n = len(self.matrices)
        mats, biases, factors = cpu[:n], cpu[n: 2 * n], cpu[2 * n:]
        h = torch.from_numpy(x).double().unsqueeze(1)
        for i, (m, b) in enumerate(zip(mats, biases)):
            h = torch.matmul(F.softplus(m), h) + b
            if i < len(factors):
                h = h + torch.tanh(factors[i]) * torch.tanh(h)
        return torch.sigmoid(h.squeeze(1)).numpy()

    def _quantiles(self, p: float) -> np.ndarray:
        """Per-channel value where the CDF reaches ``p`` (bisection)."""
        lo = np.full((self.channels, 1), -1e4)
        hi = np.full((self.channels, 1), 1e4)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self._cdf64(mid) < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)[:, 0]

    def tables(self, gains: np.ndarray | None = None) -> TableSet:
        """Frozen tables, one per (gain row, channel): table ``q * channels + c``."""
        gains = np.ones((1, self.channels)) if gains is None else np.asarray(gains, dtype=np.float64)
        low, high = self._quantiles(TAIL), self._quantiles(1 - TAIL)
        pmfs, offsets, escapes = [], [], []
        for g in gains:
            kmin = np.floor(low * g).astype(np.int64)
            kmax = np.maximum(np.ceil(high * g).astype(np.int64), kmin)
            centre = np.round(0.5 * (low + high) * g).astype(np.int64)
            kmin = np.maximum(kmin, centre - MAX_TABLE // 2)
            kmax = np.minimum(kmax, centre + MAX_TABLE // 2)
            width = int((kmax - kmin).max()) + 2
            edges = kmin[:, None] - 0.5 + np.arange(width)[None, :]
            cdf = self._cdf64(edges / g[:, None])
            for c in range(self.channels):
                n = int(kmax[c] - kmin[c]) + 2
                pmf, tail = discretise_cdf(cdf[c, :n])
                pmfs.append(pmf)
                offsets.append(int(kmin[c]))
                escapes.append(tail)
        return TableSet.from_pmfs(pmfs, offsets, escapes)
