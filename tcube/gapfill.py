"""Gap filling with the temporal prior of ``tec-tt``: masked pixels or whole dates from the others.

:func:`inpaint` works date by date, in time order, in the model's latent space:

1. Every masked value starts as the linear interpolation in time between the nearest dates where
   that pixel and band are observed (the nearest one at the ends of the series; a spatial
   push-pull fill where it is never observed).
2. For each date with masked pixels, the latents ``y`` are optimised to minimise the model's own
   rate-distortion objective with the distortion measured on the observed pixels only:
   ``bits(y | two previous dates, y's side information) + lambda(quality) * MSE(observed)``.
   The rate term is the learned temporal prior (nothing is trained for cloud removal): it pulls the
   latents of the hidden area towards what the previous dates and the visible part of the date
   make probable, and the synthesis transform spreads the visible radiometry into the gaps.
3. Masked pixels take the decoded values; observed pixels are returned unchanged.

A date with no observed pixel at all keeps the interpolation of step 1 (its latents still serve as
the context of the next dates): with nothing to fit, step 2 would only forecast the date from the
earlier ones, and on real series that was worse than interpolating between both neighbours
(``benchmarks/inpaint.py``). The quality sets ``lambda`` (higher: closer to the observed pixels);
the defaults (quality 8, 60 steps) were chosen on a training place, not on the validation place.
"""

from __future__ import annotations

import numpy as np
import torch

from tcube.defaults import DEFAULT_QUALITY
from tcube.errors import InputError
from tcube.masks import fill_invalid
from tcube.models import load_model
from tcube.models.tt import TemporalCodec
from tcube.validate import check_cube

__all__ = ["inpaint", "interpolate_time"]


