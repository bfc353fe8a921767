"""``tec-hx``: a per-date KLT, HEVC on the components, and a learned cross-component detail transfer.

Each frame's bands are decorrelated by their own exact integer KLT (tec-pc's spectral transform).
Its components are divided by one dyadic plane step into 12-bit planes and coded as the frames of
one HEVC stream (:mod:`tcube.models.hevc`, x265 at a constant QP): the quality sets the step of
digital numbers the engine quantises with, the plane step the range that fits in 12 bits.
Components far below that step are not coded.

HEVC codes every component blind to the others. The decoder adds to each decoded component a
linear combination of two fixed high-pass bands (3 x 3 and 7 x 7 box differences) of itself and
of the three leading decoded components: the detail they share. The coefficients depend on the
scene, so the encoder fits them per frame by least squares and sends them (Exp-Golomb codes on a
grid the encoder picks per component, or nothing where it does not pay). A regression trained on
the corpus predicts the coefficients of a component's own bands (a correction of HEVC's
smoothing, which carries over between scenes) from the decoded component, so that only the
correction of that prediction travels. Everything the decoder computes is integer arithmetic (the prediction is a
fixed sequence of IEEE double operations on exact integers), so a blob decodes to the same bits
on every machine, thread count and batch split.

The dates of one call (a zarr chunk of several dates, a cube given to :func:`tcube.encode`) are
coded over time. Dates much brighter than the call's clear ones (cloud, haze, snow) are coded
each on its own, with its own KLT (they neither predict the clear dates well nor are predicted
well, and their spectra are not the clear dates'). The clear dates form a chunk: one KLT fitted
on them, each tile's dates one HEVC video (each component's dates in a row, the first intra, the
others predicted from earlier and later dates at x265's medium preset), and each date's detail
transfer also borrows the previous clear date's decoded detail. The chunk's first frame holds the
transform, every stream and which dates between its first and last are coded alone; the others
hold their own detail transfer, so a chunk decodes only whole (side information layout 2). The
encoder's choices were measured in ``benchmarks/dense.py`` and ``benchmarks/hx_time_proxy.py``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

import tcube.models.hevc as hevc
from tcube.entropy.golomb import BitReader, BitWriter, signed_bits
from tcube.errors import CorruptBlobError, InputError
from tcube.models.base import N_QUALITIES, FramePayload, Model, ModelConfig, Sink, check_crc
from tcube.models.pc import MAX_BANDS, spectral_fit

#: Fractional bits of the transmitted KLT basis: the encoder inverts the basis it sends, so rounding
#: it only leaks a little of the leading component into the others; the leak stays below the
#: quantiser step with 2**-(BASIS_MARGIN + 1) times the step's ratio to the leading amplitude.
BASIS_FRAC = (4, 12)
BASIS_MARGIN = 2
#: Largest condition number of a rounded basis (a rotation has 1): coarser ones get more bits.
MAX_BASIS_COND = 1.25
#: Side information layout version (first 4 bits). Layout 0 (blobs of format version 8) stored each tile's
#: HEVC stream as x265 wrote it behind a tile count and lengths; layout 1 stores them compact
#: (:func:`tcube.models.hevc.compact`) behind the lengths of all but the last.
SIDE_VERSION = 1
#: Layout 2: the clear dates of a call coded over time as one chunk (:meth:`HybridCodec.compress` of a cube's
#: dates). The chunk's first frame holds its transform, which dates up to its last are coded alone (frames of
#: layout 1 between its own) and every HEVC stream; the others hold their own detail transfer, which also
#: borrows the previous clear date's decoded detail.
TIME_LAYOUT = 2
SIDE_LAYOUTS = (0, 1, 2)
#: Most dates of one chunk coded over time.
MAX_DATES = 1 << 12
#: Planes larger than this on a side are cut into tiles, one HEVC stream each.
TILE = 2048
#: Leading components whose detail every component borrows.
LEAD = 4
#: Box radii of the two high-pass bands: band b of plane L is (2r+1)**2 * L - (box sum of L)
#: (:func:`detail_bands` computes exactly these two).
RADII = (1, 3)
#: Fractional bits of the integer detail coefficients, and of the corrected components.
COEF_FRAC, OUT_FRAC = 14, 4
#: Coefficient grids the encoder may pick: multiples of 2**shift, shift < 2**SHIFT_BITS.
SHIFT_BITS = 3
#: Components whose amplitude is below 2**DROP_LOG2 quantiser steps are not coded.
DROP_LOG2 = 0.0
#: Plane steps are 2**n digital numbers, n in this range.
PLANE_EXP = (-8, 12)
#: Features of the coefficient predictor per band and quality.
FEATURES = 3
#: Exp-Golomb orders of the side information's integers.
MEAN_ORDER, BASIS_ORDER, LOW_ORDER = 10, 4, 6
#: x265 preset of the encoder (its speed and size are measured in benchmarks/hybrid.py).
PRESET = "ultrafast"
#: x265 preset of chunks coded over time (speed and size against the others: benchmarks/dense.py).
TIME_PRESET = "medium"
#: A date of a call is coded alone when the mean of its first band exceeds this factor times the
#: :data:`CLOUD_PERCENTILE`-th percentile of those means over the call (clouds, haze, snow: bright
#: dates that the others predict badly and that would predict the others badly).
CLOUD_FACTOR, CLOUD_PERCENTILE = 3.0, 20
#: Distortion falls as bits ** -RATE_EXPONENT at tec-hx's rates: 4.5 dB per doubling of the bytes
#: between 35 and 50 dB on the dense series (benchmarks/results/dense*.csv).
RATE_EXPONENT = 1.5
#: Quantiser step per unit of QP, as in HEVC: the step doubles every 6.
QP_PER_OCTAVE = 6


def default_steps() -> list[int]:
    """Per quality 1..16, the QP at which the engine would code a plane step of one digital number
    (the quantiser step of digital numbers: 2 ** ((value - 4) / 6))."""
    return [62 - 3 * q for q in range(1, N_QUALITIES + 1)]


def _rows(a: np.ndarray, n: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of 3 and of 7 neighbours along ``axis`` of ``a`` padded by 3 on that axis (``n``
    positions): ``(s3, s7)``, s7 reusing s3 (two additions each)."""
    if axis == a.ndim - 1:
        s3 = a[..., 1: n + 5] + a[..., 2: n + 6] + a[..., 0: n + 4]  # s3[i]: centred on padded i + 1
        return s3[..., 2: n + 2], s3[..., 0:n] + a[..., 3: n + 3] + s3[..., 4: n + 4]
    s3 = a[..., 1: n + 5, :] + a[..., 2: n + 6, :] + a[..., 0: n + 4, :]
    return s3[..., 2: n + 2, :], s3[..., 0:n, :] + a[..., 3: n + 3, :] + s3[..., 4: n + 4, :]


