"""Training samples: random crops of real Sentinel-2 frames with flips, rotations and gains."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from tcube.errors import InputError
from tcube.readers import find_cubes, read_cube


def load_frames(
    paths: list[str | Path], holdout: str | None, min_size: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[str]]:
    """Frames (C, H, W) for training and validation, and the files each came from.

    Files whose path contains ``holdout`` go to validation; files that are not 12-band
    Sentinel-2 cubes, or are smaller than ``min_size``, are skipped with a warning.
    """
    train, val, train_files, val_files = [], [], [], []
    for p in find_cubes(paths):
        try:
            cube = read_cube(p)
        except InputError as exc:
            warnings.warn(f"skipped {p}: {exc}", stacklevel=2)
            continue
        if min(cube.shape[-2:]) < min_size:
            warnings.warn(f"skipped {p}: smaller than the {min_size}-pixel crop", stacklevel=2)
            continue
        is_val = holdout is not None and holdout in str(p)
        (val if is_val else train).extend(list(cube))
        (val_files if is_val else train_files).append(str(p))
    if not train:
        raise InputError("no usable training cube among the given paths")
    return train, val, train_files, val_files


class CropSampler:
    """Random batches of crops; frames are drawn in proportion to their area."""

    def __init__(self, frames: list[np.ndarray], crop: int, seed: int):
        self.frames = frames
        area = np.array([f.shape[-1] * f.shape[-2] for f in frames], dtype=np.float64)
        self.p = area / area.sum()
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> torch.Tensor:
        out = np.empty((size, self.frames[0].shape[0], self.crop, self.crop), dtype=np.float32)
        for i in range(size):
            f = self.frames[self.rng.choice(len(self.frames), p=self.p)]
            y = self.rng.integers(0, f.shape[-2] - self.crop + 1)
            x = self.rng.integers(0, f.shape[-1] - self.crop + 1)
            c = f[:, y: y + self.crop, x: x + self.crop]
            c = np.rot90(c, k=int(self.rng.integers(4)), axes=(1, 2))
            if self.rng.random() < 0.5:
                c = c[:, :, ::-1]
            out[i] = c * self.rng.uniform(0.75, 1.3)  # brightness: other seasons, sensors, places
        return torch.from_numpy(out)
