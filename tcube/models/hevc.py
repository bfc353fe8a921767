"""HEVC through PyAV: 12-bit monochrome planes in, one stream of frames out, and back.

The encoder is libx265 (bundled in PyAV's wheels, GPL-2.0); the decoder is FFmpeg's HEVC decoder,
and HEVC decoding is specified bit-exactly, so a stream decodes to the same samples everywhere.
Every plane of a call becomes one frame of one stream: parameter sets and headers are paid once.
Planes are padded (edge values) to a multiple of :data:`PAD` and at least :data:`MIN_SIZE` on each
side, and cropped after decoding.

:func:`compact` stores a stream in fewer bytes for blobs: its parameter sets deflated against a shipped
dictionary of x265's parameter sets (:func:`dictionary`), lengths instead of start codes, and NAL unit
headers left out where they repeat the previous one; :func:`expand` gives the decoder's stream back.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zlib
from importlib import resources

import numpy as np

from tcube.entropy import leb128
from tcube.errors import CorruptBlobError, InputError, TcubeError

#: Largest sample of a 12-bit plane.
LEVELS = 4095
#: The middle of the 12-bit range.
MID_GREY = 2048
#: Constant QPs the engine uses (x265's scale: the quantiser step doubles every 6). Above 45, 12-bit frames
#: of 128 x 128 decoded to flat mid-grey at QP 50 (measured): coarser steps come from the plane step.
QP_RANGE = (0, 45)
#: Threads of the decoder (frame threading: 16-date chunks of 256 x 256 decoded 1.7x faster on 2 cores).
DECODE_THREADS = 2
#: This libx265 aborts on odd sizes and corrupts its heap on 48 x 48 frames (CTU 64).
PAD, MIN_SIZE = 8, 64
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
PIX_FMT = "gray12le"
#: x265 parameters beyond the preset's (tune psnr: no psycho-visual tuning, which costs PSNR).
X265_PARAMS = "rdoq-level=2"


def _av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("tcube's HEVC engine needs PyAV: pip install av") from exc
    return av


def padded(h: int, w: int) -> tuple[int, int]:
    """Frame size the engine codes for planes of ``h`` x ``w``.

    Examples
    --------
    >>> padded(20, 130)
    (64, 136)
    """
    return tuple(max(MIN_SIZE, n + -n % PAD) for n in (h, w))


def encode(planes: np.ndarray, qp: int, preset: str = "medium", keyint: int = 1, constant_qp: bool = True,
           crf: bool = False) -> bytes:
    """One HEVC stream of ``planes`` (K, H, W) of 12-bit samples at ``qp``; every ``keyint``-th frame
    is intra (1: all intra). ``constant_qp``: every frame type at ``qp`` (else x265's default offsets
    of I and B frames from P frames); ``crf``: x265's constant rate factor ``qp`` instead (its
    lookahead spends more on frames that later ones reference).

    Examples
    --------
    >>> x = (np.arange(3 * 40 * 40) % 700 + 1000).reshape(3, 40, 40).astype(np.uint16)
    >>> y = decode(encode(x, 4), 3, 40, 40)
    >>> y.shape, int(np.abs(y.astype(int) - x).max()) < 60
    ((3, 40, 40), True)
    """
    planes = np.asarray(planes)
    if planes.ndim != 3 or planes.dtype != np.uint16 or (planes.size and planes.max() > LEVELS):
        raise InputError("the HEVC engine codes (K, H, W) uint16 planes of 12-bit samples")
    if preset not in PRESETS:
        raise InputError(f"unknown x265 preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not QP_RANGE[0] <= qp <= QP_RANGE[1]:
        raise InputError(f"QP {qp} outside {QP_RANGE}")
    hp, wp = padded(*planes.shape[1:])
    planes = np.pad(planes, [(0, 0), (0, hp - planes.shape[1]), (0, wp - planes.shape[2])], mode="edge")
    av = _av()
    buf = io.BytesIO()
    with av.open(buf, "w", format="hevc") as container:
        stream = container.add_stream("libx265", rate=1)
        stream.width, stream.height, stream.pix_fmt = wp, hp, PIX_FMT
        # constant QP for every frame type (ipratio/pbratio 1) unless told otherwise, no encoder info SEI
        rate = f"crf={qp}" if crf else f"qp={qp}" + (":ipratio=1:pbratio=1" if constant_qp else "")
        stream.options = {"preset": preset, "tune": "psnr",
                          "x265-params": f"log-level=error:info=0:keyint={keyint}:{rate}"
                                          + (f":{X265_PARAMS}" if X265_PARAMS else "")}
        for plane in planes:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format=PIX_FMT)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return _once(buf.getvalue())


#: NAL unit types of the parameter sets (VPS, SPS, PPS).
PARAMETER_SETS = (32, 33, 34)


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream, each with its start code.

    Examples
    --------
    >>> [u.hex() for u in nal_units(bytes.fromhex("0000000140aa000001420b"))]
    ['0000000140aa', '000001420b']
    """
    starts, i = [], data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i - 1 if i > 0 and data[i - 1] == 0 else i)
        i = data.find(b"\x00\x00\x01", i + 3)
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


