"""The coding core: prepared cubes to blobs at one setting, and blobs back to arrays.

Encoding: the model's streams per frame (:func:`base_payloads`), with the mask streams and
the header, packed into one container per cube (:func:`pack_blob`). Decoding: every check of
a blob's header against this installation (:func:`check_blob`), then the model's passes into
:class:`Output`, which puts back the masks and, for error-bounded blobs, the residual layer.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from tcube import residual
from tcube.api.prepare import Prepared, groups, model_input, passes
from tcube.bitstream import CODER, FLAG_MASKED_ARRAY, FORMAT_VERSION, Container, digest_length, frame_seed, pack, unpack
from tcube.errors import (
    BitstreamError,
    CorruptBlobError,
    InputError,
    SymbolChecksumError,
    TcubeError,
    UnknownModelError,
    WeightsMismatchError,
)
from tcube.masks import CODED_RANGE, avoid_nodata, unpack_mask
from tcube.models import FramePayload, Model, has_weights, list_models, load_model, model_digest
from tcube.models.base import N_QUALITIES
from tcube.settings import Settings
from tcube.validate import (
    DTYPES,
    band_counts_text,
    check_band_names,
    check_max_error,
    check_nodata,
    check_size,
    check_units,
)

#: Per-frame stream of the lossless mask (see :mod:`tcube.masks`).
MASK_STREAM = "mask"
#: Per-frame stream of the error-bounded residual layer (see :mod:`tcube.residual`).
RESIDUAL_STREAM = "residual"


@functools.cache
def package_version() -> str:
    """The installed tcube version (written into every blob; looked up once per process)."""
    try:
        return version("tcube")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def header_of(settings: Settings, quality: int) -> dict:
    """The header fields ``settings`` give a blob coded at (base) ``quality``."""
    out = {"model": settings.model, "weights": model_digest(settings.model), "quality": int(quality), "coder": CODER,
           "tcube": package_version()}
    if settings.max_error is not None:
        out["max_error"] = float(settings.max_error)
    return out


# -- encoding ----------------------------------------------------------------------------------

def base_payloads(model: Model, prepared: list[Prepared], batch: int) -> list[list[FramePayload]]:
    """Per cube, per frame, the model's streams (checksums seeded by each cube's header); none at
    quality 0."""
    quality = prepared[0].header["quality"]
    seeds = [p.seeds() for p in prepared]
    if quality == 0:
        return [[FramePayload({}, seed, seed) for seed in cube_seeds] for cube_seeds in seeds]
    payloads: list[list[FramePayload]] = [[] for _ in prepared]
    if model.temporal:  # dates depend on the previous ones: one cube per call
        for i, p in enumerate(prepared):
            fill = model.background(p.cube.values.shape[1])
            payloads[i] = model.compress(model_input(prepared, [(i, t) for t in range(len(p.masks))], fill), quality,
                                         seeds[i])
        return payloads
    for members in groups([p.cube.values.shape[-3:] for p in prepared]).values():
        refs = [(i, t) for i in members for t in range(len(prepared[i].masks))]
        c, h, w = prepared[members[0]].cube.values.shape[-3:]
        fill = model.background(c)
        for run in passes(refs, h * w, batch):
            coded = model.compress(model_input(prepared, run, fill), quality, [seeds[i][t] for i, t in run])
            for (i, _), payload in zip(run, coded):
                payloads[i].append(payload)
    return payloads


def container_of(p: Prepared, frames: list[FramePayload], extra: list[dict] | None = None) -> Container:
    """The container of a cube's blob, as :func:`~tcube.bitstream.unpack` would return it."""
    extra = extra or [{} for _ in frames]
    streams = [{**f.streams, MASK_STREAM: m, **e} for f, m, e in zip(frames, p.masks, extra)]
    return Container({**p.header, "frames": [{"crc": f.symbol_crc} for f in frames], "version": FORMAT_VERSION},
                     streams)


def pack_blob(p: Prepared, frames: list[FramePayload], extra: list[dict] | None = None) -> bytes:
    """The blob of a prepared cube, its model's ``frames`` and ``extra`` streams per frame."""
    c = container_of(p, frames, extra)
    return pack({k: v for k, v in c.header.items() if k != "version"}, c.frames)


