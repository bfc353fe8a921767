"""Pixels the model does not code: NaN, infinities and a no-data value.

Such pixels are recorded losslessly, per frame, in the container's ``"mask"`` stream (the packed
bitmap and the raw values of the masked pixels, zlib-compressed, so NaN payloads and any no-data
value come back bit for bit). Before the model sees the frame they are filled by a
push-pull pyramid (averages of the valid neighbourhood at ever coarser scales), which is smooth
and therefore cheap to code; the valid pixels keep their rate.

After decoding, a valid pixel whose lossy value happens to equal the no-data value is moved by
one unit (the next representable number), so no-data never appears where the input had data.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from tcube.errors import CorruptBlobError, InputError


def invalid_mask(cube: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Boolean mask of the pixels not coded by the model, or None when every pixel is valid.

    Examples
    --------
    >>> invalid_mask(np.array([[1.0, np.nan], [0.0, 2.0]], dtype=np.float32), nodata=0).astype(int)
    array([[0, 1],
           [1, 0]])
    """
    bad = ~np.isfinite(cube) if cube.dtype.kind == "f" else np.zeros(cube.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        bad |= cube == nodata
    return bad if bad.any() else None


def check_nodata(nodata: float | None, dtype: np.dtype) -> float | None:
    """``nodata`` as a float, after checking that ``dtype`` can represent it."""
    if nodata is None:
        return None
    try:
        value = float(nodata)
    except (TypeError, ValueError) as exc:
        raise InputError(f"nodata must be a number or None, got {nodata!r}") from exc
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        lim = np.iinfo(dtype)
        if not (value.is_integer() and lim.min <= value <= lim.max):
            raise InputError(f"nodata {nodata!r} is not a {dtype} value")
    return value


def _halve(a: np.ndarray) -> np.ndarray:
    """2x2 sums over the last two axes (odd sizes padded with zeros)."""
    h, w = a.shape[-2:]
    a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)])
    return a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2]


def _upsample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes of (N, C, h, w) to ``size``."""
    return torch.nn.functional.interpolate(torch.from_numpy(a), size=tuple(size), mode="bilinear",
                                           align_corners=False).numpy()


def fill_invalid(x: np.ndarray, invalid: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Replace ``invalid`` pixels of (N, C, H, W) float ``x`` by a smooth push-pull fill.

    Planes without any valid pixel take the band's ``background`` value.

    Examples
    --------
    >>> x = np.array([[[[1.0, 0.0, 3.0]]]], dtype=np.float32)
    >>> fill_invalid(x, x == 0, np.zeros(1))
    array([[[[1., 2., 3.]]]], dtype=float32)
    """
    weight = (~invalid).astype(np.float64)
    total = np.where(invalid, 0.0, x).astype(np.float64)
    pyramid = [(total, weight)]
    while max(pyramid[-1][0].shape[-2:]) > 1:
        pyramid.append((_halve(pyramid[-1][0]), _halve(pyramid[-1][1])))
    top_total, top_weight = pyramid[-1]
    back = np.broadcast_to(np.asarray(background, np.float64)[:, None, None], top_total.shape[1:])
    estimate = np.where(top_weight > 0, top_total / np.maximum(top_weight, 1e-12), back)
    for total, weight in reversed(pyramid[:-1]):
        coarse = _upsample(estimate, total.shape[-2:])
        estimate = np.where(weight > 0, total / np.maximum(weight, 1e-12), coarse)
    return np.where(invalid, estimate, x).astype(np.float32)


_SHARED_BITMAP, _SHARED_VALUE = 1, 2  # flags of the mask stream's first byte


def pack_mask(invalid: np.ndarray | None, frame: np.ndarray) -> bytes:
    """The ``"mask"`` stream of one (C, H, W) frame: empty when nothing is masked.

    A flag byte, then zlib of the packed bitmap (one (H, W) plane when every band shares it)
    and the masked values (one value when they are all the same bits).
    """
    if invalid is None or not invalid.any():
        return b""
    values = frame[invalid]
    flags = 0
    bitmap = invalid
    if (invalid == invalid[:1]).all():
        flags, bitmap = flags | _SHARED_BITMAP, invalid[0]
    if (values.view(f"u{values.itemsize}") == values[:1].view(f"u{values.itemsize}")).all():
        flags, values = flags | _SHARED_VALUE, values[:1]
    return bytes([flags]) + zlib.compress(np.packbits(bitmap, axis=None).tobytes() + values.tobytes(), 9)


def unpack_mask(stream: bytes, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """Inverse of :func:`pack_mask`: (mask, values of the masked pixels) or None."""
    if not stream:
        return None
    flags = stream[0]
    try:
        data = zlib.decompress(stream[1:])
    except zlib.error as exc:
        raise CorruptBlobError(f"blob corrupt: mask stream unreadable ({exc})") from exc
    plane = shape[1:] if flags & _SHARED_BITMAP else shape
    n = int(np.prod(plane))
    nbits, itemsize = (n + 7) // 8, np.dtype(dtype).itemsize
    if flags > _SHARED_BITMAP | _SHARED_VALUE or len(data) < nbits:
        raise CorruptBlobError("blob corrupt: mask stream does not match the frame size")
    invalid = np.unpackbits(np.frombuffer(data[:nbits], np.uint8), count=n).astype(bool).reshape(plane)
    invalid = np.broadcast_to(invalid, shape)
    count = 1 if flags & _SHARED_VALUE else int(invalid.sum())
    if len(data) - nbits != count * itemsize or not invalid.any():
        raise CorruptBlobError("blob corrupt: mask stream does not match the frame size")
    values = np.frombuffer(data[nbits:], dtype)
    return invalid, values


def avoid_nodata(out: np.ndarray, nodata: float | None) -> np.ndarray:
    """Move decoded values equal to ``nodata`` by one unit, in place; returns ``out``.

    Examples
    --------
    >>> avoid_nodata(np.array([0, 1, 5], dtype=np.uint16), 0)
    array([1, 1, 5], dtype=uint16)
    """
    if nodata is None or np.isnan(nodata):
        return out
    hit = out == nodata
    if hit.any():
        if out.dtype.kind == "f":
            out[hit] = np.nextafter(out.dtype.type(nodata), out.dtype.type(np.inf))
        else:
            out[hit] = nodata + 1 if nodata < np.iinfo(out.dtype).max else nodata - 1
    return out