def _body(unit: bytes) -> bytes:
    """A NAL unit from :func:`nal_units` without its start code."""
    return unit[unit.index(b"\x00\x00\x01") + 3:]


def _type(body: bytes) -> int:
    """The type of a NAL unit without its start code (from its header's first byte)."""
    return (body[0] >> 1) & 0x3F


def nal_type(unit: bytes) -> int:
    """The type of a NAL unit from :func:`nal_units`."""
    return _type(_body(unit))


def _once(stream: bytes) -> bytes:
    """The stream without the copies of its parameter sets x265 repeats before every intra frame
    (decoders keep parameter sets until they change: the first copy serves every frame)."""
    seen: set[bytes] = set()
    out = []
    for unit in nal_units(stream):
        key = _body(unit)
        if nal_type(unit) in PARAMETER_SETS:
            if key in seen:
                continue
            seen.add(key)
        out.append(unit)
    return b"".join(out)


def decode(data: bytes, k: int, h: int, w: int) -> np.ndarray:
    """The ``k`` planes of ``h`` x ``w`` samples (uint16) of a stream from :func:`encode`;
    :class:`CorruptBlobError` when the stream does not decode to exactly that."""
    av = _av()
    hp, wp = padded(h, w)
    out = np.empty((k, h, w), np.uint16)
    n = 0
    try:
        codec = av.CodecContext.create("hevc", "r")
        # frames of a video decode in parallel (FFmpeg's frame threads give the same samples)
        codec.thread_type, codec.thread_count = "FRAME", DECODE_THREADS
        for packet in codec.parse(bytes(data)) + codec.parse(None) + [None]:
            for frame in codec.decode(packet):
                if n >= k or (frame.height, frame.width) != (hp, wp) or frame.format.name != PIX_FMT:
                    raise CorruptBlobError(f"HEVC stream holds other frames than {k} of {wp} x {hp} {PIX_FMT}")
                out[n] = frame.to_ndarray(format=PIX_FMT)[:h, :w]
                n += 1
    except av.FFmpegError as exc:
        raise CorruptBlobError(f"HEVC stream does not decode: {exc}") from exc
    if n != k:
        raise CorruptBlobError(f"HEVC stream holds {n} frames, not {k}")
    return out


#: The preset dictionary of :func:`compact` (``tcube/data``; part of the format, it never changes) and its SHA-256.
DICTIONARY_FILE = "hevc-parameter-sets.bin"
DICTIONARY_SHA256 = "05da6875f72196e12885627f646914ec61313fa78a6fe6903e929c22082ba6e9"
#: Frame heights and widths whose parameter sets the dictionary holds, for every preset.
DICTIONARY_SIZES = (64, 128, 256, 512, 1024, 2048)
#: Most bytes the parameter sets of a compact stream may inflate to.
MAX_PARAMETER_BYTES = 4096
#: Bytes of a NAL unit header.
NAL_HEADER = 2


def _parameter_block(units: list[bytes]) -> bytes:
    return b"".join(leb128.encode([len(u)]) + u for u in units)


def build_dictionary() -> bytes:
    """The parameter sets x265 writes for every preset and every size in :data:`DICTIONARY_SIZES`
    (how the shipped dictionary was made, with the libx265 of PyAV 15; the most used preset, ultrafast,
    last, nearest to the data)."""
    entries = []
    for preset in reversed(PRESETS):
        for h in DICTIONARY_SIZES:
            for w in DICTIONARY_SIZES:
                stream = encode(np.full((1, h, w), MID_GREY, np.uint16), 30, preset)
                entries.append(_parameter_block([_body(u) for u in nal_units(stream)
                                                 if nal_type(u) in PARAMETER_SETS]))
    return b"".join(entries)


