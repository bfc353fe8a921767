"""``tec-pc``: a KLT per date, then one learned image codec shared by every principal component.

Each frame's bands are decorrelated by their own Karhunen-Loeve transform, whose basis, band
means and component amplitudes travel as a few hundred bytes of side information. Every component
is then one single-channel image, divided by the quality's step and coded by the same learned
transform: the latent grows with the number of bands, so any band set (1 to :data:`MAX_BANDS`) is
native. Components whose amplitude is far below the step are not coded at all. The entropy model of
a component's latents is a hyperprior conditioned on the latents of the component coded before it
and on its amplitude.

The decoder is exact: the hyper-synthesis, the context network and the synthesis transform run
on integers in float64 (every product and partial sum below 2**53), the step and the basis are
dyadic rationals, so a blob decodes to the same bits on any device, thread count and batch split.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tcube.entropy import FactorizedDensity, GaussianConditional, decode_symbols, encode_symbols
from tcube.errors import CorruptBlobError, InputError
from tcube.models.base import (
    N_QUALITIES,
    PASS_PIXELS,
    FramePayload,
    HyperpriorConfig,
    Sink,
    TransformCodec,
    check_crc,
    check_symbol_range,
    symbol_crc,
)
from tcube.models.layers import IntegerConv2d, SimplifiedGDN, hyper_analysis, round_ste

#: Most bands a frame may have.
MAX_BANDS = 32
#: Fractional bits of the transmitted KLT basis (int16 entries).
BASIS_FRAC = 12
#: Fractional bits of the synthesis activations, and of its weights.
A_FRAC, W_FRAC = 14, 12
#: Activations of the synthesis are clamped to this magnitude, the ISGDN norms to NORM_MAX, weights
#: to W_MAX: the bounds that keep every integer of the exact decoder below 2**53 (activations
#: below 2**22, weights below 2**15, at most 2**10 terms per sum).
A_MAX, NORM_MAX, W_MAX = 256.0, 256.0, 8.0
#: Components enter the transforms divided by a power-of-two gain, 2**floor(log2(amplitude /
#: step)) clamped to [1, 2**MAX_GAIN_LOG], and their latents are multiplied by it before rounding:
#: the transforms always see about unit amplitude, the gain sets the precision.
MAX_GAIN_LOG = 10
#: Steps are multiples of 1/STEP_DENOM (dyadic, so products with them are exact).
STEP_DENOM = 256
#: Amplitudes travel as round(AMP_STEPS * log2(std)), int8.
AMP_STEPS = 4
#: Hyper-latents and context latents are clamped to these magnitudes at the entropy networks' input.
Z_MAX, CTX_MAX = 1024.0, 255.0
#: Fractional bits of the entropy networks' hidden activations; means lie on a 1/MEAN_STEPS grid.
H_FRAC, MEAN_STEPS = 4, 16
#: The transforms reconstruct a component within a few percent of its amplitude: components of at
#: least 2**REFINE_FROM steps get a second pass on their residual when that residual reaches
#: 2**REFINE_TO steps (an encoder's choice; the side information lists the refinements).
REFINE_FROM, REFINE_TO = 4.0, -1.0


def default_steps() -> list[int]:
    """Step exponents of qualities 1..16: the step is 2 ** (e / 4) digital numbers of a component."""
    return [44 - 2 * i for i in range(N_QUALITIES)]


def step_value(exponent: int) -> float:
    """The quality step for ``exponent``, rounded to a multiple of 1/:data:`STEP_DENOM`."""
    return round(2.0 ** (exponent / 4) * STEP_DENOM) / STEP_DENOM


# -- the spectral transform -------------------------------------------------------------------
#: Pixels per strip of the spectral transform's passes over a frame (memory: a few MB per frame).
SPECTRAL_STRIP = 1 << 16


def _strips(n: int) -> list[slice]:
    return [slice(i, min(i + SPECTRAL_STRIP, n)) for i in range(0, n, SPECTRAL_STRIP)]


def spectral_fit(x: Tensor, frac: int = BASIS_FRAC) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per frame of ``x`` (B, C, H, W), any real dtype: integer band means (B, C), the integer basis
    (B, C, C) (rows: components by decreasing variance, scaled by 2**frac), the components
    (B, C, H, W, float32) under that exact basis, and their quantised log-amplitudes (B, C).
    Computed in float64 over strips of :data:`SPECTRAL_STRIP` pixels (the same for any batch)."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    n = flat.shape[-1]
    total = sum(flat[..., s].to(torch.float64).sum(2) for s in _strips(n))
    mean = torch.floor(total / n + 0.5).clamp(-32768, 32767)
    cov = torch.zeros((b, c, c), dtype=torch.float64, device=x.device)
    for s in _strips(n):
        r = flat[..., s].to(torch.float64) - mean[..., None]
        cov += r @ r.transpose(1, 2)
    _, vecs = torch.linalg.eigh(cov / n)
    basis = vecs.flip(-1).transpose(1, 2)  # rows, by decreasing eigenvalue
    sign = torch.sign(basis.gather(2, basis.abs().argmax(2, keepdim=True)))
    basis_int = torch.floor(basis * sign * 2**frac + 0.5).clamp(-32767, 32767)
    # the inverse of what the decoder does: x = mean + basis_int^T c / 2**frac
    inverse = torch.linalg.inv(basis_int.transpose(1, 2) / 2**frac)
    comps = torch.empty((b, c, n), dtype=torch.float32, device=x.device)
    power = torch.zeros((b, c), dtype=torch.float64, device=x.device)
    for s in _strips(n):
        part = inverse @ (flat[..., s].to(torch.float64) - mean[..., None])
        power += part.pow(2).sum(2)
        comps[..., s] = part.to(torch.float32)
    std = (power / n).sqrt().clamp_min(1e-6)
    amp = torch.floor(AMP_STEPS * torch.log2(std) + 0.5).clamp(-128, 127)
    return mean, basis_int, comps.reshape(x.shape), amp


def spectral_inverse(c: Tensor, mean: Tensor, basis_int: Tensor, frac: int = BASIS_FRAC) -> Tensor:
    """Bands (B, C, H, W) float64 from integer components ``c`` (B, C, H, W) and a basis with
    ``frac`` fractional bits, exactly."""
    b, n = c.shape[:2]
    acc = basis_int.transpose(1, 2).to(c.dtype) @ c.reshape(b, n, -1)  # integers below 2**53
    return (acc / 2**frac + mean[..., None].to(c.dtype)).reshape(c.shape)


def pack_side(mean: Tensor, basis_int: Tensor, amp: Tensor, coded: Tensor,
              refinements: list[tuple[int, int]] = ()) -> bytes:
    """One frame's side information: amplitudes (int8), means (int16), the basis rows (int16) of the
    ``coded`` components only (the others are zero: their rows never matter), then, when there
    are refinements, their count (uint8) and per refinement the component it refines (uint8) and
    its amplitude (int8); little-endian."""
    out = (amp.cpu().numpy().astype("i1").tobytes() + mean.cpu().numpy().astype("<i2").tobytes()
           + basis_int[coded].cpu().numpy().astype("<i2").tobytes())
    if refinements:
        out += struct.pack("<B", len(refinements)) + b"".join(struct.pack("<Bb", k, a) for k, a in refinements)
    return out


def side_amplitudes(data: bytes, bands: int) -> Tensor:
    """The component amplitudes at the start of :func:`pack_side`'s bytes."""
    if len(data) < 3 * bands:
        raise CorruptBlobError(f"spectral side information has {len(data)} bytes; {bands} bands need at least "
                               f"{3 * bands}")
    return torch.from_numpy(np.frombuffer(data[:bands], "i1").astype(np.float64))


