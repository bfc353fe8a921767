"""JPEG-LS (CharLS through imagecodecs), one 16-bit codestream per band and date: lossless, or
near-lossless with a maximum error."""

from __future__ import annotations

import numpy as np

from tcube.baselines.base import Baseline, check_uint16, imagecodecs_module, pack, unpack

#: Maximum errors (digital numbers) of the near-lossless sweep, from the smallest output.
BOUNDS = (64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0)


def jpegls_encode(cube: np.ndarray, max_error: float) -> bytes:
    """Code every band of every date with JPEG-LS ``NEAR = max_error`` (0: lossless).

    Examples
    --------
    >>> x = (np.arange(2 * 3 * 16 * 16) % 977).reshape(2, 3, 16, 16).astype(np.uint16)
    >>> y = jpegls_decode(jpegls_encode(x, 4), x.shape)
    >>> int(np.abs(y.astype(int) - x).max()) <= 4
    True
    """
    ic = imagecodecs_module()
    return pack([ic.jpegls_encode(band, level=int(max_error)) for frame in check_uint16(cube) for band in frame])


def jpegls_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`jpegls_encode`."""
    ic = imagecodecs_module()
    return np.stack([ic.jpegls_decode(p) for p in unpack(blob)]).reshape(shape).astype(np.uint16)


JPEGLS_BASELINES = (
    Baseline("jpegls-near", jpegls_encode, jpegls_decode, BOUNDS, "maximum error (DN)", bounded=True),
    Baseline("jpegls-lossless", lambda cube, _: jpegls_encode(cube, 0), jpegls_decode, (0.0,), "lossless",
             lossless=True),
)
