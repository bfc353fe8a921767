"""Compress a real Sentinel-2 cube, inspect the blob, decode it and measure the quality.

    python examples/quickstart.py
"""

import numpy as np

import tcube
from tcube.data import load_sample_cube
from tcube.metrics import psnr_10k, psnr_full

cube = load_sample_cube()  # (4 dates, 12 bands, 128, 128) int16, held-out place
for model in tcube.list_models():
    blob = tcube.encode(cube, model=model, quality=8)
    info = tcube.info(blob)
    decoded = tcube.decode(blob)
    assert decoded.shape == cube.shape and decoded.dtype == cube.dtype
    print(f"{model}: {info['bytes']} bytes, ratio {info['ratio']:.0f}x, {info['bpppb']:.3f} bpppb, "
          f"PSNR {psnr_10k(cube, decoded):.2f} dB (10k) / {psnr_full(cube, decoded):.2f} dB (full range)")

with open("sample.tcube", "wb") as f:  # decode it anywhere: tcube.decode(open("sample.tcube", "rb").read())
    f.write(blob)
print("max abs error:", int(np.abs(decoded.astype(np.int32) - cube).max()))