def unpack_side(data: bytes, bands: int, coded: Tensor) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
    """Means, basis (uncoded rows zero) and refinements ((component, amplitude) pairs) from
    :func:`pack_side`'s bytes for a frame of ``bands`` bands whose ``coded`` components (bool
    (bands,)) the amplitudes decide. The whole basis, as blobs of tec-pc's first weights carry it,
    is read too."""
    rows = coded.cpu().numpy().astype(bool)
    n = 3 * bands + 2 * bands * int(rows.sum())
    full = 3 * bands + 2 * bands * bands
    refinements: list[tuple[int, int]] = []
    if len(data) > n and len(data) != full:
        count = data[n]
        if len(data) == n + 1 + 2 * count:
            refinements = [struct.unpack_from("<Bb", data, n + 1 + 2 * j) for j in range(count)]
        if not refinements or any(k >= bands or not rows[k] for k, _ in refinements):
            raise CorruptBlobError(f"spectral side information has {len(data)} bytes that do not add up for "
                                   f"{bands} bands with {int(rows.sum())} coded components")
        data = data[:n]
    elif len(data) not in (n, full):
        raise CorruptBlobError(f"spectral side information has {len(data)} bytes; {bands} bands with "
                               f"{int(rows.sum())} coded components need {n}")
    mean = np.frombuffer(data[bands: 3 * bands], "<i2").astype(np.float64)
    values = np.frombuffer(data[3 * bands:], "<i2").astype(np.float64).reshape(-1, bands)
    basis = np.zeros((bands, bands))
    basis[rows] = values[rows] if len(values) == bands else values
    return torch.from_numpy(mean), torch.from_numpy(basis), refinements


