"""Classical codecs to compare against, behind one interface (:class:`~tcube.baselines.base.Baseline`).

JPEG2000, JPEG-XL, JPEG-LS and SZ3 need ``imagecodecs`` (``pip install 'tcube[bench]'``), x265 needs PyAV
(``pip install 'tcube[video]'``); zstd comes with numcodecs.
"""

from __future__ import annotations

from tcube.baselines.base import Baseline
from tcube.baselines.jpeg2000 import J2K_MODES, JPEG2000_BASELINES, j2k_decode, j2k_encode
from tcube.baselines.jpegls import JPEGLS_BASELINES
from tcube.baselines.jpegxl import JPEGXL_BASELINES
from tcube.baselines.sz3 import SZ3_BASELINES
from tcube.baselines.x265 import X265_BASELINES
from tcube.baselines.zstd import ZSTD_BASELINES
from tcube.errors import UnknownModelError

BASELINES: dict[str, Baseline] = {b.name: b for b in (*JPEG2000_BASELINES, *JPEGXL_BASELINES, *X265_BASELINES,
                                                       *ZSTD_BASELINES, *JPEGLS_BASELINES, *SZ3_BASELINES)}


def list_baselines() -> list[str]:
    """Names of the classical baselines.

    Examples
    --------
    >>> list_baselines()[:3]
    ['jpeg2000-per_band', 'jpeg2000-joint', 'jpeg2000-pca']
    """
    return list(BASELINES)


def get_baseline(name: str) -> Baseline:
    """The baseline called ``name``."""
    if name not in BASELINES:
        raise UnknownModelError(f"unknown baseline {name!r} (available: {', '.join(BASELINES)})")
    return BASELINES[name]


__all__ = ["BASELINES", "J2K_MODES", "Baseline", "get_baseline", "j2k_decode", "j2k_encode", "list_baselines"]
