"""SZ3 (through imagecodecs), error-bounded: each date's (band, y, x) block with an absolute bound."""

from __future__ import annotations

import numpy as np

from tcube.baselines.base import Baseline, check_uint16, imagecodecs_module, pack, unpack
from tcube.baselines.jpegls import BOUNDS


def sz3_encode(cube: np.ndarray, max_error: float) -> bytes:
    """Code every date as one float32 (band, y, x) block within ``max_error`` (at least 1).

    Examples
    --------
    >>> x = (np.arange(2 * 3 * 16 * 16) % 977).reshape(2, 3, 16, 16).astype(np.uint16)
    >>> y = sz3_decode(sz3_encode(x, 4), x.shape)
    >>> int(np.abs(y.astype(int) - x).max()) <= 4
    True
    """
    ic = imagecodecs_module()
    return pack([ic.sz3_encode(frame.astype(np.float32), mode="abs", abs=float(max_error))
                 for frame in check_uint16(cube)])


def sz3_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`sz3_encode`, rounded to digital numbers (which keeps the bound)."""
    ic = imagecodecs_module()
    frames = [ic.sz3_decode(p, tuple(shape[1:]), np.float32) for p in unpack(blob)]
    return np.clip(np.round(np.stack(frames)), 0, 65535).astype(np.uint16).reshape(shape)


SZ3_BASELINES = (Baseline("sz3", sz3_encode, sz3_decode, BOUNDS, "maximum error (DN)", bounded=True),)
