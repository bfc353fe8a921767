"""Shared machinery of the learned codecs: normalisation, padding, quality gains, batched coding."""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcube.bands import L2A_MEAN, L2A_STD
from tcube.entropy import TableSet, decode_symbols, encode_symbols
from tcube.errors import InputError, SymbolChecksumError
from tcube.models.layers import analysis, synthesis

N_QUALITIES = 16
#: Largest latent magnitude the coder accepts (escapes code up to 2**31).
SYMBOL_LIMIT = 2**30


def default_lambdas() -> list[float]:
    """Rate-distortion trade-offs of qualities 1..16 (distortion: MSE in units of 10000 DN)."""
    return [float(v) for v in np.geomspace(300.0, 150000.0, N_QUALITIES)]


@dataclass
class CodecConfig:
    """Everything needed to rebuild a model (stored as JSON inside the weights file)."""

    arch: str
    bands: int = 12
    widths: list[int] = field(default_factory=lambda: [64, 64, 64])  # hidden channels of the analysis stages
    m: int = 128  # latent channels
    nh: int = 64  # hyper-latent channels
    nt: int = 64  # hidden channels of the temporal prior (tec-tt)
    kernels: list[int] = field(default_factory=lambda: [5, 5, 5, 5])  # one stride-2 stage each: latents at 1/16
    mean: list[float] = field(default_factory=lambda: list(L2A_MEAN))
    std: list[float] = field(default_factory=lambda: list(L2A_STD))
    lambdas: list[float] = field(default_factory=default_lambdas)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FramePayload:
    """Entropy-coded streams of one frame and the CRC32 of its symbols."""

    streams: dict[str, bytes]
    symbol_crc: int


def check_symbol_range(symbols: list[Tensor]) -> None:
    """Refuse symbols beyond :data:`SYMBOL_LIMIT` (inputs far outside the Sentinel-2 range)."""
    if any(s.abs().max() > SYMBOL_LIMIT for s in symbols):
        raise InputError("input too far outside the Sentinel-2 value range for this model")


def check_symbol_crc(arrays: list[np.ndarray], expected: int, frame: int) -> None:
    """Raise :class:`SymbolChecksumError` when decoded symbols differ from the encoder's."""
    if symbol_crc(arrays) != expected:
        raise SymbolChecksumError(f"frame {frame}: decoded symbols do not match the encoder's checksum "
                                  "(corrupt payload or a different entropy model)", frame=frame)