# -- the residual layer's integers -------------------------------------------------------------

def limits(h: dict) -> tuple[tuple[int, int], int | None]:
    """The range of whole values of a blob's dtype (float32: +-2**24) and its no-data value (an
    int, or None when it cannot be one)."""
    dtype = np.dtype(h["dtype"])
    lo, hi = (-(1 << 24), 1 << 24) if dtype.kind == "f" else (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    nodata = h.get("nodata")
    whole = nodata is not None and np.isfinite(nodata) and float(nodata).is_integer()
    return (lo, hi), int(nodata) if whole else None


def whole(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A frame as int32 for the residual layer: floats rounded (their valid values are whole, within
    +-2**24), the pixels it does not code (NaN among them) zero."""
    if values.dtype.kind != "f":
        return values.astype(np.int32)
    return np.where(valid, np.round(np.nan_to_num(values)), 0).astype(np.int32)


# -- decoding ----------------------------------------------------------------------------------

def _check_header(h: dict) -> Model:
    """The model a blob's header names, after checking every field against it and the format's limits."""
    try:
        name, shape, dtype, quality = h["model"], h["shape"], h["dtype"], h["quality"]
    except KeyError as exc:
        raise BitstreamError(f"blob header lacks field {exc}") from exc
    if name not in list_models():
        raise UnknownModelError(f"blob was made with model {name!r}, which this installation does not have "
                                f"(available: {', '.join(list_models())})")
    weights = h.get("weights")
    if (not isinstance(weights, str) or len(weights) != 2 * digest_length(h.get("version", FORMAT_VERSION))
            or not has_weights(name, weights)):
        raise WeightsMismatchError(
            f"blob was made with other weights of {name!r} (digest {str(weights)[:12]}…, installed "
            f"{model_digest(name)[:12]}… and no earlier weights with that digest); install the tcube version "
            f"that wrote it" + (f" ({h['tcube']})" if h.get("tcube") else "")
        )
    if h.get("coder") != CODER:
        raise BitstreamError(f"blob uses entropy coder {h.get('coder')!r}; this package reads {CODER!r}")
    model = load_model(name, "cpu", weights)
    bands = shape[-3] if len(shape) in (3, 4) else None
    counts = model.band_counts
    lowest = 0 if h.get("max_error") is not None else 1  # quality 0: an error bound without a learned base
    if (dtype not in DTYPES or bands not in counts or min(shape) < 1 or isinstance(quality, bool)
            or not isinstance(quality, int) or not lowest <= quality <= N_QUALITIES):
        raise BitstreamError(f"blob header is inconsistent: dtype {dtype}, shape {shape}, quality {quality} "
                             f"({name} codes {band_counts_text(counts)} bands at qualities 1..{N_QUALITIES})")
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
        if not model.exact:
            raise BitstreamError(f"blob header is inconsistent: an error bound over {name}, which does not "
                                 "decode exactly")
    return model


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
    model = _check_header(h)
    t = h["shape"][0] if len(h["shape"]) == 4 else 1
    if len(container.frames) != t:
        raise BitstreamError(f"blob header announces {t} frames but holds {len(container.frames)}")
    expected = ((set(model.stream_names) if h["quality"] else set()) | ({MASK_STREAM} if h["version"] >= 2 else set())
                | ({RESIDUAL_STREAM} if h.get("max_error") is not None else set()))
    if container.frames and set(container.frames[0]) != expected:
        raise BitstreamError(f"blob has streams {sorted(container.frames[0])}; {h['model']} writes "
                             f"{sorted(expected)}")
    return container


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
    """Decoded floats to ``dtype``, as :func:`tcube.decode` stores them.

    Examples
    --------
    >>> to_dtype(np.array([-3.0, 1.5, 70000.0]), "uint16")
    array([    0,     2, 65535], dtype=uint16)
    """
    out = np.empty(np.shape(x), dtype)
    _round_into(out, np.array(x, np.float32))
    return out


def named(exc: TcubeError, name: str | None) -> TcubeError:
    """The same error with ``name`` (which blob) in front of its message."""
    return exc if name is None else type(exc)(f"{name}: {exc}")


def _seed(container: Container, t: int) -> int:
    """Start of frame ``t``'s checksums: its header fields, then its mask stream (version 3)."""
    h = container.header
    return zlib.crc32(container.frames[t].get(MASK_STREAM, b""), frame_seed(h, t)) if h["version"] >= 3 else 0


def _payload(container: Container, t: int) -> FramePayload:
    """Frame ``t``'s streams for the model, its checksum bound to the header (version 3) and mask."""
    frame, h = container.frames[t], container.header
    streams = {k: v for k, v in frame.items() if k not in (MASK_STREAM, RESIDUAL_STREAM)}
    return FramePayload(streams, h["frames"][t]["crc"], _seed(container, t))


class Output:
    """The array a blob decodes to, filled frame by frame (``residual=False``: its base alone)."""

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
            bounds, nodata = limits(self.header)
            base = whole(out, valid) if self.header["quality"] else None
            rec = residual.decode_frame(self.container.frames[t][RESIDUAL_STREAM], base, valid,
                                        int(self.header["max_error"]), bounds, nodata, _seed(self.container, t), t,
                                        layout=self.header["version"])
            np.copyto(out, rec, casting="unsafe", where=valid)  # whole values in the dtype's range

    def result(self) -> np.ndarray:
        shape = self.header["shape"]
        values = self.values.reshape(shape)
        return values if self.masked is None else np.ma.MaskedArray(values, self.masked.reshape(shape))


def decode_into(containers: list[Container], outputs: list[Output], settings: Settings,
                label: Callable[[int], str | None] = lambda i: None) -> None:
    """Decode every frame of ``containers`` into ``outputs``, sharing passes between blobs of one
    model, weights, quality and size; ``label(i)`` names blob ``i`` in errors."""
    keys = [(c.header["model"], c.header["weights"], c.header["quality"], *c.header["shape"][-3:]) for c in containers]
    for (name, weights, quality, bands, height, width), members in groups(keys).items():
        refs = [(i, t) for i in members for t in range(len(containers[i].frames))]
        if quality == 0:  # no learned base: the residual layer codes every value
            for i, t in refs:
                outputs[i].values[t] = 0
                with _naming(label, [(i, t)]):
                    outputs[i].finish(t)
            continue
        model = load_model(name, settings.device, weights)
        if model.temporal:  # one blob's dates per call, in order
            runs = [[r for r in refs if r[0] == i] for i in members]
        else:
            runs = list(passes(refs, height * width, settings.batch))
        for run in runs:
            def sink(frames: slice, rows: slice, cols: slice, piece: torch.Tensor, run=run) -> None:
                for (i, t), frame in zip(run[frames], piece.cpu().numpy()):
                    outputs[i].put(t, rows, cols, frame)

            with _naming(label, run):
                model.decompress([_payload(containers[i], t) for i, t in run], quality, height, width, sink,
                                 bands=bands)
            for i, t in run:
                with _naming(label, [(i, t)]):  # the residual layer names frame t of blob i
                    outputs[i].finish(t)


@contextlib.contextmanager
def _naming(label: Callable[[int], str | None], run: list[tuple[int, int]]) -> Iterator[None]:
    """Errors of decoding the frames ``run`` ((blob, frame) pairs) name the blob they come from."""
    try:
        yield
    except SymbolChecksumError as exc:  # a model's frame: its place in the run
        at = exc.frame or 0
        raise named(exc, label(run[at if 0 <= at < len(run) else 0][0])) from exc
    except TcubeError as exc:
        raise named(exc, label(run[0][0])) from exc


def decode_blobs(blobs: Sequence[bytes], settings: Settings, names: Sequence[str] | None = None,
                 positions: Sequence[Sequence[int] | None] | None = None) -> list[np.ndarray]:
    """Arrays of ``blobs``, each checked first (see :func:`tcube.api.decode_batch`)."""
    label = (lambda i: names[i]) if names is not None else (lambda i: None)
    containers = []
    for i, blob in enumerate(blobs):
        try:
            containers.append(check_blob(blob, positions[i] if positions is not None else None))
        except TcubeError as exc:
            raise named(exc, label(i)) from exc
    outputs = [Output(c) for c in containers]
    decode_into(containers, outputs, settings, label)
    return [o.result() for o in outputs]