# -- exact synthesis ------------------------------------------------------------------------------
def _fixed(w: Tensor, frac: int, limit: float) -> Tensor:
    return torch.floor(w.clamp(-limit, limit) * 2**frac + 0.5)


class UpStage(nn.Module):
    """3x3 convolution to 4x the channels, a pixel shuffle to twice the resolution, then (but for
    the last stage) an inverse simplified GDN ``x * (beta + gamma |x|)``.

    Training runs in float; :meth:`exact` runs the same layer on the fixed-point grid (activations
    with :data:`A_FRAC` fractional bits, weights with :data:`W_FRAC`) in float64, exactly.
    """

    def __init__(self, c_in: int, c_out: int, last: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, 4 * c_out, 3, padding=1)
        self.gdn = None if last else SimplifiedGDN(c_out, inverse=True)

    def forward(self, a: Tensor) -> Tensor:
        a = F.pixel_shuffle(self.conv(a), 2)
        if self.gdn is None:
            return a
        a = a.clamp(-A_MAX, A_MAX)
        gamma = self.gdn.gamma.abs().clamp_max(W_MAX).view(*self.gdn.gamma.shape, 1, 1)
        norm = F.conv2d(a.abs(), gamma, self.gdn.beta.abs().clamp_max(W_MAX) + 1e-6).clamp_max(NORM_MAX)
        return (a * norm).clamp(-A_MAX, A_MAX)

    def _exact_parameters(self, device: torch.device) -> tuple[Tensor, ...]:
        params = [self.conv.weight, self.conv.bias] + ([] if self.gdn is None else [self.gdn.gamma, self.gdn.beta])
        key = (device, *[(p.data_ptr(), p._version) for p in params])
        if getattr(self, "_exact_key", None) != key:
            w = _fixed(self.conv.weight, W_FRAC, W_MAX)
            b = torch.floor(self.conv.bias * 2 ** (W_FRAC + A_FRAC) + 0.5)
            out = [w, b]
            if self.gdn is not None:
                gamma = _fixed(self.gdn.gamma.abs(), W_FRAC, W_MAX).view(*self.gdn.gamma.shape, 1, 1)
                beta = torch.floor((self.gdn.beta.abs().clamp_max(W_MAX) + 1e-6) * 2 ** (W_FRAC + A_FRAC) + 0.5)
                out += [gamma, beta]
            self._exact = tuple(t.detach().to(device, torch.float64) for t in out)
            self._exact_key = key
        return self._exact

    @torch.no_grad()
    def exact(self, a: Tensor) -> Tensor:
        """Integer activations (float64, scaled by 2**A_FRAC) -> the next stage's, exactly."""
        params = self._exact_parameters(a.device)
        lim = A_MAX * 2**A_FRAC
        with torch.backends.cudnn.flags(enabled=False):  # no transformed (Winograd/FFT) algorithms
            acc = F.conv2d(a, params[0], params[1], padding=1)
        a = torch.floor(F.pixel_shuffle(acc, 2) / 2**W_FRAC + 0.5)
        if self.gdn is None:
            return a
        a = a.clamp(-lim, lim)
        with torch.backends.cudnn.flags(enabled=False):
            norm = F.conv2d(a.abs(), params[2], params[3])
        norm = torch.floor(norm / 2**W_FRAC + 0.5).clamp_max(NORM_MAX * 2**A_FRAC)
        return torch.floor(a * norm / 2**A_FRAC + 0.5).clamp(-lim, lim)


