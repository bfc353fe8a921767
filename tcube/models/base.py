"""Shared machinery of the learned codecs: normalisation, padding, quality gains, batched coding."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcube.bands import L2A_MEAN, L2A_STD
from tcube.entropy import TableSet, decode_symbols, encode_symbols
from tcube.errors import InputError, SymbolChecksumError
from tcube.models.layers import analysis, synthesis
from tcube.validate import N_QUALITIES, check_quality

#: Largest latent magnitude the coder accepts (escapes code up to 2**31).
SYMBOL_LIMIT = 2**30
#: Most pixels (frames x padded height x padded width) the transforms take in one pass on the CPU
#: (16 times more on CUDA); larger inputs go through them in tiles with a margin of context, so
#: memory stays bounded. Passes of this size were also the fastest on 2 CPU threads (tec-hp q8:
#: 52-55 MB/s against 39 MB/s with 2**20 for 16 chunks of 256 x 256).
PASS_PIXELS = 1 << 17


#: Receives decoded pieces: (frames, rows, columns, piece of shape (frames, C, rows, columns)).
Sink = Callable[[slice, slice, slice, Tensor], None]


def default_lambdas() -> list[float]:
    """Rate-distortion trade-offs of qualities 1..16 (distortion: MSE in units of 10000 DN)."""
    return [float(v) for v in np.geomspace(300.0, 150000.0, N_QUALITIES)]


#: Fields that weights written before the per-architecture configs recorded for every model.
_SHARED_FIELDS = frozenset({"bands", "widths", "m", "nh", "nt", "kernels", "mean", "std", "lambdas", "steps", "drop"})


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model of one architecture (stored as JSON in its weights file).

    Each architecture has its own subclass (:attr:`Model.config_type`) with only its fields.
    """

    arch: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The config recorded in weights: fields of this architecture; the fields weights of earlier
        releases recorded for every architecture are dropped, any other is an error.

        Examples
        --------
        >>> TransformConfig.from_dict({"arch": "fp", "m": 96, "steps": []}).m
        96
        """
        own = {f.name for f in fields(cls)}
        unknown = set(data) - own - _SHARED_FIELDS
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} in a {cls.__name__}")
        return cls(**{k: v for k, v in data.items() if k in own})


@dataclass
class TransformConfig(ModelConfig):
    """A learned analysis / synthesis transform pair over normalised bands."""

    bands: int = 12
    widths: list[int] = field(default_factory=lambda: [64, 64, 64])  # hidden channels of the analysis stages
    m: int = 128  # latent channels
    kernels: list[int] = field(default_factory=lambda: [5, 5, 5, 5])  # one stride-2 stage each: latents at 1/16
    mean: list[float] = field(default_factory=lambda: list(L2A_MEAN))
    std: list[float] = field(default_factory=lambda: list(L2A_STD))
    lambdas: list[float] = field(default_factory=default_lambdas)


@dataclass
class HyperpriorConfig(TransformConfig):
    """A transform pair with a hyperprior over its latents."""

    nh: int = 64  # hyper-latent channels


@dataclass
class FramePayload:
    """Entropy-coded streams of one frame and the CRC32 of its symbols, started from ``seed``
    (the container binds frames to their header that way)."""

    streams: dict[str, bytes]
    symbol_crc: int
    seed: int = 0


def check_symbol_range(symbols: list[Tensor]) -> None:
    """Refuse symbols beyond :data:`SYMBOL_LIMIT` (inputs far outside the Sentinel-2 range)."""
    if any(s.abs().max() > SYMBOL_LIMIT for s in symbols):
        raise InputError("input too far outside the Sentinel-2 value range for this model")


def check_symbol_crc(arrays: list[np.ndarray], payload: FramePayload, frame: int) -> None:
    """Raise :class:`SymbolChecksumError` when decoded symbols differ from the encoder's."""
    check_crc(symbol_crc(arrays, payload.seed), payload, frame)


def check_crc(crc: int, payload: FramePayload, frame: int) -> None:
    """Raise :class:`SymbolChecksumError` when ``crc`` (:func:`symbol_crc` of the decoded symbols,
    from the payload's seed) is not the encoder's."""
    if crc != payload.symbol_crc:
        raise SymbolChecksumError(f"frame {frame}: decoded symbols do not match the encoder's checksum "
                                  "(corrupt payload, an edited header, or a different entropy model)", frame=frame)


def symbol_crc(arrays: list[np.ndarray], seed: int = 0) -> int:
    """CRC32 of symbol arrays, in order, as little-endian int32, started from ``seed``."""
    crc = seed
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes(), crc)
    return crc


