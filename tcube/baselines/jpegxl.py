"""JPEG-XL (libjxl through imagecodecs), one 16-bit grayscale codestream per band and date."""

from __future__ import annotations

import numpy as np

from tcube.baselines.base import Baseline, check_uint16, imagecodecs_module, pack, unpack

#: Butteraugli distances (lower is better; libjxl accepts up to 25), from ~0.07 to ~3.4 bpppb.
JXL_DISTANCES = (25.0, 16.0, 11.0, 8.0, 5.5, 4.0, 2.8, 2.0, 1.4, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05)
EFFORT = 7


def jxl_encode(cube: np.ndarray, distance: float) -> bytes:
    """Code every band of every date; ``distance`` 0 is lossless.

    Examples
    --------
    >>> x = (np.arange(2 * 3 * 16 * 16) % 977).reshape(2, 3, 16, 16).astype(np.uint16)
    >>> bool((jxl_decode(jxl_encode(x, 0), x.shape) == x).all())
    True
    """
    ic = imagecodecs_module()
    args = {"lossless": True} if distance == 0 else {"distance": distance}
    return pack([ic.jpegxl_encode(band, effort=EFFORT, **args) for frame in check_uint16(cube) for band in frame])


def jxl_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`jxl_encode`."""
    ic = imagecodecs_module()
    return np.stack([ic.jpegxl_decode(p) for p in unpack(blob)]).reshape(shape).astype(np.uint16)


JPEGXL_BASELINES = (
    Baseline("jpegxl-per_band", jxl_encode, jxl_decode, JXL_DISTANCES, "Butteraugli distance (lower is better)"),
    Baseline("jpegxl-lossless", lambda cube, _: jxl_encode(cube, 0), jxl_decode, (0.0,), "lossless", lossless=True),
)
