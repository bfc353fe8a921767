"""The tcube container: a versioned, self-describing, checksummed blob.

Layout (little endian)::

    magic      8 bytes   b"\\x89TCUBE\\r\\n"
    version    u16       FORMAT_VERSION
    hlen       u32       length of the header
    header     hlen      UTF-8 JSON: model, weights digest, quality, dtype, shape, normalisation,
                         and per frame the byte length of each entropy-coded stream and the
                         CRC32 of its symbols
    payload              the streams, frame after frame, each frame's in name order
    crc        u32       CRC32 of everything before it

Every way a blob can be damaged raises a :class:`~tcube.errors.BitstreamError` subclass that
says what is wrong: foreign bytes, an unknown version, truncation, a checksum mismatch.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

from tcube.errors import CorruptBlobError, NotATcubeBlobError, TruncatedBlobError, UnsupportedVersionError

MAGIC = b"\x89TCUBE\r\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")


@dataclass
class Container:
    """Parsed blob: the header dict and, per frame, its streams by name."""

    header: dict
    frames: list[dict[str, bytes]] = field(default_factory=list)


def pack(header: dict, frames: list[dict[str, bytes]]) -> bytes:
    """Serialise ``header`` and frame streams; the stream lengths are added to the header.

    Examples
    --------
    >>> blob = pack({"model": "m", "frames": [{"crc": 0}]}, [{"y": b"abcd"}])
    >>> unpack(blob).frames[0]["y"]
    b'abcd'
    """
    header = dict(header)
    header["frames"] = [
        {**meta, "streams": {name: len(streams[name]) for name in sorted(streams)}}
        for meta, streams in zip(header["frames"], frames)
    ]
    hbytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(hbytes)) + hbytes + b"".join(
        streams[name] for streams in frames for name in sorted(streams)
    )
    return body + _CRC.pack(zlib.crc32(body))


def _crc_ok(blob: bytes) -> bool:
    return len(blob) >= 4 and zlib.crc32(blob[:-4]) == _CRC.unpack(blob[-4:])[0]


def unpack(blob: bytes) -> Container:
    """Check and split a blob; raises a precise :class:`~tcube.errors.BitstreamError` if damaged."""
    blob = bytes(blob)
    if len(blob) < len(MAGIC):
        if blob and MAGIC.startswith(blob):
            raise TruncatedBlobError(f"blob truncated: {len(blob)} bytes, shorter than the tcube magic")
        raise NotATcubeBlobError("not a tcube blob (too short, no tcube magic)")
    if blob[: len(MAGIC)] != MAGIC:
        raise NotATcubeBlobError("not a tcube blob (magic bytes differ)")
    if len(blob) < _PREFIX.size + _CRC.size:
        raise TruncatedBlobError(f"blob truncated: {len(blob)} bytes, shorter than the fixed prefix")
    _, version, hlen = _PREFIX.unpack_from(blob)
    if version != FORMAT_VERSION:
        what = "" if _crc_ok(blob) else " (or the blob is corrupt: its checksum fails too)"
        raise UnsupportedVersionError(
            f"tcube format version {version} is not supported by this package (reads version {FORMAT_VERSION}){what}"
        )
    start = _PREFIX.size + hlen
    if start + _CRC.size > len(blob):
        raise TruncatedBlobError(f"blob truncated: header needs {start + _CRC.size} bytes, blob has {len(blob)}")
    try:
        header = json.loads(blob[_PREFIX.size: start].decode())
        sizes = [dict(f["streams"]) for f in header["frames"]]
        expected = start + sum(int(n) for f in sizes for n in f.values()) + _CRC.size
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptBlobError(f"blob corrupt: header unreadable ({exc.__class__.__name__})") from exc
    if len(blob) < expected:
        raise TruncatedBlobError(f"blob truncated: {len(blob)} bytes, header announces {expected}")
    if len(blob) > expected:
        raise CorruptBlobError(f"blob corrupt: {len(blob) - expected} unexpected trailing bytes")
    if not _crc_ok(blob):
        raise CorruptBlobError("blob corrupt: CRC32 checksum mismatch")
    frames, pos = [], start
    for f in sizes:
        streams = {}
        for name, n in f.items():
            streams[name] = blob[pos: pos + int(n)]
            pos += int(n)
        frames.append(streams)
    return Container(header, frames)


def read_header(blob: bytes) -> dict:
    """The checked header of ``blob`` (see :func:`unpack`)."""
    return unpack(blob).header
