"""tcube: learned compression of Sentinel-2 datacubes.

>>> import numpy as np, tcube
>>> blob = tcube.encode(np.full((12, 32, 32), 1500, dtype=np.uint16), model="tec-hp", quality=4)
>>> tcube.decode(blob).shape
(12, 32, 32)
"""

from tcube import data, errors, metrics, models
from tcube.api import decode, encode, info
from tcube.errors import TcubeError
from tcube.models import list_models

__all__ = ["TcubeError", "data", "decode", "encode", "errors", "info", "inpaint", "list_models", "metrics", "models",
           "repair_store", "tec2xarray", "xarray2tec"]


def __getattr__(name: str):
    """``xarray2tec`` / ``tec2xarray`` import xarray, ``inpaint`` its module, only when first used."""
    if name in ("xarray2tec", "tec2xarray", "repair_store"):
        from tcube import datasets as _datasets

        return getattr(_datasets, name)
    if name == "inpaint":
        from tcube.gapfill import inpaint

        return inpaint
    raise AttributeError(f"module 'tcube' has no attribute {name!r}")
