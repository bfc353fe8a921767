"""Preparing cubes for the coder: checked values, what the model does not code (masks), batches."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tcube.bitstream import FLAG_MASKED_ARRAY, frame_seed
from tcube.masks import CODED_RANGE, fill_invalid, invalid_mask, pack_mask, unpack_mask
from tcube.models.base import PASS_PIXELS
from tcube.validate import Cube, check_band_names, check_cube, check_nodata, check_reflectance, check_units

#: Most pixels (frames x height x width) converted to the model's input, or decoded, at once.
CALL_PIXELS = 4 * PASS_PIXELS


@dataclass(frozen=True)
class Units:
    """What the values of a cube mean, as a user gave it (checked against each cube's dtype).

    ``nodata``: pixels kept exactly; ``scale``, ``offset``: value = digital number x scale +
    offset (float32 cubes); ``band_names``: one name per band, recorded in the blob.
    """

    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None
    band_names: Sequence[str] | None = None


@dataclass
class Prepared:
    """A checked cube, what the model does not code in it, and its header."""

    cube: Cube
    invalid: np.ndarray | None  # (T, C, H, W): kept exactly in the mask streams, filled for the model
    header: dict
    masks: list[bytes]

    def seeds(self) -> list[int]:
        """Per frame, the start of its checksum: the header's fields, then its mask stream."""
        return [zlib.crc32(m, frame_seed(self.header, t)) for t, m in enumerate(self.masks)]

    def valid(self, t: int) -> np.ndarray:
        """Pixels of frame ``t`` that its mask stream does not keep exactly (the ones a residual codes)."""
        values = self.cube.values[t]
        kept = unpack_mask(self.masks[t], values.shape, values.dtype)
        return np.ones(values.shape, bool) if kept is None else ~kept[0]

    def model_input(self, t: int, fill: np.ndarray, out: np.ndarray) -> None:
        """Frame ``t`` as the model's input, into ``out``: float32 digital numbers, the pixels it does
        not code filled smoothly."""
        out[...] = self.cube.values[t]
        if self.header["scale"] != 1.0 or self.header["offset"] != 0.0:
            out -= np.float32(self.header["offset"])
            out /= np.float32(self.header["scale"])
        if self.invalid is not None and self.invalid[t].any():
            out[...] = fill_invalid(out[None], self.invalid[t][None], fill)[0]


def prepare(cube: object, band_counts: range, header: dict, units: Units) -> Prepared:
    """Check ``cube`` (for a model of ``band_counts`` bands) and its ``units``; its masks and its
    header: ``header`` (the settings' fields) with the cube's own."""
    checked = check_cube(cube, band_counts)
    values = checked.values
    names = check_band_names(units.band_names, values.shape[1])
    nodata = check_nodata(units.nodata, values.dtype)
    scale_, offset_ = check_units(units.scale, units.offset, values.dtype)
    coded = tuple(v * scale_ + offset_ for v in CODED_RANGE)
    invalid = invalid_mask(values, nodata, coded, checked.masked)
    if units.scale is None and units.offset is None:
        check_reflectance(values, None if invalid is None else ~invalid)
    header = {**header, "dtype": values.dtype.name, "shape": list(checked.shape), "nodata": nodata, "scale": scale_,
              "offset": offset_, "flags": FLAG_MASKED_ARRAY if isinstance(cube, np.ma.MaskedArray) else 0,
              "bands": names}
    masks = [pack_mask(None if invalid is None else invalid[t], values[t],
                       None if checked.masked is None else checked.masked[t]) for t in range(len(values))]
    return Prepared(checked, invalid, header, masks)


def model_input(prepared: list[Prepared], refs: list[tuple[int, int]], fill: np.ndarray) -> torch.Tensor:
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


def passes(refs: list, pixels: int, batch: int) -> Iterator[list]:
    """``refs`` in runs of at most ``batch`` frames and (but for one frame) :data:`CALL_PIXELS`."""
    n = max(1, min(batch, CALL_PIXELS // max(pixels, 1)))
    for start in range(0, len(refs), n):
        yield refs[start: start + n]


def groups(keys: list) -> dict:
    """Indices of equal keys, in first-seen order.

    Examples
    --------
    >>> groups(["a", "b", "a"])
    {'a': [0, 2], 'b': [1]}
    """
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


def as_frames(a: np.ndarray) -> np.ndarray:
    """A cube's values (masked arrays: their data) as (T, C, H, W)."""
    a = np.ma.getdata(a) if isinstance(a, np.ma.MaskedArray) else np.asarray(a)
    return a[None] if a.ndim == 3 else a


def coded_pixels(values: np.ndarray, h: dict) -> np.ndarray:
    """Pixels of ``values`` that a blob with header ``h`` codes (see :func:`tcube.masks.invalid_mask`)."""
    coded = tuple(v * h["scale"] + h["offset"] for v in CODED_RANGE)
    with np.errstate(invalid="ignore"):
        invalid = invalid_mask(values, h.get("nodata"), coded)
    return np.ones(values.shape, bool) if invalid is None else ~invalid


def digital_numbers(values: np.ndarray, h: dict, valid: np.ndarray) -> np.ndarray:
    """Digital numbers (float64) of a cube in a blob's units, zero where not ``valid``."""
    x = np.asarray(values, np.float64)
    x = (x - h["offset"]) / h["scale"] if (h["scale"], h["offset"]) != (1.0, 0.0) else x
    return np.where(valid, x, 0.0)
