"""Public array API: ``encode``, ``decode``, ``info``."""

from __future__ import annotations

import contextlib
import functools
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from tcube import residual
from tcube.bitstream import (
    CODER,
    FLAG_MASKED_ARRAY,
    FORMAT_VERSION,
    Container,
    digest_length,
    frame_seed,
    pack,
    unpack,
)
from tcube.defaults import BOUNDED_MODEL, BOUNDED_QUALITIES, DEFAULT_QUALITY
from tcube.errors import (
    BitstreamError,
    CorruptBlobError,
    InputError,
    SymbolChecksumError,
    TcubeError,
    UnknownModelError,
    WeightsMismatchError,
)
from tcube.masks import CODED_RANGE, avoid_nodata, fill_invalid, invalid_mask, pack_mask, unpack_mask
from tcube.metrics import frame_psnr
from tcube.models import (
    DEFAULT_MODEL,
    FramePayload,
    LearnedCodec,
    exact_models,
    has_weights,
    list_models,
    load_model,
    model_digest,
)
from tcube.models.base import N_QUALITIES, PASS_PIXELS
from tcube.validate import (
    DTYPES,
    Cube,
    band_counts_text,
    check_band_names,
    check_count,
    check_cube,
    check_max_error,
    check_nodata,
    check_psnr,
    check_reflectance,
    check_size,
    check_units,
    check_whole_numbers,
)

#: Per-frame stream of the lossless mask (see :mod:`tcube.masks`).
MASK_STREAM = "mask"
#: Per-frame stream of the error-bounded residual layer (see :mod:`tcube.residual`).
RESIDUAL_STREAM = "residual"
#: Most pixels (frames x height x width) converted to the model's input, or decoded, at once.
CALL_PIXELS = 4 * PASS_PIXELS


@functools.cache
def package_version() -> str:
    """The installed tcube version (written into every blob; looked up once per process)."""
    try:
        return version("tcube")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


@dataclass
class _Prepared:
    """A checked cube, what the model does not code in it, and its header."""

    cube: Cube
    invalid: np.ndarray | None  # (T, C, H, W): kept exactly in the mask streams, filled for the model
    header: dict
    masks: list[bytes]

    def seeds(self) -> list[int]:
        """Per frame, the start of its checksum: the header's fields, then its mask stream."""
        return [zlib.crc32(m, frame_seed(self.header, t)) for t, m in enumerate(self.masks)]

    def model_input(self, t: int, fill: np.ndarray, out: np.ndarray) -> None:
        """Frame ``t`` as the model's input, into ``out``: float32 digital numbers, the pixels it does
        not code filled smoothly."""
        out[...] = self.cube.values[t]
        if self.header["scale"] != 1.0 or self.header["offset"] != 0.0:
            out -= np.float32(self.header["offset"])
            out /= np.float32(self.header["scale"])
        if self.invalid is not None and self.invalid[t].any():
            out[...] = fill_invalid(out[None], self.invalid[t][None], fill)[0]


