"""LEB128 varints: unsigned integers in 7-bit groups, low group first, the top bit of each byte set
when another byte follows (byte lengths and counts in containers and packed streams)."""

from __future__ import annotations

from collections.abc import Iterable

from tcube.errors import CorruptBlobError

#: Most bytes a reader accepts for one value (values below 2**63).
MAX_BYTES = 9


def encode(values: Iterable[int]) -> bytes:
    """``values`` (non-negative integers) as LEB128 varints.

    Examples
    --------
    >>> encode([0, 127, 128, 300]).hex()
    '007f8001ac02'
    """
    out = bytearray()
    for n in values:
        if n < 0:
            raise ValueError(f"LEB128 codes non-negative integers, not {n}")
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                break
    return bytes(out)


def read(data: bytes, pos: int) -> tuple[int, int]:
    """The value of the varint at ``data[pos:]`` and the position after it;
    :class:`~tcube.errors.CorruptBlobError` when it runs past the end or is too long.

    Examples
    --------
    >>> read(bytes.fromhex("00ac02"), 1)
    (300, 3)
    """
    n = 0
    for i in range(MAX_BYTES):
        if pos + i >= len(data):
            raise CorruptBlobError("varint runs past the end of its data")
        byte = data[pos + i]
        n |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return n, pos + i + 1
    raise CorruptBlobError(f"varint longer than {MAX_BYTES} bytes")