def detail_bands(planes: np.ndarray) -> np.ndarray:
    """The high-pass bands of planes of 12-bit levels (K, H, W): (K, 2, H, W) float32 holding
    9 L - (3 x 3 box sum) and 49 L - (7 x 7 box sum), edges replicated (integers below 2**18 in
    magnitude: exact in float32).

    Examples
    --------
    >>> detail_bands(np.full((1, 5, 6), 7)).reshape(2, -1).sum(1).tolist()
    [0.0, 0.0]
    """
    planes = np.asarray(planes)
    h, w = planes.shape[-2:]
    p = np.pad(planes.astype(np.float32), [(0, 0), (3, 3), (3, 3)], mode="edge")
    rows3, rows7 = _rows(p, h, 1)
    box3 = _rows(rows3, w, 2)[0]
    box7 = _rows(rows7, w, 2)[1]
    centre = p[:, 3: h + 3, 3: w + 3]
    return np.stack([9 * centre - box3, 49 * centre - box7], axis=1)


#: Pixels per partial inner product: products of detail bands are below 2**36, so partial sums
#: of this many stay below 2**52 and are exact in float64 whatever order BLAS adds them in.
GRAM_CHUNK = 1 << 16


class Grams:
    """Exact inner products of decoded detail bands (Python integers), computed when first asked."""

    def __init__(self, bands: np.ndarray):
        self.flat = bands.reshape(*bands.shape[:2], -1)
        self.cache: dict[tuple[int, int, int], int] = {}

    def __getitem__(self, key: tuple[int, int, int]) -> int:
        b, i, j = key
        key = (b, min(i, j), max(i, j))
        if key not in self.cache:
            u, v = self.flat[key[1]][b], self.flat[key[2]][b]
            self.cache[key] = sum(int(np.einsum("i,i->", u[s: s + GRAM_CHUNK], v[s: s + GRAM_CHUNK], dtype=np.float64))
                                  for s in range(0, len(u), GRAM_CHUNK))
        return self.cache[key]


def date_bands(levels: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """:func:`detail_bands` of a date's levels (K, H, W), then of the previous date's when given."""
    return detail_bands(levels if previous is None else np.concatenate([levels, previous]))


class ChunkBands:
    """The detail bands of the dates of a chunk's levels (K, T, H, W), each date's made once."""

    def __init__(self, levels: np.ndarray):
        self.levels = levels
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, t: int, previous: bool) -> np.ndarray:
        """The bands of date ``t`` (K, 2, H, W), with ``previous`` then those of date ``t - 1``."""
        own = self._date(t)
        return np.concatenate([own, self._date(t - 1)]) if previous else own

    def _date(self, t: int) -> np.ndarray:
        if t not in self.cache:
            self.cache = {s: b for s, b in self.cache.items() if s >= t - 1}  # dates go forward: keep two
            self.cache[t] = detail_bands(self.levels[:, t])
        return self.cache[t]


#: Largest magnitude of a detail coefficient: products with detail bands stay below 2**38.
COEF_MAX = 1 << 20


def coefficients(predicted: list[int], shift: int, residuals: list[int]) -> list[int]:
    """The coefficients the decoder applies: prediction plus residuals on the grid, clamped."""
    return [max(-COEF_MAX, min(COEF_MAX, p + (r << shift))) for p, r in zip(predicted, residuals)]


def sources(k: int, coded: int, previous: bool = False) -> list[int]:
    """Planes whose detail component ``k`` borrows: the leading components and itself, and with
    ``previous`` its plane of the previous date (index ``coded + k``).

    Examples
    --------
    >>> sources(5, 6), sources(1, 3, previous=True)
    ([0, 1, 2, 3, 5], [0, 1, 2, 4])
    """
    return sorted(set(range(min(LEAD, coded))) | {k}) + ([coded + k] if previous else [])