def symbol_crc(arrays: list[np.ndarray]) -> int:
    """CRC32 of symbol arrays, in order, as little-endian int32."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes(), crc)
    return crc


class LearnedCodec(nn.Module):
    """Base class: subclasses define the latent streams, their tables and the two transforms.

    Subclasses implement ``forward`` (training: reconstruction and bits), ``analyse`` (symbols),
    ``table_index`` (which table codes each symbol of a stream), ``synthesise`` (symbols back to
    a normalised image), ``latent_shapes`` and ``stream_names``.
    """

    stream_names: tuple[str, ...] = ()

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        c = config.bands
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("lambdas", torch.tensor(config.lambdas, dtype=torch.float32))
        self.stride = 2 ** len(config.kernels)
        self.g_a = analysis(c, config.widths, config.m, config.kernels)
        self.g_s = synthesis(config.m, config.widths, c, config.kernels)
        # quality gains (Cui et al. 2021): per quality and channel, increasing with quality by
        # construction (a base plus positive steps), so a higher quality quantises every channel finer
        low, high = np.log(0.25), np.log(6.0)
        step = (high - low) / (N_QUALITIES - 1)
        self.gain_base = nn.Parameter(torch.full((1, config.m), low))
        self.gain_steps = nn.Parameter(torch.full((N_QUALITIES - 1, config.m), float(np.log(np.expm1(step)))))
        init = torch.linspace(low, high, N_QUALITIES).view(-1, 1).repeat(1, config.m)
        self.log_inv_gain = nn.Parameter(-init)
        self.tables: dict[str, TableSet] = {}

    # -- helpers -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def log_gain(self) -> Tensor:
        """Log gain per (quality, channel), shape (16, m)."""
        steps = torch.cumsum(F.softplus(self.gain_steps), dim=0)
        return self.gain_base + torch.cat([torch.zeros_like(self.gain_base), steps])

    def gain(self, q: Tensor) -> Tensor:
        return torch.exp(self.log_gain[q])[:, :, None, None]

    def inv_gain(self, q: Tensor) -> Tensor:
        return torch.exp(self.log_inv_gain[q])[:, :, None, None]

    def normalise(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def denormalise(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean

    def pad(self, x: Tensor) -> Tensor:
        """Replicate-pad H and W up to a multiple of :attr:`stride`."""
        h, w = x.shape[-2:]
        ph, pw = -h % self.stride, -w % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def quality_index(self, quality: int, batch: int) -> Tensor:
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= N_QUALITIES:
            raise InputError(f"quality must be an integer from 1 to {N_QUALITIES}, got {quality!r}")
        return torch.full((batch,), int(quality) - 1, dtype=torch.long, device=self.device)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        return h + (-h % self.stride), w + (-w % self.stride)

    # -- subclass interface -----------------------------------------------------------
    def analyse(self, xn: Tensor, q: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def table_index(self, name: str, syms: dict[str, Tensor], q: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Table of each symbol of stream ``name`` (symbol array shape ``shape`` per item)."""
        raise NotImplementedError

    def synthesise(self, syms: dict[str, Tensor], q: Tensor) -> Tensor:
        raise NotImplementedError

    def latent_shapes(self, hp: int, wp: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    # -- public batched entry points -----------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: Tensor, quality: int) -> Tensor:
        """What :meth:`decompress` returns for ``x``, without entropy coding (float, raw units)."""
        q = self.quality_index(quality, x.shape[0])
        xn = self.pad(self.normalise(x.to(self.device, torch.float32)))
        out = self.synthesise(self.analyse(xn, q), q)
        return self.denormalise(out[..., : x.shape[-2], : x.shape[-1]])

    @torch.no_grad()
    def compress(self, x: Tensor, quality: int) -> list[FramePayload]:
        """Code a batch of frames ``x`` (B, C, H, W) in raw units; one payload per frame.

        Examples
        --------
        >>> import tcube, torch
        >>> model = tcube.models.load_model("tec-fp")
        >>> x = torch.full((1, 12, 32, 32), 1500.0)
        >>> payloads = model.compress(x, quality=4)
        >>> model.decompress(payloads, quality=4, height=32, width=32).shape
        torch.Size([1, 12, 32, 32])
        """
        q = self.quality_index(quality, x.shape[0])
        xn = self.pad(self.normalise(x.to(self.device, torch.float32)))
        syms = self.analyse(xn, q)
        check_symbol_range([syms[n] for n in self.stream_names])
        shapes = self.latent_shapes(*xn.shape[-2:])
        streams: list[dict[str, bytes]] = [{} for _ in range(x.shape[0])]
        for name in self.stream_names:
            sym = syms[name].cpu().numpy()
            idx = self.table_index(name, syms, q, shapes[name]).cpu().numpy()
            for b in range(x.shape[0]):
                streams[b][name] = encode_symbols(sym[b], idx[b], self.tables[name])
        crcs = [symbol_crc([syms[n][b].cpu().numpy() for n in self.stream_names]) for b in range(x.shape[0])]
        return [FramePayload(s, c) for s, c in zip(streams, crcs)]

    @torch.no_grad()
    def decompress(self, payloads: list[FramePayload], quality: int, height: int, width: int) -> Tensor:
        """Decode payloads of :meth:`compress` into (B, C, height, width) float raw units."""
        q = self.quality_index(quality, len(payloads))
        shapes = self.latent_shapes(*self.padded_size(height, width))
        syms: dict[str, Tensor] = {}
        for name in self.stream_names:
            idx = self.table_index(name, syms, q, shapes[name]).cpu().numpy()
            dec = [decode_symbols(p.streams[name], idx[b], self.tables[name]) for b, p in enumerate(payloads)]
            syms[name] = torch.from_numpy(np.stack(dec).reshape(len(payloads), *shapes[name])).to(self.device)
        for b, p in enumerate(payloads):
            check_symbol_crc([syms[n][b].cpu().numpy() for n in self.stream_names], p.symbol_crc, b)
        out = self.synthesise(syms, q)
        return self.denormalise(out[..., :height, :width])

    def rd_loss(self, x_hat: Tensor, xn: Tensor, bits: Tensor, q: Tensor,
                weight: Tensor | None = None) -> dict[str, Tensor]:
        """Rate (bits per pixel per band), distortion (MSE in units of 10000 DN, over the pixels
        where ``weight`` is 1 when given) and loss per item."""
        pixels = xn.shape[1] * xn.shape[2] * xn.shape[3]
        err = ((x_hat - xn) * self.std / 10000.0) ** 2
        if weight is None:
            mse = err.flatten(1).mean(1)
        else:
            weight = weight.expand_as(err)
            mse = (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1)
        bpppb = bits / pixels
        return {"loss": (bpppb + self.lambdas[q] * mse).mean(), "bpppb": bpppb, "mse": mse}

    def export_tables(self) -> None:
        """Freeze the probability tables from the current parameters (before saving)."""
        raise NotImplementedError
