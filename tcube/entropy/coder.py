"""Range coding of integer symbols with frozen tables (constriction), with an escape for outliers.

Symbols are grouped by table and coded group after group, so the coder makes one vectorised
call per table in use rather than one per symbol. Values outside a table's support are coded as
the escape symbol followed by the raw value (two 16-bit halves of its zigzag code).
"""

from __future__ import annotations

import constriction
import numpy as np

from tcube.entropy.tables import TableSet
from tcube.errors import CorruptBlobError

_RAW = constriction.stream.model.Uniform(1 << 16)
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder


def _groups(table_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order that sorts symbols by table, the tables used, and where each group starts."""
    small = len(table_idx) and 0 <= table_idx.min() and table_idx.max() < 256
    keys = table_idx.astype(np.uint8) if small else table_idx
    order = np.argsort(keys, kind="stable")  # the same order either way; 8-bit keys sort in linear time
    ids = table_idx[order]
    first = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]])) if len(ids) else np.zeros(0, np.int64)
    return order, ids[first], np.append(first, len(order))


class SymbolWriter:
    """One range-coded stream written in several calls, each coding a group of symbols whose tables
    may depend on what earlier groups decode to (read back in the same order by :class:`SymbolReader`).

    Examples
    --------
    >>> ts = TableSet.from_pmfs([np.array([0.2, 0.6, 0.2])], offsets=[-1])
    >>> w = SymbolWriter(); w.write(np.array([0, 1]), np.zeros(2, int), ts); w.write(np.array([-9]), [0], ts)
    >>> r = SymbolReader(w.finish()); r.read(np.zeros(2, int), ts).tolist(), r.read([0], ts).tolist()
    ([0, 1], [-9])
    """

    def __init__(self) -> None:
        self.encoder = RangeEncoder()

    def write(self, values: np.ndarray, table_idx: np.ndarray, tables: TableSet) -> None:
        """Code integer ``values``, each with the table of the same position in ``table_idx``."""
        values = np.asarray(values, dtype=np.int64).ravel()
        table_idx = np.asarray(table_idx, dtype=np.int32).ravel()
        escaped = []
        order, used, bounds = _groups(table_idx)
        for t, a, b in zip(used, bounds[:-1], bounds[1:]):
            v = values[order[a:b]] - tables.offset[t]
            esc = (v < 0) | (v >= tables.length[t] - 1)
            if esc.any():
                escaped.append(values[order[a:b]][esc])
                v = np.where(esc, tables.length[t] - 1, v)
            self.encoder.encode(v.astype(np.int32), tables.models[t])
        if escaped:
            raw = np.concatenate(escaped)
            zig = np.where(raw >= 0, 2 * raw, -2 * raw - 1).astype(np.uint64)
            if (zig >= 1 << 32).any():
                raise OverflowError("value too large to code")
            self.encoder.encode((zig >> 16).astype(np.int32), _RAW)
            self.encoder.encode((zig & 0xFFFF).astype(np.int32), _RAW)

    def finish(self) -> bytes:
        """The coded stream (a multiple of 4 bytes)."""
        return self.encoder.get_compressed().tobytes()


class SymbolReader:
    """Reads back, group by group, what a :class:`SymbolWriter` wrote."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise CorruptBlobError("entropy-coded segment length is not a multiple of 4 bytes")
        try:
            self.decoder = RangeDecoder(np.frombuffer(data, dtype=np.uint32).copy())
        except Exception as exc:  # pragma: no cover - constriction accepts any word sequence
            raise CorruptBlobError(f"entropy-coded segment cannot be read ({exc})") from exc

    def read(self, table_idx: np.ndarray, tables: TableSet) -> np.ndarray:
        """The next group: int64 values in the shape of ``table_idx``."""
        shape = np.shape(table_idx)
        table_idx = np.asarray(table_idx, dtype=np.int32).ravel()
        try:
            order, used, bounds = _groups(table_idx)
            sizes = np.diff(bounds)
            parts = [np.atleast_1d(self.decoder.decode(tables.models[t], int(n))) for t, n in zip(used, sizes)]
            v = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
            esc = v == np.repeat(tables.length[used] - 1, sizes)  # one scatter for every group
            out = np.empty(len(table_idx), dtype=np.int64)
            out[order] = v + np.repeat(tables.offset[used], sizes)
            if esc.any():
                pos = order[esc]
                hi = np.asarray(self.decoder.decode(_RAW, len(pos)), dtype=np.uint64)
                lo = np.asarray(self.decoder.decode(_RAW, len(pos)), dtype=np.uint64)
                zig = (hi << 16) | lo
                out[pos] = np.where(zig % 2 == 0, zig // 2, -((zig + 1) // 2)).astype(np.int64)
        except Exception as exc:  # constriction signals invalid data with AssertionError, ValueError...
            raise CorruptBlobError(f"entropy-coded segment cannot be decoded ({type(exc).__name__}: {exc})") from exc
        return out.reshape(shape)


def encode_symbols(values: np.ndarray, table_idx: np.ndarray, tables: TableSet) -> bytes:
    """Code integer ``values``, each with the table of the same position in ``table_idx``.

    Examples
    --------
    >>> ts = TableSet.from_pmfs([np.array([0.2, 0.6, 0.2])], offsets=[-1])
    >>> v = np.array([0, 1, -1, 40]); i = np.zeros(4, dtype=np.int64)
    >>> bool((decode_symbols(encode_symbols(v, i, ts), i, ts) == v).all())
    True
    """
    writer = SymbolWriter()
    writer.write(values, table_idx, tables)
    return writer.finish()


def decode_symbols(data: bytes, table_idx: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns int64 values in the shape of ``table_idx``."""
    return SymbolReader(data).read(table_idx, tables)