class ExactSynthesis(nn.Module):
    """Normalised latents (N, m, h, w) -> one normalised component image (N, 1, 16h, 16w): float
    while training, exact fixed point in eval mode (inputs on the grid of 2**-A_FRAC)."""

    def __init__(self, m: int, widths: list[int]):
        super().__init__()
        chans = [m, *reversed(widths), 1]
        self.stages = nn.ModuleList([UpStage(chans[i], chans[i + 1], last=i == len(chans) - 2)
                                     for i in range(len(chans) - 1)])

    def forward(self, y: Tensor) -> Tensor:
        if self.training:
            y = y.clamp(-A_MAX, A_MAX)
            for stage in self.stages:
                y = stage(y)
            return y
        a = torch.floor(y.to(torch.float64) * 2**A_FRAC + 0.5).clamp(-A_MAX * 2**A_FRAC, A_MAX * 2**A_FRAC)
        for stage in self.stages:
            a = stage.exact(a)
        return a / 2**A_FRAC


def _analysis(m: int, widths: list[int]) -> nn.Sequential:
    chans = [1, *widths, m]
    mods: list[nn.Module] = []
    for i in range(len(chans) - 1):
        mods.append(nn.Conv2d(chans[i], chans[i + 1], 5, stride=2, padding=2))
        if i < len(chans) - 2:
            mods.append(SimplifiedGDN(chans[i + 1]))
    return nn.Sequential(*mods)


@dataclass
class ComponentConfig(HyperpriorConfig):
    """One transform for single-component images in units of the quality step (``bands``, ``mean``,
    ``std`` and ``kernels`` follow from it), the step exponent per quality, and the amplitude
    below which components are not coded."""

    steps: list[int] = field(default_factory=list)  # step exponent per quality (step 2**(e/4) DN)
    drop: float = -3.0  # components below 2**drop steps of amplitude are not coded

    def __post_init__(self) -> None:
        self.bands, self.mean, self.std = 1, [0.0], [1.0]
        self.kernels = [5] * (len(self.widths) + 1)
        self.steps = list(self.steps) or default_steps()


