"""x265 (HEVC) through PyAV (``pip install 'tcube[video]'``): video over time the xarrayvideo ways (bands,
or the components of one KLT per cube), and intra frames of per-date KLT components.

``x265-video``:

The 12 bands are packed three per video (the planes of a 12-bit 4:4:4 ``gbrp12le`` picture, no
colour transform), one frame per date; digital numbers 0..10000 map linearly to 0..4095 (values
outside are clipped, as a fixed range requires). The quality knob is x265's CRF (lower is better;
-1: x265's lossless mode).

``x265-intra-pca``: per date, a KLT over bands (:mod:`tcube.baselines.klt`), then each component
one 12-bit gray intra frame (preset medium, tune psnr; ``x265-intra-pca-veryslow``: preset
veryslow). All components of a date share one DN step per 12-bit level, so one CRF gives them
about equal error (the allocation a KLT wants); the band means, the basis and each component's
offset and the shared step travel as float32 side information and count in the size.

``x265-video-pca``: one KLT over the bands of the whole cube, then each component one 12-bit gray
video over time (inter frames, x265's default GOP), the components sharing one DN step as above;
xarrayvideo's PCA mode. The side information (means, basis, offsets, step) counts in the size.

PyAV wheels bundle an FFmpeg with libx265, so nothing else needs installing.
"""

from __future__ import annotations

import io
from functools import partial

import numpy as np

from tcube.baselines.base import Baseline, check_uint16, optional_module, pack, unpack
from tcube.baselines.klt import inverse_klt, klt
from tcube.models.hevc import padded

RANGE = 10000.0
LEVELS = 4095
#: CRF values from ~0.03 to ~1.6 bpppb; -1 is x265's lossless mode (lossless on the 12-bit samples,
#: so the mapping of 0..10000 to 12 bits is all that is lost).
X265_CRFS = (45.0, 40.0, 36.0, 32.0, 28.0, 24.0, 20.0, 16.0, 12.0, 8.0, 4.0, 0.0, -1.0)
PRESET = "medium"


def _av():
    return optional_module("av", "video", "the x265 baseline", "PyAV")


def _groups(c: int) -> list[list[int]]:
    """Band indices three by three; the last group repeats its last band to fill three planes."""
    return [[min(i, c - 1) for i in range(start, start + 3)] for start in range(0, c, 3)]


def _video(frames: np.ndarray, crf: float, pix_fmt: str = "gbrp12le", params: str = "",
           tune: str | None = None, preset: str = PRESET) -> bytes:
    av = _av()
    buf = io.BytesIO()
    with av.open(buf, "w", format="hevc") as container:
        stream = container.add_stream("libx265", rate=1)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        params = "log-level=error:info=0" + (":lossless=1" if crf < 0 else "") + params
        stream.options = {"crf": f"{max(crf, 0):g}", "preset": preset, "x265-params": params,
                          **({"tune": tune} if tune else {})}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _frames(data: bytes, pix_fmt: str = "gbrp12le") -> np.ndarray:
    av = _av()
    with av.open(io.BytesIO(data), format="hevc") as container:
        return np.stack([f.to_ndarray(format=pix_fmt) for f in container.decode(video=0)])


def _padding(h: int, w: int) -> tuple[int, int]:
    """Rows and columns to add (edge values, cropped after decoding): the engine's frame size
    (:func:`tcube.models.hevc.padded`), which this libx265 needs."""
    return tuple(p - n for p, n in zip(padded(h, w), (h, w)))


def x265_encode(cube: np.ndarray, crf: float) -> bytes:
    """One video per group of three bands, one frame per date.

    Examples
    --------
    >>> x = np.full((2, 4, 16, 18), 2000, np.uint16)
    >>> int(np.abs(x265_decode(x265_encode(x, 20), x.shape).astype(int) - 2000).max()) < 10
    True
    """
    cube = check_uint16(cube)
    ph, pw = _padding(*cube.shape[-2:])
    cube = np.pad(cube, [(0, 0), (0, 0), (0, ph), (0, pw)], mode="edge")
    scaled = np.round(np.clip(cube, 0, RANGE) * (LEVELS / RANGE)).astype(np.uint16)
    return pack([_video(np.ascontiguousarray(np.moveaxis(scaled[:, group], 1, -1)), crf)
                 for group in _groups(cube.shape[1])])


