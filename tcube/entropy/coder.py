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
    order = np.argsort(table_idx, kind="stable")
    ids = table_idx[order]
    first = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]])) if len(ids) else np.zeros(0, np.int64)
    return order, ids[first], np.append(first, len(order))


def encode_symbols(values: np.ndarray, table_idx: np.ndarray, tables: TableSet) -> bytes:
    """Code integer ``values``, each with the table of the same position in ``table_idx``.

    Examples
    --------
    >>> ts = TableSet.from_pmfs([np.array([0.2, 0.6, 0.2])], offsets=[-1])
    >>> v = np.array([0, 1, -1, 40]); i = np.zeros(4, dtype=np.int64)
    >>> bool((decode_symbols(encode_symbols(v, i, ts), i, ts) == v).all())
    True
    """
    values = np.asarray(values, dtype=np.int64).ravel()
    table_idx = np.asarray(table_idx, dtype=np.int32).ravel()
    enc = RangeEncoder()
    escaped = []
    order, used, bounds = _groups(table_idx)
    for t, a, b in zip(used, bounds[:-1], bounds[1:]):
        v = values[order[a:b]] - tables.offset[t]
        esc = (v < 0) | (v >= tables.length[t] - 1)
        if esc.any():
            escaped.append(values[order[a:b]][esc])
            v = np.where(esc, tables.length[t] - 1, v)
        enc.encode(v.astype(np.int32), tables.models[t])
    if escaped:
        raw = np.concatenate(escaped)
        zig = np.where(raw >= 0, 2 * raw, -2 * raw - 1).astype(np.uint64)
        if (zig >= 1 << 32).any():
            raise OverflowError("latent value too large to code")
        enc.encode((zig >> 16).astype(np.int32), _RAW)
        enc.encode((zig & 0xFFFF).astype(np.int32), _RAW)
    return enc.get_compressed().tobytes()


def decode_symbols(data: bytes, table_idx: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of :func:`encode_symbols`; returns int64 values in the shape of ``table_idx``."""
    shape = np.shape(table_idx)
    table_idx = np.asarray(table_idx, dtype=np.int32).ravel()
    if len(data) % 4:
        raise CorruptBlobError("entropy-coded segment length is not a multiple of 4 bytes")
    try:
        dec = RangeDecoder(np.frombuffer(data, dtype=np.uint32).copy())
        out = np.empty(len(table_idx), dtype=np.int64)
        esc_pos = []
        order, used, bounds = _groups(table_idx)
        for t, a, b in zip(used, bounds[:-1], bounds[1:]):
            v = np.asarray(dec.decode(tables.models[t], int(b - a)), dtype=np.int64)
            esc = v == tables.length[t] - 1
            out[order[a:b]] = v + tables.offset[t]
            if esc.any():
                esc_pos.append(order[a:b][esc])
        if esc_pos:
            pos = np.concatenate(esc_pos)
            hi = np.asarray(dec.decode(_RAW, len(pos)), dtype=np.uint64)
            lo = np.asarray(dec.decode(_RAW, len(pos)), dtype=np.uint64)
            zig = (hi << 16) | lo
            out[pos] = np.where(zig % 2 == 0, zig // 2, -((zig + 1) // 2)).astype(np.int64)
    except Exception as exc:  # constriction signals invalid data with AssertionError, ValueError...
        raise CorruptBlobError(f"entropy-coded segment cannot be decoded ({type(exc).__name__}: {exc})") from exc
    return out.reshape(shape)
