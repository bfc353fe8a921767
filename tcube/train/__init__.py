"""Training of the models (``tcube train``): one entry point, :func:`train`, for every architecture."""

from __future__ import annotations

from importlib import import_module

from tcube.errors import UnknownModelError
from tcube.models import Model
from tcube.train.trainer import TrainConfig, coded_rd

__all__ = ["TRAINERS", "TrainConfig", "coded_rd", "train"]

#: The training function of each architecture: (module, function), imported when used.
TRAINERS = {
    "fp": ("tcube.train.trainer", "train_transforms"),
    "hp": ("tcube.train.trainer", "train_transforms"),
    "tt": ("tcube.train.temporal", "train_tt"),
    "pc": ("tcube.train.spectral", "train_pc"),
    "hx": ("tcube.train.hybrid", "train_hx"),
}


def train(cfg: TrainConfig, log=print) -> Model:
    """Train (or resume) a model of architecture ``cfg.arch`` as ``cfg`` says; export its weights and
    model card when ``cfg.export`` names a file.

    Examples
    --------
    >>> train(TrainConfig(arch="xx", name="x", data=[]))
    Traceback (most recent call last):
    ...
    tcube.errors.UnknownModelError: unknown architecture 'xx'; trainers: fp, hp, tt, pc, hx
    """
    if cfg.arch not in TRAINERS:
        raise UnknownModelError(f"unknown architecture {cfg.arch!r}; trainers: {', '.join(TRAINERS)}")
    module, function = TRAINERS[cfg.arch]
    return getattr(import_module(module), function)(cfg, log=log)
