"""Building blocks: simplified GDN, the analysis/synthesis stacks, and exact integer convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def round_ste(x: Tensor) -> Tensor:
    """Round half up, with the identity as gradient (straight-through)."""
    return x + (torch.floor(x + 0.5) - x).detach()


def floor_ste(x: Tensor) -> Tensor:
    """Floor with the identity as gradient."""
    return x + (torch.floor(x) - x).detach()


class SimplifiedGDN(nn.Module):
    """``x / (beta + gamma |x|)`` across channels (``inverse=True``: multiply), Johnston et al. 2019."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels) + 1e-3)

    def forward(self, x: Tensor) -> Tensor:
        gamma = self.gamma.abs().view(*self.gamma.shape, 1, 1)
        norm = F.conv2d(x.abs(), gamma, self.beta.abs() + 1e-6)
        return x * norm if self.inverse else x / norm


def analysis(c_in: int, widths: list[int], m: int, kernels: list[int]) -> nn.Sequential:
    """Stride-2 convolutions (``kernels[i]`` wide) with GDN in between.

    Channels go ``c_in -> widths[0] -> ... -> m``: (B, c_in, H, W) -> (B, m, H / 2**L, W / 2**L).
    """
    channels = [c_in, *widths, m]
    mods: list[nn.Module] = []
    for i, k in enumerate(kernels):
        mods.append(nn.Conv2d(channels[i], channels[i + 1], k, stride=2, padding=k // 2))
        if i < len(kernels) - 1:
            mods.append(SimplifiedGDN(channels[i + 1]))
    return nn.Sequential(*mods)


def synthesis(m: int, widths: list[int], c_out: int, kernels: list[int]) -> nn.Sequential:
    """Mirror of :func:`analysis`: transposed convolutions and inverse GDN, ``m -> ... -> c_out``."""
    channels = [m, *reversed(widths), c_out]
    mods: list[nn.Module] = []
    for i, k in enumerate(reversed(kernels)):
        mods.append(nn.ConvTranspose2d(channels[i], channels[i + 1], k, stride=2, padding=k // 2, output_padding=1))
        if i < len(kernels) - 1:
            mods.append(SimplifiedGDN(channels[i + 1], inverse=True))
    return nn.Sequential(*mods)


def hyper_analysis(m: int, nh: int) -> nn.Sequential:
    """Latents (B, m, h, w) -> hyper-latents (B, nh, h/4, w/4): a 3x3 and two stride-2 5x5 convs."""
    return nn.Sequential(
        nn.Conv2d(m, nh, 3, padding=1), nn.ReLU(),
        nn.Conv2d(nh, nh, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(nh, nh, 5, stride=2, padding=2),
    )


#: Most values of one unfolded input of :meth:`IntegerConv2d.forward_exact` (float64: 32 MB).
UNFOLD_VALUES = 1 << 22


class IntegerConv2d(nn.Module):
    """Convolution on a fixed-point grid, computable exactly on any device.

    Weights have ``W_FRAC`` fractional bits, inputs ``in_frac`` and (with ``relu``) outputs
    ``out_frac`` fractional bits, clamped to ``[0, A_MAX]``. :meth:`forward` simulates the grid in
    float with straight-through gradients for training; :meth:`forward_exact` takes the integer
    representation in float64 and returns integers: every product and partial sum is an integer
    below 2**53, so the result does not depend on device, thread count or summation order.
    """

    W_FRAC = 8
    W_MAX = 2**12  # in integer units
    A_MAX = 256.0

    def __init__(self, c_in: int, c_out: int, in_frac: int, out_frac: int, relu: bool = True, kernel: int = 3):
        super().__init__()
        self.in_frac, self.out_frac, self.relu, self.kernel = in_frac, out_frac, relu, kernel
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel) * (2.0 / (c_in * kernel * kernel)) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def _int_weight(self) -> Tensor:
        return torch.floor(self.weight * 2**self.W_FRAC + 0.5).clamp(-self.W_MAX, self.W_MAX)

    def _int_bias(self) -> Tensor:
        return torch.floor(self.bias * 2 ** (self.W_FRAC + self.in_frac) + 0.5)

    def forward(self, x: Tensor) -> Tensor:
        w = (self.weight + (self._int_weight() / 2**self.W_FRAC - self.weight).detach())
        b_scale = 2 ** (self.W_FRAC + self.in_frac)
        b = self.bias + (self._int_bias() / b_scale - self.bias).detach()
        out = F.conv2d(x, w, b, padding=self.kernel // 2)
        if self.relu:
            out = floor_ste(out * 2**self.out_frac).clamp(0, self.A_MAX * 2**self.out_frac) / 2**self.out_frac
        return out

    def _exact_parameters(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Integer weights (as a matrix) and biases in float64, cached until the parameters change."""
        key = (self.weight.data_ptr(), self.weight._version, self.bias.data_ptr(), self.bias._version, device)
        if getattr(self, "_exact_key", None) != key:
            weight = self._int_weight().to(device, torch.float64).flatten(1)
            bias = self._int_bias().to(device, torch.float64).view(1, -1, 1)
            self._exact, self._exact_key = (weight, bias), key
        return self._exact

    @torch.no_grad()
    def forward_exact(self, x: Tensor) -> Tensor:
        """Integer input (float64, scaled by 2**in_frac) -> integer output.

        With ``relu`` the output is scaled by 2**out_frac; without, by 2**(in_frac + W_FRAC).
        """
        b, c, h, w = x.shape
        weight, bias = self._exact_parameters(x.device)
        p = self.kernel // 2
        padded = F.pad(x, (p, p, p, p))
        rows = max(1, UNFOLD_VALUES // (b * c * self.kernel**2 * w))  # output rows per pass: bounded memory
        acc = torch.empty((b, weight.shape[0], h, w), dtype=torch.float64, device=x.device)
        for r in range(0, h, rows):
            n = min(rows, h - r)
            cols = F.unfold(padded[:, :, r: r + n + 2 * p], self.kernel)
            acc[:, :, r: r + n] = (torch.matmul(weight, cols) + bias).view(b, -1, n, w)
        if self.relu:
            shift = 2.0 ** (self.in_frac + self.W_FRAC - self.out_frac)
            acc = torch.floor(acc / shift).clamp(0, self.A_MAX * 2**self.out_frac)
        return acc
