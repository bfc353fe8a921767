"""tec-hx against the classical pipelines it must beat, its ablations, its speed and its headers.

    python benchmarks/hybrid.py [DATA] [--out benchmarks/results] [--quick] [--sets NAME ...]

DATA: ``shared/data/s2`` or a corpus file (default ``../shared/data/s2``); the sets are the held-out
ones of :data:`tcube.train.corpus.HOLDOUT` (terracodec place 0080717, the WorldCereal series at
10 m and 20 m, the cloudy s2cloudless L1C tile, none used to train tec-hx's predictor). Side by side
in one run, real byte lengths, every date coded on its own:

- ``tec-hx`` through :func:`tcube.encode` (container included), and three ablations of the same
  model on its frame payloads: the learned transfer (``hx-learned``), the per-date least-squares
  transfer with every coefficient sent (``hx-ls``: the predictor set to zero) and the HEVC streams
  alone (``hx-off``);
- ``x265-intra-pca`` at presets medium and veryslow, ``jpeg2000-pca``;
- the alternative engine: the same exact KLT with its components as the frames of one SVT-AV1
  stream (``klt-svtav1``: 10-bit 4:2:0 luma, all intra, preset 8, tune PSNR, the side information
  of tec-hx counted), against the HEVC streams alone (``hx-off``).

Writes ``hybrid_<set>.csv/.md/.png`` (BD-rates over 35-50 dB, 10k and full range) and
``hybrid_speed.csv/.md``: per x265 preset, encode and decode MB/s of raw uint16 on 256 x 256 x 12
chunks at quality 8 (2 threads, JPEG2000 timed in the same run) beside its BD-rate; and
``hybrid_headers.md``: the share of headers (container, HEVC parameter sets, NAL unit framing) and
side information in blobs of 64 x 64 x 4 chunks at quality 8.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import tcube
from tcube.baselines import BASELINES
from tcube.baselines.base import pack, unpack
from tcube.bench import BD_RANGE, QUALITIES, QUICK_QUALITIES, Codec, codecs, curves, plot, run
from tcube.metrics import bd_rate
from tcube.models import FramePayload, hevc, load_model
from tcube.models.hx import HybridCodec, HybridConfig, Side, _crc
from tcube.models.pc import spectral_fit

sys.path.insert(0, str(Path(__file__).parent))
from common import mb_per_s, write_rows  # noqa: E402
from heldout import held_out_sets  # noqa: E402

BASELINE_NAMES = ["x265-intra-pca", "x265-intra-pca-veryslow", "jpeg2000-pca"]
#: Rows of the BD tables: (codec, reference).
COMPARISONS = [("tec-hx", "x265-intra-pca"), ("tec-hx", "x265-intra-pca-veryslow"), ("tec-hx", "jpeg2000-pca"),
               ("hx-off", "hx-learned"), ("hx-ls", "hx-learned"), ("hx-off", "hx-ls"), ("klt-svtav1", "hx-off")]
#: SVT-AV1 CRFs of the engine comparison (all-intra, 10 bit).
SVTAV1_CRFS = (60, 55, 50, 45, 40, 35, 30, 25, 20, 15, 10, 5)


def variant(kind: str, preset: str = "medium") -> HybridCodec:
    """tec-hx as shipped (``learned``), with its predictor zeroed (``ls``) or without the transfer (``off``),
    coding each date on its own (this benchmark measures the intra codec; dates over time: dense.py)."""
    shipped = load_model("tec-hx", "cpu")
    model = HybridCodec(HybridConfig(arch="hx", steps=list(shipped.config.steps)))
    if kind == "learned":
        model.predictor.copy_(shipped.predictor)
    model.transfer = kind != "off"
    model.preset = preset
    model.over_time = False
    return model


def payload_codec(name: str, model: HybridCodec, qualities: tuple) -> Codec:
    """A codec of ``model``'s frame payloads alone (side information and streams, no container)."""

    def encode(cube: np.ndarray, q: float) -> bytes:
        payloads = model.compress(torch.from_numpy(cube.astype(np.float64)), int(q))
        return pack([bytes([int(q)])] + [s for p in payloads for s in (p.streams["side"], p.streams["hevc"])])

    def decode(blob: bytes, shape: tuple) -> np.ndarray:
        parts = unpack(blob)
        q, rest = parts[0][0], parts[1:]
        payloads = []
        for side, stream in zip(rest[::2], rest[1::2]):
            streams = {"side": side, "hevc": stream}
            payloads.append(FramePayload(streams, _crc(streams, 0), 0))
        out = model.decompress(payloads, q, shape[-2], shape[-1], bands=shape[1]).numpy()
        return np.clip(np.floor(out + 0.5), 0, 65535).astype(np.uint16)

    return Codec(name, qualities, encode, decode)


