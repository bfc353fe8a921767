"""Checks of what users hand to tcube: the one place that validates a cube, its units and counts.

Every entry point (:func:`tcube.encode`, the zarr codecs, the dataset helpers) goes through these,
so a bad cube or argument gets the same clear :class:`~tcube.errors.InputError` everywhere,
before anything is coded or written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tcube.bitstream import DTYPE_CODES, MAX_FRAME_PIXELS, MAX_SIDE, MAX_VALUES
from tcube.errors import InputError

#: Input dtypes (decoded cubes come back in the same dtype).
DTYPES = DTYPE_CODES
#: Float cubes whose every valid value is within +-this, with fractions, are reflectance (0..1):
#: Sentinel-2 digital numbers of a whole frame never all fall below 3.
REFLECTANCE_LIMIT = 3.0


def check_count(value: object, name: str) -> int:
    """``value`` as an int when it is a whole number of at least 1 (batch sizes and other counts).

    Examples
    --------
    >>> check_count(8, "batch")
    8
    >>> check_count(0, "batch")
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: batch must be a whole number of at least 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


#: Every model codes qualities 1 (smallest) to this (best).
N_QUALITIES = 16


def check_quality(quality: object, lowest: int = 1) -> int:
    """``quality`` as an int from ``lowest`` to :data:`N_QUALITIES` (0 is the error-bounded mode's
    residual layer alone).

    Examples
    --------
    >>> check_quality(8)
    8
    >>> check_quality(17)
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: quality must be an integer from 1 to 16, got 17
    """
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer) or not lowest <= quality <= N_QUALITIES:
        raise InputError(f"quality must be an integer from 1 to {N_QUALITIES}, got {quality!r}")
    return int(quality)


def band_counts_text(counts: range) -> str:
    """How many bands a model codes, in words.

    Examples
    --------
    >>> band_counts_text(range(12, 13)), band_counts_text(range(1, 33))
    ('12', '1 to 32')
    """
    return f"{counts.start} to {counts.stop - 1}" if len(counts) > 1 else str(counts.start)


#: Longest band name (UTF-8 bytes) a blob records.
MAX_BAND_NAME = 64


def check_band_names(names: object, bands: int) -> list[str]:
    """Band names for a cube of ``bands`` bands as a list (empty when ``names`` is None): one
    distinct, non-empty name of at most :data:`MAX_BAND_NAME` bytes per band.

    Examples
    --------
    >>> check_band_names(("B02", "B03", "B04", "B08"), 4)
    ['B02', 'B03', 'B04', 'B08']
    >>> check_band_names(["B02", "B02"], 2)
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: band names must be distinct, got ['B02', 'B02']
    """
    if names is None:
        return []
    if isinstance(names, str | bytes) or not hasattr(names, "__len__"):
        raise InputError(f"band names must be a sequence of strings, one per band, got {names!r}")
    names = list(names)
    if len(names) != bands:
        raise InputError(f"{len(names)} band names for a cube of {bands} bands")
    if not all(isinstance(n, str) and 0 < len(n.encode()) <= MAX_BAND_NAME for n in names):
        raise InputError(f"band names must be non-empty strings of at most {MAX_BAND_NAME} bytes, got {names!r}")
    if len(set(names)) != len(names):
        raise InputError(f"band names must be distinct, got {names!r}")
    return names


#: Largest error bound (in digital numbers) of an error-bounded blob.
MAX_ERROR_LIMIT = 1 << 15


def check_max_error(value: object) -> int | None:
    """``value`` as an int bound in digital numbers: a whole number from 0 (lossless) to
    :data:`MAX_ERROR_LIMIT`; None stays None.

    Examples
    --------
    >>> check_max_error(4), check_max_error(None)
    (4, None)
    >>> check_max_error(1.5)
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: max_error must be a whole number from 0 to 32768, got 1.5
    """
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    if not ok or not float(value).is_integer() or not 0 <= value <= MAX_ERROR_LIMIT:
        raise InputError(f"max_error must be a whole number from 0 to {MAX_ERROR_LIMIT}, got {value!r}")
    return int(value)


