"""Public array API: ``encode``, ``decode``, ``info``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from tcube.bitstream import DIGEST_BYTES, Container, pack, unpack
from tcube.errors import (
    BitstreamError,
    InputError,
    SymbolChecksumError,
    TcubeError,
    UnknownModelError,
    WeightsMismatchError,
)
from tcube.masks import avoid_nodata, check_nodata, fill_invalid, invalid_mask, pack_mask, unpack_mask
from tcube.models import FramePayload, LearnedCodec, list_models, load_model, model_digest

#: Input dtypes accepted by :func:`encode` (decoded cubes come back in the same dtype).
DTYPES = ("uint16", "int16", "float32")
CODER = "constriction-range-v1"
#: Per-frame stream of the lossless mask (see :mod:`tcube.masks`).
MASK_STREAM = "mask"
#: Largest magnitude accepted in float32 cubes (digital numbers are below 2**16).
FLOAT_LIMIT = 1e6


def _package_version() -> str:
    try:
        return version("tcube")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def check_cube(cube: np.ndarray, bands: int) -> np.ndarray:
    """Validate the layout of a (T, C, H, W) or (C, H, W) cube; returns it as (T, C, H, W)."""
    if not isinstance(cube, np.ndarray):
        raise InputError(f"cube must be a numpy array, got {type(cube).__name__}")
    if cube.dtype.name not in DTYPES:
        raise InputError(f"unsupported dtype {cube.dtype}; use one of {', '.join(DTYPES)}")
    if cube.ndim not in (3, 4):
        raise InputError(f"cube must have dims (time, band, y, x) or (band, y, x); "
                         f"got {cube.ndim} dims {cube.shape}")
    c4 = cube if cube.ndim == 4 else cube[None]
    if c4.shape[1] != bands:
        raise InputError(f"cube has {c4.shape[1]} bands on axis {cube.ndim - 3}; this model codes {bands}")
    if min(c4.shape) == 0:
        raise InputError(f"cube has an empty dimension: shape {cube.shape}")
    return c4


@dataclass
class _Prepared:
    """A checked cube: model input with masked pixels filled, and the lossless mask streams."""

    cube: np.ndarray
    frames: np.ndarray
    masks: list[bytes]
    nodata: float | None


def _prepare(cube: np.ndarray, codec: LearnedCodec, nodata: float | None) -> _Prepared:
    c4 = check_cube(cube, codec.config.bands)
    nodata = check_nodata(nodata, c4.dtype)
    invalid = invalid_mask(c4, nodata)
    x = c4.astype(np.float32)
    if invalid is not None:
        x = fill_invalid(x, invalid, np.asarray(codec.config.mean))
    if np.abs(x).max() > FLOAT_LIMIT:
        raise InputError(f"cube has values beyond +-{FLOAT_LIMIT:g}: not Sentinel-2 digital numbers "
                         "(reflectance x 10000)")
    masks = [pack_mask(None if invalid is None else invalid[t], c4[t]) for t in range(len(c4))]
    return _Prepared(cube, x, masks, nodata)


def _frames(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def _groups(keys: list) -> dict:
    """Indices of equal keys, in first-seen order."""
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


def encode(cube: np.ndarray, model: str = "tec-hp", quality: int = 8, *, nodata: float | None = None,
           device: str | None = None, batch_size: int = 8) -> bytes:
    """Compress a Sentinel-2 cube into a self-describing blob.

    Parameters
    ----------
    cube : ndarray, (T, C, H, W) or (C, H, W), uint16, int16 or float32
        Digital numbers (reflectance x 10000) in L2A band order; any H and W.
    model : str
        A name from :func:`list_models`.
    quality : int
        1 (smallest) to 16 (best).
    nodata : number, optional
        Pixels equal to it, like NaN and infinities in float cubes, are kept exactly (a lossless
        mask beside the learned payload) and are never produced elsewhere by decoding.
    device : str, optional
        Torch device for the transforms; default CUDA when present. The blob decodes anywhere.
    batch_size : int
        Frames per forward pass.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((2, 12, 40, 52), 1200, dtype=np.uint16)
    >>> cube[0, :, :5] = 0
    >>> out = tcube.decode(tcube.encode(cube, model="tec-fp", quality=4, nodata=0))
    >>> out.shape, bool((out[0, :, :5] == 0).all()), int((out == 0).sum())
    ((2, 12, 40, 52), True, 3120)
    """
    return encode_batch([cube], model, quality, nodata=nodata, device=device, batch_size=batch_size)[0]


def encode_batch(cubes: Sequence[np.ndarray], model: str = "tec-hp", quality: int = 8, *,
                 nodata: float | None = None, device: str | None = None, batch_size: int = 8) -> list[bytes]:
    """:func:`encode` several cubes, sharing forward passes between cubes of equal height and width.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cubes = [np.full((12, 32, 32), v, dtype=np.uint16) for v in (900, 1500, 2100)]
    >>> [len(tcube.decode(b)) for b in tcube.api.encode_batch(cubes, model="tec-fp", quality=2)]
    [12, 12, 12]
    """
    codec = load_model(model, device)
    codec.quality_index(quality, 1)
    prepared = [_prepare(c, codec, nodata) for c in cubes]
    payloads: list[list[FramePayload]] = [[] for _ in prepared]
    if getattr(codec, "temporal", False):  # dates depend on the previous ones: one cube per call
        payloads = [codec.compress(torch.from_numpy(p.frames), quality) for p in prepared]
    else:
        for members in _groups([p.frames.shape[-2:] for p in prepared]).values():
            x = np.concatenate([prepared[i].frames for i in members])
            coded: list[FramePayload] = []
            for sl in _frames(len(x), batch_size):
                coded.extend(codec.compress(torch.from_numpy(x[sl]), quality))
            for i in members:
                n = len(prepared[i].frames)
                payloads[i], coded = coded[:n], coded[n:]
    base = {"model": model, "weights": model_digest(model), "quality": int(quality), "coder": CODER,
            "tcube": _package_version()}
    return [
        pack({**base, "dtype": p.cube.dtype.name, "shape": list(p.cube.shape), "nodata": p.nodata,
              "frames": [{"crc": f.symbol_crc} for f in frames]},
             [{**f.streams, MASK_STREAM: m} for f, m in zip(frames, p.masks)])
        for p, frames in zip(prepared, payloads)
    ]


def _check_header(h: dict) -> None:
    try:
        model, shape, dtype, quality = h["model"], h["shape"], h["dtype"], h["quality"]
    except KeyError as exc:
        raise BitstreamError(f"blob header lacks field {exc}") from exc
    if model not in list_models():
        raise UnknownModelError(f"blob was made with model {model!r}, which this installation does not have "
                                f"(available: {', '.join(list_models())})")
    if h.get("weights") != model_digest(model)[: 2 * DIGEST_BYTES]:
        raise WeightsMismatchError(
            f"blob was made with other weights of {model!r} (digest {str(h.get('weights'))[:12]}…, installed "
            f"{model_digest(model)[:12]}…); install the tcube version that wrote it ({h.get('tcube')})"
        )
    if dtype not in DTYPES or len(shape) not in (3, 4) or not isinstance(quality, int):
        raise BitstreamError(f"blob header is inconsistent: dtype {dtype}, shape {shape}, quality {quality}")
    if h.get("coder") != CODER:
        raise BitstreamError(f"blob uses entropy coder {h.get('coder')!r}; this package reads {CODER!r}")


def to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """Decoded floats to ``dtype``: integers are rounded half up and saturated to the dtype's range."""
    if dtype == "float32":
        return x.astype(np.float32)
    lim = np.iinfo(dtype)
    return np.clip(np.floor(x + 0.5), lim.min, lim.max).astype(dtype)