def _svtav1(planes: np.ndarray, crf: int) -> bytes:
    import av

    os.environ.setdefault("SVT_LOG", "1")  # errors only
    h, w = planes.shape[1:]
    hp, wp = h + h % 2, w + w % 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="ivf") as container:
        stream = container.add_stream("libsvtav1", rate=1)
        stream.width, stream.height, stream.pix_fmt = wp, hp, "yuv420p10le"
        stream.options = {"crf": str(crf), "preset": "8", "svtav1-params": "keyint=1:tune=1"}
        for plane in planes:
            frame = av.VideoFrame(wp, hp, "yuv420p10le")
            luma = np.pad(plane, [(0, hp - h), (0, wp - w)], mode="edge").astype(np.uint16)
            for target, values in zip(frame.planes, (luma, None, None)):
                rows = np.full((target.height, target.line_size // 2), 512, np.uint16)  # grey chroma
                if values is not None:
                    rows[:, : values.shape[1]] = values
                target.update(rows.tobytes())
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _svtav1_decode(data: bytes, h: int, w: int) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data), format="ivf") as container:
        return np.stack([np.frombuffer(f.planes[0], np.uint16).reshape(-1, f.planes[0].line_size // 2)[:h, :w]
                         for f in container.decode(video=0)])


def svtav1_codec() -> Codec:
    """The KLT of tec-hx with SVT-AV1 as the engine: components in 10-bit planes (the finest
    power-of-two step that holds them), one all-intra stream per date; side information as tec-hx
    sends it without the transfer."""

    def encode(cube: np.ndarray, crf: float) -> bytes:
        parts = []
        for frame in cube.astype(np.float64):
            mean, basis, comps, _ = spectral_fit(torch.from_numpy(frame[None]), 10)
            comps = comps[0].double().numpy()
            spread = float((comps.reshape(len(comps), -1).max(1) - comps.reshape(len(comps), -1).min(1)).max())
            n = math.ceil(math.log2(max(spread, 1e-9) / 1022))
            scaled = np.floor(comps / 2.0**n + 0.5).astype(np.int64)
            low = scaled.reshape(len(comps), -1).min(1)
            side = Side(n, 0, 10, mean[0].numpy().astype(np.int64), basis[0].numpy().astype(np.int64), low,
                        [None] * len(comps)).pack()
            parts += [side, _svtav1(scaled - low[:, None, None], int(crf))]
        return pack(parts)

    def decode(blob: bytes, shape: tuple) -> np.ndarray:
        parts = unpack(blob)
        out = np.empty(shape, np.uint16)
        for t in range(shape[0]):
            side = Side.unpack(parts[2 * t], shape[1])
            levels = _svtav1_decode(parts[2 * t + 1], *shape[2:]).astype(np.float64)
            comps = (levels + side.low[:, None, None]) * 2.0**side.plane_exp
            bands = side.basis.T @ comps.reshape(len(comps), -1) / 2.0**side.frac + side.mean[:, None]
            out[t] = np.clip(np.floor(bands + 0.5), 0, 65535).reshape(shape[1:])
        return out

    return Codec("klt-svtav1", SVTAV1_CRFS, encode, decode)


def bd_table(rows: list[dict]) -> list[dict]:
    out = []
    for metric in ("psnr_10k", "psnr_full"):
        cv = curves(rows, metric)
        for a, b in COMPARISONS:
            if a in cv and b in cv:
                out.append({"metric": metric, "codec": a, "reference": b,
                            "bd_rate_percent": round(bd_rate(*cv[a], *cv[b], BD_RANGE), 2)})
    return out


def rd_run(name: str, cube: np.ndarray, quick: bool, out: Path) -> list[dict]:
    qualities = QUICK_QUALITIES if quick else QUALITIES
    suite = codecs(["tec-hx"], BASELINE_NAMES, quick)
    suite += [payload_codec(f"hx-{kind}", variant(kind), qualities) for kind in ("learned", "ls", "off")]
    suite.append(svtav1_codec())
    rows: list[dict] = []
    for codec in suite:  # the CSV grows codec by codec: a failure keeps what was measured
        rows += run([(name, cube)], [codec])
        write_rows(rows, out / f"hybrid_{name}.csv")
        print(f"{name}: {codec.name} done", flush=True)
    table = bd_table(rows)
    lines = [f"# tec-hx on held-out {name} {cube.shape} (BD-rate over {BD_RANGE[0]:g}-{BD_RANGE[1]:g} dB; "
             "negative: fewer bits than the reference)", "", "| PSNR | codec | reference | BD-rate % |",
             "|---|---|---|---|", *[f"| {r['metric']} | {r['codec']} | {r['reference']} | {r['bd_rate_percent']} |"
                                    for r in table], ""]
    (out / f"hybrid_{name}.md").write_text("\n".join(lines))
    plot(rows, out / f"hybrid_{name}.png", f"held out: {name} {cube.shape}")
    print("\n".join(lines))
    return rows


def _preset_speed(model: HybridCodec, chunks: np.ndarray) -> tuple[float, float]:
    """Encode and decode MB/s of raw uint16 of ``model`` at quality 8 on ``chunks``."""
    x = torch.from_numpy(chunks.astype(np.float64))
    started = time.perf_counter()
    payloads = model.compress(x, 8)
    enc = chunks.size * 2 / 1e6 / (time.perf_counter() - started)
    return enc, mb_per_s(chunks, lambda: model.decompress(payloads, 8, *chunks.shape[-2:], bands=chunks.shape[1]))


def speed_run(chunks: np.ndarray, reference: np.ndarray, out: Path, quick: bool) -> None:
    """Speeds per preset on ``chunks`` (N, 12, 256, 256) and BD-rate per preset on ``reference``."""
    torch.set_num_threads(2)
    rows = []
    j2k = BASELINES["jpeg2000-pca"]
    rows.append({"codec": "jpeg2000-pca", "preset": "", "encode_mb_s": round(mb_per_s(chunks, lambda: [
        j2k.encode(c[None], j2k.settings[len(j2k.settings) // 2]) for c in chunks]), 2),
        "decode_mb_s": round(mb_per_s(chunks, lambda: [j2k.decode(b, (1, *c.shape)) for b, c in zip(
            [j2k.encode(c[None], j2k.settings[len(j2k.settings) // 2]) for c in chunks], chunks)]), 2),
        "bd_rate_vs_x265_intra_pca_medium": ""})
    ref_rows = run([("reference", reference)], codecs([], ["x265-intra-pca"], quick))
    presets = ("ultrafast", "fast", "medium", "veryslow")
    if not quick:
        presets = ("ultrafast", "veryfast", "fast", "medium", "slow", "veryslow")
    qualities = QUICK_QUALITIES if quick else QUALITIES
    for preset in presets:
        model = variant("learned", preset)
        enc, dec = _preset_speed(model, chunks)
        rd = run([("reference", reference)], [payload_codec("hx", model, qualities)])
        cv, ref = curves(rd), curves(ref_rows)["x265-intra-pca"]
        rows.append({"codec": "tec-hx", "preset": preset, "encode_mb_s": round(enc, 2), "decode_mb_s": round(dec, 2),
                     "bd_rate_vs_x265_intra_pca_medium": round(bd_rate(*cv["hx"], *ref, BD_RANGE), 2)})
        print(rows[-1], flush=True)
    write_rows(rows, out / "hybrid_speed.csv")
    lines = ["# tec-hx speed (2 threads, raw uint16 MB/s, quality 8, 256 x 256 x 12 chunks)", "",
             "| codec | x265 preset | encode MB/s | decode MB/s | BD-rate vs x265-intra-pca medium (10k) |",
             "|---|---|---|---|---|",
             *[f"| {r['codec']} | {r['preset']} | {r['encode_mb_s']} | {r['decode_mb_s']} | "
               f"{r.get('bd_rate_vs_x265_intra_pca_medium', '')} |" for r in rows], ""]
    (out / "hybrid_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


def header_run(small: np.ndarray, out: Path) -> None:
    """Bytes of headers (container, HEVC parameter sets, NAL unit lengths and headers) and side
    information in blobs of ``small`` (N, 4, 64, 64) at quality 8."""
    blobs = [tcube.bitstream.with_position(tcube.encode(c[None], model="tec-hx", quality=8), (t, 0, 0, 0))
             for t, c in enumerate(small)]  # as the zarr codecs store chunks of (1, 4, 64, 64)
    total = sum(map(len, blobs))
    frames = [f for b in blobs for f in tcube.bitstream.unpack(b).frames]
    side = sum(len(f["side"]) for f in frames)
    container = total - sum(len(v) for f in frames for v in f.values())
    parameter_sets, framing = np.sum([hevc.overhead(f["hevc"]) for f in frames], axis=0)  # one tile each
    headers = container + parameter_sets + framing
    lines = ["# tec-hx headers in small chunks", "",
             f"Headers of {len(small)} zarr chunks of 1 x 4 x 64 x 64 at quality 8 (one blob each, bound to its "
             f"position): {total} bytes in all; "
             f"headers {headers} ({100 * headers / total:.1f} %): container {container} "
             f"({100 * container / total:.1f} %), HEVC parameter sets {parameter_sets} "
             f"({100 * parameter_sets / total:.1f} %), NAL unit lengths and headers {framing} "
             f"({100 * framing / total:.1f} %). Side information (KLT, plane offsets, detail coefficients): {side} "
             f"({100 * side / total:.1f} %).", ""]
    (out / "hybrid_headers.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/s2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--quick", action="store_true", help="4 qualities, 5 baseline settings, 4 presets")
    parser.add_argument("--sets", nargs="*",
                        help="only these sets (and the speed or header runs only when 'speed' or 'headers' is named)")
    args = parser.parse_args()
    out = Path(args.out)
    sets = held_out_sets(args.data, dates=8)
    for name, cube in sets.items():
        if not args.sets or name in args.sets:
            rd_run(name, cube, args.quick, out)
    if not args.sets or "speed" in args.sets:
        place = sets["0080717"]
        speed_run(place[:, :, :256, :256], place, out, args.quick)
    if not args.sets or "headers" in args.sets:
        header_run(sets["worldcereal_4bands"], out)


if __name__ == "__main__":
    main()
