"""Sentinel-2 band names and the SSL4EO-S12 v1.1 normalisation statistics."""

from __future__ import annotations

L2A_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
L1C_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)

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

#: Central wavelengths (nm, Sentinel-2A) of the L2A bands, used to stand in for missing bands.
L2A_WAVELENGTH_NM: tuple[float, ...] = (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1610, 2190)


def nearest_present(missing: str, present: list[str]) -> str:
    """The present band closest in wavelength to ``missing``.

    Examples
    --------
    >>> nearest_present("B05", ["B02", "B04", "B08"])
    'B04'
    """
    wl = dict(zip(L2A_BANDS, L2A_WAVELENGTH_NM))
    return min(present, key=lambda b: abs(wl[b] - wl[missing]))
