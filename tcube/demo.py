"""``tcube demo``: compress the shipped sample cube with the default model (or others), beside the
classical pipelines it must beat: per-date KLT + x265 intra (``x265-intra-pca``) and KLT + JPEG2000
(``jpeg2000-pca``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

import tcube
from tcube.data import load_sample_cube
from tcube.defaults import DEFAULT_MODEL
from tcube.metrics import bpppb, psnr_10k, psnr_full, timed


def _row(codec: str, setting: str, cube: np.ndarray, n_bytes: int, decoded: np.ndarray,
         t_enc: float, t_dec: float) -> dict:
    mb = cube.astype(np.uint16).nbytes / 1e6
    return {"codec": codec, "setting": setting, "bytes": n_bytes, "ratio": round(cube.nbytes / n_bytes, 1),
            "bpppb": round(bpppb(n_bytes, cube.shape), 4), "psnr_10k": round(psnr_10k(cube, decoded), 2),
            "psnr_full": round(psnr_full(cube, decoded), 2), "enc_MBps": round(mb / t_enc, 1),
            "dec_MBps": round(mb / t_dec, 1)}


def tcube_rows(cube: np.ndarray, models: list[str], qualities: list[int]) -> Iterator[dict]:
    """Rows of tcube's ``models`` at ``qualities``, one as each is measured."""
    for model in models:
        tcube.encode(cube[:1], model=model, quality=qualities[0])  # load weights, warm up
        for q in qualities:
            blob, t_enc = timed(tcube.encode, cube, model, q)
            dec, t_dec = timed(tcube.decode, blob)
            yield _row(model, f"quality {q}", cube, len(blob), dec, t_enc, t_dec)


#: Settings of the classical rows: x265 CRFs and OpenJPEG target PSNR levels spanning the default
#: model's qualities 1..16 on the sample cube.
CLASSICAL = {"x265-intra-pca": ("crf", (45.0, 36.0, 27.0, 18.0)), "jpeg2000-pca": ("level", (50.0, 58.0, 66.0, 74.0))}


def classical_rows(cube: np.ndarray) -> Iterator[dict]:
    """Rows of the classical pipelines of :data:`CLASSICAL` (real byte lengths, timed alike), one as
    each is measured."""
    from tcube.baselines import get_baseline

    x = cube.astype(np.uint16)
    for name, (label, settings) in CLASSICAL.items():
        b = get_baseline(name)
        for setting in settings:
            blob, t_enc = timed(b.encode, x, setting)
            dec, t_dec = timed(b.decode, blob, x.shape)
            yield _row(name, f"{label} {setting:g}", cube, len(blob), dec, t_enc, t_dec)


#: Columns of the demo's rows.
COLUMNS = ("codec", "setting", "bytes", "ratio", "bpppb", "psnr_10k", "psnr_full", "enc_MBps", "dec_MBps")


def _all_rows(cube: np.ndarray, models: list[str], qualities: list[int]) -> Iterator[dict]:
    yield from tcube_rows(cube, models, qualities)
    try:
        yield from classical_rows(cube)
    except ImportError:
        print("(imagecodecs not installed: no JPEG2000 comparison; pip install 'tcube[bench]')", flush=True)


def run_demo(models: list[str] | None = None, qualities: list[int] | None = None, as_json: bool = False) -> list[dict]:
    """Run the demo (default: the default model) and print a table, a row as soon as it is measured
    (or, with ``as_json``, JSON rows at the end); returns the rows."""
    cube = load_sample_cube()
    rows = _all_rows(cube, models or [DEFAULT_MODEL], qualities or [1, 4, 8, 12, 16])
    if as_json:
        rows = list(rows)
        print(json.dumps(rows, indent=1))
        return rows
    print(f"Sample cube: {cube.shape} {cube.dtype} ({cube.nbytes / 1e6:.2f} MB), Sentinel-2 L2A, held-out place "
          "0080717. PSNR: 10k convention (clamp(x-1000,0,10000)) and full range (clamp(x,0,10000)).")
    print("  ".join(f"{c:>10}" for c in COLUMNS), flush=True)
    done = []
    for r in rows:
        print("  ".join(f"{str(r[c]):>10}" for c in COLUMNS), flush=True)
        done.append(r)
    return done
