"""Public array API: ``encode``, ``decode``, ``info``.

Each function turns its arguments into a :class:`~tcube.settings.Settings` and hands it to the
coding core: :mod:`tcube.api.prepare` (checked cubes, masks, batches), :mod:`tcube.api.core`
(blobs at one setting, and back) and :mod:`tcube.api.modes` (quality, error bound, PSNR target).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tcube.api import modes
from tcube.api.core import MASK_STREAM, RESIDUAL_STREAM, check_blob, decode_blobs, package_version, to_dtype
from tcube.api.prepare import Units
from tcube.bitstream import unpack
from tcube.settings import Settings, mode_name

__all__ = ["MASK_STREAM", "RESIDUAL_STREAM", "Settings", "Units", "check_blob", "decode", "decode_batch", "encode",
           "encode_batch", "info", "package_version", "to_dtype"]


def encode(cube: np.ndarray, model: str | None = None, quality: int | None = None, *,
           max_error: int | None = None, psnr: float | None = None, metric: str = "10k",
           nodata: float | None = None, scale: float | None = None,
           offset: float | None = None, band_names: Sequence[str] | None = None, device: str | None = None,
           batch: int = 8) -> bytes:
    """Compress a Sentinel-2 cube into a self-describing blob.

    Parameters
    ----------
    cube : ndarray or masked array, (T, C, H, W) or (C, H, W), uint16, int16 or float32
        Digital numbers (reflectance x 10000) in L2A band order; any H and W up to the limits of
        :mod:`tcube.bitstream`.
    model : str, optional
        A name from :func:`tcube.list_models`; default :data:`tcube.defaults.DEFAULT_MODEL`, or
        :data:`tcube.defaults.BOUNDED_MODEL` with ``max_error`` or ``psnr``.
    quality : int, optional
        1 (smallest) to 16 (best); default :data:`tcube.defaults.DEFAULT_QUALITY`. With
        ``max_error`` it is the quality of the base (0: none, the residual layer alone); by
        default the encoder tries :data:`tcube.defaults.BOUNDED_QUALITIES` and keeps the
        smallest blob.
    max_error : int, optional
        Every valid value decodes within this many digital numbers of the original (0: lossless,
        bit for bit), whatever the scene: a residual layer (:mod:`tcube.residual`) over the
        base guarantees it. Integer cubes and models that decode exactly only.
    psnr : float, optional
        Instead of ``quality`` and ``max_error``: every date reaches at least this PSNR (dB, in the
        convention ``metric``, on the valid pixels), with the smallest blob the encoder finds (the
        lowest quality that meets it, or an error bound that does when that is smaller).
    metric : {"10k", "full"}
        PSNR convention of ``psnr`` (see :mod:`tcube.metrics`).
    nodata : number, optional
        Pixels equal to it, like NaN and infinities in float cubes, the masked pixels of a masked
        array and values outside :data:`tcube.masks.CODED_RANGE`, are kept exactly (a lossless
        mask beside the model's payload); decoding never produces it elsewhere.
    scale, offset : float, optional
        Units of a float32 cube: value = digital number x scale + offset (e.g. ``scale=1e-4``
        for reflectance 0..1). Recorded in the blob: decoding gives values in the same units.
        Float cubes that look like reflectance without them are refused.
    band_names : sequence of str, optional
        One distinct name per band (e.g. ``("B02", "B03", "B04", "B08")``), recorded in the blob
        (:func:`info` shows them).
    device : str, optional
        Torch device for the transforms; default CUDA when present. The blob decodes anywhere.
    batch : int
        Frames per forward pass (large frames go through the model in tiles: memory stays bounded).

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((2, 12, 40, 52), 1200, dtype=np.uint16)
    >>> cube[0, :, :5] = 0
    >>> out = tcube.decode(tcube.encode(cube, model="tec-fp", quality=4, nodata=0))
    >>> out.shape, bool((out[0, :, :5] == 0).all()), int((out == 0).sum())
    ((2, 12, 40, 52), True, 3120)
    >>> cube[1, 3, 7, 9] = 4000
    >>> out = tcube.decode(tcube.encode(cube, max_error=2))
    >>> int(np.abs(out.astype(int) - cube).max()) <= 2
    True
    """
    return encode_batch([cube], model, quality, max_error=max_error, psnr=psnr, metric=metric, nodata=nodata,
                        scale=scale, offset=offset, band_names=band_names, device=device, batch=batch)[0]


def encode_batch(cubes: Sequence[np.ndarray], model: str | None = None, quality: int | None = None, *,
                 max_error: int | None = None, psnr: float | None = None, metric: str = "10k",
                 nodata: float | None = None, scale: float | None = None,
                 offset: float | None = None, band_names: Sequence[str] | None = None, device: str | None = None,
                 batch: int = 8) -> list[bytes]:
    """:func:`encode` several cubes, sharing forward passes between cubes of equal height and width.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cubes = [np.full((12, 32, 32), v, dtype=np.uint16) for v in (900, 1500, 2100)]
    >>> [len(tcube.decode(b)) for b in tcube.api.encode_batch(cubes, model="tec-fp", quality=2)]
    [12, 12, 12]
    """
    settings = Settings.make(model, quality, max_error, psnr, metric, batch, device)
    return modes.encode(cubes, settings, Units(nodata, scale, offset, band_names))


def decode(blob: bytes, *, device: str | None = None, batch: int = 8) -> np.ndarray:
    """Decompress a blob from :func:`encode`: same shape, dtype and units as the encoded cube (a
    masked array when a masked array was encoded).

    Raises a :class:`~tcube.errors.BitstreamError` subclass for foreign, truncated, corrupt,
    forged or mismatched blobs; never returns garbage.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((12, 16, 16), 900, dtype=np.int16)
    >>> tcube.decode(tcube.encode(cube, quality=16)).dtype
    dtype('int16')
    """
    return decode_batch([blob], device=device, batch=batch)[0]


def decode_batch(blobs: Sequence[bytes], *, device: str | None = None, batch: int = 8,
                 names: Sequence[str] | None = None,
                 positions: Sequence[Sequence[int] | None] | None = None) -> list[np.ndarray]:
    """:func:`decode` several blobs, sharing forward passes between blobs of one model, quality and size.

    ``names`` (one per blob) prefix the message of any error, to say which blob failed;
    ``positions`` (one per blob, or None) are the zarr chunk positions the blobs are read as.

    Examples
    --------
    >>> import numpy as np, tcube
    >>> blobs = tcube.api.encode_batch([np.full((12, 32, 32), 900, dtype=np.uint16)] * 2, model="tec-fp")
    >>> [c.shape for c in tcube.api.decode_batch(blobs)]
    [(12, 32, 32), (12, 32, 32)]
    """
    return decode_blobs(blobs, Settings.make(batch=batch, device=device), names, positions)


def info(blob: bytes) -> dict:
    """Header of a blob plus sizes and rate, after checking its container (it may name a model or
    weights this installation does not have: :func:`decode` says so).

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((4, 16, 16), 900, dtype=np.uint16)
    >>> d = tcube.info(tcube.encode(cube, model="tec-pc", band_names=["B02", "B03", "B04", "B08"]))
    >>> d["model"], d["shape"], d["bands"], d["format_version"], d["mode"]
    ('tec-pc', [4, 16, 16], ['B02', 'B03', 'B04', 'B08'], 10, 'quality')
    >>> d = tcube.info(tcube.encode(cube, max_error=0))
    >>> d["mode"], d["max_error"]
    ('lossless', 0.0)
    """
    h = dict(unpack(blob).header)
    h["mode"] = mode_name(h.setdefault("max_error", None), h.setdefault("psnr", None))
    samples = int(np.prod(h["shape"]))
    h.update(format_version=h.pop("version"), bytes=len(blob), bpppb=8.0 * len(blob) / samples,
             ratio=samples * np.dtype(h["dtype"]).itemsize / len(blob))
    return h
