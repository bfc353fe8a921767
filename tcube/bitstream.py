"""The tcube container: a versioned, self-describing, checksummed blob.

Version 10 (written now) has the layout of version 9; its ``"residual"`` streams may code passes in
copy mode (:mod:`tcube.residual_copies`). Version 9 is compact, for zarr chunks of a few hundred
bytes (little endian)::

    prefix     2 bytes   0x89, the version (9 or 10)
    flags      u8        bit 0: the shape has dates (T, C, H, W; else C, H, W), bit 1: decode to a
                         numpy masked array, bit 2: a no-data value that is a whole number
                         (zig-zag LEB128), bit 3: a no-data value that is not (f64), bit 4: units
                         (f64 scale and offset), bit 5: band names (a count and short strings),
                         bit 6: coding modes (as in version 5), bit 7: an extension byte follows
    extension  u8        (bit 7) bits 0-2: dimensions of the grid position, bit 3: zero padding
                         follows; others zero
    model      u8        index in MODEL_CODES (255: the name follows as a short string)
    quality    u8        quality x 4 + the dtype's index in DTYPE_CODES
    weights    4 bytes   first 4 bytes of the weights' SHA-256
    shape      LEB128 per dimension, then the fields that flags announce (no-data value, units,
                         band names, coding modes), the position (LEB128 per dimension) and the
                         padding (LEB128 count, zero bytes)
    streams    u8        which of STREAM_CODES each frame holds (bit i: STREAM_CODES[i])
    frames     per frame (as many as the shape's dates): its CRC32 (u32) and the
                         byte length (LEB128) of each stream in STREAM_CODES order
    payload              the streams, frame after frame, in STREAM_CODES order
    crc        u32       CRC32 of everything before it

It holds what version 8 holds, except the package version (informational) and the entropy coder
(version 9 blobs use :data:`CODER`). Versions 1 to 8 have this layout::

    magic      8 bytes   b"\\x89TCUBE\\r\\n"
    version    u16       FORMAT_VERSION
    hlen       u32       length of the header
    header     hlen      model name, first 16 bytes of the weights' SHA-256, quality, dtype,
                         shape, entropy coder, package version, the no-data value (a flag byte
                         and an f64), the units (scale and offset, f64: value = DN x scale +
                         offset), flags (u8), the band names (a count and short strings; none
                         when the writer gave none), the coding modes (u8: bit 0 an error
                         bound, bit 1 a PSNR target) and each one's f64 (the target's
                         metric after it), stream names, and per frame a CRC32 and the
                         byte length (LEB128) of each stream
    payload              the streams, frame after frame, in header order
    crc        u32       CRC32 of everything before it

Version 8 (written now) adds to the header of version 7 the blob's position (the grid
coordinates of the zarr chunk it was written for, none for a blob on its own: a chunk moved or
swapped to another key fails instead of decoding as that chunk) and zero padding (see the
size bound below); its streams are those of version 7.
Version 7 has the header of version 5; its ``"residual"`` streams also give each
band's value lattice (data stored at a coarser precision is coded in lattice units). Version 6
streams say which bands predict their finest pixels from wide neighbourhoods (bands resampled
from a coarser grid).
Version 5 added the coding modes: an error bound (every valid value decodes within
it, through the per-frame stream ``"residual"``, see :mod:`tcube.residual`), which seeds the
frames' checksums when present, and the PSNR target the encoder met, with its metric
(informational). One byte when neither is set. Version 4 added the band names, which seed them when present.
Version 3 added the units and the flags (bit 0: decode to a numpy masked array),
and binds each frame's CRC32 to the header: it covers the frame's decoded symbols and its mask
stream, seeded by a CRC of the header's fields (:func:`frame_seed`), so a header edited with a
valid checksum (another shape, dtype, quality, no-data value, or bytes moved between streams)
fails at decoding instead of decoding to something else. Version 2 added the no-data value and
the per-frame stream ``"mask"`` (see :mod:`tcube.masks`); version 1 had the per-band
normalisation where version 2 has the no-data value. Versions 1 to 5 still decode.

Sizes are bounded (:data:`MAX_SIDE`, :data:`MAX_FRAME_PIXELS`, :data:`MAX_VALUES`): encoders
refuse bigger cubes and decoders refuse headers that announce them, before any allocation.
The values a blob announces are also bounded by its own length (:func:`values_limit`), so the
cost of decoding any blob, valid or forged, is proportional to its size: version 8 blobs pad
their header when a cube (of over :data:`FREE_VALUES` values) codes below 1/1024 byte per value.

The header is binary and small (about 110 bytes plus 8 per frame): blobs are often zarr chunks
of a few kilobytes. Every way a blob can be damaged raises a
:class:`~tcube.errors.BitstreamError` subclass that says what is wrong: foreign bytes, an
unknown version, truncation, a checksum mismatch, a header that does not add up.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

from tcube.entropy import leb128
from tcube.errors import CorruptBlobError, NotATcubeBlobError, TruncatedBlobError, UnsupportedVersionError

MAGIC = b"\x89TCUBE\r\n"
FORMAT_VERSION = 10
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
#: Format versions :func:`pack` writes (older ones for tests of compatibility).
WRITABLE_VERSIONS = (2, 3, 4, 5, 6, 7, 8, 9, 10)
#: Values any blob may announce whatever its length (a 12 x 512 x 512 chunk has 3.1 M).
FREE_VALUES = 1 << 22
#: Values a blob may announce per byte of its length beyond :data:`FREE_VALUES`: version 8
#: writers pad to stay within it; earlier versions were never seen above 17 k (tec-pc, constant cubes).
VALUES_PER_BYTE = 1 << 10
VALUES_PER_BYTE_BEFORE_8 = 1 << 15
DIGEST_BYTES = 16
#: Bytes of the weights' digest that blobs of version 9 record.
COMPACT_DIGEST_BYTES = 4
#: The entropy coder of tcube's learned models (version 9 blobs do not name it).
CODER = "constriction-range-v1"
#: Models blobs of version 9 name by index (append only: an index never changes meaning).
MODEL_CODES = ("tec-fp", "tec-hp", "tec-hx", "tec-pc", "tec-tt")
#: Stream names of version 9 blobs by bit, in payload order (append only).
STREAM_CODES = ("mask", "residual", "side", "spectral", "z", "hevc", "y")
DTYPE_CODES = ("uint16", "int16", "float32")
#: Largest height or width of a frame.
MAX_SIDE = 1 << 15
#: Largest frame (height x width): 16.8 M pixels, e.g. 4096 x 4096; bigger cubes go in chunks. A
#: forged header that announces a frame this large costs a decoder at most about a second and
#: 0.5 GB before it fails.
MAX_FRAME_PIXELS = 1 << 24
#: Largest number of values (dates x bands x height x width) in one blob: 2**30.
MAX_VALUES = 1 << 30
#: Most padding a blob carries: what a cube of MAX_VALUES needs.
MAX_PAD = -(-MAX_VALUES // VALUES_PER_BYTE)
#: Flag bits of the header (version 3).
FLAG_MASKED_ARRAY = 1
_PREFIX = struct.Struct("<8sHI")
_CRC = struct.Struct("<I")


@dataclass
class Container:
    """Parsed blob: the header dict and, per frame, its streams by name."""

    header: dict
    frames: list[dict[str, bytes]] = field(default_factory=list)


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def fmt(self, f: str, *values) -> None:
        self.buf += struct.pack("<" + f, *values)

    def text(self, s: str) -> None:
        data = s.encode()
        if len(data) > 255:
            raise ValueError(f"header string too long: {s[:40]!r}…")
        self.fmt("B", len(data))
        self.buf += data

    def varint(self, n: int) -> None:
        self.buf += leb128.encode([n])


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def fmt(self, f: str):
        values = struct.unpack_from("<" + f, self.data, self.pos)
        self.pos += struct.calcsize("<" + f)
        return values if len(values) > 1 else values[0]

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise struct.error("header ends early")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def text(self) -> str:
        return self.raw(self.fmt("B")).decode()

    def varint(self) -> int:
        n, self.pos = leb128.read(self.data, self.pos)
        return n


def _encode_header(h: dict, frames: list[dict[str, bytes]], version: int) -> bytes:
    w = _Writer()
    w.text(h["model"])
    w.buf += bytes.fromhex(h["weights"])[:DIGEST_BYTES].ljust(DIGEST_BYTES, b"\0")
    w.fmt("BB", h["quality"], DTYPE_CODES.index(h["dtype"]))
    w.fmt("B" + "I" * len(h["shape"]), len(h["shape"]), *h["shape"])
    w.text(h["coder"])
    w.text(h["tcube"])
    nodata = h.get("nodata")
    w.fmt("Bd", nodata is not None, 0.0 if nodata is None else nodata)
    if version >= 3:
        w.fmt("ddB", h.get("scale", 1.0), h.get("offset", 0.0), h.get("flags", 0))
    if version >= 4:
        bands = h.get("bands") or []
        w.fmt("B", len(bands))
        for band in bands:
            w.text(band)
    if version >= 5:
        _write_modes(w, h)
    if version >= 8:
        position = h.get("position") or []
        w.fmt("B" + "I" * len(position), len(position), *position)
        w.varint(h.get("pad", 0))
        w.buf += bytes(h.get("pad", 0))
    names = sorted(frames[0]) if frames else []
    w.fmt("B", len(names))
    for name in names:
        w.text(name)
    w.fmt("I", len(frames))
    for meta, streams in zip(h["frames"], frames):
        if sorted(streams) != names:
            raise ValueError("every frame must have the same streams")
        w.fmt("I", meta["crc"])
        for name in names:
            w.varint(len(streams[name]))
    return bytes(w.buf)


def _decode_header(data: bytes, version: int) -> dict:
    r = _Reader(data)
    h: dict = {"model": r.text(), "weights": r.raw(DIGEST_BYTES).hex()}
    h["quality"], dtype = r.fmt("BB")
    h["dtype"] = DTYPE_CODES[dtype]
    ndim = r.fmt("B")
    h["shape"] = list(struct.unpack_from(f"<{ndim}I", r.raw(4 * ndim)))
    h["coder"], h["tcube"] = r.text(), r.text()
    h["nodata"] = None
    if version == 1:  # the normalisation is part of the weights, which the digest pins
        n = r.fmt("B")
        values = struct.unpack_from(f"<{2 * n}f", r.raw(8 * n))
        h["mean"], h["std"] = list(values[:n]), list(values[n:])
    else:
        has_nodata, nodata = r.fmt("Bd")
        h["nodata"] = nodata if has_nodata else None
    h["scale"], h["offset"], h["flags"] = r.fmt("ddB") if version >= 3 else (1.0, 0.0, 0)
    h["bands"] = [r.text() for _ in range(r.fmt("B"))] if version >= 4 else []
    h["max_error"] = h["psnr"] = h["metric"] = None
    if version >= 5:
        _read_modes(r, h)
    h["position"] = None
    if version >= 8:
        n = r.fmt("B")
        h["position"] = list(struct.unpack_from(f"<{n}I", r.raw(4 * n))) if n else None
        if any(r.raw(r.varint())):
            raise ValueError("padding is not zero")
    names = [r.text() for _ in range(r.fmt("B"))]
    n_frames = r.fmt("I")
    if n_frames > len(data):
        raise struct.error("frame count larger than the header")
    h["frames"] = [{"crc": r.fmt("I"), "streams": {name: r.varint() for name in names}} for _ in range(n_frames)]
    if r.pos != len(data):
        raise struct.error(f"{len(data) - r.pos} unread header bytes")
    return h


def pack(header: dict, frames: list[dict[str, bytes]], version: int = FORMAT_VERSION) -> bytes:
    """Serialise ``header`` and the frames' streams into a blob.

    ``header`` holds model, weights (hex), quality, dtype, shape, coder, tcube (version), nodata
    (a number or None), scale, offset, flags, bands (names, optional), max_error, psnr (numbers or
    None), metric (``"10k"``, ``"full"`` or None) and frames (a list of
    ``{"crc": int}``); the stream lengths are added by this function. ``version`` 2 to 8 writes
    an earlier format (for tests).

    Examples
    --------
    >>> h = {"model": "m", "weights": "ab" * 16, "quality": 3, "dtype": "int16", "shape": [1, 2, 4, 4],
    ...      "coder": CODER, "tcube": "0", "frames": [{"crc": 7}]}
    >>> c = unpack(pack(h, [{"y": b"abcd"}]))
    >>> c.frames[0]["y"], c.header["frames"]
    (b'abcd', [{'crc': 7, 'streams': {'y': 4}}])
    """
    if version not in WRITABLE_VERSIONS:
        raise ValueError(f"cannot write format version {version}")
    header = {**header, "pad": 0}
    while True:  # pad until the blob may announce its values (a few rounds at most: the varint grows)
        body = _compact_body(header, frames, version) if version >= 9 else _legacy_body(header, frames, version)
        short = _min_length(header["shape"], version) - len(body) - _CRC.size
        if short <= 0 or version < 8 or header["pad"] + short > MAX_PAD:
            break  # (a cube too large for any blob pads nothing: decoders refuse it on its size)
        header["pad"] += short
    return body + _CRC.pack(zlib.crc32(body))


def _legacy_body(header: dict, frames: list[dict[str, bytes]], version: int) -> bytes:
    payload = b"".join(streams[name] for streams in frames for name in sorted(streams))
    hbytes = _encode_header(header, frames, version)
    return _PREFIX.pack(MAGIC, version, len(hbytes)) + hbytes + payload


_DATED, _MASKED, _NODATA_WHOLE, _NODATA_FLOAT, _UNITS, _BANDS, _MODES, _EXTENDED = (1 << i for i in range(8))
_POSITION_DIMS, _PADDED = 7, 8
_NAMED_MODEL = 255
#: Versions from 9 up to this one (excluded) are compact: their second byte is the version.
_COMPACT_TOP = 32


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(n: int) -> int:
    return n // 2 if n % 2 == 0 else -(n + 1) // 2


def _compact_body(h: dict, frames: list[dict[str, bytes]], version: int) -> bytes:
    """Versions 9 and 10: everything but the final CRC (see the module docstring)."""
    shape, position, pad = list(h["shape"]), list(h.get("position") or []), h.get("pad", 0)
    nodata, bound, target = h.get("nodata"), h.get("max_error"), h.get("psnr")
    crcs = [f["crc"] for f in h["frames"]]
    names = [n for n in STREAM_CODES if frames and n in frames[0]]
    whole = nodata is not None and math.isfinite(nodata) and float(nodata).is_integer() and abs(nodata) < 2**53
    units = h.get("scale", 1.0) != 1.0 or h.get("offset", 0.0) != 0.0
    if len(shape) not in (3, 4) or len(frames) != (shape[0] if len(shape) == 4 else 1) or len(position) > 7:
        raise ValueError(f"a version 9 blob holds one frame per date of a 3-d or 4-d shape, not {len(frames)} "
                         f"frames of {shape} at position {position}")
    if h.get("coder", CODER) != CODER or h.get("flags", 0) & ~FLAG_MASKED_ARRAY:
        raise ValueError(f"version 9 blobs use coder {CODER!r} and no flag beyond FLAG_MASKED_ARRAY")
    if any(sorted(f) != sorted(names) for f in frames) or len(names) != len(frames[0] if frames else names):
        raise ValueError(f"every frame must have the same streams, among {STREAM_CODES}")
    ext = len(position) | (_PADDED if pad else 0)
    flags = ((_DATED if len(shape) == 4 else 0) | (_MASKED if h.get("flags", 0) else 0)
             | (_NODATA_WHOLE if whole else _NODATA_FLOAT if nodata is not None else 0) | (_UNITS if units else 0)
             | (_BANDS if h.get("bands") else 0) | (_MODES if bound is not None or target is not None else 0)
             | (_EXTENDED if ext else 0))
    w = _Writer()
    w.buf += bytes([MAGIC[0], version, flags] + ([ext] if ext else []))
    model = MODEL_CODES.index(h["model"]) if h["model"] in MODEL_CODES else _NAMED_MODEL
    w.fmt("BB", model, 4 * h["quality"] + DTYPE_CODES.index(h["dtype"]))
    if model == _NAMED_MODEL:
        w.text(h["model"])
    w.buf += bytes.fromhex(h["weights"][: 2 * COMPACT_DIGEST_BYTES]).ljust(COMPACT_DIGEST_BYTES, b"\0")
    w.buf += leb128.encode(shape)
    if whole:
        w.varint(_zigzag(int(nodata)))
    elif nodata is not None:
        w.fmt("d", nodata)
    if units:
        w.fmt("dd", h["scale"], h["offset"])
    if h.get("bands"):
        w.fmt("B", len(h["bands"]))
        for band in h["bands"]:
            w.text(band)
    if flags & _MODES:
        _write_modes(w, h)
    w.buf += leb128.encode(position)
    if pad:
        w.varint(pad)
        w.buf += bytes(pad)
    w.fmt("B", sum(1 << STREAM_CODES.index(n) for n in names))
    for crc, streams in zip(crcs, frames):
        w.fmt("I", crc)
        w.buf += leb128.encode([len(streams[n]) for n in names])
    return bytes(w.buf) + b"".join(streams[n] for streams in frames for n in names)


def _write_modes(w: _Writer, h: dict) -> None:
    bound, target = h.get("max_error"), h.get("psnr")
    w.fmt("B", (bound is not None) | (target is not None) << 1)
    if bound is not None:
        w.fmt("d", bound)
    if target is not None:
        w.fmt("d", target)
        w.text(h.get("metric") or "10k")


def _read_modes(r: _Reader, h: dict) -> None:
    modes = r.fmt("B")
    if modes & ~3:
        raise ValueError(f"unknown coding modes {modes:#x}")
    h["max_error"] = r.fmt("d") if modes & 1 else None
    if modes & 2:
        h["psnr"], h["metric"] = r.fmt("d"), r.text()


def _decode_compact(blob: bytes) -> tuple[dict, list[list[int]], int]:
    """Version 9 header: the header dict, per frame its stream lengths (STREAM_CODES order), and
    where the payload starts."""
    r = _Reader(blob[: len(blob) - _CRC.size])
    r.pos = 2
    flags = r.fmt("B")
    ext = r.fmt("B") if flags & _EXTENDED else 0
    if (flags & _EXTENDED and not ext) or ext & ~(_POSITION_DIMS | _PADDED) \
            or flags & _NODATA_WHOLE and flags & _NODATA_FLOAT:
        raise ValueError(f"unknown or contradictory flags {flags:#x}, {ext:#x}")
    model, packed = r.fmt("BB")
    name = r.text() if model == _NAMED_MODEL else MODEL_CODES[model]
    h: dict = {"model": name, "weights": r.raw(COMPACT_DIGEST_BYTES).hex(), "quality": packed >> 2,
               "dtype": DTYPE_CODES[packed & 3], "coder": CODER, "tcube": None, "nodata": None,
               "scale": 1.0, "offset": 0.0, "flags": FLAG_MASKED_ARRAY if flags & _MASKED else 0, "bands": [],
               "max_error": None, "psnr": None, "metric": None, "position": None}
    h["shape"] = [r.varint() for _ in range(4 if flags & _DATED else 3)]
    if flags & _NODATA_WHOLE:
        h["nodata"] = float(_unzigzag(r.varint()))
    elif flags & _NODATA_FLOAT:
        h["nodata"] = r.fmt("d")
    if flags & _UNITS:
        h["scale"], h["offset"] = r.fmt("dd")
    if flags & _BANDS:
        h["bands"] = [r.text() for _ in range(r.fmt("B"))]
    if flags & _MODES:
        _read_modes(r, h)
    if ext & _POSITION_DIMS:
        h["position"] = [r.varint() for _ in range(ext & _POSITION_DIMS)]
    if ext & _PADDED and any(r.raw(r.varint())):
        raise ValueError("padding is not zero")
    mask = r.fmt("B")
    if mask >> len(STREAM_CODES):
        raise ValueError(f"unknown streams {mask:#x}")
    names = [n for i, n in enumerate(STREAM_CODES) if mask >> i & 1]
    n_frames = h["shape"][0] if flags & _DATED else 1
    if n_frames > len(blob):
        raise ValueError(f"{n_frames} frames in {len(blob)} bytes")
    h["frames"], lengths = [], []
    for _ in range(n_frames):
        crc = r.fmt("I")
        lengths.append([r.varint() for _ in names])
        h["frames"].append({"crc": crc, "streams": dict(zip(names, lengths[-1]))})
    return h, lengths, r.pos



def values_limit(length: int, version: int = FORMAT_VERSION) -> int:
    """The most values (dates x bands x height x width) a blob of ``length`` bytes may announce.

    Examples
    --------
    >>> values_limit(9000) < 32 * 4096 * 4096
    True
    """
    per_byte = VALUES_PER_BYTE if version >= 8 else VALUES_PER_BYTE_BEFORE_8
    return FREE_VALUES + per_byte * length


def _min_length(shape: list[int], version: int) -> int:
    """The shortest blob that may announce a cube of ``shape``."""
    values = math.prod(shape)
    per_byte = VALUES_PER_BYTE if version >= 8 else VALUES_PER_BYTE_BEFORE_8
    return -(-max(0, values - FREE_VALUES) // per_byte)


def with_position(blob: bytes, position: tuple[int, ...] | list[int]) -> bytes:
    """``blob`` bound to the grid position of the zarr chunk it is stored as (format version 8).

    Examples
    --------
    >>> h = {"model": "m", "weights": "ab" * 16, "quality": 3, "dtype": "int16", "shape": [1, 2, 4, 4],
    ...      "coder": CODER, "tcube": "0", "frames": [{"crc": 7}]}
    >>> unpack(with_position(pack(h, [{"y": b"abcd"}]), (0, 3, 1))).header["position"]
    [0, 3, 1]
    """
    c = unpack(blob)
    if c.header["version"] != FORMAT_VERSION:
        raise ValueError(f"only blobs of format version {FORMAT_VERSION} take a position")
    header = {k: v for k, v in c.header.items() if k != "version"}
    return pack({**header, "position": [int(i) for i in position]}, c.frames)


def _crc_ok(blob: bytes) -> bool:
    return len(blob) >= 4 and zlib.crc32(blob[:-4]) == _CRC.unpack(blob[-4:])[0]


def unpack(blob: bytes) -> Container:
    """Check and split a blob; raises a precise :class:`~tcube.errors.BitstreamError` if damaged."""
    blob = bytes(blob)
    compact = len(blob) >= 2 and blob[0] == MAGIC[0] and 9 <= blob[1] < _COMPACT_TOP
    if not compact and len(blob) < len(MAGIC):
        if blob and MAGIC.startswith(blob):
            raise TruncatedBlobError(f"blob truncated: {len(blob)} bytes, shorter than the tcube magic")
        raise NotATcubeBlobError("not a tcube blob (too short, no tcube magic)")
    if not compact and blob[: len(MAGIC)] != MAGIC:
        raise NotATcubeBlobError("not a tcube blob (magic bytes differ)")
    prefix = 2 if compact else _PREFIX.size
    if len(blob) < prefix + _CRC.size:
        raise TruncatedBlobError(f"blob truncated: {len(blob)} bytes, shorter than the fixed prefix")
    version = blob[1] if compact else _PREFIX.unpack_from(blob)[1]
    if version not in READABLE_VERSIONS or compact != (version >= 9):
        what = "" if _crc_ok(blob) else " (or the blob is corrupt: its checksum fails too)"
        raise UnsupportedVersionError(
            f"tcube format version {version} is not supported by this package "
            f"(reads versions {', '.join(map(str, READABLE_VERSIONS))}){what}"
        )
    try:
        if compact:
            header, lengths, start = _decode_compact(blob)
        else:
            start = _PREFIX.size + _PREFIX.unpack_from(blob)[2]
            if start + _CRC.size > len(blob):
                raise TruncatedBlobError(f"blob truncated: header needs {start + _CRC.size} bytes, blob has "
                                         f"{len(blob)}")
            header = _decode_header(blob[_PREFIX.size: start], version)
            lengths = [list(f["streams"].values()) for f in header["frames"]]
    except (struct.error, UnicodeDecodeError, IndexError, ValueError, CorruptBlobError) as exc:
        what = "checksum mismatch" if not _crc_ok(blob) else "checksum passes"
        raise CorruptBlobError(f"blob corrupt: header unreadable ({exc}; {what})") from exc
    values = math.prod(header["shape"])
    if values > values_limit(len(blob), version):
        raise CorruptBlobError(f"blob corrupt: its header announces {values} values in {len(blob)} bytes (at most "
                               f"{values_limit(len(blob), version)} for a blob of this length): refusing to decode it")
    expected = start + sum(map(sum, lengths)) + _CRC.size
    if len(blob) < expected:
        raise TruncatedBlobError(f"blob truncated: {len(blob)} bytes, header announces {expected}")
    if len(blob) > expected:
        raise CorruptBlobError(f"blob corrupt: {len(blob) - expected} unexpected trailing bytes")
    if not _crc_ok(blob):
        raise CorruptBlobError("blob corrupt: CRC32 checksum mismatch")
    frames, pos = [], start
    for f in header["frames"]:
        streams = {}
        for name, n in f["streams"].items():
            streams[name] = blob[pos: pos + n]
            pos += n
        frames.append(streams)
    header["version"] = version
    return Container(header, frames)


def read_header(blob: bytes) -> dict:
    """The checked header of ``blob`` (see :func:`unpack`)."""
    return unpack(blob).header


def digest_length(version: int) -> int:
    """Bytes of the weights' SHA-256 that blobs of format ``version`` record.

    Examples
    --------
    >>> digest_length(8), digest_length(9)
    (16, 4)
    """
    return COMPACT_DIGEST_BYTES if version >= 9 else DIGEST_BYTES


#: Header fields that decide what a blob decodes to (the seed of its frames' CRCs, version 3).
BOUND_FIELDS = ("model", "weights", "quality", "dtype", "shape", "nodata", "scale", "offset", "flags", "coder")


def frame_seed(header: dict, index: int) -> int:
    """CRC32 of the header fields that decide what frame ``index`` decodes to: version 3 seeds
    the frame's checksum with it.

    Examples
    --------
    >>> h = {"model": "m", "weights": "ab" * 16, "quality": 3, "dtype": "int16", "shape": [1, 12, 4, 4],
    ...      "nodata": None, "scale": 1.0, "offset": 0.0, "flags": 0, "coder": "c"}
    >>> frame_seed(h, 0) != frame_seed({**h, "quality": 4}, 0) != frame_seed(h, 1)
    True
    """
    fields = [header.get(k) for k in BOUND_FIELDS]
    if fields[1] is not None:
        fields[1] = str(fields[1])[: 2 * digest_length(header.get("version", FORMAT_VERSION))]
    if header.get("bands"):  # version 4, when the writer named the bands
        fields.append(list(header["bands"]))
    if header.get("max_error") is not None:  # version 5, error-bounded blobs
        fields.append(("max_error", float(header["max_error"])))
    return zlib.crc32(repr((fields, index)).encode())
