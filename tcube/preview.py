"""Preview images: true-colour RGB of an original and a decoded dataset, and their error map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from tcube.datasets import band_planes
from tcube.errors import InputError, TcubeError
from tcube.metrics import psnr_full

RGB = ("B04", "B03", "B02")


def _rgb(planes: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) display image: digital numbers / 3000, gamma 1/1.6, NaN black."""
    rgb = np.stack([planes[b] for b in RGB], axis=-1)
    return np.clip(np.nan_to_num(rgb) / 3000.0, 0, 1) ** (1 / 1.6)


def preview(original: xr.Dataset, decoded: xr.Dataset, path: str | Path, date: int = 0) -> dict[str, Any]:
    """Write a PNG with the original and decoded RGB of one date and the mean absolute error map.

    Returns the date, the bands used, PSNR (full range, the three bands) and the mean absolute error.

    Examples
    --------
    >>> import tempfile, numpy as np, xarray as xr, tcube
    >>> ds = xr.Dataset({b: (("y", "x"), np.full((16, 16), 900 + 100 * i, np.uint16)) for i, b in enumerate(RGB)})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     preview(ds, ds, f"{tmp}/p.png")["mae"]
    0.0
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TcubeError("preview needs matplotlib: pip install 'tcube[bench]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = band_planes(original, RGB, date), band_planes(decoded, RGB, date)
    if set(a) != set(RGB):
        raise InputError(f"preview needs bands {', '.join(RGB)} on one grid; found {', '.join(a) or 'none'}")
    error = np.mean([np.abs(a[k] - b[k]) for k in RGB], axis=0)
    stats = {"date": date, "bands": list(RGB), "psnr_full": psnr_full(np.stack([np.nan_to_num(a[k]) for k in RGB]),
                                                                       np.stack([np.nan_to_num(b[k]) for k in RGB])),
             "mae": float(np.nanmean(error))}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    axes[0].imshow(_rgb(a))
    axes[0].set_title(f"original, date {date}")
    axes[1].imshow(_rgb(b))
    axes[1].set_title(f"decoded ({stats['psnr_full']:.1f} dB)")
    im = axes[2].imshow(error, cmap="magma", vmin=0, vmax=max(float(np.nanpercentile(error, 99)), 1.0))
    axes[2].set_title("mean |error| of B04, B03, B02 (DN)")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return stats