def check_whole_numbers(values: np.ndarray, valid: np.ndarray | None, scale: float, offset: float) -> None:
    """Refuse float cubes whose valid values are not whole digital numbers in their own units
    (scale 1, offset 0): what error-bounded coding of float32 needs.

    Examples
    --------
    >>> check_whole_numbers(np.array([1.0, 2.0], np.float32), None, 1.0, 0.0)
    >>> check_whole_numbers(np.array([0.12], np.float32), None, 1e-4, 0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: max_error on float32 cubes needs whole digital numbers (scale 1, offset 0, ...
    """
    if values.dtype.kind != "f":
        return
    v = values if valid is None else values[valid]
    if (scale, offset) != (1.0, 0.0) or not (np.all(v == np.round(v)) and np.all(np.abs(v) <= 1 << 24)):
        raise InputError("max_error on float32 cubes needs whole digital numbers (scale 1, offset 0, values up to "
                         "2**24); convert reflectance to digital numbers first")


def check_metric(metric: object) -> str:
    """A PSNR convention: ``"10k"`` or ``"full"`` (see :mod:`tcube.metrics`).

    Examples
    --------
    >>> check_metric("full")
    'full'
    """
    if metric not in ("10k", "full"):
        raise InputError(f"metric must be '10k' or 'full', got {metric!r}")
    return str(metric)


def check_psnr(target: object, metric: object) -> float:
    """A PSNR target (dB, 10 to 150) and its convention (``"10k"`` or ``"full"``), checked.

    Examples
    --------
    >>> check_psnr(50, "10k")
    50.0
    >>> check_psnr(50, "rgb")
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: metric must be '10k' or 'full', got 'rgb'
    """
    check_metric(metric)
    ok = not isinstance(target, bool) and isinstance(target, int | float | np.integer | np.floating)
    if not ok or not 10.0 <= float(target) <= 150.0:
        raise InputError(f"psnr must be a number of decibels from 10 to 150, got {target!r}")
    return float(target)


def check_nodata(nodata: float | None, dtype: np.dtype) -> float | None:
    """``nodata`` as a float, after checking that ``dtype`` can represent it.

    Examples
    --------
    >>> check_nodata(0, np.uint16), check_nodata(None, np.int16)
    (0.0, None)
    """
    if nodata is None:
        return None
    try:
        value = float(nodata)
    except (TypeError, ValueError) as exc:
        raise InputError(f"nodata must be a number or None, got {nodata!r}") from exc
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        lim = np.iinfo(dtype)
        if not (value.is_integer() and lim.min <= value <= lim.max):
            raise InputError(f"nodata {nodata!r} is not a {dtype} value")
    return value


def check_units(scale: float | None, offset: float | None, dtype: np.dtype | str | None = None) -> tuple[float, float]:
    """(scale, offset) of cube values: value = digital number x scale + offset (default 1 and 0).

    Only float32 cubes may have other units (integer cubes hold digital numbers).

    Examples
    --------
    >>> check_units(1e-4, None, "float32")
    (0.0001, 0.0)
    """
    out = []
    for name, value, default in (("scale", scale, 1.0), ("offset", offset, 0.0)):
        try:
            v = default if value is None else float(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} must be a number, got {value!r}") from exc
        if not math.isfinite(v) or (name == "scale" and v <= 0):
            raise InputError(f"{name} must be a finite number{' above 0' if name == 'scale' else ''}, got {value!r}")
        out.append(v)
    if dtype is not None and np.dtype(dtype).kind != "f" and out != [1.0, 0.0]:
        raise InputError(f"scale and offset apply to float32 cubes; a {np.dtype(dtype)} cube holds digital numbers")
    return out[0], out[1]


@dataclass(frozen=True)
class Cube:
    """A checked cube: its values as (T, C, H, W) and, for a numpy masked array, its mask."""

    values: np.ndarray
    masked: np.ndarray | None
    ndim: int  # 3 or 4, as given

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape if self.ndim == 4 else self.values.shape[1:]


def check_size(shape: tuple[int, ...], error: type[Exception] = InputError) -> None:
    """Refuse shapes beyond the container's limits (see :mod:`tcube.bitstream`)."""
    t, c, h, w = (1, *shape) if len(shape) == 3 else shape
    if max(h, w) > MAX_SIDE or h * w > MAX_FRAME_PIXELS or t * c * h * w > MAX_VALUES or t > 65535:
        raise error(f"cube of shape {tuple(shape)} is beyond one blob's limits (sides up to {MAX_SIDE}, "
                    f"{MAX_FRAME_PIXELS:,} pixels per date, {MAX_VALUES:,} values, 65535 dates): code it in chunks "
                    "(tcube.xarray2tec, or a zarr array with the tcube codec)")


