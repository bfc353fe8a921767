"""Public array API: ``encode``, ``decode``, ``info``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from tcube.bitstream import DIGEST_BYTES, FORMAT_VERSION, pack, unpack
from tcube.errors import BitstreamError, InputError, UnknownModelError, WeightsMismatchError
from tcube.models import FramePayload, list_models, load_model, model_digest

#: Input dtypes accepted by :func:`encode` (decoded cubes come back in the same dtype).
DTYPES = ("uint16", "int16", "float32")
CODER = "constriction-range-v1"
#: Largest magnitude accepted in float32 cubes (digital numbers are below 2**16).
FLOAT_LIMIT = 1e6


def _package_version() -> str:
    try:
        return version("tcube")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def check_cube(cube: np.ndarray, bands: int) -> np.ndarray:
    """Validate a (T, C, H, W) or (C, H, W) cube; returns it as (T, C, H, W)."""
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
    if c4.dtype.kind == "f":
        if not np.isfinite(c4).all():
            raise InputError("cube contains NaN or infinite values; fill or mask them before encoding")
        if np.abs(c4).max() > FLOAT_LIMIT:
            raise InputError(f"cube has values beyond +-{FLOAT_LIMIT:g}: not Sentinel-2 digital numbers "
                             "(reflectance x 10000)")
    return c4


def _frames(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def encode(cube: np.ndarray, model: str = "tec-hp", quality: int = 8, *, device: str | None = None,
           batch_size: int = 8) -> bytes:
    """Compress a Sentinel-2 cube into a self-describing blob.

    Parameters
    ----------
    cube : ndarray, (T, C, H, W) or (C, H, W), uint16, int16 or float32
        Digital numbers (reflectance x 10000) in L2A band order; any H and W.
    model : str
        A name from :func:`list_models`.
    quality : int
        1 (smallest) to 16 (best).
    device : str, optional
        Torch device for the transforms; default CUDA when present. The blob decodes anywhere.
    batch_size : int
        Frames per forward pass.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((2, 12, 40, 52), 1200, dtype=np.uint16)
    >>> blob = tcube.encode(cube, model="tec-fp", quality=4)
    >>> tcube.decode(blob).shape
    (2, 12, 40, 52)
    """
    codec = load_model(model, device)
    frames4 = check_cube(cube, codec.config.bands)
    codec.quality_index(quality, 1)
    payloads: list[FramePayload] = []
    for sl in _frames(len(frames4), batch_size):
        x = torch.from_numpy(frames4[sl].astype(np.float32))
        payloads.extend(codec.compress(x, quality))
    header = {
        "model": model, "weights": model_digest(model), "quality": int(quality), "dtype": cube.dtype.name,
        "shape": list(cube.shape), "mean": codec.config.mean, "std": codec.config.std,
        "coder": CODER, "tcube": _package_version(), "frames": [{"crc": p.symbol_crc} for p in payloads],
    }
    return pack(header, [p.streams for p in payloads])


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
    container = unpack(blob)
    h = container.header
    _check_header(h)
    codec = load_model(h["model"], device)
    shape = h["shape"]
    t = shape[0] if len(shape) == 4 else 1
    height, width = shape[-2:]
    if len(container.frames) != t:
        raise BitstreamError(f"blob header announces {t} frames but holds {len(container.frames)}")
    out = []
    for sl in _frames(t, batch_size):
        payloads = [FramePayload(s, m["crc"]) for s, m in zip(container.frames[sl], h["frames"][sl])]
        out.append(codec.decompress(payloads, h["quality"], height, width).cpu().numpy())
    return to_dtype(np.concatenate(out).reshape(shape), h["dtype"])


def info(blob: bytes) -> dict:
    """Header of a blob plus sizes and rate, after checking it.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> d = tcube.info(tcube.encode(np.full((12, 16, 16), 900, dtype=np.uint16), model="tec-fp"))
    >>> d["model"], d["shape"], d["format_version"]
    ('tec-fp', [12, 16, 16], 1)
    """
    container = unpack(blob)
    h = dict(container.header)
    samples = int(np.prod(h["shape"]))
    h.update(format_version=FORMAT_VERSION, bytes=len(blob), bpppb=8.0 * len(blob) / samples,
             ratio=samples * np.dtype(h["dtype"]).itemsize / len(blob))
    return h