def _check_mask(cube: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` broadcast to the (T, C, H, W) cube, NaN and infinities added."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise InputError(f"mask must be a boolean array (True = fill), got dtype {mask.dtype}")
    t, c, h, w = cube.shape
    if mask.shape == (t, h, w):
        mask = mask[:, None]
    elif mask.shape != (t, c, h, w):
        raise InputError(f"mask must have shape (time, y, x) {(t, h, w)} or (time, band, y, x) {cube.shape}, "
                         f"got {mask.shape}")
    return np.broadcast_to(mask, cube.shape) | ~np.isfinite(cube)


def _nearest(valid: np.ndarray, reverse: bool) -> np.ndarray:
    """Index along time of the nearest valid date at or before (after, ``reverse``) each date; -1: none."""
    t = valid.shape[0]
    index = np.where(valid, np.arange(t).reshape(-1, *([1] * (valid.ndim - 1))), -1 if not reverse else t)
    if reverse:
        nearest = np.minimum.accumulate(index[::-1], axis=0)[::-1]
        return np.where(nearest == t, -1, nearest)
    return np.maximum.accumulate(index, axis=0)


def interpolate_time(cube: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill ``mask`` pixels of a (T, C, H, W) cube linearly in time between observed dates.

    Values before the first (after the last) observation repeat it; values never observed are
    filled spatially from the same date (push-pull), or with the band mean of the cube.

    Examples
    --------
    >>> cube = np.array([1.0, 0.0, 0.0, 4.0], np.float32).reshape(4, 1, 1, 1)
    >>> interpolate_time(cube, cube == 0).ravel()
    array([1., 2., 3., 4.], dtype=float32)
    """
    x = cube.astype(np.float64)
    valid = ~mask
    before, after = _nearest(valid, reverse=False), _nearest(valid, reverse=True)
    t = np.arange(len(x)).reshape(-1, *([1] * (x.ndim - 1)))
    v0 = np.take_along_axis(x, np.maximum(before, 0), axis=0)
    v1 = np.take_along_axis(x, np.maximum(after, 0), axis=0)
    w = np.where((before >= 0) & (after >= 0) & (after > before), (t - before) / np.maximum(after - before, 1), 0.0)
    filled = np.where(before >= 0, v0 + w * (v1 - v0), v1)
    never = (before < 0) & (after < 0)
    out = np.where(mask, filled, x).astype(np.float32)
    if never.any():
        observed = np.where(mask, np.nan, x)
        means = np.nan_to_num(np.nanmean(observed, axis=(0, 2, 3)), nan=0.0) if valid.any() else np.zeros(x.shape[1])
        out = fill_invalid(out, never, means)
    return out


def inpaint(cube: np.ndarray, mask: np.ndarray, *, model: str = "tec-tt", quality: int = DEFAULT_QUALITY,
            steps: int = 60, device: str | None = None) -> np.ndarray:
    """Fill the ``mask`` pixels of a (T, 12, H, W) cube from its other dates with the temporal prior.

    Parameters
    ----------
    cube : numpy.ndarray
        (time, band, y, x) or (band, y, x) reflectance in digital numbers (uint16, int16 or
        float32); NaN and infinite values are filled too.
    mask : numpy.ndarray of bool
        True where values are missing: (time, y, x) for every band, or the cube's shape.
    model : str
        A temporal model of the registry (``tec-tt``).
    quality : int
        1..16: the rate-distortion trade-off of the fit (higher: closer to the observed pixels).
    steps : int
        Optimisation steps per date with masked pixels.
    device : str, optional
        Torch device (default: ``TCUBE_DEVICE``, else CUDA when present, else CPU).

    Returns
    -------
    numpy.ndarray
        float32 cube of the input's shape: observed values unchanged, masked ones filled.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = tcube.data.load_sample_cube()[:, :, :48, :48]
    >>> mask = np.zeros((4, 48, 48), bool); mask[2, 10:30, 10:30] = True  # a cloud on date 2
    >>> filled = tcube.inpaint(cube, mask, steps=10)
    >>> filled.shape, bool((filled[2][:, ~mask[2]] == cube[2][:, ~mask[2]]).all())
    ((4, 12, 48, 48), True)
    """
    codec = load_model(model, device)
    if not isinstance(codec, TemporalCodec):  # the prior must be differentiable: tec-hx's HEVC is not
        raise InputError(f"inpaint needs a model with a learned temporal prior (tec-tt), got {model!r}")
    checked = check_cube(cube, codec.band_counts)
    if checked.masked is not None:
        raise InputError("inpaint takes the gaps as `mask`: pass cube.filled(0) and mask=np.ma.getmaskarray(cube)")
    c4 = checked.values
    if not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be a non-negative integer, got {steps!r}")
    full = _check_mask(c4, mask)
    start = interpolate_time(c4, full)
    q = codec.quality_index(quality, 1)
    out = start.copy()
    y_hat: list[torch.Tensor] = []
    h, w = c4.shape[-2:]
    for t in range(len(start)):
        x = codec.pad(codec.normalise(torch.from_numpy(start[t:t + 1]).to(codec.device)))
        with torch.no_grad():
            v = codec.g_a(x) * codec.gain(q)
        refine = bool(full[t].any() and (~full[t]).any() and steps)
        if refine:
            seen = torch.from_numpy(~full[t:t + 1]).to(codec.device, torch.float32)
            v = _fit(codec, v, q, y_hat, x[..., :h, :w], seen, steps)
        y_hat.append(codec.date_symbols(v, y_hat)[3])
        with torch.no_grad():
            if refine:
                decoded = codec.denormalise(codec.g_s(y_hat[-1].float() * codec.inv_gain(q)))
                out[t] = np.where(full[t], decoded[0, :, :h, :w].cpu().numpy(), start[t])
    out = np.where(full, out, c4.astype(np.float32))
    return out if cube.ndim == 4 else out[0]


def _fit(codec, v0: torch.Tensor, q: torch.Tensor, y_hat: list[torch.Tensor], target: torch.Tensor,
         seen: torch.Tensor, steps: int) -> torch.Tensor:
    """Latents of one date minimising the model's rate-distortion loss with the distortion on the
    ``seen`` pixels only (Adam from the interpolated start); ``y_hat``: the dates before it."""
    v = v0.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=0.1)
    with torch.enable_grad():
        for _ in range(steps):
            bits, _ = codec.date_bits(v, y_hat, noise=False)
            out = codec.g_s(v * codec.inv_gain(q))[..., : target.shape[-2], : target.shape[-1]]
            loss = codec.rd_loss(out, target, bits[None], q, weight=seen)["loss"]
            (v.grad,) = torch.autograd.grad(loss, [v])
            opt.step()
    return v.detach()