def check_cube(cube: object, bands: int | range) -> Cube:
    """Validate the layout of a (T, C, H, W) or (C, H, W) cube (numpy array or masked array) with
    ``bands`` bands (a count, or a range of counts).

    Examples
    --------
    >>> check_cube(np.zeros((12, 4, 4), np.uint16), 12).values.shape
    (1, 12, 4, 4)
    >>> check_cube(np.zeros((3, 4, 4), np.float64), 12)
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: unsupported dtype float64; use one of uint16, int16, float32
    """
    masked = None
    if isinstance(cube, np.ma.MaskedArray):
        masked, cube = np.ma.getmaskarray(cube), np.ma.getdata(cube)
        masked = masked if masked.any() else None
    if not isinstance(cube, np.ndarray):
        raise InputError(f"cube must be a numpy array, got {type(cube).__name__}")
    if cube.dtype.name not in DTYPES:
        raise InputError(f"unsupported dtype {cube.dtype}; use one of {', '.join(DTYPES)}")
    if cube.ndim not in (3, 4):
        raise InputError(f"cube must have dims (time, band, y, x) or (band, y, x); "
                         f"got {cube.ndim} dims {cube.shape}")
    if not cube.dtype.isnative:  # same values in this machine's byte order
        cube = cube.astype(cube.dtype.newbyteorder("="))
    c4 = cube if cube.ndim == 4 else cube[None]
    counts = bands if isinstance(bands, range) else range(bands, bands + 1)
    if c4.shape[1] not in counts:
        raise InputError(f"cube has {c4.shape[1]} bands on axis {cube.ndim - 3}; this model codes "
                         f"{band_counts_text(counts)}")
    if min(c4.shape) == 0:
        raise InputError(f"cube has an empty dimension: shape {cube.shape}")
    check_size(cube.shape)
    if masked is not None:
        masked = masked if masked.ndim == 4 else masked[None]
    return Cube(c4, masked, cube.ndim)


def check_coded_range(values: np.ndarray, valid: np.ndarray | None, what: str = "cube") -> None:
    """Refuse digital numbers mostly outside what the models code: units that are off (a ``scale``
    given to values that already are digital numbers, say), which would store every value exactly.

    Examples
    --------
    >>> check_coded_range(np.array([1.2e7, 9.1e6], np.float32), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: cube: most values (100 %) lie outside the digital numbers tcube codes ...
    """
    from tcube.masks import CODED_RANGE

    v = values if valid is None else values[valid]
    if not v.size:
        return
    outside = float(np.mean((v < CODED_RANGE[0]) | (v > CODED_RANGE[1])))
    if outside > 0.5:
        raise InputError(
            f"{what}: most values ({100 * outside:.0f} %) lie outside the digital numbers tcube codes "
            f"({CODED_RANGE[0]:g} to {CODED_RANGE[1]:g}; median {float(np.median(v)):.4g} in these units): check "
            "scale and offset (value = digital number x scale + offset); digital numbers need none")


def check_reflectance(values: np.ndarray, valid: np.ndarray | None) -> None:
    """Refuse float reflectance (0..1) given as digital numbers: name ``scale``.

    Examples
    --------
    >>> check_reflectance(np.array([0.05, 0.31, 1.2], np.float32), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: cube values lie between 0.05 and 1.2: float reflectance, ... Pass scale=1e-4 ...
    """
    if values.dtype.kind != "f":
        return
    where = np.ones(values.shape, bool) if valid is None else valid
    if not where.any():
        return
    lo = float(np.min(values, where=where, initial=np.inf))
    hi = float(np.max(values, where=where, initial=-np.inf))
    if max(abs(lo), abs(hi)) > REFLECTANCE_LIMIT:
        return
    if np.any((np.round(values) != values) & where):
        raise InputError(
            f"cube values lie between {lo:.3g} and {hi:.3g}: float reflectance, not digital numbers "
            "(reflectance x 10000). Pass scale=1e-4 (value = digital number x scale + offset; offset=-0.1 where "
            "the L2A +1000 offset was removed) to tcube.encode or the zarr codec, the rule {\"scale\": 0.0001} "
            "to xarray2tec, or --scale 0.0001 to tcube compress")
