"""Zstandard (numcodecs), lossless, on the band-sequential bytes of the cube."""

from __future__ import annotations

import numpy as np
from numcodecs import Zstd

from tcube.baselines.base import Baseline, check_uint16

LEVEL = 19


def zstd_encode(cube: np.ndarray, level: float = LEVEL) -> bytes:
    """Compress the cube's bytes at ``level``.

    Examples
    --------
    >>> x = np.arange(2 * 12 * 8 * 8, dtype=np.uint16).reshape(2, 12, 8, 8)
    >>> bool((zstd_decode(zstd_encode(x), x.shape) == x).all())
    True
    """
    return bytes(Zstd(level=int(level)).encode(check_uint16(cube)))


def zstd_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`zstd_encode`."""
    return np.frombuffer(Zstd().decode(blob), np.uint16).reshape(shape)


ZSTD_BASELINES = (Baseline("zstd-19", zstd_encode, zstd_decode, (float(LEVEL),), "level", lossless=True,
                           requires="numcodecs"),)
