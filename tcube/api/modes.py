"""The coding modes over the core: a quality, an error bound (the residual layer over a base), or
a PSNR target (the smallest blob found that meets it on every date).

:func:`encode` is where a :class:`~tcube.settings.Settings` picks its mode; each mode calls
the coding core (:mod:`tcube.api.core`), never the public API.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tcube import residual
from tcube.api.core import (
    RESIDUAL_STREAM,
    Output,
    base_payloads,
    container_of,
    decode_blobs,
    decode_into,
    header_of,
    limits,
    pack_blob,
    whole,
)
from tcube.api.prepare import Prepared, Units, as_frames, coded_pixels, digital_numbers, prepare
from tcube.bitstream import pack, unpack
from tcube.errors import InputError
from tcube.metrics import frame_psnr
from tcube.models import Model, load_model
from tcube.settings import Settings
from tcube.validate import check_whole_numbers


def encode(cubes: Sequence[np.ndarray], settings: Settings, units: Units) -> list[bytes]:
    """The blobs of ``cubes`` coded with ``settings``, in its mode."""
    if settings.psnr is not None:
        return [_meet_psnr(cube, settings, units) for cube in cubes]
    model = load_model(settings.model, settings.device)
    qualities = settings.qualities
    prepared = [prepare(c, model.band_counts, header_of(settings, qualities[0]), units) for c in cubes]
    if settings.max_error is None:
        return [pack_blob(p, frames) for p, frames in zip(prepared, base_payloads(model, prepared, settings.batch))]
    for p in prepared:
        check_whole_numbers(p.cube.values, None if p.invalid is None else ~p.invalid, p.header["scale"],
                            p.header["offset"])
    best: list[bytes | None] = [None] * len(prepared)
    for q in qualities:
        for p in prepared:
            p.header.update(header_of(settings, q))
        for i, blob in enumerate(_bounded(model, prepared, settings)):
            if best[i] is None or len(blob) < len(best[i]):
                best[i] = blob
    return best


def _bounded(model: Model, prepared: list[Prepared], settings: Settings) -> list[bytes]:
    """Blobs of error-bounded cubes: the base, decoded as a decoder will, then the residual."""
    payloads = base_payloads(model, prepared, settings.batch)
    containers = [container_of(p, frames) for p, frames in zip(prepared, payloads)]
    outputs = [Output(c, residual=False) for c in containers]
    with_base = [i for i, c in enumerate(containers) if c.header["quality"]]
    decode_into([containers[i] for i in with_base], [outputs[i] for i in with_base], settings)
    return [pack_blob(p, frames, _residuals(p, out, settings.max_error))
            for p, frames, out in zip(prepared, payloads, outputs)]


def _residuals(p: Prepared, base: Output, bound: int) -> list[dict]:
    """Per frame of a prepared cube, the residual stream that brings its decoded ``base`` within ``bound``."""
    seeds = p.seeds()
    bounds, nodata = limits(p.header)
    streams = []
    for t in range(len(p.masks)):
        valid = p.valid(t)
        start = whole(base.values[t], valid) if p.header["quality"] else None
        data, _ = residual.encode_frame(whole(p.cube.values[t], valid), start, valid, bound, bounds, nodata, seeds[t])
        streams.append({RESIDUAL_STREAM: data})
    return streams


def _meet_psnr(cube: np.ndarray, settings: Settings, units: Units) -> bytes:
    """The smallest blob found whose every date reaches the settings' PSNR target: the lowest
    quality that does, or (integer cubes) the largest error bound that does, when that is smaller."""
    frames = as_frames(cube)
    target, metric = settings.psnr, settings.metric
    run_time = {"batch": settings.batch, "device": settings.device}

    def coded(**mode: int) -> bytes:
        return encode([cube], Settings.make(settings.model, **mode, **run_time), units)[0]

    def meets(blob: bytes) -> bool:
        h = unpack(blob).header
        out = as_frames(decode_blobs([blob], settings)[0])
        valid = coded_pixels(frames, h)
        psnrs = frame_psnr(digital_numbers(frames, h, valid), digital_numbers(out, h, valid), metric, valid)
        return bool((psnrs >= target).all())

    found: list[bytes] = []
    lo, hi = 1, max(settings.qualities)
    blob = coded(quality=hi)
    if meets(blob):
        found.append(blob)
        while lo < hi:  # the lowest quality that meets the target
            mid = (lo + hi) // 2
            blob = coded(quality=mid)
            if meets(blob):
                hi, found[0] = mid, blob
            else:
                lo = mid + 1
    if np.asarray(cube).dtype.kind in "iu":
        guaranteed = int(10000.0 / 10 ** (target / 20))  # MSE <= E**2: the target holds for any scene
        for bound in dict.fromkeys((4 * guaranteed, 2 * guaranteed, guaranteed)):
            blob = coded(max_error=bound)
            if bound == guaranteed or meets(blob):
                found.append(blob)
                break
    if not found:
        raise InputError(f"{settings.model} cannot reach {target} dB ({metric}) on every date of this float cube at "
                         "quality 16: convert it to integer digital numbers for error-bounded coding")
    best = unpack(min(found, key=len))
    header = {k: v for k, v in best.header.items() if k != "version"}
    return pack({**header, "psnr": float(target), "metric": metric}, best.frames)

