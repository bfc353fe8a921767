"""Pixels the model does not code: NaN, infinities, negative zeros, a no-data value, values outside the range
the model codes (:data:`CODED_RANGE`: saturated 65535, negative fill values, foreign scales) and
the masked pixels of numpy masked arrays.

Such pixels are recorded losslessly, per frame, in the container's ``"mask"`` stream (the packed
bitmap and the raw values of those pixels, zlib-compressed, so NaN payloads, no-data and any
outlier come back bit for bit; for masked arrays, also the array's own mask). Before the model
sees the frame they are filled by a push-pull pyramid (averages of the valid neighbourhood at
ever coarser scales), which is smooth and therefore cheap to code; the valid pixels keep their
rate, and no sharp edge around an outlier disturbs its neighbours.

After decoding, a valid pixel whose lossy value happens to equal the no-data value is moved by
one unit (the next representable number), so no-data never appears where the input had data.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from tcube.errors import CorruptBlobError

#: Digital numbers the learned models code (Sentinel-2 reflectance x 10000, with or without the
#: L2A +1000 offset); values outside are kept exactly beside the payload.
CODED_RANGE = (-1000.0, 20000.0)


def invalid_mask(cube: np.ndarray, nodata: float | None, coded: tuple[float, float] | None = None,
                 masked: np.ndarray | None = None) -> np.ndarray | None:
    """Boolean mask of the pixels not coded by the model, or None when every pixel is valid.

    NaN and infinities (floats), ``nodata``, values outside ``coded`` (low, high, in the cube's
    units) and the pixels ``masked`` is true at.

    Examples
    --------
    >>> x = np.array([[1.0, np.nan], [0.0, 2.0], [65535, -5]], dtype=np.float32)
    >>> invalid_mask(x, nodata=0, coded=(-1, 100)).astype(int)
    array([[0, 1],
           [1, 0],
           [1, 1]])
    """
    bad = ~np.isfinite(cube) if cube.dtype.kind == "f" else np.zeros(cube.shape, bool)
    if cube.dtype.kind == "f":
        bad |= np.signbit(cube) & (cube == 0)  # -0.0: kept bit for bit (the model would give +0.0)
    if nodata is not None and not np.isnan(nodata):
        bad |= cube == nodata
    if coded is not None:
        bad |= cube < coded[0]
        bad |= cube > coded[1]
    if masked is not None:
        bad |= masked
    return bad if bad.any() else None


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


# flags of the mask stream's first byte: the pixel bitmap is one plane shared by every band; every
# value has the same bits; an array mask follows the values; that array mask is one shared plane
_SHARED_BITMAP, _SHARED_VALUE, _ARRAY_MASK, _SHARED_ARRAY_MASK = 1, 2, 4, 8
_FLAGS = _SHARED_BITMAP | _SHARED_VALUE | _ARRAY_MASK | _SHARED_ARRAY_MASK


def _bitmap(mask: np.ndarray) -> tuple[bool, bytes]:
    """(shared, packed bits) of a (C, H, W) mask: one (H, W) plane when every band has the same."""
    shared = bool((mask == mask[:1]).all())
    return shared, np.packbits(mask[0] if shared else mask, axis=None).tobytes()


def pack_mask(invalid: np.ndarray | None, frame: np.ndarray, array_mask: np.ndarray | None = None) -> bytes:
    """The ``"mask"`` stream of one (C, H, W) frame: empty when nothing is masked.

    A flag byte, then zlib of the packed bitmap (one (H, W) plane when every band shares it),
    the values of those pixels (one value when they all have the same bits) and, for masked
    arrays with masked pixels in this frame, the array's mask (a subset of the bitmap).
    """
    if invalid is None or not invalid.any():
        return b""
    values = frame[invalid]
    shared, bits = _bitmap(invalid)
    flags = _SHARED_BITMAP if shared else 0
    if (values.view(f"u{values.itemsize}") == values[:1].view(f"u{values.itemsize}")).all():
        flags, values = flags | _SHARED_VALUE, values[:1]
    tail = b""
    if array_mask is not None and array_mask.any():
        shared_mask, tail = _bitmap(array_mask)
        flags |= _ARRAY_MASK | (_SHARED_ARRAY_MASK if shared_mask else 0)
    return bytes([flags]) + zlib.compress(bits + values.tobytes() + tail, 9)


def _corrupt(what: str) -> CorruptBlobError:
    return CorruptBlobError(f"blob corrupt: mask stream {what}")


def _unbits(data: bytes, shared: bool, shape: tuple[int, ...]) -> np.ndarray:
    plane = shape[1:] if shared else shape
    n = int(np.prod(plane))
    return np.broadcast_to(np.unpackbits(np.frombuffer(data, np.uint8), count=n).astype(bool).reshape(plane), shape)


def unpack_mask(stream: bytes, shape: tuple[int, ...], dtype: np.dtype
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Inverse of :func:`pack_mask`: (mask, values of the masked pixels, array mask or None) or None."""
    if not stream:
        return None
    flags = stream[0]
    if flags & ~_FLAGS or (flags & _SHARED_ARRAY_MASK and not flags & _ARRAY_MASK):
        raise _corrupt(f"has unknown flags {flags:#x}")
    plane_bytes, full_bytes = (int(np.prod(shape[1:])) + 7) // 8, (int(np.prod(shape)) + 7) // 8
    nbits = plane_bytes if flags & _SHARED_BITMAP else full_bytes
    mask_bits = 0 if not flags & _ARRAY_MASK else plane_bytes if flags & _SHARED_ARRAY_MASK else full_bytes
    limit = nbits + int(np.prod(shape)) * np.dtype(dtype).itemsize + mask_bits
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(stream[1:], limit + 1)  # never more than a frame's worth
    except zlib.error as exc:
        raise _corrupt(f"unreadable ({exc})") from exc
    if len(data) > limit or len(data) < nbits or not inflater.eof or inflater.unused_data:
        raise _corrupt("does not match the frame size")
    invalid = _unbits(data[:nbits], bool(flags & _SHARED_BITMAP), shape)
    count = 1 if flags & _SHARED_VALUE else int(invalid.sum())
    itemsize = np.dtype(dtype).itemsize
    if len(data) - nbits - mask_bits != count * itemsize or not invalid.any():
        raise _corrupt("does not match the frame size")
    values = np.frombuffer(data[nbits: nbits + count * itemsize], dtype)
    array_mask = None
    if flags & _ARRAY_MASK:
        array_mask = _unbits(data[nbits + count * itemsize:], bool(flags & _SHARED_ARRAY_MASK), shape)
        if (array_mask & ~invalid).any():
            raise _corrupt("masks pixels it does not keep")
    return invalid, values, array_mask


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