@dataclass
class Side:
    """One frame's side information."""

    plane_exp: int
    qp: int
    frac: int  # fractional bits of the basis
    mean: np.ndarray  # (C,) int
    basis: np.ndarray  # (K, C) int rows of the coded components
    low: np.ndarray  # (K,) level offsets
    detail: list[tuple[int, list[int]] | None]  # per component: (shift, residuals) or None
    layout: int = SIDE_VERSION  # of the side information and the HEVC streams behind it
    dates: int = 1  # layout 2: dates of the chunk in its first frame, 0 in the others
    alone: list[bool] = field(default_factory=list)  # layout 2, first frame: per date to its last, coded alone
    previous: bool = False  # layout 2, later dates: whether the detail transfer borrows the previous date's

    def pack(self) -> bytes:
        w = BitWriter()
        w.bits(self.layout, 4)
        if self.layout >= TIME_LAYOUT:
            w.unsigned([self.dates])
            if not self.dates:  # a later date of a chunk: its detail transfer only
                w.bits(self.previous, 1)
                self._pack_detail(w, self.previous)
                return w.getvalue()
            for flag in self.alone:
                w.bits(flag, 1)
        w.signed([self.plane_exp])
        w.bits(self.qp, 6)
        w.bits(self.frac, 4)
        w.unsigned([len(self.basis)])
        w.signed(self.mean.tolist(), MEAN_ORDER)
        w.signed(self.basis.ravel().tolist(), max(0, self.frac - BASIS_ORDER))
        w.signed(self.low.tolist(), LOW_ORDER)
        self._pack_detail(w, previous=False)
        return w.getvalue()

    def _pack_detail(self, w: BitWriter, previous: bool) -> None:
        for j, d in enumerate(self.detail):
            w.bits(d is not None, 1)
            if d is not None:
                if len(d[1]) != 2 * len(sources(j, len(self.detail), previous)):
                    raise ValueError(f"component {j} has {len(d[1])} detail coefficients")
                w.bits(d[0], SHIFT_BITS)
                w.signed(d[1])

    @staticmethod
    def _unpack_detail(r: BitReader, k: int, previous: bool) -> list[tuple[int, list[int]] | None]:
        detail: list[tuple[int, list[int]] | None] = []
        for j in range(k):
            if r.bits(1):
                shift = r.bits(SHIFT_BITS)
                detail.append((shift, r.signed(2 * len(sources(j, k, previous)))))
            else:
                detail.append(None)
        return detail

    def later(self, data: bytes) -> Side:
        """The side information of a later date of the chunk this (its first frame's) heads."""
        r = BitReader(data)
        if r.bits(4) != TIME_LAYOUT or r.unsigned(1)[0] != 0:
            raise CorruptBlobError("tec-hx chunk: a later date's side information is not one")
        previous = bool(r.bits(1))
        detail = self._unpack_detail(r, len(self.basis), previous)
        r.check_end()
        return self.for_date(detail, previous)

    def for_date(self, detail: list[tuple[int, list[int]] | None], previous: bool) -> Side:
        """The side information of a later date of the chunk this heads, with its own detail transfer."""
        return Side(self.plane_exp, self.qp, self.frac, self.mean, self.basis, self.low, detail, TIME_LAYOUT, 0,
                    previous=previous)

    @classmethod
    def unpack(cls, data: bytes, bands: int) -> Side:
        r = BitReader(data)
        if (layout := r.bits(4)) not in SIDE_LAYOUTS:
            raise CorruptBlobError(f"tec-hx side information has layout {layout}; this tcube reads "
                                   f"{', '.join(map(str, SIDE_LAYOUTS))}")
        dates, alone = 1, []
        if layout >= TIME_LAYOUT:
            (dates,) = r.unsigned(1)
            if not 2 <= dates <= MAX_DATES:
                raise CorruptBlobError(f"tec-hx chunk side information announces {dates} dates "
                                       "(a later date without the chunk's first frame?)")
            alone = [bool(r.bits(1)) for _ in range(dates)]
        (plane_exp,) = r.signed(1)
        qp, frac = r.bits(6), r.bits(4)
        (k,) = r.unsigned(1)
        if not PLANE_EXP[0] <= plane_exp <= PLANE_EXP[1] or not hevc.QP_RANGE[0] <= qp <= hevc.QP_RANGE[1] \
                or not 1 <= k <= bands or not BASIS_FRAC[0] <= frac <= BASIS_FRAC[1]:
            raise CorruptBlobError(f"tec-hx side information is inconsistent: plane step 2**{plane_exp}, QP {qp}, "
                                   f"basis with {frac} fractional bits, {k} of {bands} components")
        mean = np.array(r.signed(bands, MEAN_ORDER), np.int64)
        basis = np.array(r.signed(k * bands, max(0, frac - BASIS_ORDER)), np.int64).reshape(k, bands)
        low = np.array(r.signed(k, LOW_ORDER), np.int64)
        detail = cls._unpack_detail(r, k, previous=False)
        r.check_end()
        if np.abs(mean).max() > 1 << 16 or np.abs(basis).max() > 1 << 15:
            raise CorruptBlobError("tec-hx side information holds means or basis entries out of range")
        return cls(plane_exp, qp, frac, mean, basis, low, detail, layout, dates, alone)


