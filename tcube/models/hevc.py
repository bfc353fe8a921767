"""HEVC through PyAV: 12-bit monochrome planes in, one stream of frames out, and back.

The encoder is libx265 (bundled in PyAV's wheels, GPL-2.0); the decoder is FFmpeg's HEVC decoder,
and HEVC decoding is specified bit-exactly, so a stream decodes to the same samples everywhere.
Every plane of a call becomes one frame of one stream: parameter sets and headers are paid once.
Planes are padded (edge values) to a multiple of :data:`PAD` and at least :data:`MIN_SIZE` on each
side, and cropped after decoding.
"""

from __future__ import annotations

import io

import numpy as np

from tcube.errors import CorruptBlobError, InputError

#: Largest sample of a 12-bit plane.
LEVELS = 4095
#: Constant QPs the engine uses (x265's scale: the quantiser step doubles every 6). Above 45, 12-bit frames
#: of 128 x 128 decoded to flat mid-grey at QP 50 (measured): coarser steps come from the plane step.
QP_RANGE = (0, 45)
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


def encode(planes: np.ndarray, qp: int, preset: str = "medium", keyint: int = 1) -> bytes:
    """One HEVC stream of ``planes`` (K, H, W) of 12-bit samples at constant ``qp``; every
    ``keyint``-th frame is intra (1: all intra).

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
        # constant QP for every frame type (ipratio/pbratio 1), no encoder info SEI
        stream.options = {"preset": preset, "tune": "psnr",
                          "x265-params": f"log-level=error:info=0:keyint={keyint}:qp={qp}:ipratio=1:pbratio=1"
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


def nal_type(unit: bytes) -> int:
    """The type of a NAL unit from :func:`nal_units`."""
    return (unit[unit.index(b"\x00\x00\x01") + 3] >> 1) & 0x3F


def _once(stream: bytes) -> bytes:
    """The stream without the copies of its parameter sets x265 repeats before every intra frame
    (decoders keep parameter sets until they change: the first copy serves every frame)."""
    seen: set[bytes] = set()
    out = []
    for unit in nal_units(stream):
        key = unit.lstrip(b"\x00")
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