class PrincipalComponentCodec(TransformCodec):
    """KLT per frame + a learned codec shared by the components (see the module's docstring).

    Its quality is a quantiser step (no learned gains): it codes the components itself."""

    config_type = ComponentConfig
    stream_names = ("spectral", "z", "y")
    any_bands = True
    exact = True

    def __init__(self, config: ComponentConfig):
        super().__init__(config)
        m, nh = config.m, config.nh
        self.h_a = hyper_analysis(m, nh)
        self.h_s = nn.ModuleList([
            IntegerConv2d(nh, 4 * nh, in_frac=0, out_frac=H_FRAC),
            IntegerConv2d(nh, 4 * nh, in_frac=H_FRAC, out_frac=H_FRAC),
        ])
        self.context = nn.ModuleList([
            IntegerConv2d(nh + m + 1, 2 * nh, in_frac=H_FRAC, out_frac=H_FRAC),
            IntegerConv2d(2 * nh, 2 * m, in_frac=H_FRAC, out_frac=0, relu=False),
        ])
        self.gaussian = GaussianConditional(scale_max=4096.0, levels=96)
        with torch.no_grad():
            self.context[-1].bias[:m] = self.gaussian.levels / 3
        self.prior = FactorizedDensity(nh)
        self.register_buffer("steps", torch.tensor([step_value(e) for e in config.steps], dtype=torch.float64))
        self.register_buffer("step_exponents", torch.tensor(config.steps, dtype=torch.float64))

    def transforms(self, config: ComponentConfig) -> tuple[nn.Module, nn.Module]:
        return _analysis(config.m, config.widths), ExactSynthesis(config.m, config.widths)

    # -- what the application layer asks --------------------------------------------------
    @property
    def band_counts(self) -> range:
        return range(1, MAX_BANDS + 1)

    def background(self, bands: int) -> np.ndarray:
        return np.zeros(bands)

    def relative(self, amp: Tensor, q: Tensor) -> Tensor:
        """log2(amplitude / step) of each component (amp (B, C), q (B,)): a multiple of 1/4."""
        return (amp - AMP_STEPS * self.step_exponents[q].view(-1, 1) / 4) / AMP_STEPS

    def coded(self, rel: Tensor) -> Tensor:
        """Which components are coded: amplitude at least 2**drop steps."""
        return rel >= self.config.drop

    # -- entropy parameters ---------------------------------------------------------------------
    def _features(self, z: Tensor, hw: tuple[int, int], exact: bool) -> Tensor:
        h = z.clamp(-Z_MAX, Z_MAX)
        if exact:
            h = h.to(torch.float64)
        for layer in self.h_s:
            h = F.pixel_shuffle(layer.forward_exact(h) if exact else layer(h), 2)
        return h[..., : hw[0], : hw[1]]

    def _params(self, feat: Tensor, ctx: Tensor, rel: Tensor, exact: bool) -> tuple[Tensor, Tensor]:
        """Scale index and mean of a component's latents (gained) from its hyper features, the
        previous component's normalised decoded latents and its relative amplitude (B,)."""
        m = self.config.m
        ctx = ctx.clamp(-CTX_MAX, CTX_MAX)
        plane = rel.clamp(-16, 16).view(-1, 1, 1, 1).expand(-1, 1, *feat.shape[-2:])
        if not exact:
            h = self.context[0](torch.cat([feat, ctx, plane.to(feat.dtype)], 1))
            out = self.context[1](h)
            idx = round_ste(out[:, :m]).clamp(0, self.gaussian.levels - 1)
            return idx, round_ste(out[:, m:] * MEAN_STEPS) / MEAN_STEPS
        s = 2.0**H_FRAC
        h = torch.cat([feat, torch.floor(ctx.to(torch.float64) * s + 0.5), torch.floor(plane.double() * s + 0.5)], 1)
        acc = self.context[1].forward_exact(self.context[0].forward_exact(h))
        frac = H_FRAC + IntegerConv2d.W_FRAC
        idx = torch.floor((acc[:, :m] + 2.0 ** (frac - 1)) / 2.0**frac).clamp(0, self.gaussian.levels - 1)
        shift = frac - int(math.log2(MEAN_STEPS))
        mean = torch.floor((acc[:, m:] + 2.0 ** (shift - 1)) / 2.0**shift) / MEAN_STEPS
        return idx.long(), mean.float()

    # -- training ---------------------------------------------------------------------------
    def forward(self, u: Tensor, rel: Tensor, coded: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass over components ``u`` (B, C, H, W) in steps, their relative amplitudes
        (B, C) and which are coded (B, C): reconstruction and estimated bits per frame."""
        b, c, hgt, wid = u.shape
        gain = component_gain(rel)
        y = self.g_a((u / gain[..., None, None]).reshape(b * c, 1, hgt, wid))
        z = self.h_a(y)
        z_bits = self.prior.bits(z + torch.empty_like(z).uniform_(-0.5, 0.5)).view(b, c)
        hw = y.shape[-2:]
        feat = self._features(round_ste(z), hw, exact=False).view(b, c, -1, *hw)
        ys = y.view(b, c, -1, *hw) * gain[..., None, None, None]
        prev = torch.zeros_like(ys[:, 0])
        y_bits, y_hat = [], []
        for k in range(c):
            idx, mean = self._params(feat[:, k], prev, rel[:, k], exact=False)
            noisy = ys[:, k] + torch.empty_like(ys[:, k]).uniform_(-0.5, 0.5)
            y_bits.append(self.gaussian.bits(noisy, mean, self.gaussian.scale(idx)))
            prev = (round_ste(ys[:, k] - mean) + mean) / gain[:, k, None, None, None]
            y_hat.append(prev)
        v_hat = self.g_s(torch.stack(y_hat, 1).flatten(0, 1)).view(b, c, hgt, wid)
        u_hat = torch.where(coded[..., None, None], v_hat * gain[..., None, None], torch.zeros_like(v_hat))
        bits = ((z_bits + torch.stack(y_bits, 1)) * coded).sum(1)
        return u_hat, bits

    # -- coding -------------------------------------------------------------------------------
    @torch.no_grad()
    def compress(self, x: Tensor, quality: int, seeds: list[int] | None = None) -> list[FramePayload]:
        """Code frames ``x`` (B, C, H, W) in digital numbers: one payload per frame. Components go
        through the entropy model one at a time, so memory stays a few times the frames' size; the
        strongest get a refinement (their residual, coded the same way) when it is worth coding."""
        b, c, hgt, wid = x.shape
        if c not in self.band_counts:
            raise InputError(f"tec-pc codes 1 to {MAX_BANDS} bands, got {c}")
        q = self.quality_index(quality, b)
        mean, basis, comps, amp = spectral_fit(x.to(self.device))
        rel = self.relative(amp, q)
        coded, gain = self.coded(rel), component_gain(rel)
        step = float(self.steps[q[0]])
        hp, wp = self.padded_size(hgt, wid)
        hw = (hp // self.stride, wp // self.stride)
        sel = coded.flatten().nonzero().flatten()
        strong = coded & (rel >= REFINE_FROM)
        kept = comps[strong]  # what refinements need of the components
        y = torch.zeros((b * c, self.config.m, *hw), device=self.device)
        if len(sel):
            y[sel] = self.analysis(self._scaled(comps.flatten(0, 1)[sel, None], gain.flatten()[sel], step))
        del comps
        z = torch.floor(self.h_a(y) + 0.5)
        z = z.view(b, c, *z.shape[1:])
        y = y.view(b, c, -1, *hw).mul_(gain[..., None, None, None].to(torch.float32))
        zs = z.long().cpu().numpy()
        symbols: list[list[np.ndarray]] = [[] for _ in range(b)]
        segments: list[list[bytes]] = [[] for _ in range(b)]
        decoded: dict[tuple[int, int], Tensor] = {}
        prev = torch.zeros_like(y[:, 0])
        for k in range(c):
            idx, mu = self._params(self._features(z[:, k], hw, exact=True), prev, rel[:, k], exact=True)
            keep = coded[:, k].view(-1, 1, 1, 1)
            sym = torch.where(keep, torch.floor(y[:, k] - mu + 0.5), torch.zeros_like(mu))
            check_symbol_range([sym])
            prev = torch.where(keep, (sym + mu) / gain[:, k, None, None, None], torch.zeros_like(mu))
            ys, ids = sym.long().cpu().numpy(), idx.cpu().numpy()
            for i in np.flatnonzero(coded[:, k].cpu().numpy()):
                segments[i].append(encode_symbols(ys[i], ids[i], self.tables["y"]))
                symbols[i].append(ys[i])
                if strong[i, k]:
                    decoded[(i, k)] = prev[i]
        del y
        seeds = seeds or [0] * b
        out = []
        for i in range(b):
            ks = np.flatnonzero(coded[i].cpu().numpy())
            targets = np.flatnonzero(strong[i].cpu().numpy())
            first = int(strong[:i].sum())
            refine = self._refine(kept[first: first + len(targets)], [decoded[(i, k)] for k in targets],
                                  gain[i, targets], step, q[i], prev[i]) if len(targets) else ([], [], [], [])
            entries = [(int(targets[j]), a) for j, a in refine[0]]
            side = pack_side(mean[i], basis[i], amp[i], coded[i], entries)
            z_all = np.concatenate([zs[i, ks], *refine[1]])
            table = np.broadcast_to(np.arange(self.config.nh).reshape(1, -1, 1, 1), z_all.shape)
            crc = symbol_crc([np.frombuffer(side, np.uint8), z_all, *symbols[i], *refine[2]], seeds[i])
            streams = {"spectral": side, "z": encode_symbols(z_all, table, self.tables["z"]),
                       "y": _join(segments[i] + refine[3])}
            out.append(FramePayload(streams, crc, seeds[i]))
        return out

    @staticmethod
    def _scaled(u: Tensor, gain: Tensor, step: float) -> Tensor:
        """Components (N, 1, H, W) float32 divided by step x gain (exact dyadic factors), in place."""
        return u.div_((step * gain).view(-1, 1, 1, 1).to(torch.float32))

    def _refine(self, comps: Tensor, y_hat: list[Tensor], gain: Tensor, step: float, q: Tensor, prev: Tensor
                ) -> tuple[list[tuple[int, int]], list[np.ndarray], list[np.ndarray], list[bytes]]:
        """Refinements of one frame's strong components ``comps`` (N, H, W) from their decoded
        latents: the residual of each whose amplitude reaches 2**REFINE_TO steps, coded like a
        component after the others. Returns ([(index among comps, amplitude)], [z], [symbols],
        [latent segments]): the z of all refinements are one array."""
        hgt, wid = comps.shape[-2:]
        values = self.synthesis(torch.stack(y_hat), hgt, wid)[:, 0].to(torch.float64)
        residual = comps.to(torch.float64) - torch.floor(values * (gain * step).view(-1, 1, 1) + 0.5)
        amp = torch.floor(AMP_STEPS * torch.log2(residual.pow(2).mean((1, 2)).sqrt().clamp_min(1e-6)) + 0.5)
        amp = amp.clamp(-128, 127)
        rel = self.relative(amp[None], q.view(1))[0]
        picked = [j for j in range(len(amp)) if float(rel[j]) >= REFINE_TO]
        if not picked:
            return [], [], [], []
        r_gain = component_gain(rel[picked])
        u = residual[picked, None].to(torch.float32)
        y = self.analysis(self._scaled(u, r_gain, step))
        z = torch.floor(self.h_a(y) + 0.5)
        feat = self._features(z, y.shape[-2:], exact=True)
        y = y * r_gain.view(-1, 1, 1, 1).to(torch.float32)
        symbols, segments = [], []
        for j in range(len(picked)):
            idx, mu = self._params(feat[j: j + 1], prev[None], rel[picked[j]].view(1), exact=True)
            sym = torch.floor(y[j: j + 1] - mu + 0.5)
            check_symbol_range([sym])
            prev = ((sym + mu) / r_gain[j])[0]
            ys = sym[0].long().cpu().numpy()
            symbols.append(ys)
            segments.append(encode_symbols(ys, idx[0].cpu().numpy(), self.tables["y"]))
        return [(j, int(amp[j])) for j in picked], [z.long().cpu().numpy()], symbols, segments

    @torch.no_grad()
    def decompress(self, payloads: list[FramePayload], quality: int, height: int, width: int,
                   sink: Sink | None = None, bands: int | None = None) -> Tensor | None:
        """Decode payloads of :meth:`compress` (frames of ``bands`` bands) into (B, C, height, width)
        float64 digital numbers, or piece by piece into ``sink``. Components decode and go through
        the synthesis one at a time; the symbols' checksums are checked before any output."""
        if bands is None:
            raise InputError("tec-pc needs the band count to decode")
        b, c = len(payloads), bands
        q = self.quality_index(quality, b)
        amp = torch.stack([side_amplitudes(p.streams["spectral"], c) for p in payloads]).to(self.device)
        rel = self.relative(amp, q)
        coded, gain = self.coded(rel), component_gain(rel)
        sides = [unpack_side(p.streams["spectral"], c, coded[i]) for i, p in enumerate(payloads)]
        mean, basis = (torch.stack([s[j] for s in sides]).to(self.device) for j in range(2))
        hp, wp = self.padded_size(height, width)
        hw = (hp // self.stride, wp // self.stride)
        zhw = ((hw[0] + 3) // 4, (hw[1] + 3) // 4)
        nh, m = self.config.nh, self.config.m
        z = torch.zeros((b, c, nh, *zhw), dtype=torch.float64, device=self.device)
        crcs, segments, z_refine = [], [], []
        for i, p in enumerate(payloads):
            ks, n_ref = coded[i].nonzero().flatten(), len(sides[i][2])
            table = np.broadcast_to(np.arange(nh).reshape(1, -1, 1, 1), (len(ks) + n_ref, nh, *zhw))
            zi = decode_symbols(p.streams["z"], table, self.tables["z"])
            z[i, ks] = torch.from_numpy(zi[: len(ks)].astype(np.float64)).to(self.device)
            z_refine.append(torch.from_numpy(zi[len(ks):].astype(np.float64)).to(self.device))
            crcs.append(symbol_crc([np.frombuffer(p.streams["spectral"], np.uint8), zi], p.seed))
            segments.append(_split(p.streams["y"], len(ks) + n_ref))
        step = float(self.steps[q[0]])
        comps = torch.zeros((b, c, height, width), dtype=torch.float32, device=self.device)
        prev = torch.zeros((b, m, *hw), device=self.device)
        for k in range(c):
            idx, mu = self._params(self._features(z[:, k], hw, exact=True), prev, rel[:, k], exact=True)
            ids = idx.cpu().numpy()
            syms = np.zeros((b, m, *hw), np.int64)
            frames = np.flatnonzero(coded[:, k].cpu().numpy())
            for i in frames:
                syms[i] = decode_symbols(segments[i][int(coded[i, :k].sum())], ids[i], self.tables["y"])
                crcs[i] = symbol_crc([syms[i]], crcs[i])
            keep = coded[:, k].view(-1, 1, 1, 1)
            sym = torch.from_numpy(syms).to(self.device).float()
            prev = torch.where(keep, (sym + mu) / gain[:, k, None, None, None], torch.zeros_like(mu))
            if len(frames):
                self._synthesise(prev[frames], comps[:, k], frames, gain[frames, k] * step, height, width)
        for i, (_, _, refinements) in enumerate(sides):
            chain = prev[i]
            if refinements:
                feat = self._features(z_refine[i], hw, exact=True)
                first = int(coded[i].sum())
                for j, (k, a) in enumerate(refinements):
                    r_rel = self.relative(torch.tensor([[float(a)]], dtype=torch.float64, device=self.device),
                                          q[i].view(1))[0]
                    r_gain = component_gain(r_rel)
                    idx, mu = self._params(feat[j: j + 1], chain[None], r_rel, exact=True)
                    sym = decode_symbols(segments[i][first + j], idx[0].cpu().numpy(), self.tables["y"])
                    crcs[i] = symbol_crc([sym], crcs[i])
                    chain = ((torch.from_numpy(sym).to(self.device).float()[None] + mu) / r_gain)[0]
                    self._synthesise(chain[None], comps[:, k], np.array([i]), r_gain * step, height, width, add=True)
            check_crc(crcs[i], payloads[i], i)
        return self._bands(comps, mean, basis, sink)

    def _synthesise(self, y_hat: Tensor, target: Tensor, frames: np.ndarray, scale: Tensor, height: int,
                    width: int, add: bool = False) -> None:
        """The exact synthesis of one component's normalised latents ``y_hat`` (N, m, h, w) times
        ``scale`` (gain x step, dyadic) rounded to integers, into (or, with ``add``, onto)
        ``target[frames]`` (float32)."""
        factor = scale.to(torch.float64)
        index = torch.from_numpy(frames).to(target.device)

        def put(part: slice, rows: slice, cols: slice, piece: Tensor) -> None:
            # integers (below 2**24, exact in float32): the product of dyadic numbers is exact
            value = torch.floor(piece[:, 0].to(torch.float64) * factor[part, None, None] + 0.5).to(torch.float32)
            if add:
                value += target[index[part], rows, cols]
            target[index[part], rows, cols] = value

        self.synthesis(y_hat, height, width, put)

    def _bands(self, comps: Tensor, mean: Tensor, basis: Tensor, sink: Sink | None) -> Tensor | None:
        """Bands from integer components (float32 (B, C, H, W)): the inverse KLT, in row strips."""
        b, c, height, width = comps.shape
        out = None if sink is not None else torch.empty((b, c, height, width), dtype=torch.float64, device=self.device)
        strip = max(1, PASS_PIXELS // max(1, b * width))
        for r in range(0, height, strip):
            rows = slice(r, min(r + strip, height))
            x = spectral_inverse(comps[:, :, rows].to(torch.float64), mean, basis)
            if sink is None:
                out[:, :, rows] = x
            else:
                sink(slice(0, b), rows, slice(0, width), x)
        return out

    @torch.no_grad()
    def reconstruct(self, x: Tensor, quality: int) -> Tensor:
        return self.decompress(self.compress(x, quality), quality, *x.shape[-2:], bands=x.shape[1])

    def export_tables(self) -> None:
        self.tables = {"z": self.prior.tables(), "y": self.gaussian.tables()}


def component_gain(rel: Tensor) -> Tensor:
    """The power-of-two gain of components of relative amplitude ``rel`` (see :data:`MAX_GAIN_LOG`)."""
    return 2.0 ** torch.floor(rel).clamp(0, MAX_GAIN_LOG)


def _join(parts: list[bytes]) -> bytes:
    """Length-prefixed segments (u32 each) in one stream."""
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def _split(data: bytes, n: int) -> list[bytes]:
    """Inverse of :func:`_join`, expecting ``n`` segments."""
    parts, pos = [], 0
    for _ in range(n):
        if pos + 4 > len(data):
            raise CorruptBlobError("latent stream is truncated")
        (size,) = struct.unpack_from("<I", data, pos)
        if pos + 4 + size > len(data):
            raise CorruptBlobError("latent stream is truncated")
        parts.append(data[pos + 4: pos + 4 + size])
        pos += 4 + size
    if pos != len(data):
        raise CorruptBlobError("latent stream has trailing bytes")
    return parts
