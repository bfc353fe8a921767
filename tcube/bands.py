"""Sentinel-2 band names and the SSL4EO-S12 v1.1 normalisation statistics."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import xarray

L2A_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
L1C_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)
#: STAC ``eo:common_name`` values (and Earth Search asset names) of the Sentinel-2 bands. The common
#: name ``rededge`` is left out: it names B05, B06 and B07 alike.
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12",
}
#: Other spellings met in catalogues and tools (compared without case, spaces, ``-`` or ``_``).
BAND_ALIASES: dict[str, str] = {
    **COMMON_NAMES, "coastalaerosol": "B01", "aerosol": "B01", "rededge01": "B05", "rededge02": "B06",
    "rededge03": "B07", "watervapour": "B09", "watervapor": "B09",
    "swir1": "B11", "swir2": "B12",
}
_BAND_RE = re.compile(r"(?:^|[\s_\-.()])B(\d{1,2})(A?)(?=$|[\s_\-.()])", re.IGNORECASE)


def band_name(text: str) -> str | None:
    """The Sentinel-2 band (``"B02"``, ``"B8A"``) a name means, in any spelling: band names (``B2``,
    ``b02``, ``B8a``, ``B04_10m``, inside file names), STAC common names, the asset names of the
    Earth Search and Planetary Computer collections (``red``, ``nir08``, ``swir16``, ``blue-jp2``)
    and a few other aliases. None for anything else (``SCL``, ``rededge``, ``B13``).

    Examples
    --------
    >>> [band_name(t) for t in ("S2A_MSIL2A_x_B8A.tif", "B2", "b08a", "SCL", "Red", "nir08", "blue-jp2", "B13")]
    ['B8A', 'B02', 'B8A', None, 'B04', 'B8A', 'B02', None]
    """
    key = re.sub(r"[\s_\-]", "", text).lower()
    key = key[:-3] if key.endswith("jp2") and key[:-3] in BAND_ALIASES else key
    if key in BAND_ALIASES:
        return BAND_ALIASES[key]
    m = _BAND_RE.search(text.rsplit(".", 1)[0] if re.search(r"\.[A-Za-z]\w*$", text) else text)
    if not m:
        return None
    number, narrow = int(m.group(1)), bool(m.group(2))
    if narrow:
        return "B8A" if number == 8 else None
    return f"B{number:02d}" if 1 <= number <= 12 else None


#: Per-band mean and standard deviation (SSL4EO-S12 v1.1, digital numbers), in band order.
L2A_MEAN: tuple[float, ...] = (
    793.243, 924.863, 1184.553, 1340.936, 1671.402, 2240.082,
    2468.412, 2563.243, 2627.704, 2711.071, 2416.714, 1849.625,
)
L2A_STD: tuple[float, ...] = (
    1160.144, 1201.092, 1219.943, 1397.225, 1400.035, 1373.136,
    1429.170, 1485.025, 1447.836, 1652.703, 1471.002, 1365.307,
)
L1C_MEAN: tuple[float, ...] = (
    1607.345, 1393.068, 1320.225, 1373.963, 1562.536, 2110.071, 2392.832,
    2321.154, 2583.77, 838.712, 21.753, 2205.112, 1545.798,
)
L1C_STD: tuple[float, ...] = (
    786.523, 849.702, 875.318, 1143.578, 1126.248, 1161.98, 1273.505,
    1246.79, 1342.755, 576.795, 45.626, 1340.347, 1145.036,
)


#: Mean and covariance (digital numbers) of the 12 L2A bands over clear land pixels of the training
#: data (``python -m tcube.train.band_covariance`` prints them): the Gaussian conditional mean of
#: missing bands given the present ones stands in for bands a dataset lacks.
L2A_FILL_MEAN = (592.5, 635.2, 896.5, 932.2, 1399.6, 2251.1, 2543.5, 2654.2, 2779.6, 2815.2, 2348.0, 1581.8)
L2A_FILL_COV = (
    (296005, 188169, 177152, 229731, 221018, 114299, 87561, 75637, 79661, 133266, 22030, 76443),
    (188169, 176456, 170059, 223936, 187863, 77228, 49699, 52333, 43091, 67206, 95457, 129976),
    (177152, 170059, 180810, 229699, 209641, 137852, 120338, 129303, 119473, 131210, 134840, 146764),
    (229731, 223936, 229699, 339771, 281586, 89351, 46380, 57825, 46689, 71896, 203934, 234813),
    (221018, 187863, 209641, 281586, 296030, 216835, 201406, 212920, 215352, 224982, 205728, 192577),
    (114299, 77228, 137852, 89351, 216835, 532358, 619683, 638003, 650075, 593199, 148116, 32866),
    (87561, 49699, 120338, 46380, 201406, 619683, 743554, 765265, 780718, 703988, 143971, -214),
    (75637, 52333, 129303, 57825, 212920, 638003, 765265, 846977, 810364, 707717, 166560, 11330),
    (79661, 43091, 119473, 46689, 215352, 650075, 780718, 810364, 831284, 746950, 184218, 15425),
    (133266, 67206, 131210, 71896, 224982, 593199, 703988, 707717, 746950, 745212, 143397, 6366),
    (22030, 95457, 134840, 203934, 205728, 148116, 143971, 166560, 184218, 143397, 669325, 515009),
    (76443, 129976, 146764, 234813, 192577, 32866, -214, 11330, 15425, 6366, 515009, 464091),
)


def band_dim(da: xarray.DataArray, bands: tuple[str, ...] = L2A_BANDS) -> str | None:
    """The dimension of ``da`` whose labels are all names of ``bands`` (``B04``, ``red``...), if any.

    A band dimension with other labels (unknown names, numbers, B10 for a model of the 12 L2A
    bands) does not qualify: such a variable is stored losslessly, like any variable whose name is
    not a band's.
    """
    for dim in da.dims:
        labels = da[dim].values if dim in da.coords else None
        if labels is not None and all(band_name(str(v)) in bands for v in labels):
            return dim
    return None