@dataclass
class Planes:
    """A frame through the spectral transform and the engine: its side information (detail
    transfer not chosen yet), HEVC streams, decoded levels (K, H, W) and the exact levels they
    approximate (float64)."""

    side: Side
    streams: list[bytes]
    decoded: np.ndarray
    target: np.ndarray


def _tiles(h: int, w: int) -> list[tuple[slice, slice]]:
    return [(slice(r, min(r + TILE, h)), slice(c, min(c + TILE, w))) for r in range(0, h, TILE)
            for c in range(0, w, TILE)]


@dataclass
class HybridConfig(ModelConfig):
    """Per quality, the QP of a one-DN plane step (:func:`default_steps`)."""

    steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = list(self.steps) or default_steps()


class HybridCodec(Model):
    """Per-date KLT + HEVC + learned cross-component detail transfer (see the module docstring)."""

    config_type = HybridConfig
    stream_names = ("side", "hevc")
    any_bands = True
    exact = True
    temporal = True

    def __init__(self, config: HybridConfig):
        super().__init__(config)
        self.preset = PRESET
        #: x265 preset of the dates of a call (the chunk's video and the dates coded alone).
        self.time_preset = TIME_PRESET
        #: Whether a cube's dates are coded over time (off: each date on its own, for ablations).
        self.over_time = True
        #: Whether a later date's detail transfer borrows the previous date's (off: for ablations).
        self.cross_date = True
        #: Whether the encoder sends the detail transfer (off: the streams alone, for ablations).
        self.transfer = True
        #: Rate control of a chunk's video: "cqp" (one QP), "ipb" (x265's I/B offsets) or "crf".
        self.time_rate = "cqp"
        #: Exponent of the engine's distortion-rate curve at low rates (:meth:`rate_slope`; 0: high-rate slope).
        self.rate_exponent = RATE_EXPONENT
        #: Factor of :meth:`alone_dates` (inf: every date in the chunk).
        self.cloud_factor = CLOUD_FACTOR
        # predictor weights of a component's own detail coefficients per (quality, band, feature)
        self.register_buffer("predictor", torch.zeros(N_QUALITIES, len(RADII), FEATURES, dtype=torch.float64))

    @property
    def band_counts(self) -> range:
        return range(1, MAX_BANDS + 1)

    def background(self, bands: int) -> np.ndarray:
        return np.full(bands, 1000.0)

    def export_tables(self) -> None:
        """No probability tables: HEVC and Exp-Golomb codes carry everything."""

    # -- rate control ------------------------------------------------------------------------------
    def step_qp(self, quality: int) -> int:
        """QP of a one-DN plane step at ``quality`` (1..16)."""
        self.quality_index(quality, 1)
        return int(self.config.steps[quality - 1])

    @staticmethod
    def plane_setting(dn_qp: int, spread: float) -> tuple[int, int]:
        """Plane step exponent and QP for components spanning ``spread`` digital numbers at a
        one-DN QP of ``dn_qp``: the finest plane step whose 12 bits hold every component and whose
        QP is within x265's range."""
        fit = max(PLANE_EXP[0], math.ceil(math.log2(max(spread, 1e-9) / (hevc.LEVELS - 1))))
        n = max(fit, math.ceil((dn_qp - hevc.QP_RANGE[1]) / QP_PER_OCTAVE))
        n = min(n, PLANE_EXP[1])
        return n, int(min(max(dn_qp - QP_PER_OCTAVE * n, hevc.QP_RANGE[0]), hevc.QP_RANGE[1]))

    # -- prediction of the detail coefficients ------------------------------------------------------
    @staticmethod
    def features(energy: int, qp: int, pixels: int, radius: int) -> tuple[float, float, float]:
        """The predictor's features of a component's own detail band of ``radius`` with ``energy``
        (its exact sum of squares): 1, ``v`` and ``v ** 2``, with ``v`` the band's share of the
        engine's noise (the squared quantiser step through the band's filter, over that noise plus
        the band's energy, in [0, 1))."""
        noise = 2.0 ** ((qp - 4) / 3.0) * float((2 * radius + 1) ** 4) * pixels
        v = noise / (energy + noise)
        return (1.0, v, v * v)

    def predict(self, grams: Grams, k: int, srcs: list[int], qp: int, pixels: int, quality: int) -> list[int]:
        """Integer coefficients (:data:`COEF_FRAC` fractional bits, per source then band) the decoder
        expects for component ``k``: for its own bands, the learned weights of ``quality`` applied to
        :meth:`features`, in a fixed order of IEEE double operations (the same on every machine);
        zero for the other components' bands, whose relation to ``k`` is the scene's."""
        out = []
        for j in srcs:
            for b, r in enumerate(RADII):
                if j != k:
                    out.append(0)
                    continue
                w = self.predictor[quality - 1, b]
                f = self.features(grams[(b, k, k)], qp, pixels, r)
                alpha = float(w[0]) * f[0] + float(w[1]) * f[1] + float(w[2]) * f[2]
                a = alpha / float((2 * r + 1) ** 2) * 2.0**COEF_FRAC
                out.append(max(-COEF_MAX, min(COEF_MAX, int(math.floor(a + 0.5)))) if math.isfinite(a) else 0)
        return out

    # -- coding ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, x: Tensor, quality: int, seeds: list[int] | None = None) -> list[FramePayload]:
        """Code frames ``x`` (B, C, H, W) in digital numbers; one payload per frame.

        Examples
        --------
        >>> import tcube, torch
        >>> model = tcube.models.load_model("tec-hx")
        >>> g = torch.arange(40.0)
        >>> scene = 300 * torch.sin(g[:, None] / 7) * torch.cos(g[None] / 5)  # one pattern, 4 bands, 2 dates
        >>> x = (1500 + scene * torch.linspace(0.5, 1.5, 4).view(4, 1, 1)).expand(2, 4, 40, 40)
        >>> out = model.decompress(model.compress(x, quality=12), 12, 40, 40, bands=4)
        >>> out.shape, bool((out - x).abs().mean() < 20)
        (torch.Size([2, 4, 40, 40]), True)
        """
        self.quality_index(quality, x.shape[0])
        seeds = seeds or [0] * x.shape[0]
        x = x.to(torch.float64).cpu()
        if self.over_time and 2 <= len(x) <= MAX_DATES:
            return self._compress_dates(x, quality, seeds)
        return self._compress_alone(x, quality, seeds, self.preset)

    def _compress_alone(self, x: Tensor, quality: int, seeds: list[int], preset: str) -> list[FramePayload]:
        """Each frame of ``x`` (B, C, H, W) on its own (side information layout 1)."""
        fits = zip(*spectral_fit(x, BASIS_FRAC[1])[:3])  # one batched fit (each frame's as on its own)
        return [self._compress_frame(frame[None], quality, seed, fit, preset)
                for frame, seed, fit in zip(x, seeds, fits)]

    @staticmethod
    def alone_dates(x: Tensor, factor: float = CLOUD_FACTOR) -> list[bool]:
        """Dates of a call ``x`` (T, C, H, W) coded alone, not in its chunk: those much brighter than
        its clear dates (:data:`CLOUD_FACTOR`).

        Examples
        --------
        >>> x = torch.full((4, 2, 8, 8), 500.0); x[2] = 3000.0
        >>> HybridCodec.alone_dates(x)
        [False, False, True, False]
        """
        means = x[:, 0].reshape(len(x), -1).mean(1).numpy()
        return (means > factor * max(float(np.percentile(means, CLOUD_PERCENTILE)), 1.0)).tolist()

    def _compress_dates(self, x: Tensor, quality: int, seeds: list[int]) -> list[FramePayload]:
        """Code the dates ``x`` (T, C, H, W) of one call: the clear ones over time as one chunk
        (:meth:`_compress_chunk`), the bright ones (:meth:`alone_dates`) each on its own with its own
        KLT, at the preset of chunks."""
        alone = self.alone_dates(x, self.cloud_factor)
        clear = [t for t, a in enumerate(alone) if not a]
        out: list[FramePayload | None] = [None] * len(x)
        if len(clear) >= 2:
            chunk = self._compress_chunk(x[clear], quality, [seeds[t] for t in clear], alone[clear[0]: clear[-1] + 1])
            for t, payload in zip(clear, chunk):
                out[t] = payload
        rest = [t for t, p in enumerate(out) if p is None]
        if rest:
            for t, payload in zip(rest, self._compress_alone(x[rest], quality, [seeds[t] for t in rest],
                                                             self.time_preset)):
                out[t] = payload
        return out

    def _compress_chunk(self, x: Tensor, quality: int, seeds: list[int], alone: list[bool]) -> list[FramePayload]:
        """Code clear dates ``x`` (T, C, H, W) over time: one KLT for all, each tile's dates one video
        (component after component, each starting intra); the payload of the first holds the transform
        and the streams. ``alone``: per date from the first to the last of them, whether it is coded
        on its own (between them: not in ``x``)."""
        t, c, h, w = x.shape
        side, levels, target = self.transform(x.permute(1, 0, 2, 3).reshape(1, c, t * h, w), quality)
        k = len(levels)
        levels, target = levels.reshape(k, t, h, w), target.reshape(k, t, h, w)
        side.layout, side.dates, side.alone = TIME_LAYOUT, len(alone), alone
        streams = [hevc.compact(hevc.encode(np.ascontiguousarray(levels[..., rows, cols]).reshape(k * t, *tile),
                                            side.qp, self.time_preset, t, self.time_rate != "ipb",
                                            self.time_rate == "crf"))
                   for rows, cols in _tiles(h, w) for tile in [(rows.stop - rows.start, cols.stop - cols.start)]]
        decoded = _decode_tiles(streams, k * t, h, w, SIDE_VERSION).reshape(k, t, h, w).astype(np.int32)
        sides = [side] + [side.for_date([None] * k, self.cross_date) for _ in range(t - 1)]
        slope = self.rate_slope(decoded, target, 8 * sum(map(len, streams)))
        chunk_bands = ChunkBands(decoded)
        out = []
        for i, (date_side, seed) in enumerate(zip(sides, seeds)):
            previous = decoded[:, i - 1] if date_side.previous else None
            if self.transfer:
                date_side.detail = self._choose_detail(decoded[:, i], target[:, i], side.qp, quality, previous, slope,
                                                       chunk_bands(i, date_side.previous))
            payload = {"side": date_side.pack(), "hevc": _join(streams, SIDE_VERSION) if i == 0 else b""}
            out.append(FramePayload(payload, _crc(payload, seed), seed))
        return out

    def code_planes(self, x: Tensor, quality: int, fit: tuple[Tensor, Tensor, Tensor] | None = None,
                    preset: str | None = None) -> Planes:
        """The spectral transform and the engine's pass over one frame ``x`` (1, C, H, W); ``fit``:
        its :func:`~tcube.models.pc.spectral_fit` (mean, basis, components), when already made;
        ``preset``: x265's (default :attr:`preset`)."""
        h, w = x.shape[2:]
        side, levels, target = self.transform(x, quality, fit)
        streams = [hevc.compact(hevc.encode(levels[:, rows, cols], side.qp, preset or self.preset))
                   for rows, cols in _tiles(h, w)]
        decoded = _decode_tiles(streams, len(levels), h, w, SIDE_VERSION).astype(np.int32)
        return Planes(side, streams, decoded, target)

    def transform(self, x: Tensor, quality: int, fit: tuple[Tensor, Tensor, Tensor] | None = None
                  ) -> tuple[Side, np.ndarray, np.ndarray]:
        """The side information (no detail transfer yet), the 12-bit levels (K, H, W) of the coded
        components of ``x`` (1, C, H, W) and the levels they round (float32: what the encoder aims at)."""
        c, h, w = x.shape[1:]
        dn_qp = self.step_qp(quality)
        dn_step = 2.0 ** ((dn_qp - 4) / QP_PER_OCTAVE)
        if fit is None:
            fit = tuple(part[0] for part in spectral_fit(x, BASIS_FRAC[1])[:3])  # coarser bases: its rounding
        mean, basis = fit[0].numpy().astype(np.int64), fit[1].numpy().astype(np.int64)
        comps = fit[2].to(torch.float32).numpy()
        frac = self.basis_precision(basis, float(comps[0].std(dtype=np.float64)), dn_step)
        if frac < BASIS_FRAC[1]:
            basis = np.floor(basis / 2.0 ** (BASIS_FRAC[1] - frac) + 0.5).astype(np.int64)
            # the components under the basis the decoder gets: x = mean + basis^T c / 2**frac
            flat = x[0].reshape(c, -1).to(torch.float64).numpy() - mean[:, None]
            inverse = np.linalg.inv(basis.T / 2.0**frac)  # C x C, then one product per component
            comps = np.empty((c, h, w), np.float32)
            for j in range(c):
                comps[j] = (inverse[j] @ flat).reshape(h, w)
            del flat
        std = comps.reshape(c, -1).std(1, dtype=np.float64)
        k = max(1, int((std >= dn_step * 2.0**DROP_LOG2).sum()))
        comps = comps[:k]
        spread = float((comps.reshape(k, -1).max(1) - comps.reshape(k, -1).min(1)).max())
        n, qp = self.plane_setting(dn_qp, spread)
        scaled = np.floor(comps / np.float32(2.0**n) + np.float32(0.5)).astype(np.int32)
        # components have zero mean: put zero at mid-grey (where HEVC's prediction starts) as far as
        # the range allows, so that even a frame coded at the coarsest QP keeps its mean
        flat = scaled.reshape(k, -1)
        low = np.minimum(np.maximum(-hevc.MID_GREY, flat.max(1) - hevc.LEVELS), flat.min(1))
        levels = scaled - low.astype(np.int32)[:, None, None]
        if levels.min() < 0 or levels.max() > hevc.LEVELS:  # the plane step holds every range: never clip
            raise InputError(f"tec-hx components span {spread:.0f} DN, beyond 12 bits at the coarsest plane step")
        side = Side(n, qp, frac, mean, basis[:k], low, [None] * k)
        target = comps / np.float32(2.0**n)
        target -= low.astype(np.float32)[:, None, None]
        return side, levels.astype(np.uint16), target

    @staticmethod
    def basis_precision(basis: np.ndarray, lead: float, dn_step: float) -> int:
        """Fractional bits to send ``basis`` (integers with ``BASIS_FRAC[1]`` of them) with: enough
        that the leak of a leading component of amplitude ``lead`` stays below the quantiser step,
        and that the rounded basis stays close to a rotation."""
        top = BASIS_FRAC[1]
        frac = min(top, max(BASIS_FRAC[0], math.ceil(math.log2(max(lead, 1.0) / dn_step)) + BASIS_MARGIN))
        while frac < top and np.linalg.cond(np.floor(basis / 2.0 ** (top - frac) + 0.5)) >= MAX_BASIS_COND:
            frac += 1  # rounded too coarsely to stay a rotation: the components would be amplified
        return frac

    def _compress_frame(self, x: Tensor, quality: int, seed: int, fit: tuple, preset: str) -> FramePayload:
        planes = self.code_planes(x, quality, fit, preset)
        if self.transfer:
            slope = self.rate_slope(planes.decoded, planes.target, 8 * sum(map(len, planes.streams)))
            planes.side.detail = self._choose_detail(planes.decoded, planes.target, planes.side.qp, quality,
                                                     slope=slope)
        payload = {"side": planes.side.pack(), "hevc": _join(planes.streams, SIDE_VERSION)}
        return FramePayload(payload, _crc(payload, seed), seed)

    def rate_slope(self, decoded: np.ndarray, target: np.ndarray, bits: int) -> float:
        """Squared levels one bit is worth at the engine's operating point: the slope of
        distortion D ~ bits ** -:data:`RATE_EXPONENT` (low rates), or of D ~ 2 ** (-2 bits per
        sample) (high rates), whichever is steeper, for the ``bits`` that coded ``decoded``."""
        sse = sum(float(np.square(t - d, dtype=np.float64).sum()) for t, d in zip(target, decoded))
        high = 2 * math.log(2) * sse / decoded.size
        return max(high, self.rate_exponent * sse / max(bits, 1), 1e-3)

    def _choose_detail(self, decoded: np.ndarray, target: np.ndarray, qp: int, quality: int,
                       previous: np.ndarray | None = None, slope: float | None = None,
                       bands: np.ndarray | None = None) -> list[tuple[int, list[int]] | None]:
        """Per component, the coefficient grid and corrections that minimise squared error plus
        rate (at the engine's slope), or None where the transfer does not pay. Squared errors come
        from the Gram matrix of all detail bands (one pass over the pixels); ``previous``: the
        previous date's decoded levels, whose detail a component may borrow too."""
        k = len(decoded)
        bands = bands if bands is not None else date_bands(decoded, previous)
        grams = Grams(bands)
        err = (target - decoded).reshape(k, -1)
        flat = bands.reshape(len(bands) * len(RADII), -1).astype(np.float64)
        gram_all, cross_all = flat @ flat.T, flat @ err.T
        lam = slope if slope is not None else 2 * math.log(2) * max(float((err**2).mean()), 1e-3)
        out: list[tuple[int, list[int]] | None] = []
        for j in range(k):
            srcs = sources(j, k, previous is not None)
            idx = [s * len(RADII) + b for s in srcs for b in range(len(RADII))]
            gram, cross = gram_all[np.ix_(idx, idx)], cross_all[idx, j]
            fit = np.linalg.lstsq(gram + 1e-9 * np.eye(len(gram)) * np.trace(gram), cross, rcond=None)[0]
            ideal = fit * 2.0**COEF_FRAC
            pred = self.predict(grams, j, srcs, qp, err.shape[1], quality)
            best, best_cost = None, 0.0
            for shift in range(1 << SHIFT_BITS):
                res = np.floor((ideal - np.array(pred)) / 2.0**shift + 0.5).astype(np.int64)
                coef = np.array(coefficients(pred, shift, res.tolist()), np.float64) / 2.0**COEF_FRAC
                gain = 2 * coef @ cross - coef @ gram @ coef  # reduction of the squared error
                bits = 1 + SHIFT_BITS + signed_bits(res.tolist())
                cost = lam * bits - gain
                if cost < best_cost - lam:  # the 1-bit flag of "off" is the reference
                    best, best_cost = (shift, res.tolist()), cost
            out.append(best)
        return out

    @torch.no_grad()
    def decompress(self, payloads: list[FramePayload], quality: int, height: int, width: int,
                   sink: Sink | None = None, bands: int | None = None) -> Tensor | None:
        """Decode payloads of :meth:`compress` into (B, C, height, width) float64 digital numbers
        (or into ``sink``, frame by frame)."""
        self.quality_index(quality, len(payloads))
        c = bands if bands is not None else self.config.bands
        out = None if sink is not None else torch.empty((len(payloads), c, height, width), dtype=torch.float64)
        i = 0
        while i < len(payloads):
            frames = self._decompress_run(payloads, i, quality, height, width, c)
            for frame in frames:
                if sink is None:
                    out[i] = frame[0]
                else:
                    sink(slice(i, i + 1), slice(0, height), slice(0, width), frame.to(torch.float32))
                i += 1
        return out

    def _decompress_run(self, payloads: list[FramePayload], i: int, quality: int, h: int, w: int, c: int
                        ) -> Iterator[Tensor]:
        """The frames of payload ``i``: one, or the dates of the chunk it heads (payloads i, i + 1, ...)."""
        check_crc(_crc(payloads[i].streams, payloads[i].seed), payloads[i], i)
        side = Side.unpack(payloads[i].streams["side"], c)
        if side.layout < TIME_LAYOUT:
            yield self._decode_alone(payloads[i], side, quality, h, w, c)
            return
        if i + side.dates > len(payloads):
            raise CorruptBlobError(f"tec-hx chunk of {side.dates} dates starts at frame {i} of {len(payloads)}")
        if side.alone[0] or side.alone[-1]:
            raise CorruptBlobError(f"tec-hx chunk at frame {i}: its first or last date is marked as coded alone")
        sides: dict[int, Side] = {0: side}
        for j in range(1, side.dates):
            payload = payloads[i + j]
            check_crc(_crc(payload.streams, payload.seed), payload, i + j)
            if side.alone[j]:
                sides[j] = Side.unpack(payload.streams["side"], c)
                if sides[j].layout >= TIME_LAYOUT:
                    raise CorruptBlobError(f"tec-hx chunk: frame {i + j} should be coded alone but is part of a chunk")
            elif payload.streams["hevc"]:
                raise CorruptBlobError(f"tec-hx chunk: frame {i + j} is a later date but holds HEVC streams")
            else:
                sides[j] = side.later(payload.streams["side"])
        clear = [j for j in range(side.dates) if not side.alone[j]]
        k = len(side.basis)
        levels = _decode_tiles(_unjoin(payloads[i].streams["hevc"], len(_tiles(h, w)), SIDE_VERSION), k * len(clear),
                               h, w, SIDE_VERSION).reshape(k, len(clear), h, w)  # per tile: K x T planes
        chunk_bands = ChunkBands(levels)
        n = 0  # clear dates decoded
        for j in range(side.dates):
            date_side = sides[j]
            if side.alone[j]:
                yield self._decode_alone(payloads[i + j], date_side, quality, h, w, c)
                continue
            previous = levels[:, n - 1] if date_side.previous else None
            bands = chunk_bands(n, date_side.previous) if any(d is not None for d in date_side.detail) else None
            yield self._bands(self.enhance(levels[:, n], date_side, quality, previous, bands), date_side, c)
            n += 1

    def _decode_alone(self, payload: FramePayload, side: Side, quality: int, h: int, w: int, c: int) -> Tensor:
        """A frame coded on its own (layouts 0 and 1), CRC checked, side information unpacked."""
        levels = _decode_tiles(_unjoin(payload.streams["hevc"], len(_tiles(h, w)), side.layout), len(side.basis), h,
                               w, side.layout)
        return self._bands(self.enhance(levels, side, quality), side, c)

    @staticmethod
    def _bands(fine: np.ndarray, side: Side, c: int) -> Tensor:
        """Bands (1, C, H, W) of enhanced levels ``fine`` (K, H, W) with :data:`OUT_FRAC` fractional bits."""
        k, h, w = fine.shape
        fine += (side.low * 2**OUT_FRAC).astype(np.float64)[:, None, None]
        # bands = mean + basis^T (fine * 2**(plane_exp - OUT_FRAC)) / 2**BASIS_FRAC: integer products
        # below 2**53, exact in any summation order
        acc = side.basis.T.astype(np.float64) @ fine.reshape(k, -1)
        acc *= 2.0 ** (side.plane_exp - OUT_FRAC - side.frac)
        acc += side.mean.astype(np.float64)[:, None]
        return torch.from_numpy(acc.reshape(1, c, h, w))

    def enhance(self, levels: np.ndarray, side: Side, quality: int, previous: np.ndarray | None = None,
                bands: np.ndarray | None = None) -> np.ndarray:
        """Decoded levels (K, H, W) with the detail transfer of ``side`` added, with
        :data:`OUT_FRAC` fractional bits (integers in float64, exact); ``previous``: the previous
        date's decoded levels (later dates of a chunk); ``bands``: their :func:`detail_bands`
        (of ``levels`` then ``previous``), when already made."""
        k = len(levels)
        out = levels.astype(np.float64) * 2.0**OUT_FRAC
        if not any(d is not None for d in side.detail):
            return out
        bands = bands if bands is not None else date_bands(levels, previous)
        grams = Grams(bands)
        pixels = levels[0].size
        down = 2.0 ** (COEF_FRAC - OUT_FRAC)
        for j, d in enumerate(side.detail):
            if d is None:
                continue
            srcs = sources(j, k, previous is not None)
            coef = coefficients(self.predict(grams, j, srcs, side.qp, pixels, quality), *d)
            acc = np.zeros(levels[0].shape)
            for a, (s, b) in zip(coef, [(s, b) for s in srcs for b in range(len(RADII))]):
                if a:
                    acc += np.multiply(bands[s][b], float(a), dtype=np.float64)  # integers below 2**41
            acc += down / 2
            out[j] += np.floor(acc / down, out=acc)
        return out

    def reconstruct(self, x: Tensor, quality: int) -> Tensor:
        return self.decompress(self.compress(x, quality), quality, *x.shape[-2:], bands=x.shape[1])


