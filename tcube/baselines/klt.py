"""The Karhunen-Loeve transform over bands of one date, shared by the ``*-pca`` baselines."""

from __future__ import annotations

import numpy as np


def klt(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band means (float32), orthonormal KLT matrix (float32, rows = components by decreasing
    variance) and the components (float64, shape of ``frame``) of one (C, H, W) date.

    Examples
    --------
    >>> x = np.stack([np.arange(16.0).reshape(4, 4), 2 * np.arange(16.0).reshape(4, 4)])
    >>> mean, basis, comps = klt(x)
    >>> bool(np.allclose(inverse_klt(mean, basis, comps), x, atol=1e-3))
    True
    """
    c = frame.shape[0]
    flat = frame.reshape(c, -1).astype(np.float64)
    mean = flat.mean(axis=1)
    _, vecs = np.linalg.eigh(np.atleast_2d(np.cov(flat - mean[:, None])))
    basis = vecs[:, ::-1].T.astype(np.float32)
    comps = basis.astype(np.float64) @ (flat - mean[:, None])
    return mean.astype(np.float32), basis, comps.reshape(frame.shape)


def inverse_klt(mean: np.ndarray, basis: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """Bands (float64, shape of ``comps``) back from components."""
    c = comps.shape[0]
    rec = basis.astype(np.float64).T @ comps.reshape(c, -1) + mean.astype(np.float64)[:, None]
    return rec.reshape(comps.shape)
