"""Exp-Golomb codes for short lists of signed integers (side information of a few hundred values).

Signed values map to unsigned ones by zig-zag (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...); an unsigned
value ``v`` of order ``k`` is coded as ``v + 2**k`` in binary, preceded by as many zeros as that
number has bits after the first, minus ``k``. The writer pads the last byte with zeros.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcube.errors import CorruptBlobError

#: Longest prefix a reader accepts (values below 2**40): a longer run of zeros means a corrupt stream.
MAX_PREFIX = 40


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def signed_bits(values: Iterable[int], order: int = 0) -> int:
    """Bits :meth:`BitWriter.signed` spends on ``values``.

    Examples
    --------
    >>> signed_bits([0, -1, 3])
    9
    """
    return sum(2 * (_zigzag(int(v)) + (1 << order)).bit_length() - 1 - order for v in values)


class BitWriter:
    """Collects Exp-Golomb codes and raw bits, most significant bit first.

    Examples
    --------
    >>> w = BitWriter()
    >>> w.signed([0, -3, 7, 120]); w.bits(5, 3)
    >>> r = BitReader(w.getvalue())
    >>> r.signed(4), r.bits(3)
    ([0, -3, 7, 120], 5)
    """

    def __init__(self) -> None:
        self._bits: list[str] = []

    def bits(self, value: int, n: int) -> None:
        """``value`` (0 <= value < 2**n) in ``n`` raw bits."""
        if n:
            self._bits.append(format(value, f"0{n}b"))

    def unsigned(self, values: Iterable[int], order: int = 0) -> None:
        for v in values:
            code = format(int(v) + (1 << order), "b")
            self._bits.append("0" * (len(code) - 1 - order) + code)

    def signed(self, values: Iterable[int], order: int = 0) -> None:
        self.unsigned((_zigzag(v) for v in map(int, values)), order)

    def getvalue(self) -> bytes:
        text = "".join(self._bits)
        text += "0" * (-len(text) % 8)
        return int(text, 2).to_bytes(len(text) // 8, "big") if text else b""


class BitReader:
    """Reads what :class:`BitWriter` wrote; running past the end raises :class:`CorruptBlobError`."""

    def __init__(self, data: bytes) -> None:
        self._text = "".join(format(b, "08b") for b in data)
        self._pos = 0

    def _take(self, n: int) -> str:
        if self._pos + n > len(self._text):
            raise CorruptBlobError("side information ends in the middle of a value")
        out = self._text[self._pos: self._pos + n]
        self._pos += n
        return out

    def bits(self, n: int) -> int:
        return int(self._take(n), 2) if n else 0

    def _one(self, order: int) -> int:
        zeros = 0
        while self._take(1) == "0":
            zeros += 1
            if zeros > MAX_PREFIX:
                raise CorruptBlobError("side information holds an impossibly long code")
        return int("1" + self._take(zeros + order), 2) - (1 << order)

    def unsigned(self, n: int, order: int = 0) -> list[int]:
        return [self._one(order) for _ in range(n)]

    def signed(self, n: int, order: int = 0) -> list[int]:
        return [v // 2 if v % 2 == 0 else -(v + 1) // 2 for v in self.unsigned(n, order)]

    def bytes_read(self) -> int:
        """Whole bytes the values read so far occupy (the writer pads to a byte)."""
        return -(-self._pos // 8)

    def check_end(self) -> None:
        """Raise unless only padding (fewer than 8 zero bits) is left."""
        rest = self._text[self._pos:]
        if len(rest) >= 8 or "1" in rest:
            raise CorruptBlobError(f"side information has {len(rest)} bits left over after its last value")