@functools.cache
def dictionary() -> bytes:
    """The shipped preset dictionary of :func:`compact`, checked against :data:`DICTIONARY_SHA256`."""
    data = (resources.files("tcube") / "data" / DICTIONARY_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != DICTIONARY_SHA256:
        raise TcubeError(f"tcube/data/{DICTIONARY_FILE} is damaged (its SHA-256 differs): reinstall tcube")
    return data


def compact(stream: bytes) -> bytes:
    """A stream of :func:`encode` in fewer bytes: the leading parameter sets deflated against
    :func:`dictionary` (a length, then the deflated bytes), then per NAL unit a LEB128 of twice its
    length, plus one when its header repeats the previous unit's and is left out, and the unit.

    Examples
    --------
    >>> x = np.full((2, 64, 64), 1000, np.uint16)
    >>> stream = encode(x, 20)
    >>> len(compact(stream)) < len(stream) - 60, (decode(expand(compact(stream)), 2, 64, 64) == x).all()
    (True, np.True_)
    """
    units = [_body(u) for u in nal_units(stream)]
    n = 0
    while n < len(units) and _type(units[n]) in PARAMETER_SETS:
        n += 1
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=dictionary())
    block = deflate.compress(_parameter_block(units[:n])) + deflate.flush()
    out = [leb128.encode([len(block)]), block]
    previous = b""
    for unit in units[n:]:
        same = len(unit) > NAL_HEADER and unit[:NAL_HEADER] == previous[:NAL_HEADER]
        body = unit[NAL_HEADER:] if same else unit
        out += [leb128.encode([2 * len(body) + same]), body]
        previous = unit
    return b"".join(out)


def _parse(data: bytes) -> tuple[list[bytes], int, int]:
    """The NAL units of a compact stream, the bytes of its parameter sets (with their length) and of
    its framing (unit lengths and the NAL unit headers it holds)."""
    size, pos = leb128.read(data, 0)
    if pos + size > len(data):
        raise CorruptBlobError(f"compact HEVC stream announces {size} bytes of parameter sets, holds {len(data) - pos}")
    inflate = zlib.decompressobj(-15, zdict=dictionary())
    try:
        block = inflate.decompress(data[pos: pos + size], MAX_PARAMETER_BYTES)
    except zlib.error as exc:
        raise CorruptBlobError(f"compact HEVC stream: parameter sets do not inflate ({exc})") from exc
    if inflate.unconsumed_tail or not inflate.eof or inflate.unused_data:
        raise CorruptBlobError("compact HEVC stream: parameter sets are damaged or too long")
    units, at = [], 0
    while at < len(block):
        n, at = leb128.read(block, at)
        units.append(block[at: at + n])
        at += n
    pos += size
    parameters, framing, previous = pos, 0, b""
    while pos < len(data):
        start = pos
        n, pos = leb128.read(data, pos)
        body = data[pos: pos + n // 2]
        if len(body) != n // 2 or (n & 1 and len(previous) < NAL_HEADER):
            raise CorruptBlobError("compact HEVC stream ends inside a NAL unit")
        pos += n // 2
        previous = previous[:NAL_HEADER] + body if n & 1 else body
        units.append(previous)
        framing += pos - start - len(body) + (0 if n & 1 else NAL_HEADER)
    if at != len(block) or any(len(u) < NAL_HEADER for u in units):
        raise CorruptBlobError("compact HEVC stream holds empty or overlapping NAL units")
    return units, parameters, framing


def expand(data: bytes) -> bytes:
    """The Annex B stream of a :func:`compact` one; :class:`CorruptBlobError` when it does not parse."""
    return b"".join(b"\x00\x00\x00\x01" + u for u in _parse(data)[0])


def overhead(data: bytes) -> tuple[int, int]:
    """Bytes a :func:`compact` stream spends on parameter sets, and on framing (lengths and NAL unit
    headers): what is not slice data.

    Examples
    --------
    >>> overhead(compact(encode(np.full((3, 64, 64), 900, np.uint16), 20)))[1] < 12
    True
    """
    _, parameters, framing = _parse(data)
    return parameters, framing