class Model(nn.Module):
    """What every model is to the coder: declared capabilities, and frames to payloads and back.

    A model codes frames (B, C, H, W) of raw digital numbers (floats) at a quality from 1 to
    :data:`N_QUALITIES` into one :class:`FramePayload` per frame (:meth:`compress`) and decodes
    them (:meth:`decompress`), with :meth:`reconstruct` the same without entropy coding. It
    declares which band counts it codes (:attr:`band_counts`; :attr:`any_bands` when they are not
    a fixed band order), whether decoding is bit-identical everywhere (:attr:`exact`) and whether a
    date depends on the previous ones (:attr:`temporal`). Its config type
    (:attr:`config_type`) holds what rebuilds it; :meth:`export_tables` freezes what is saved
    beside its parameters.
    """

    config_type: type[ModelConfig] = ModelConfig
    stream_names: tuple[str, ...] = ()
    #: Whether frames of any band count in :attr:`band_counts` are native (not a fixed band order).
    any_bands: bool = False
    #: Whether decoding gives bit-identical values on every thread count, batch split and device
    #: (what error-bounded coding builds on).
    exact: bool = False
    #: Whether a date's coding depends on the previous dates of its cube (then the coder hands the
    #: model one cube's dates per call, in order); else frames of any cubes share passes.
    temporal: bool = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.config_type):
            raise TypeError(f"{type(self).__name__} takes a {self.config_type.__name__}, got {type(config).__name__}")
        self.config = config
        self.tables: dict[str, TableSet] = {}

    @property
    def device(self) -> torch.device:
        """Where the model's parameters and buffers are."""
        return next(self.buffers()).device

    @property
    def band_counts(self) -> range:
        """Band counts this model codes."""
        raise NotImplementedError

    def background(self, bands: int) -> np.ndarray:
        """Per band, the value that stands in for a plane without any valid pixel."""
        raise NotImplementedError

    def quality_index(self, quality: int, batch: int) -> Tensor:
        """``quality`` (checked) as a (batch,) tensor of indices from 0."""
        return torch.full((batch,), check_quality(quality) - 1, dtype=torch.long, device=self.device)

    def compress(self, x: Tensor, quality: int, seeds: list[int] | None = None) -> list[FramePayload]:
        """Code a batch of frames ``x`` (B, C, H, W) in raw units; one payload per frame (its symbol
        CRC started from ``seeds[b]``, default 0)."""
        raise NotImplementedError

    def decompress(self, payloads: list[FramePayload], quality: int, height: int, width: int,
                   sink: Sink | None = None, bands: int | None = None) -> Tensor | None:
        """Decode payloads of :meth:`compress` into (B, C, height, width) float raw units, or piece by
        piece into ``sink(frames, rows, columns, piece)`` (then nothing is returned); ``bands``
        matters to models with :attr:`any_bands` only."""
        raise NotImplementedError

    def reconstruct(self, x: Tensor, quality: int) -> Tensor:
        """What :meth:`decompress` returns for ``x``, without entropy coding (float, raw units)."""
        raise NotImplementedError

    def export_tables(self) -> None:
        """Freeze the probability tables from the current parameters (before saving)."""
        raise NotImplementedError