def _crc(streams: dict[str, bytes], seed: int) -> int:
    return zlib.crc32(streams["hevc"], zlib.crc32(streams["side"], seed))


def _decode_tiles(parts: list[bytes], k: int, h: int, w: int, layout: int) -> np.ndarray:
    """The (K, H, W) levels of a frame's tile streams (compact ones from layout 1)."""
    levels = np.empty((k, h, w), np.uint16)
    for (rows, cols), data in zip(_tiles(h, w), parts):
        stream = hevc.expand(data) if layout >= 1 else data
        levels[:, rows, cols] = hevc.decode(stream, k, rows.stop - rows.start, cols.stop - cols.start)
    return levels


def _join(parts: list[bytes], layout: int) -> bytes:
    """Tile streams with their lengths in front (Exp-Golomb, padded to whole bytes): layout 0 the
    count and every length, layout 1 the lengths of all but the last (the frame size gives the count)."""
    w = BitWriter()
    w.unsigned([len(parts), *map(len, parts)] if layout == 0 else [len(p) for p in parts[:-1]])
    return w.getvalue() + b"".join(parts)


def _unjoin(data: bytes, tiles: int, layout: int) -> list[bytes]:
    if layout == 0:
        r = BitReader(data[:64])
        (n,) = r.unsigned(1)
        if n != tiles:
            raise CorruptBlobError(f"tec-hx frame holds {n} HEVC streams; its size needs {tiles}")
        r = BitReader(data[: 8 * (n + 2)])
        lengths = r.unsigned(n + 1)[1:]
    else:
        r = BitReader(data[: 8 * tiles])
        lengths = r.unsigned(tiles - 1)
    pos = r.bytes_read()
    lengths = lengths if layout == 0 else [*lengths, len(data) - pos - sum(lengths)]
    if min(lengths) < 0 or pos + sum(lengths) != len(data):
        raise CorruptBlobError(f"tec-hx stream has {len(data)} bytes; its tiles account for {pos + sum(lengths)}")
    out = []
    for n_bytes in lengths:
        out.append(data[pos: pos + n_bytes])
        pos += n_bytes
    return out