def decode(blob: bytes, *, device: str | None = None, batch_size: int = 8) -> np.ndarray:
    """Decompress a blob from :func:`encode`: same shape and dtype as the encoded cube.

    Raises a :class:`~tcube.errors.BitstreamError` subclass for foreign, truncated, corrupt or
    mismatched blobs; never returns garbage.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((12, 16, 16), 900, dtype=np.int16)
    >>> tcube.decode(tcube.encode(cube, quality=16)).dtype
    dtype('int16')
    """
    return decode_batch([blob], device=device, batch_size=batch_size)[0]


def _named(exc: TcubeError, name: str | None) -> TcubeError:
    """The same error with ``name`` (which blob) in front of its message."""
    return exc if name is None else type(exc)(f"{name}: {exc}")


def check_blob(blob: bytes) -> Container:
    """Unpack ``blob`` and check that this installation can decode it (model, weights, coder, frames).

    Raises the :class:`~tcube.errors.BitstreamError` subclass that names the problem.
    """
    container = unpack(blob)
    h = container.header
    _check_header(h)
    t = h["shape"][0] if len(h["shape"]) == 4 else 1
    if len(container.frames) != t:
        raise BitstreamError(f"blob header announces {t} frames but holds {len(container.frames)}")
    if h["version"] >= 2 and any(MASK_STREAM not in f for f in container.frames):
        raise BitstreamError("blob lacks its mask stream")
    return container


