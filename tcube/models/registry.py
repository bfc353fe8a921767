"""Model registry: names, architectures, and loading of the shipped safetensors weights.

A model name has one current set of weights (``weights/<name>.safetensors``); blobs record the
first bytes of its SHA-256. When a model is retrained, the weights it replaces move to
``weights/earlier/<name>-<digest>.safetensors`` (:func:`retire_weights`), so blobs written with
them keep decoding: :func:`load_model` with ``weights=`` finds them by digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tcube.entropy import TableSet
from tcube.errors import TcubeError, UnknownModelError
from tcube.models.base import Model
from tcube.models.fp import FactorizedPriorCodec
from tcube.models.hp import HyperpriorCodec
from tcube.models.hx import HybridCodec
from tcube.models.pc import PrincipalComponentCodec
from tcube.models.tt import TemporalCodec
from tcube.validate import band_counts_text

ARCHITECTURES: dict[str, type[Model]] = {"fp": FactorizedPriorCodec, "hp": HyperpriorCodec,
                                               "tt": TemporalCodec, "pc": PrincipalComponentCodec,
                                               "hx": HybridCodec}
#: Registered model name -> architecture of its shipped weights.
MODELS: dict[str, str] = {"tec-fp": "fp", "tec-hp": "hp", "tec-tt": "tt", "tec-pc": "pc", "tec-hx": "hx"}


def list_models() -> list[str]:
    """Names of the registered models.

    Examples
    --------
    >>> list_models()
    ['tec-fp', 'tec-hp', 'tec-hx', 'tec-pc', 'tec-tt']
    """
    return sorted(MODELS)


def check_name(name: str) -> str:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return name


def codes_any_bands(name: str) -> bool:
    """Whether model ``name`` codes any band set natively (else exactly the 12 L2A bands).

    Examples
    --------
    >>> codes_any_bands("tec-pc"), codes_any_bands("tec-hp")
    (True, False)
    """
    return ARCHITECTURES[MODELS[check_name(name)]].any_bands


def codes_over_time(name: str) -> bool:
    """Whether model ``name`` codes the dates of one call together (one cube's dates per call), so
    that a chunk of several dates costs less than its dates alone.

    Examples
    --------
    >>> codes_over_time("tec-hx"), codes_over_time("tec-pc")
    (True, False)
    """
    return ARCHITECTURES[MODELS[check_name(name)]].temporal


def exact_models() -> list[str]:
    """Models whose decoding is bit-identical everywhere (what error-bounded coding builds on).

    Examples
    --------
    >>> exact_models()
    ['tec-hx', 'tec-pc']
    """
    return [m for m in list_models() if ARCHITECTURES[MODELS[m]].exact]


#: Digest characters (hex) in the file names of earlier weights: the part of the digest blobs record.
EARLIER_DIGEST = 32


def _weights_dir() -> Path:
    return Path(str(resources.files("tcube") / "weights"))


def weights_path(name: str) -> Path:
    """Path of the shipped (current) weights of model ``name``."""
    return _weights_dir() / f"{check_name(name)}.safetensors"


def earlier_weights_path(name: str, digest: str) -> Path:
    """Where earlier weights of ``name`` whose SHA-256 starts with ``digest`` are kept (blobs of format
    version 9 record fewer digits than the file name has: the one file they start, if one does)."""
    folder, prefix = _weights_dir() / "earlier", f"{check_name(name)}-{digest[:EARLIER_DIGEST]}"
    if len(digest) < EARLIER_DIGEST:
        found = sorted(folder.glob(f"{prefix}*.safetensors"))
        if len(found) == 1:
            return found[0]
    return folder / f"{prefix}.safetensors"


def retire_weights(name: str) -> Path | None:
    """Keep a copy of the current weights of ``name`` among the earlier ones (before they are
    replaced), so that blobs written with them keep decoding; returns the copy (None without
    current weights)."""
    current = weights_path(name)
    if not current.exists():
        return None
    target = earlier_weights_path(name, file_digest(current))
    if not target.exists():
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(current.read_bytes())
    return target


def build_model(arch: str, **overrides) -> Model:
    """A new, untrained model of architecture ``arch``, its config's defaults but for ``overrides``.

    Examples
    --------
    >>> build_model("hp", m=32).config.m
    32
    """
    if arch not in ARCHITECTURES:
        raise UnknownModelError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    return cls(cls.config_type(arch=arch, **overrides))


def save_weights(model: Model, path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """Freeze tables and write ``model`` as safetensors; returns the file's SHA-256. Shipped weights
    that ``path`` replaces are kept among the earlier ones first (:func:`retire_weights`)."""
    for name in MODELS:
        if Path(path).resolve() == weights_path(name).resolve():
            retire_weights(name)
    model.export_tables()
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, table in model.tables.items():
        tensors.update(table.state_dict(f"tables.{name}"))
    meta = {"tcube_config": json.dumps(model.config.to_dict()), **(metadata or {})}
    save_file(tensors, str(path), metadata=meta)
    os.chmod(path, 0o644)  # readable like the rest of the package
    return file_digest(path)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_weights(path: str | Path) -> Model:
    """Load a model from a safetensors file written by :func:`save_weights` (no pickle involved)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        recorded = json.loads(meta["tcube_config"])
        cls = ARCHITECTURES[recorded["arch"]]
        config = cls.config_type.from_dict(recorded)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise TcubeError(f"cannot read tcube weights from {path}: {exc}") from exc
    model = cls(config)
    table_names = {k.split(".")[1] for k in tensors if k.startswith("tables.")}
    model.tables = {n: TableSet.from_state_dict(tensors, f"tables.{n}") for n in table_names}
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("tables.")})
    return model.eval()


