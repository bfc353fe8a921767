"""Conditional Gaussian (mean-scale) entropy model over a fixed, log-spaced table of scales.

The hyper-synthesis predicts, per latent, an integer scale index and a mean on a 1/16 grid. Both
come out of an exactly computed integer network, so encoder and decoder pick the same table
everywhere. Symbols are ``round(v - mean)``, coded with the zero-mean table of that scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tcube.entropy.tables import TableSet, discretise_cdf


class GaussianConditional(nn.Module):
    """Gaussian likelihoods and frozen tables for ``levels`` scales from ``scale_min`` to ``scale_max``.

    Examples
    --------
    >>> gc = GaussianConditional(levels=8)
    >>> lik = gc.likelihood(torch.zeros(3), torch.zeros(3), gc.scale(torch.tensor([0., 3., 7.])))
    >>> bool((lik[0] > lik[1]) and (lik[1] > lik[2]))
    True
    """

    def __init__(self, scale_min: float = 0.11, scale_max: float = 128.0, levels: int = 64):
        super().__init__()
        self.levels = levels
        self.log_min = math.log(scale_min)
        self.log_step = (math.log(scale_max) - math.log(scale_min)) / (levels - 1)

    def scale(self, index: Tensor) -> Tensor:
        """Scale of (possibly fractional, during training) table ``index``."""
        return torch.exp(self.log_min + self.log_step * index)

    @staticmethod
    def likelihood(v: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
        """Mass of the unit bin around ``v`` under N(mean, scale)."""
        r = (v - mean).abs()
        upper = torch.special.ndtr((0.5 - r) / scale)
        lower = torch.special.ndtr((-0.5 - r) / scale)
        return (upper - lower).clamp_min(1e-9)

    def bits(self, v: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
        """Bits per batch item for latents ``v`` of shape (B, ...)."""
        return -torch.log2(self.likelihood(v, mean, scale)).flatten(1).sum(1)

    def tables(self, tail_sigmas: float = 6.0) -> TableSet:
        """One zero-mean table per scale level, wide enough for ``tail_sigmas`` standard deviations."""
        pmfs, offsets, escapes = [], [], []
        for i in range(self.levels):
            s = math.exp(self.log_min + self.log_step * i)
            r = int(math.ceil(tail_sigmas * s)) + 1
            edges = torch.arange(-r, r + 2, dtype=torch.float64) - 0.5
            cdf = torch.special.ndtr(edges / s).numpy()
            pmf, tail = discretise_cdf(cdf)
            pmfs.append(pmf)
            offsets.append(-r)
            escapes.append(tail)
        return TableSet.from_pmfs(pmfs, offsets, escapes)