class TransformCodec(Model):
    """A learned analysis / synthesis transform pair over normalised frames, run in pieces of
    bounded size (:meth:`analysis`, :meth:`synthesis`); subclasses code its latents."""

    config_type = TransformConfig

    def __init__(self, config: TransformConfig):
        super().__init__(config)
        c = config.bands
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("lambdas", torch.tensor(config.lambdas, dtype=torch.float32))
        self.stride = 2 ** len(config.kernels)
        self.g_a, self.g_s = self.transforms(config)

    def transforms(self, config: TransformConfig) -> tuple[nn.Module, nn.Module]:
        """The analysis and synthesis transforms of ``config``."""
        return (analysis(config.bands, config.widths, config.m, config.kernels),
                synthesis(config.m, config.widths, config.bands, config.kernels))

    @property
    def band_counts(self) -> range:
        return range(self.config.bands, self.config.bands + 1)

    def background(self, bands: int) -> np.ndarray:
        return np.asarray(self.config.mean, np.float64)

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

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        return h + (-h % self.stride), w + (-w % self.stride)

    # -- transforms in bounded pieces -------------------------------------------------------
    @property
    def halo(self) -> int:
        """Latents of context around a tile: more than either transform's reach."""
        reach = sum((k // 2) * 2**i for i, k in enumerate(self.config.kernels))
        return -(-reach // self.stride) + 1

    def _pieces(self, batch: int, h: int, w: int) -> list[tuple[slice, slice, slice]]:
        """(frames, latent rows, latent columns) of each pass over a (batch, h, w) latent grid."""
        budget = PASS_PIXELS * (16 if self.device.type == "cuda" else 1)
        per_frame = h * w * self.stride**2
        if batch * per_frame <= budget:
            return [(slice(0, batch), slice(0, h), slice(0, w))]
        if per_frame <= budget:
            n = budget // per_frame
            return [(slice(b, min(b + n, batch)), slice(0, h), slice(0, w)) for b in range(0, batch, n)]
        side = max(1, int(budget**0.5) // self.stride - 2 * self.halo)
        return [(slice(b, b + 1), slice(r, min(r + side, h)), slice(c, min(c + side, w)))
                for b in range(batch) for r in range(0, h, side) for c in range(0, w, side)]

    def _margin(self, part: slice, size: int) -> slice:
        return slice(max(0, part.start - self.halo), min(size, part.stop + self.halo))

    def analysis(self, x: Tensor) -> Tensor:
        """The analysis transform of frames ``x`` (B, C, H, W) in raw units, any real dtype: latents
        (B, m, H/16, W/16) (H, W padded up to a multiple of 16), computed in pieces of at most
        :data:`PASS_PIXELS`, each converted to float32 on its own."""
        x = x.to(self.device)
        hp, wp = self.padded_size(*x.shape[-2:])
        h, w, s = hp // self.stride, wp // self.stride, self.stride
        pieces = self._pieces(x.shape[0], h, w)
        if len(pieces) == 1:
            return self.g_a(self.pad(self.normalise(x.to(torch.float32))))
        out = torch.empty((x.shape[0], self.config.m, h, w), device=self.device)
        for frames, rows, cols in pieces:
            rr, cc = self._margin(rows, h), self._margin(cols, w)
            crop = x[frames, :, rr.start * s: rr.stop * s, cc.start * s: cc.stop * s].to(torch.float32)
            # replicate padding past the frame's edge, as self.pad does for the whole frame
            ph, pw = (rr.stop - rr.start) * s - crop.shape[-2], (cc.stop - cc.start) * s - crop.shape[-1]
            y = self.g_a(F.pad(self.normalise(crop), (0, pw, 0, ph), mode="replicate") if ph or pw
                         else self.normalise(crop))
            out[frames, :, rows, cols] = y[:, :, rows.start - rr.start: rows.stop - rr.start,
                                           cols.start - cc.start: cols.stop - cc.start]
        return out

    def synthesis(self, y: Tensor, height: int, width: int, sink: Sink | None = None) -> Tensor | None:
        """The synthesis transform of latents ``y`` (B, m, h, w): (B, C, height, width) in raw units,
        computed in pieces of at most :data:`PASS_PIXELS`. With ``sink``, each piece goes to
        ``sink(frames, rows, columns, piece)`` instead (slices of the output) and nothing is returned:
        the whole output never needs to exist as floats."""
        b, _, h, w = y.shape
        s = self.stride
        pieces = self._pieces(b, h, w)
        if len(pieces) == 1 and sink is None:
            return self.denormalise(self.g_s(y)[..., :height, :width])
        out = torch.empty((b, self.config.bands, height, width), device=self.device) if sink is None else None
        for frames, rows, cols in pieces:
            rr, cc = self._margin(rows, h), self._margin(cols, w)
            part = self.g_s(y[frames, :, rr, cc])
            top, left = (rows.start - rr.start) * s, (cols.start - cc.start) * s
            r0, c0 = rows.start * s, cols.start * s
            r1, c1 = min(rows.stop * s, height), min(cols.stop * s, width)
            piece = self.denormalise(part[..., top: top + r1 - r0, left: left + c1 - c0])
            if sink is None:
                out[frames, :, r0:r1, c0:c1] = piece
            else:
                sink(frames, slice(r0, r1), slice(c0, c1), piece)
        return out

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


class LatentCodec(TransformCodec):
    """A transform codec whose latents, scaled by learned per-quality gains, are entropy coded
    stream by stream: subclasses define the streams and their tables.

    Subclasses implement ``forward`` (training: reconstruction and bits), ``analyse`` (symbols of
    the analysis transform's output), ``table_index`` (which table codes each symbol of a stream),
    ``decoded_latents`` (symbols back to the synthesis transform's input), ``latent_shapes`` and
    :meth:`export_tables`.
    """

    def __init__(self, config: TransformConfig):
        super().__init__(config)
        # quality gains (Cui et al. 2021): per quality and channel, increasing with quality by
        # construction (a base plus positive steps), so a higher quality quantises every channel finer
        low, high = np.log(0.25), np.log(6.0)
        step = (high - low) / (N_QUALITIES - 1)
        self.gain_base = nn.Parameter(torch.full((1, config.m), low))
        self.gain_steps = nn.Parameter(torch.full((N_QUALITIES - 1, config.m), float(np.log(np.expm1(step)))))
        init = torch.linspace(low, high, N_QUALITIES).view(-1, 1).repeat(1, config.m)
        self.log_inv_gain = nn.Parameter(-init)

    @property
    def log_gain(self) -> Tensor:
        """Log gain per (quality, channel), shape (16, m)."""
        steps = torch.cumsum(F.softplus(self.gain_steps), dim=0)
        return self.gain_base + torch.cat([torch.zeros_like(self.gain_base), steps])

    def gain(self, q: Tensor) -> Tensor:
        return torch.exp(self.log_gain[q])[:, :, None, None]

    def inv_gain(self, q: Tensor) -> Tensor:
        return torch.exp(self.log_inv_gain[q])[:, :, None, None]

    # -- subclass interface -----------------------------------------------------------
    def analyse(self, y: Tensor, q: Tensor) -> dict[str, Tensor]:
        """Symbols (and side tensors) of the analysis transform's output ``y`` at qualities ``q``."""
        raise NotImplementedError

    def table_index(self, name: str, syms: dict[str, Tensor], q: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Table of each symbol of stream ``name`` (symbol array shape ``shape`` per item)."""
        raise NotImplementedError

    def decoded_latents(self, syms: dict[str, Tensor], q: Tensor) -> Tensor:
        """What the synthesis transform takes for decoded symbols ``syms``."""
        raise NotImplementedError

    def latent_shapes(self, hp: int, wp: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    # -- public batched entry points -----------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: Tensor, quality: int) -> Tensor:
        """What :meth:`decompress` returns for ``x``, without entropy coding (float, raw units)."""
        q = self.quality_index(quality, x.shape[0])
        return self.synthesis(self.decoded_latents(self.analyse(self.analysis(x), q), q), *x.shape[-2:])

    @torch.no_grad()
    def compress(self, x: Tensor, quality: int, seeds: list[int] | None = None) -> list[FramePayload]:
        """Code a batch of frames ``x`` (B, C, H, W) in raw units; one payload per frame (its symbol
        CRC started from ``seeds[b]``, default 0).

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
        syms = self.analyse(self.analysis(x), q)
        check_symbol_range([syms[n] for n in self.stream_names])
        shapes = self.latent_shapes(*self.padded_size(*x.shape[-2:]))
        streams: list[dict[str, bytes]] = [{} for _ in range(x.shape[0])]
        for name in self.stream_names:
            sym = syms[name].cpu().numpy()
            idx = self.table_index(name, syms, q, shapes[name]).cpu().numpy()
            for b in range(x.shape[0]):
                streams[b][name] = encode_symbols(sym[b], idx[b], self.tables[name])
        seeds = seeds or [0] * x.shape[0]
        crcs = [symbol_crc([syms[n][b].cpu().numpy() for n in self.stream_names], seeds[b]) for b in range(x.shape[0])]
        return [FramePayload(s, c, seed) for s, c, seed in zip(streams, crcs, seeds)]

    @torch.no_grad()
    def decompress(self, payloads: list[FramePayload], quality: int, height: int, width: int,
                   sink: Sink | None = None, bands: int | None = None) -> Tensor | None:
        """Decode payloads of :meth:`compress` into (B, C, height, width) float raw units (or, piece
        by piece, into ``sink``: see :meth:`synthesis`); ``bands`` matters to models with
        :attr:`any_bands` only."""
        q = self.quality_index(quality, len(payloads))
        shapes = self.latent_shapes(*self.padded_size(height, width))
        syms: dict[str, Tensor] = {}
        for name in self.stream_names:
            idx = self.table_index(name, syms, q, shapes[name]).cpu().numpy()
            dec = [decode_symbols(p.streams[name], idx[b], self.tables[name]) for b, p in enumerate(payloads)]
            syms[name] = torch.from_numpy(np.stack(dec).reshape(len(payloads), *shapes[name])).to(self.device)
        for b, p in enumerate(payloads):
            check_symbol_crc([syms[n][b].cpu().numpy() for n in self.stream_names], p, b)
        return self.synthesis(self.decoded_latents(syms, q), height, width, sink)

