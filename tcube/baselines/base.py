"""The interface every classical baseline implements, and the framing shared by several."""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tcube.errors import InputError


@dataclass(frozen=True)
class Baseline:
    """A classical codec on (T, C, H, W) uint16 cubes.

    ``encode(cube, setting) -> bytes`` and ``decode(blob, shape) -> cube``; ``settings`` is the
    sweep of the quality knob (``knob`` says what it is) from smallest to largest output, spanning
    about 0.02 to 4 bits per pixel per band on Sentinel-2 data. Lossless codecs have one setting;
    error-bounded ones (``bounded``) take the maximum error in digital numbers as setting.
    """

    name: str
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes, tuple[int, ...]], np.ndarray]
    settings: tuple[float, ...]
    knob: str
    lossless: bool = False
    bounded: bool = False
    requires: str = "imagecodecs"


def check_uint16(cube: np.ndarray) -> np.ndarray:
    """Baselines code non-negative digital numbers as uint16 (T, C, H, W)."""
    cube = np.asarray(cube)
    if cube.ndim != 4:
        raise InputError(f"baselines code (T, C, H, W) cubes, got shape {cube.shape}")
    if cube.dtype != np.uint16:
        if cube.min() < 0 or cube.max() > 65535 or (cube.dtype.kind == "f" and not np.isfinite(cube).all()):
            raise InputError("baselines code digital numbers in 0..65535")
        cube = cube.astype(np.uint16)
    return np.ascontiguousarray(cube)


def optional_module(name: str, extra: str, user: str = "this baseline", package: str | None = None):
    """Import module ``name``, or raise a clear error naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{user} needs {package or name}: pip install 'tcube[{extra}]'") from exc


def imagecodecs_module():
    """imagecodecs, or a clear error naming the extra that installs it."""
    return optional_module("imagecodecs", "bench")


def pack(parts: list[bytes]) -> bytes:
    """Length-prefixed concatenation (u32 per part)."""
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def unpack(blob: bytes) -> list[bytes]:
    """Inverse of :func:`pack`.

    Examples
    --------
    >>> unpack(pack([b"ab", b"", b"c"]))
    [b'ab', b'', b'c']
    """
    parts, pos = [], 0
    while pos < len(blob):
        (n,) = struct.unpack_from("<I", blob, pos)
        parts.append(blob[pos + 4: pos + 4 + n])
        pos += 4 + n
    return parts