def x265_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`x265_encode`."""
    out = np.empty(shape, np.float64)
    for group, data in zip(_groups(shape[1]), unpack(blob)):
        frames = _frames(data).astype(np.float64) * (RANGE / LEVELS)
        for plane, band in enumerate(group):
            out[:, band] = frames[:, : shape[2], : shape[3], plane]
    return np.clip(np.round(out), 0, 65535).astype(np.uint16)




def _levels(comps: np.ndarray) -> tuple[bytes, np.ndarray]:
    """KLT components (K, ...) as 12-bit levels sharing one DN step (about equal error for all, the
    allocation a KLT wants): the side information of their offsets and the step, and the levels."""
    flat = comps.reshape(len(comps), -1)
    low = flat.min(axis=1).astype(np.float32)
    step = np.float32(max(float((flat.max(axis=1) - low).max()), 1.0) / LEVELS)
    shape = (-1,) + (1,) * (comps.ndim - 1)
    levels = np.round((comps - low.reshape(shape)) / step).clip(0, LEVELS).astype(np.uint16)
    return low.tobytes() + step.tobytes(), levels


def _bands(side: bytes, levels: np.ndarray, c: int) -> np.ndarray:
    """Bands (float64, (C, ...)) back from the side information (means, basis, offsets, step) and
    the levels of their components."""
    side = np.frombuffer(side, np.float32)
    mean, basis, low, step = side[:c], side[c: c + c * c].reshape(c, c), side[c + c * c: 2 * c + c * c], side[-1]
    comps = levels.astype(np.float64) * float(step) + low.astype(np.float64).reshape((-1,) + (1,) * (levels.ndim - 1))
    return inverse_klt(mean, basis, comps)


def _to_uint16(bands: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(bands + 0.5), 0, 65535).astype(np.uint16)


def x265_intra_pca_encode(cube: np.ndarray, crf: float, preset: str = PRESET) -> bytes:
    """Per date: side information, then its KLT components as one all-intra 12-bit gray video
    (x265 ``preset``).

    Examples
    --------
    >>> x = (np.arange(2 * 3 * 20 * 24) % 977 + 1000).reshape(2, 3, 20, 24).astype(np.uint16)
    >>> y = x265_intra_pca_decode(x265_intra_pca_encode(x, 4), x.shape)
    >>> int(np.abs(y.astype(int) - x).max()) < 40
    True
    """
    cube = check_uint16(cube)
    ph, pw = _padding(*cube.shape[-2:])
    parts = []
    for frame in cube:
        mean, basis, comps = klt(frame.astype(np.float64))
        side, levels = _levels(comps)
        levels = np.pad(levels, [(0, 0), (0, ph), (0, pw)], mode="edge")
        parts += [mean.tobytes() + basis.tobytes() + side,
                  _video(levels, crf, "gray12le", ":keyint=1", tune="psnr", preset=preset)]
    return pack(parts)


def x265_intra_pca_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`x265_intra_pca_encode`."""
    t, c, h, w = shape
    parts = unpack(blob)
    out = np.empty(shape, np.uint16)
    for i in range(t):
        out[i] = _to_uint16(_bands(parts[2 * i], _frames(parts[2 * i + 1], "gray12le")[:, :h, :w], c))
    return out


def x265_video_pca_encode(cube: np.ndarray, crf: float) -> bytes:
    """One KLT over the bands of the whole cube (every date and pixel), then each component one
    12-bit gray video over time (x265's default GOP: inter frames): the xarrayvideo PCA layout.

    Examples
    --------
    >>> x = (np.arange(3 * 3 * 20 * 24) % 977 + 1000).reshape(3, 3, 20, 24).astype(np.uint16)
    >>> y = x265_video_pca_decode(x265_video_pca_encode(x, 4), x.shape)
    >>> int(np.abs(y.astype(int) - x).max()) < 40
    True
    """
    cube = check_uint16(cube)
    t, c, h, w = cube.shape
    ph, pw = _padding(h, w)
    mean, basis, comps = klt(np.moveaxis(cube, 1, 0).reshape(c, t * h, w).astype(np.float64))
    side, levels = _levels(comps.reshape(c, t, h, w))
    levels = np.pad(levels, [(0, 0), (0, 0), (0, ph), (0, pw)], mode="edge")
    return pack([mean.tobytes() + basis.tobytes() + side,
                 *(_video(np.ascontiguousarray(k), crf, "gray12le", tune="psnr") for k in levels)])


def x265_video_pca_decode(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`x265_video_pca_encode`."""
    t, c, h, w = shape
    parts = unpack(blob)
    levels = np.stack([_frames(p, "gray12le")[:, :h, :w] for p in parts[1:]])
    return np.moveaxis(_to_uint16(_bands(parts[0], levels, c)), 0, 1)


#: CRF values of the intra baseline, from ~0.02 to ~2 bpppb on Sentinel-2 dates.
INTRA_CRFS = (51.0, 48.0, 45.0, 42.0, 39.0, 36.0, 33.0, 30.0, 27.0, 24.0, 21.0, 18.0, 15.0, 12.0, 8.0, 4.0)

X265_BASELINES = (
    Baseline("x265-video", x265_encode, x265_decode, X265_CRFS, "CRF (lower is better)", requires="av"),
    Baseline("x265-intra-pca", x265_intra_pca_encode, x265_intra_pca_decode, INTRA_CRFS,
             "CRF (lower is better)", requires="av"),
    Baseline("x265-intra-pca-veryslow", partial(x265_intra_pca_encode, preset="veryslow"), x265_intra_pca_decode,
             INTRA_CRFS, "CRF (lower is better), preset veryslow", requires="av"),
    Baseline("x265-video-pca", x265_video_pca_encode, x265_video_pca_decode, INTRA_CRFS,
             "CRF (lower is better)", requires="av"),
)