def _valid(mask: bytes, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Pixels of a frame that its mask stream does not keep exactly (the ones a residual codes)."""
    kept = unpack_mask(mask, shape, dtype)
    return np.ones(shape, bool) if kept is None else ~kept[0]


def _model_input(prepared: list[_Prepared], refs: list[tuple[int, int]], fill: np.ndarray) -> torch.Tensor:
    """Frames ``refs`` ((cube, date) pairs of equal size) as one batch for the model: the cube itself
    when they are consecutive dates of one cube in digital numbers with nothing to fill (the model
    converts it piece by piece), else a float32 copy."""
    p = prepared[refs[0][0]]
    t0, t1 = refs[0][1], refs[-1][1] + 1
    if (all(i == refs[0][0] for i, _ in refs) and t1 - t0 == len(refs) and p.header["scale"] == 1.0
            and p.header["offset"] == 0.0 and (p.invalid is None or not p.invalid[t0:t1].any())):
        with warnings.catch_warnings():  # read-only inputs are fine: the model never writes to them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(np.ascontiguousarray(p.cube.values[t0:t1]))
    first = p.cube.values
    x = np.empty((len(refs), *first.shape[1:]), np.float32)
    for k, (i, t) in enumerate(refs):
        prepared[i].model_input(t, fill, x[k])
    return torch.from_numpy(x)


def _prepare(cube: object, codec: LearnedCodec, base: dict, nodata: float | None, scale: float | None,
             offset: float | None, band_names: Sequence[str] | None = None) -> _Prepared:
    checked = check_cube(cube, codec.band_counts)
    values = checked.values
    names = check_band_names(band_names, values.shape[1])
    nodata = check_nodata(nodata, values.dtype)
    scale_, offset_ = check_units(scale, offset, values.dtype)
    coded = tuple(v * scale_ + offset_ for v in CODED_RANGE)
    invalid = invalid_mask(values, nodata, coded, checked.masked)
    if scale is None and offset is None:
        check_reflectance(values, None if invalid is None else ~invalid)
    header = {**base, "dtype": values.dtype.name, "shape": list(checked.shape), "nodata": nodata, "scale": scale_,
              "offset": offset_, "flags": FLAG_MASKED_ARRAY if isinstance(cube, np.ma.MaskedArray) else 0,
              "bands": names}
    masks = [pack_mask(None if invalid is None else invalid[t], values[t],
                       None if checked.masked is None else checked.masked[t]) for t in range(len(values))]
    return _Prepared(checked, invalid, header, masks)


def _passes(refs: list, pixels: int, batch: int) -> Iterator[list]:
    """``refs`` in runs of at most ``batch`` frames and (but for one frame) :data:`CALL_PIXELS`."""
    n = max(1, min(batch, CALL_PIXELS // max(pixels, 1)))
    for start in range(0, len(refs), n):
        yield refs[start: start + n]


def _groups(keys: list) -> dict:
    """Indices of equal keys, in first-seen order."""
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


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
        A name from :func:`list_models`; default :data:`tcube.defaults.DEFAULT_MODEL`, or
        :data:`tcube.defaults.BOUNDED_MODEL` with ``max_error``.
    quality : int, optional
        1 (smallest) to 16 (best); default 8. With ``max_error`` it is the quality of the learned
        base (0: none, the residual layer alone); by default the encoder tries
        :data:`tcube.defaults.BOUNDED_QUALITIES` and keeps the smallest blob.
    max_error : int, optional
        Every valid value decodes within this many digital numbers of the original (0: lossless,
        bit for bit), whatever the scene: a residual layer (:mod:`tcube.residual`) over the learned
        base guarantees it. Integer cubes and models that decode exactly (``tec-pc``) only.
    psnr : float, optional
        Instead of ``quality`` and ``max_error``: every date reaches at least this PSNR (dB, in the
        convention ``metric``, on the valid pixels), with the smallest blob the encoder finds (the
        lowest quality that meets it, or an error bound that does when that is smaller).
    metric : {"10k", "full"}
        PSNR convention of ``psnr`` (see :mod:`tcube.metrics`).
    nodata : number, optional
        Pixels equal to it, like NaN and infinities in float cubes, the masked pixels of a masked
        array and values outside :data:`tcube.masks.CODED_RANGE`, are kept exactly (a lossless
        mask beside the learned payload); decoding never produces it elsewhere.
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
    batch = check_count(batch, "batch")
    if psnr is not None:
        if quality is not None or max_error is not None:
            raise InputError("psnr chooses the quality and the error bound itself: give psnr, or quality and "
                             "max_error, not both")
        target = check_psnr(psnr, metric)
        if model is not None and not load_model(model, device).exact:
            raise InputError(f"psnr needs a model that decodes exactly ({', '.join(exact_models())}); {model} does "
                             "not (its decoded PSNR could differ on another machine)")
        units = {"nodata": nodata, "scale": scale, "offset": offset, "band_names": band_names, "device": device,
                 "batch": batch}
        return [_meet_psnr(c, model or BOUNDED_MODEL, target, metric, units) for c in cubes]
    model = model if model is not None else (BOUNDED_MODEL if max_error is not None else DEFAULT_MODEL)
    codec = load_model(model, device)
    qualities = ([quality] if quality is not None
                 else list(BOUNDED_QUALITIES) if max_error is not None else [DEFAULT_QUALITY])
    for q in qualities:
        if not (q == 0 and max_error is not None):  # quality 0: the residual layer alone, no learned base
            codec.quality_index(q, 1)
    if max_error is not None and not codec.exact:
        raise InputError(f"max_error needs a model that decodes exactly ({', '.join(exact_models())}); "
                         f"{model} does not")
    base = {"model": model, "weights": model_digest(model), "quality": qualities[0], "coder": CODER,
            "tcube": package_version()}
    prepared = [_prepare(c, codec, base, nodata, scale, offset, band_names) for c in cubes]
    if max_error is None:
        return [_pack(p, frames) for p, frames in zip(prepared, _base_payloads(codec, prepared, batch))]
    bound = check_max_error(max_error)
    for p in prepared:
        check_whole_numbers(p.cube.values, None if p.invalid is None else ~p.invalid, p.header["scale"],
                            p.header["offset"])
    best: list[bytes | None] = [None] * len(prepared)
    for q in qualities:
        for p in prepared:
            p.header.update(quality=int(q), max_error=float(bound))
        payloads = _base_payloads(codec, prepared, batch)
        for i, blob in enumerate(_bounded(codec, prepared, payloads, bound, device, batch)):
            if best[i] is None or len(blob) < len(best[i]):
                best[i] = blob
    return best


def _dn(values: np.ndarray, h: dict, valid: np.ndarray) -> np.ndarray:
    """Digital numbers (float64) of a cube in a blob's units, zero where not ``valid``."""
    x = np.asarray(values, np.float64)
    x = (x - h["offset"]) / h["scale"] if (h["scale"], h["offset"]) != (1.0, 0.0) else x
    return np.where(valid, x, 0.0)


def _meet_psnr(cube: np.ndarray, model: str, target: float, metric: str, units: dict) -> bytes:
    """The smallest blob found whose every date reaches ``target`` dB: the lowest quality that
    does, or (integer cubes) the largest error bound that does, when that is smaller."""
    h_cube = _as_frames(cube)

    def meets(blob: bytes) -> bool:
        h = unpack(blob).header
        out = _as_frames(decode(blob, device=units["device"]))
        valid = _valid_pixels(h_cube, h)
        return bool((frame_psnr(_dn(h_cube, h, valid), _dn(out, h, valid), metric, valid) >= target).all())

    found: list[bytes] = []
    lo, hi = 1, N_QUALITIES
    blob = encode(cube, model, hi, **units)
    if meets(blob):
        found.append(blob)
        while lo < hi:  # the lowest quality that meets the target
            mid = (lo + hi) // 2
            blob = encode(cube, model, mid, **units)
            if meets(blob):
                hi, found[0] = mid, blob
            else:
                lo = mid + 1
    if np.asarray(cube).dtype.kind in "iu":
        guaranteed = int(10000.0 / 10 ** (target / 20))  # MSE <= E**2: the target holds for any scene
        for bound in dict.fromkeys((4 * guaranteed, 2 * guaranteed, guaranteed)):
            blob = encode(cube, model, max_error=bound, **units)
            if bound == guaranteed or meets(blob):
                found.append(blob)
                break
    if not found:
        raise InputError(f"{model} cannot reach {target} dB ({metric}) on every date of this float cube at "
                         "quality 16: convert it to integer digital numbers for error-bounded coding")
    best = min(found, key=len)
    c = unpack(best)
    header = {k: v for k, v in c.header.items() if k != "version"}
    return pack({**header, "psnr": float(target), "metric": metric}, c.frames)


def _as_frames(a: np.ndarray) -> np.ndarray:
    a = np.ma.getdata(a) if isinstance(a, np.ma.MaskedArray) else np.asarray(a)
    return a[None] if a.ndim == 3 else a


def _valid_pixels(values: np.ndarray, h: dict) -> np.ndarray:
    """Pixels a PSNR target counts: those the encoder coded (see :func:`tcube.masks.invalid_mask`)."""
    coded = tuple(v * h["scale"] + h["offset"] for v in CODED_RANGE)
    with np.errstate(invalid="ignore"):
        invalid = invalid_mask(values, h.get("nodata"), coded)
    return np.ones(values.shape, bool) if invalid is None else ~invalid


def _base_payloads(codec: LearnedCodec, prepared: list[_Prepared], batch: int) -> list[list[FramePayload]]:
    """Per cube, per frame, the learned codec's streams (checksums seeded by each cube's header);
    none at quality 0."""
    quality = prepared[0].header["quality"]
    seeds = [p.seeds() for p in prepared]
    if quality == 0:
        return [[FramePayload({}, seed, seed) for seed in cube_seeds] for cube_seeds in seeds]
    payloads: list[list[FramePayload]] = [[] for _ in prepared]
    if getattr(codec, "temporal", False):  # dates depend on the previous ones: one cube per call
        for i, p in enumerate(prepared):
            fill = codec.background(p.cube.values.shape[1])
            payloads[i] = codec.compress(_model_input(prepared, [(i, t) for t in range(len(p.masks))], fill), quality,
                                         seeds[i])
        return payloads
    for members in _groups([p.cube.values.shape[-3:] for p in prepared]).values():
        refs = [(i, t) for i in members for t in range(len(prepared[i].masks))]
        c, h, w = prepared[members[0]].cube.values.shape[-3:]
        fill = codec.background(c)
        for run in _passes(refs, h * w, batch):
            coded = codec.compress(_model_input(prepared, run, fill), quality, [seeds[i][t] for i, t in run])
            for (i, _), payload in zip(run, coded):
                payloads[i].append(payload)
    return payloads


def _container(p: _Prepared, frames: list[FramePayload], extra: list[dict] | None = None) -> Container:
    """The container of a cube's blob, as :func:`unpack` would return it."""
    extra = extra or [{} for _ in frames]
    streams = [{**f.streams, MASK_STREAM: m, **e} for f, m, e in zip(frames, p.masks, extra)]
    return Container({**p.header, "frames": [{"crc": f.symbol_crc} for f in frames], "version": FORMAT_VERSION},
                     streams)


def _pack(p: _Prepared, frames: list[FramePayload], extra: list[dict] | None = None) -> bytes:
    c = _container(p, frames, extra)
    return pack({k: v for k, v in c.header.items() if k != "version"}, c.frames)


def _bounded(codec: LearnedCodec, prepared: list[_Prepared], payloads: list[list[FramePayload]], bound: int,
             device: str | None, batch: int) -> list[bytes]:
    """Blobs of error-bounded cubes: decode the base as a decoder will, then code the residual."""
    containers = [_container(p, frames) for p, frames in zip(prepared, payloads)]
    outputs = [_Output(c, residual=False) for c in containers]
    with_base = [i for i, c in enumerate(containers) if c.header["quality"]]
    _decode_into([containers[i] for i in with_base], [outputs[i] for i in with_base], device, batch,
                 lambda i: None)
    blobs = []
    for p, frames, out in zip(prepared, payloads, outputs):
        seeds = p.seeds()
        limits, nodata = _limits(p.header)
        extra = []
        for t, m in enumerate(p.masks):
            values = p.cube.values[t]
            valid = _valid(m, values.shape, values.dtype)
            base = _whole(out.values[t], valid) if p.header["quality"] else None
            data, _ = residual.encode_frame(_whole(values, valid), base, valid, bound, limits, nodata, seeds[t])
            extra.append({RESIDUAL_STREAM: data})
        blobs.append(_pack(p, frames, extra))
    return blobs


def _limits(h: dict) -> tuple[tuple[int, int], int | None]:
    """The range of whole values of a blob's dtype (float32: +-2**24) and its no-data value (an
    int, or None when it cannot be one)."""
    dtype = np.dtype(h["dtype"])
    lo, hi = (-(1 << 24), 1 << 24) if dtype.kind == "f" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    nodata = h.get("nodata")
    whole = nodata is not None and np.isfinite(nodata) and float(nodata).is_integer()
    return (lo, hi), int(nodata) if whole else None


def _whole(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A frame as int32 for the residual layer: floats rounded (their valid values are whole, within
    +-2**24), the pixels it does not code (NaN among them) zero."""
    if values.dtype.kind != "f":
        return values.astype(np.int32)
    return np.where(valid, np.round(np.nan_to_num(values)), 0).astype(np.int32)


def _check_header(h: dict) -> LearnedCodec:
    """The model a blob's header names, after checking every field against it and the format's limits."""
    try:
        model, shape, dtype, quality = h["model"], h["shape"], h["dtype"], h["quality"]
    except KeyError as exc:
        raise BitstreamError(f"blob header lacks field {exc}") from exc
    if model not in list_models():
        raise UnknownModelError(f"blob was made with model {model!r}, which this installation does not have "
                                f"(available: {', '.join(list_models())})")
    weights = h.get("weights")
    if (not isinstance(weights, str) or len(weights) != 2 * digest_length(h.get("version", FORMAT_VERSION))
            or not has_weights(model, weights)):
        raise WeightsMismatchError(
            f"blob was made with other weights of {model!r} (digest {str(weights)[:12]}…, installed "
            f"{model_digest(model)[:12]}… and no earlier weights with that digest); install the tcube version "
            f"that wrote it" + (f" ({h['tcube']})" if h.get("tcube") else "")
        )
    if h.get("coder") != CODER:
        raise BitstreamError(f"blob uses entropy coder {h.get('coder')!r}; this package reads {CODER!r}")
    codec = load_model(model, "cpu", weights)
    bands = shape[-3] if len(shape) in (3, 4) else None
    counts = codec.band_counts
    lowest = 0 if h.get("max_error") is not None else 1  # quality 0: an error bound without a learned base
    if (dtype not in DTYPES or bands not in counts or min(shape) < 1 or isinstance(quality, bool)
            or not isinstance(quality, int) or not lowest <= quality <= N_QUALITIES):
        raise BitstreamError(f"blob header is inconsistent: dtype {dtype}, shape {shape}, quality {quality} "
                             f"({model} codes {band_counts_text(counts)} bands at qualities 1..{N_QUALITIES})")
    check_size(tuple(shape), BitstreamError)
    try:
        check_nodata(h.get("nodata"), np.dtype(dtype))
        check_units(h.get("scale", 1.0), h.get("offset", 0.0), dtype)
        if h.get("bands"):
            check_band_names(h["bands"], bands)
    except InputError as exc:
        raise BitstreamError(f"blob header is inconsistent: {exc}") from exc
    if h.get("flags", 0) & ~FLAG_MASKED_ARRAY:
        raise BitstreamError(f"blob header has unknown flags {h['flags']:#x} (a newer tcube wrote it?)")
    if h.get("max_error") is not None:
        try:
            check_max_error(h["max_error"])
        except InputError as exc:
            raise BitstreamError(f"blob header is inconsistent: {exc}") from exc
        if not codec.exact:
            raise BitstreamError(f"blob header is inconsistent: an error bound over {model}, which does not "
                                 "decode exactly")
    return codec


def _round_into(out: np.ndarray, x: np.ndarray) -> None:
    """Decoded floats ``x`` (float32, modified in place) into ``out``: integers are rounded half up
    and saturated to the dtype's range, floats kept as they are."""
    if out.dtype.kind == "f":
        out[...] = x
        return
    lim = np.iinfo(out.dtype)
    x += 0.5
    np.floor(x, out=x)
    out[...] = np.clip(x, lim.min, lim.max, out=x)


def to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """Decoded floats to ``dtype``, as :func:`decode` stores them.

    Examples
    --------
    >>> to_dtype(np.array([-3.0, 1.5, 70000.0]), "uint16")
    array([    0,     2, 65535], dtype=uint16)
    """
    out = np.empty(np.shape(x), dtype)
    _round_into(out, np.array(x, np.float32))
    return out


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


def _named(exc: TcubeError, name: str | None) -> TcubeError:
    """The same error with ``name`` (which blob) in front of its message."""
    return exc if name is None else type(exc)(f"{name}: {exc}")


def check_blob(blob: bytes, position: Sequence[int] | None = None) -> Container:
    """Unpack ``blob`` and check that this installation can decode it (model, weights, coder,
    shape and limits, frames and their streams) and, given the grid ``position`` of the zarr chunk
    it is read as, that it was written for that chunk (blobs of format version 8 record it).

    Raises the :class:`~tcube.errors.BitstreamError` subclass that names the problem.
    """
    container = unpack(blob)
    h = container.header
    if position is not None and h.get("position") is not None and list(h["position"]) != list(position):
        raise CorruptBlobError(f"blob was written for the chunk at grid position {tuple(h['position'])}, not "
                               f"{tuple(position)}: chunk files were moved or swapped")
    codec = _check_header(h)
    t = h["shape"][0] if len(h["shape"]) == 4 else 1
    if len(container.frames) != t:
        raise BitstreamError(f"blob header announces {t} frames but holds {len(container.frames)}")
    expected = ((set(codec.stream_names) if h["quality"] else set()) | ({MASK_STREAM} if h["version"] >= 2 else set())
                | ({RESIDUAL_STREAM} if h.get("max_error") is not None else set()))
    if container.frames and set(container.frames[0]) != expected:
        raise BitstreamError(f"blob has streams {sorted(container.frames[0])}; {h['model']} writes "
                             f"{sorted(expected)}")
    return container


def _seed(container: Container, t: int) -> int:
    """Start of frame ``t``'s checksums: its header fields, then its mask stream (version 3)."""
    h = container.header
    return zlib.crc32(container.frames[t].get(MASK_STREAM, b""), frame_seed(h, t)) if h["version"] >= 3 else 0


def _payload(container: Container, t: int) -> FramePayload:
    """Frame ``t``'s streams for the model, its checksum bound to the header (version 3) and mask."""
    frame, h = container.frames[t], container.header
    streams = {k: v for k, v in frame.items() if k not in (MASK_STREAM, RESIDUAL_STREAM)}
    return FramePayload(streams, h["frames"][t]["crc"], _seed(container, t))


class _Output:
    """The array a blob decodes to, filled frame by frame."""

    def __init__(self, container: Container, residual: bool = True) -> None:
        h = container.header
        self.container, self.header = container, h
        self.residual = residual and h.get("max_error") is not None
        shape = h["shape"] if len(h["shape"]) == 4 else [1, *h["shape"]]
        self.values = np.empty(shape, h["dtype"])
        self.masked = np.zeros(shape, bool) if h.get("flags", 0) & FLAG_MASKED_ARRAY else None

    def put(self, t: int, rows: slice, cols: slice, x: np.ndarray) -> None:
        """Store a decoded piece of frame ``t`` (float32 digital numbers, modified in place) in its
        units and dtype."""
        h, out = self.header, self.values[t][:, rows, cols]
        if h["version"] >= 3:  # only values in CODED_RANGE went through the model: decode within it
            np.clip(x, *CODED_RANGE, out=x)
        if h["scale"] != 1.0 or h["offset"] != 0.0:
            x *= np.float32(h["scale"])
            x += np.float32(h["offset"])
        _round_into(out, x)

    def finish(self, t: int) -> None:
        """Frame ``t`` once every piece is in: no-data never at a valid pixel, kept pixels back."""
        out = avoid_nodata(self.values[t], self.header["nodata"])
        mask = unpack_mask(self.container.frames[t].get(MASK_STREAM, b""), out.shape, out.dtype)
        if mask is not None:
            out[mask[0]] = mask[1]
            if self.masked is not None and mask[2] is not None:
                self.masked[t] = mask[2]
        if self.residual:
            valid = np.ones(out.shape, bool) if mask is None else ~mask[0]
            limits, nodata = _limits(self.header)
            base = _whole(out, valid) if self.header["quality"] else None
            rec = residual.decode_frame(self.container.frames[t][RESIDUAL_STREAM], base, valid,
                                        int(self.header["max_error"]), limits, nodata, _seed(self.container, t), t,
                                        layout=self.header["version"])
            np.copyto(out, rec, casting="unsafe", where=valid)  # whole values in the dtype's range

    def result(self) -> np.ndarray:
        shape = self.header["shape"]
        values = self.values.reshape(shape)
        return values if self.masked is None else np.ma.MaskedArray(values, self.masked.reshape(shape))


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
    batch = check_count(batch, "batch")
    label = (lambda i: names[i]) if names is not None else (lambda i: None)
    containers = []
    for i, blob in enumerate(blobs):
        try:
            containers.append(check_blob(blob, positions[i] if positions is not None else None))
        except TcubeError as exc:
            raise _named(exc, label(i)) from exc
    outputs = [_Output(c) for c in containers]
    _decode_into(containers, outputs, device, batch, label)
    return [o.result() for o in outputs]


def _decode_into(containers: list[Container], outputs: list[_Output], device: str | None, batch: int,
                 label: Callable[[int], str | None]) -> None:
    """Decode every frame of ``containers`` into ``outputs``, sharing passes between blobs of one
    model, weights, quality and size."""
    keys = [(c.header["model"], c.header["weights"], c.header["quality"], *c.header["shape"][-3:]) for c in containers]
    for (model, weights, quality, bands, height, width), members in _groups(keys).items():
        refs = [(i, t) for i in members for t in range(len(containers[i].frames))]
        if quality == 0:  # no learned base: the residual layer codes every value
            for i, t in refs:
                outputs[i].values[t] = 0
                with _naming(label, [(i, t)]):
                    outputs[i].finish(t)
            continue
        codec = load_model(model, device, weights)
        if getattr(codec, "temporal", False):  # one blob's dates per call, in order
            runs = [[r for r in refs if r[0] == i] for i in members]
        else:
            runs = list(_passes(refs, height * width, batch))
        for run in runs:
            def sink(frames: slice, rows: slice, cols: slice, piece: torch.Tensor, run=run) -> None:
                for (i, t), frame in zip(run[frames], piece.cpu().numpy()):
                    outputs[i].put(t, rows, cols, frame)

            with _naming(label, run):
                codec.decompress([_payload(containers[i], t) for i, t in run], quality, height, width, sink,
                                 bands=bands)
                for i, t in run:
                    outputs[i].finish(t)


@contextlib.contextmanager
def _naming(label: Callable[[int], str | None], run: list[tuple[int, int]]) -> Iterator[None]:
    """Errors of decoding the frames ``run`` ((blob, frame) pairs) name the blob they come from."""
    try:
        yield
    except SymbolChecksumError as exc:
        raise _named(exc, label(run[exc.frame or 0][0])) from exc
    except TcubeError as exc:
        raise _named(exc, label(run[0][0])) from exc


def info(blob: bytes) -> dict:
    """Header of a blob plus sizes and rate, after checking its container (it may name a model or
    weights this installation does not have: :func:`decode` says so).

    Examples
    --------
    >>> import numpy as np, tcube
    >>> cube = np.full((4, 16, 16), 900, dtype=np.uint16)
    >>> d = tcube.info(tcube.encode(cube, model="tec-pc", band_names=["B02", "B03", "B04", "B08"]))
    >>> d["model"], d["shape"], d["bands"], d["format_version"], d["mode"]
    ('tec-pc', [4, 16, 16], ['B02', 'B03', 'B04', 'B08'], 9, 'quality')
    >>> d = tcube.info(tcube.encode(cube, max_error=0))
    >>> d["mode"], d["max_error"]
    ('lossless', 0.0)
    """
    h = dict(unpack(blob).header)
    bound = h.setdefault("max_error", None)
    h["mode"] = "quality" if bound is None else ("lossless" if bound == 0 else "max_error")
    if h.setdefault("psnr", None) is not None:
        h["mode"] = "psnr"
    samples = int(np.prod(h["shape"]))
    h.update(format_version=h.pop("version"), bytes=len(blob), bpppb=8.0 * len(blob) / samples,
             ratio=samples * np.dtype(h["dtype"]).itemsize / len(blob))
    return h
