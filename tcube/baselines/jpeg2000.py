"""JPEG2000 (OpenJPEG through imagecodecs) on (T, C, H, W) cubes, three ways.

- ``per_band``: one codestream per band and date;
- ``joint``: all bands of a date in one multi-component codestream (joint rate allocation);
- ``pca``: a KLT over bands per date, components rounded to integers and coded as one
  codestream; the KLT matrix, band means and component offsets travel as float32/int32 side
  information and count in the size.

``level`` is OpenJPEG's target PSNR (dB, relative to the 16-bit range): higher is better.
"""

from __future__ import annotations

import numpy as np

from tcube.baselines.base import Baseline, check_uint16, imagecodecs_module, pack, unpack
from tcube.baselines.klt import inverse_klt, klt

J2K_MODES = ("per_band", "joint", "pca")


def j2k_encode(cube: np.ndarray, level: float, mode: str = "joint") -> bytes:
    """Encode a non-negative integer cube (T, C, H, W); returns one blob (all sizes included).

    Examples
    --------
    >>> x = (np.arange(2 * 3 * 16 * 16) % 977).reshape(2, 3, 16, 16).astype(np.uint16)
    >>> j2k_decode(j2k_encode(x, 0, "per_band"), x.shape).dtype
    dtype('uint16')
    """
    ic = imagecodecs_module()
    cube = check_uint16(cube)
    if mode not in J2K_MODES:
        raise ValueError(f"mode must be one of {J2K_MODES}")
    lossless = dict(reversible=True) if level == 0 else {}
    parts = []
    for frame in np.asarray(cube):
        if mode == "per_band":
            parts += [ic.jpeg2k_encode(b.astype(np.uint16), level=level, codecformat="j2k", **lossless) for b in frame]
        elif mode == "joint":
            hwc = np.ascontiguousarray(np.moveaxis(frame.astype(np.uint16), 0, -1))
            parts.append(ic.jpeg2k_encode(hwc, level=level, codecformat="j2k", planar=False, **lossless))
        else:
            mean, basis, comps = klt(frame)
            comps = np.floor(comps + 0.5)
            offset = comps.reshape(len(comps), -1).min(axis=1).astype(np.int32)
            shifted = comps - offset[:, None, None]
            if shifted.max() >= 2**16:
                raise ValueError("KLT components exceed 16 bits")
            hwc = np.ascontiguousarray(np.moveaxis(shifted.astype(np.uint16), 0, -1))
            side = mean.tobytes() + basis.tobytes() + offset.tobytes()
            parts += [side, ic.jpeg2k_encode(hwc, level=level, codecformat="j2k", planar=False)]
    return pack(parts)


def j2k_decode(blob: bytes, shape: tuple[int, ...], mode: str = "per_band") -> np.ndarray:
    """Inverse of :func:`j2k_encode` for a cube of ``shape`` (T, C, H, W); returns uint16."""
    ic = imagecodecs_module()
    t, c, h, w = shape
    parts = unpack(blob)
    out = np.empty(shape, dtype=np.uint16)
    for i in range(t):
        if mode == "per_band":
            out[i] = np.stack([ic.jpeg2k_decode(p) for p in parts[i * c: (i + 1) * c]])
        elif mode == "joint":
            out[i] = np.moveaxis(ic.jpeg2k_decode(parts[i]), -1, 0)
        else:
            side, code = parts[2 * i], parts[2 * i + 1]
            mean = np.frombuffer(side[: 4 * c], np.float32)
            basis = np.frombuffer(side[4 * c: 4 * c + 4 * c * c], np.float32).reshape(c, c)
            offset = np.frombuffer(side[4 * c + 4 * c * c:], np.int32)
            comps = np.moveaxis(ic.jpeg2k_decode(code), -1, 0).astype(np.float64) + offset[:, None, None]
            out[i] = np.clip(np.floor(inverse_klt(mean, basis, comps) + 0.5), 0, 65535)
    return out


#: OpenJPEG target PSNR levels (dB relative to the 16-bit range) sweeping ~0.02 to ~4 bpppb.
J2K_LEVELS = tuple(float(v) for v in range(34, 96, 4))


def _baseline(mode: str) -> Baseline:
    return Baseline(f"jpeg2000-{mode}", lambda cube, level: j2k_encode(cube, level, mode),
                    lambda blob, shape: j2k_decode(blob, shape, mode), J2K_LEVELS, "OpenJPEG target PSNR (dB)")


JPEG2000_BASELINES = (
    _baseline("per_band"), _baseline("joint"), _baseline("pca"),
    Baseline("jpeg2000-lossless", lambda cube, _: j2k_encode(cube, 0, "per_band"),
             lambda blob, shape: j2k_decode(blob, shape, "per_band"), (0.0,), "reversible 5/3 wavelet", lossless=True),
)