@cache
def _cached(name: str, device: str, weights: str | None = None) -> tuple[Model, str]:
    path = weights_path(name) if weights is None else earlier_weights_path(name, weights)
    if not path.exists():
        raise TcubeError(f"weights of {name!r} are missing from the installation ({path})")
    digest = file_digest(path)
    if weights is not None and not digest.startswith(weights[:EARLIER_DIGEST]):
        raise TcubeError(f"{path}: its SHA-256 ({digest[:12]}…) does not match its name")
    return read_weights(path).to(device), digest


def has_weights(name: str, digest: str) -> bool:
    """Whether this installation has weights of ``name`` whose SHA-256 starts with ``digest``
    (the current ones or earlier ones).

    Examples
    --------
    >>> has_weights("tec-hp", model_digest("tec-hp")[:32]), has_weights("tec-hp", "00" * 16)
    (True, False)
    """
    digest = digest.lower()
    return model_digest(name).startswith(digest) or earlier_weights_path(name, digest).exists()


#: Environment variable naming the torch device for the transforms (e.g. ``cuda:1``).
DEVICE_ENV = "TCUBE_DEVICE"


def default_device() -> str:
    """``$TCUBE_DEVICE`` when set, else CUDA when present, else CPU."""
    return os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")


def load_model(name: str, device: str | None = None, weights: str | None = None) -> Model:
    """The shipped model ``name`` in eval mode, loaded once per process and device: its current
    weights, or the earlier ones whose SHA-256 starts with ``weights`` (hex), if any.

    Examples
    --------
    >>> load_model("tec-hp").config.bands
    12
    """
    device = device or default_device()
    if weights is None or model_digest(name).startswith(weights.lower()):
        return _cached(check_name(name), device)[0]
    return _cached(name, device, weights.lower()[:EARLIER_DIGEST])[0]


def weights_file(spec: str) -> Path:
    """The weights file of ``spec``: a shipped model's name or a safetensors path."""
    return weights_path(spec) if spec in MODELS else Path(spec)


def load_init(spec: str) -> Model:
    """A fresh CPU copy of the weights ``spec`` (a model name or a path), to start training from."""
    return read_weights(weights_file(spec))


def copy_matching(source: Model, target: Model, keep=lambda key: True) -> list[str]:
    """Copy the parameters and buffers of ``source`` that ``target`` has with the same shape and
    ``keep`` accepts; returns their names."""
    own = target.state_dict()
    state = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape and keep(k)}
    target.load_state_dict(state, strict=False)
    return sorted(state)


def lineage(spec: str) -> list[str]:
    """Training commands that produced the weights ``spec`` (a model name or a path), oldest first."""
    with safe_open(str(weights_file(spec)), framework="pt") as f:
        meta = f.metadata() or {}
    command = meta.get("command") or json.loads(meta.get("train_config", "{}")).get("command")
    return json.loads(meta.get("lineage", "[]")) + ([command] if command else [])


def model_digest(name: str) -> str:
    """SHA-256 (hex) of the shipped weights of ``name``: blobs record it."""
    return _cached(check_name(name), "cpu")[1]


def model_card_summary(name: str) -> dict:
    """Short description of an installed model (for ``tcube info``)."""
    model = load_model(name, "cpu")
    counts = model.band_counts
    bands = f"any, {band_counts_text(counts)}" if model.any_bands else model.config.bands
    return {"architecture": model.config.arch, "bands": bands, "qualities": "1..16",
            "parameters": sum(p.numel() for p in model.parameters()), "weights": str(weights_path(name)),
            "sha256": model_digest(name)}
