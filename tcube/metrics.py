"""Quality and rate metrics, following the conventions of REFERENCE.md.

``psnr_10k``: PSNR on ``clamp(x - 1000, 0, 10000)`` with data range 10000, per frame over
(band, y, x), averaged over frames. ``psnr_full``: the same on ``clamp(x, 0, 10000)`` without the
offset removal, so errors on dark pixels count.
"""

from __future__ import annotations

import time

import numpy as np


def _frames(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[None] if a.ndim == 3 else a


#: Offsets of the PSNR conventions (what :func:`frame_psnr` calls its metrics).
METRICS = {"10k": 1000.0, "full": 0.0}


def frame_psnr(original: np.ndarray, decoded: np.ndarray, metric: str = "10k",
               valid: np.ndarray | None = None) -> np.ndarray:
    """PSNR of each frame of (T, C, H, W) or (C, H, W) arrays in the convention ``metric``
    (``"10k"`` or ``"full"``), over the ``valid`` pixels only when given; infinite where a frame
    is exact.

    Examples
    --------
    >>> x = np.full((2, 12, 4, 4), 3000.0)
    >>> frame_psnr(x, x + [[[[10.0]]], [[[1.0]]]]).round(1).tolist()
    [60.0, 80.0]
    """
    x = np.clip(_frames(original) - METRICS[metric], 0, 10000)
    y = np.clip(_frames(decoded) - METRICS[metric], 0, 10000)
    err = ((x - y) ** 2).reshape(len(x), -1)
    if valid is None:
        mse = err.mean(axis=1)
    else:
        valid = _frames(valid).reshape(len(x), -1)
        mse = (err * valid).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(10000.0**2 / mse)


def psnr_10k(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in the "10k" convention (offset 1000 removed), mean over frames.

    Examples
    --------
    >>> x = np.full((12, 4, 4), 3000.0)
    >>> round(psnr_10k(x, x + 10), 2)
    60.0
    """
    return float(np.mean(frame_psnr(original, decoded, "10k")))


def psnr_full(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR on the full range ``clamp(x, 0, 10000)``, mean over frames.

    Examples
    --------
    >>> x = np.full((12, 4, 4), 500.0)
    >>> round(psnr_full(x, x + 100), 2)
    40.0
    """
    return float(np.mean(frame_psnr(original, decoded, "full")))


def bpppb(n_bytes: int, shape: tuple[int, ...]) -> float:
    """Bits per pixel per band of ``n_bytes`` for a cube of ``shape``.

    Examples
    --------
    >>> bpppb(1536, (12, 32, 32))
    1.0
    """
    return 8.0 * n_bytes / float(np.prod(shape))


def rate_at_psnr(rates: np.ndarray, psnrs: np.ndarray, target: float) -> float:
    """Rate a codec needs for ``target`` PSNR, interpolating log(rate) linearly between points.

    Returns NaN when the curve does not reach ``target`` on both sides.

    Examples
    --------
    >>> round(rate_at_psnr(np.array([0.1, 0.4]), np.array([30.0, 40.0]), 35.0), 3)
    0.2
    """
    order = np.argsort(psnrs)
    p = np.asarray(psnrs, dtype=np.float64)[order]
    r = np.asarray(rates, dtype=np.float64)[order]
    keep = np.isfinite(p) & (r > 0)
    p, r = p[keep], r[keep]
    if len(p) < 2 or not p[0] <= target <= p[-1]:
        return float("nan")
    return float(np.exp(np.interp(target, p, np.log(r))))


def _gaussian_blur(planes: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian filter ("valid" borders) over the last two axes of (N, H, W) float64."""
    import torch
    import torch.nn.functional as F

    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k = torch.from_numpy(k / k.sum())
    x = torch.from_numpy(planes)[:, None]
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))[:, 0].numpy()


def ssim(original: np.ndarray, decoded: np.ndarray, data_range: float = 10000.0) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5) over the 2-D planes of ``clamp(x, 0, data_range)``.

    Planes smaller than the 11 x 11 window are compared whole (one window).

    Examples
    --------
    >>> x = np.random.default_rng(0).uniform(0, 5000, (2, 32, 32))
    >>> ssim(x, x), round(ssim(x, x + 100), 4)
    (1.0, 0.9992)
    """
    a = np.clip(np.asarray(original, np.float64), 0, data_range)
    b = np.clip(np.asarray(decoded, np.float64), 0, data_range)
    a = a.reshape(-1, *a.shape[-2:])
    b = b.reshape(-1, *b.shape[-2:])
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    if min(a.shape[-2:]) < 11:
        blur = lambda p: p.mean(axis=(-2, -1), keepdims=True)
    else:
        blur = _gaussian_blur
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(np.round(s.mean(), 12))


def compression_ratio(nbytes: int, shape: tuple[int, ...], itemsize: int = 2) -> float:
    """Raw size (``itemsize`` bytes per sample, uint16 by default) over coded size.

    Examples
    --------
    >>> compression_ratio(100, (1, 12, 10, 10))
    24.0
    """
    return float(np.prod(shape)) * itemsize / nbytes


def bd_rate(rates_a: np.ndarray, psnrs_a: np.ndarray, rates_b: np.ndarray, psnrs_b: np.ndarray,
            psnr_range: tuple[float, float] | None = None) -> float:
    """Bjontegaard delta rate of curve A against curve B, in percent (negative: A needs fewer bits).

    log(rate) is interpolated piecewise-linearly in PSNR along each curve (points sorted by PSNR),
    the difference is averaged over the PSNR interval both curves cover (within ``psnr_range``
    when given: see :func:`bd_interval`), and the mean log-rate
    difference ``d`` gives ``100 * (exp(d) - 1)``. Unlike the classic cubic fit, points far outside
    the shared interval (a baseline swept to 80 dB) cannot bend the result. NaN without overlap.

    Examples
    --------
    >>> p = np.array([30.0, 34.0, 38.0, 42.0])
    >>> round(bd_rate(np.array([0.05, 0.1, 0.2, 0.4]), p, np.array([0.1, 0.2, 0.4, 0.8]), p), 6)
    -50.0
    """
    curves = []
    for rates, psnrs in ((rates_a, psnrs_a), (rates_b, psnrs_b)):
        r, p = np.asarray(rates, np.float64), np.asarray(psnrs, np.float64)
        keep = np.isfinite(p) & (r > 0)
        order = np.argsort(p[keep])
        if keep.sum() < 2:
            return float("nan")
        curves.append((p[keep][order], np.log(r[keep][order])))
    lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    if psnr_range is not None:
        lo, hi = max(lo, psnr_range[0]), min(hi, psnr_range[1])
    if hi <= lo:
        return float("nan")
    grid = np.linspace(lo, hi, 1001)
    diff = np.interp(grid, *curves[0]) - np.interp(grid, *curves[1])
    return float(100 * (np.exp(np.mean(diff)) - 1))


def bd_interval(psnrs_a: np.ndarray, psnrs_b: np.ndarray, psnr_range: tuple[float, float] | None = None
                ) -> tuple[float, float]:
    """The PSNR interval :func:`bd_rate` averages over (NaN, NaN without overlap).

    Examples
    --------
    >>> bd_interval(np.array([30.0, 44.0]), np.array([36.0, 60.0]), (35.0, 50.0))
    (36.0, 44.0)
    """
    a, b = (np.asarray(p, np.float64)[np.isfinite(p)] for p in (psnrs_a, psnrs_b))
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if psnr_range is not None:
        lo, hi = max(lo, psnr_range[0]), min(hi, psnr_range[1])
    return (float(lo), float(hi)) if hi > lo else (float("nan"), float("nan"))


def timed(fn, *args):
    """``fn(*args)`` and the seconds it took.

    Examples
    --------
    >>> out, seconds = timed(sum, [1, 2, 3])
    >>> out, seconds >= 0
    (6, True)
    """
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t