def _finish(decoded: np.ndarray, container: Container) -> np.ndarray:
    """Decoded floats to the blob's dtype and shape, with the masked pixels put back exactly."""
    h = container.header
    out = avoid_nodata(to_dtype(decoded, h["dtype"]), h["nodata"])
    for t, frame in enumerate(container.frames):
        mask = unpack_mask(frame.get(MASK_STREAM, b""), out.shape[1:], np.dtype(h["dtype"]))
        if mask is not None:
            out[t][mask[0]] = mask[1]
    return out.reshape(h["shape"])


def decode_batch(blobs: Sequence[bytes], *, device: str | None = None, batch_size: int = 8,
                 names: Sequence[str] | None = None) -> list[np.ndarray]:
    """:func:`decode` several blobs, sharing forward passes between blobs of one model, quality and size.

    ``names`` (one per blob) prefix the message of any error, to say which blob failed.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> blobs = tcube.api.encode_batch([np.full((12, 32, 32), 900, dtype=np.uint16)] * 2, model="tec-fp")
    >>> [c.shape for c in tcube.api.decode_batch(blobs)]
    [(12, 32, 32), (12, 32, 32)]
    """
    label = (lambda i: names[i]) if names is not None else (lambda i: None)
    containers = []
    for i, blob in enumerate(blobs):
        try:
            containers.append(check_blob(blob))
        except TcubeError as exc:
            raise _named(exc, label(i)) from exc
    keys = [(c.header["model"], c.header["quality"], *c.header["shape"][-2:]) for c in containers]
    decoded: list[list[np.ndarray]] = [[] for _ in containers]
    for (model, quality, height, width), members in _groups(keys).items():
        codec = load_model(model, device)
        owners = [i for i in members for _ in containers[i].frames]
        payloads = [FramePayload(s, m["crc"]) for i in members
                    for s, m in zip(containers[i].frames, containers[i].header["frames"])]
        if getattr(codec, "temporal", False):  # one blob's dates per call, in order
            bounds = np.cumsum([0] + [len(containers[i].frames) for i in members])
            windows = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            windows = list(_frames(len(payloads), batch_size))
        for sl in windows:
            try:
                out = codec.decompress(payloads[sl], quality, height, width).cpu().numpy()
            except SymbolChecksumError as exc:
                raise _named(exc, label(owners[sl.start + (exc.frame or 0)])) from exc
            for i, frame in zip(owners[sl], out):
                decoded[i].append(frame)
    out = []
    for i, (frames, container) in enumerate(zip(decoded, containers)):
        try:
            out.append(_finish(np.stack(frames), container))
        except TcubeError as exc:
            raise _named(exc, label(i)) from exc
    return out


def info(blob: bytes) -> dict:
    """Header of a blob plus sizes and rate, after checking it.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> d = tcube.info(tcube.encode(np.full((12, 16, 16), 900, dtype=np.uint16), model="tec-fp"))
    >>> d["model"], d["shape"], d["format_version"]
    ('tec-fp', [12, 16, 16], 2)
    """
    container = unpack(blob)
    h = dict(container.header)
    samples = int(np.prod(h["shape"]))
    h.update(format_version=h.pop("version"), bytes=len(blob), bpppb=8.0 * len(blob) / samples,
             ratio=samples * np.dtype(h["dtype"]).itemsize / len(blob))
    return h
