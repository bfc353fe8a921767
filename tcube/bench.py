"""Benchmark suite: every tcube model and every classical baseline on the same cubes, side by side.

Writes ``rd.csv`` (codec, setting, cube, bytes, bpppb, psnr_10k, psnr_full, ssim, encode_s,
decode_s: real byte lengths, PSNR per REFERENCE.md), ``rd.png`` (PSNR vs bpppb, one line per codec)
and ``rd.md`` (bpppb at 35/40/45/50 dB, BD-rate of each tcube model against each baseline,
encode/decode MB/s, and the data each model was trained on).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

import tcube
from tcube.baselines import BASELINES, Baseline
from tcube.metrics import bd_interval, bd_rate, bpppb, psnr_10k, psnr_full, rate_at_psnr, ssim, timed
from tcube.models.registry import weights_path
from tcube.readers import load_cubes, place_name

TARGETS = (35.0, 40.0, 45.0, 50.0)
#: PSNR interval (dB) of the second BD-rate table.
BD_RANGE = (35.0, 50.0)
QUALITIES = tuple(range(1, 17))
QUICK_QUALITIES = (1, 6, 11, 16)
QUICK_SETTINGS = 5
#: Settings of the quality modes in the suite (``modes=True``): PSNR targets (dB, 10k) and bounds (DN).
PSNR_TARGETS = (35.0, 40.0, 45.0, 50.0, 55.0)
MAX_ERRORS = (64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0)
#: Names of the mode codecs in the suite, and the model each runs.
MODE_CODECS = {"tec-pc-psnr": "tec-pc", "tec-pc-max_error": "tec-pc"}
FIELDS = ("codec", "setting", "cube", "bytes", "bpppb", "psnr_10k", "psnr_full", "ssim", "encode_s", "decode_s")


@dataclass(frozen=True)
class Codec:
    """What the suite runs: a name, settings, ``encode(cube, setting) -> bytes``, ``decode(blob, shape)``."""

    name: str
    settings: tuple
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes, tuple], np.ndarray]



def _tcube_codec(model: str, qualities: tuple) -> Codec:
    return Codec(model, qualities, lambda cube, q: tcube.encode(cube, model=model, quality=int(q)),
                 lambda blob, shape: tcube.decode(blob))


def _spread(settings: tuple, n: int) -> tuple:
    if len(settings) <= n:
        return settings
    return tuple(settings[int(round(i))] for i in np.linspace(0, len(settings) - 1, n))


def codecs(models: list[str] | None = None, baselines: list[str] | None = None, quick: bool = False,
           modes: bool = False) -> list[Codec]:
    """tcube models (all qualities, or 4 in ``quick`` mode), with ``modes`` the target-PSNR and
    error-bounded modes (:data:`MODE_CODECS`), and baselines (their sweeps, or 5 settings)."""
    out = [_tcube_codec(m, QUICK_QUALITIES if quick else QUALITIES) for m in (models or tcube.list_models())]
    if modes:
        out += [Codec("tec-pc-psnr", _spread(PSNR_TARGETS, QUICK_SETTINGS) if quick else PSNR_TARGETS,
                      lambda cube, t: tcube.encode(cube, psnr=float(t)), lambda blob, shape: tcube.decode(blob)),
                Codec("tec-pc-max_error", _spread(MAX_ERRORS, QUICK_SETTINGS) if quick else MAX_ERRORS,
                      lambda cube, e: tcube.encode(cube, max_error=int(e)), lambda blob, shape: tcube.decode(blob))]
    for name in baselines if baselines is not None else list(BASELINES):
        b: Baseline = BASELINES[name]
        out.append(Codec(b.name, _spread(b.settings, QUICK_SETTINGS) if quick else b.settings, b.encode, b.decode))
    return out


def measure(codec: Codec, setting: float, name: str, cube: np.ndarray) -> dict:
    """One row: real bytes, rate, PSNR (10k and full), SSIM and timings of one setting on one cube."""
    blob, t_enc = timed(codec.encode, cube, setting)
    decoded, t_dec = timed(codec.decode, blob, cube.shape)
    return {"codec": codec.name, "setting": setting, "cube": name, "bytes": len(blob),
            "bpppb": bpppb(len(blob), cube.shape), "psnr_10k": psnr_10k(cube, decoded),
            "psnr_full": psnr_full(cube, decoded), "ssim": ssim(cube, decoded), "encode_s": t_enc, "decode_s": t_dec}


def run(cubes: list[tuple[str, np.ndarray]], suite: list[Codec],
        progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Every codec at every setting on every cube."""
    jobs = [(c, s, n, cube) for n, cube in cubes for c in suite for s in c.settings]
    rows = []
    for done, job in enumerate(jobs, 1):
        rows.append(measure(*job))
        if progress:
            progress(done, len(jobs))
    return rows


def curves(rows: list[dict], metric: str = "psnr_10k") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per codec, per setting over all cubes: (bpppb = total bits / total samples, mean PSNR)."""
    out = {}
    for codec in dict.fromkeys(r["codec"] for r in rows):
        settings = dict.fromkeys(r["setting"] for r in rows if r["codec"] == codec)
        rates, psnrs = [], []
        for s in settings:
            rs = [r for r in rows if r["codec"] == codec and r["setting"] == s]
            bits = sum(8 * r["bytes"] for r in rs)
            samples = sum(8 * r["bytes"] / r["bpppb"] for r in rs)
            rates.append(bits / samples)
            psnrs.append(float(np.mean([r[metric] for r in rs])))
        out[codec] = (np.array(rates), np.array(psnrs))
    return out


def _mbps(rows: list[dict], key: str) -> float:
    """Median MB/s of raw uint16 over the settings, samples counted from bytes / bpppb."""
    speeds = [(r["bytes"] * 8 / r["bpppb"]) * 2 / 1e6 / max(r[key], 1e-9) for r in rows]
    return float(np.median(speeds))


@cache
def training_data(model: str) -> str:
    """What ``model`` (or a mode codec of :data:`MODE_CODECS`, or a variant ``<model>/<name>`` of a
    benchmark) was trained on, from its weights' metadata (file names, folder shortened)."""
    from safetensors import safe_open

    with safe_open(str(weights_path(MODE_CODECS.get(model, model.split("/")[0]))), "np") as f:
        meta = f.metadata() or {}
    files = json.loads(meta.get("train_files", "[]"))
    sets: dict[str, list[str]] = {}
    for f in files:
        p = Path(f)
        sets.setdefault(p.parent.name, []).append(place_name(p) if p.suffix else p.name)
    parts = [f"{folder} ({len(dict.fromkeys(v))}: {', '.join(dict.fromkeys(v))})" for folder, v in sets.items()]
    return "; ".join(parts) + (f"; held out: {meta['holdout']}" if meta.get("holdout") else "")


def _trained_on(model: str, cube: str) -> bool:
    """Whether ``cube`` (a place, or one of its dates ``<place>_<n>``) is among the sources
    :func:`training_data` lists for ``model`` (its held-out list excluded).

    Examples
    --------
    >>> _trained_on("tec-pc", "ssl4eos12_val_0173706"), _trained_on("tec-pc", "ssl4eos12_val_0080717")
    (True, False)
    """
    trained = training_data(model).split("held out:")[0]
    return re.search(rf"(?<![\w/]){re.escape(cube)}(?:_\d+)?(?=[,);\s]|$)", trained) is not None


def report(rows: list[dict], models: list[str]) -> str:
    """Markdown: rates at target PSNRs, BD-rates, speeds, training data."""
    lines = []
    for metric in ("psnr_10k", "psnr_full"):
        cv = curves(rows, metric)
        lines += [f"### bpppb needed for a PSNR ({metric}), all cubes", "",
                  "| codec | " + " | ".join(f"{t:g} dB" for t in TARGETS) + " | encode MB/s | decode MB/s |",
                  "|---|" + "---|" * (len(TARGETS) + 2)]
        for codec, (rates, psnrs) in cv.items():
            rs = [r for r in rows if r["codec"] == codec]
            cells = [f"{v:.4f}" if np.isfinite(v) else "not reached"
                     for v in (rate_at_psnr(rates, psnrs, t) for t in TARGETS)]
            lines.append(f"| {codec} | " + " | ".join(cells) + f" | {_mbps(rs, 'encode_s'):.1f} | "
                         f"{_mbps(rs, 'decode_s'):.1f} |")
        lines.append("")
        lossy = [c for c in cv if c not in models and not BASELINES[c].lossless]
        spans = ((None, "the PSNR range both curves cover"),
                 (BD_RANGE, f"{BD_RANGE[0]:g}-{BD_RANGE[1]:g} dB, where both curves reach"))
        for span, label in spans:
            lines += [f"### BD-rate of each tcube model against each baseline ({metric}, %, negative: tcube needs "
                      f"fewer bits; over {label}; the interval in brackets)", "",
                      "| model | " + " | ".join(lossy) + " |", "|---|" + "---|" * len(lossy)]
            for m in models:
                cells = []
                for b in lossy:
                    v, (lo, hi) = bd_rate(*cv[m], *cv[b], span), bd_interval(cv[m][1], cv[b][1], span)
                    cells.append(f"{v:+.1f} ({lo:.1f}-{hi:.1f})" if np.isfinite(v) else "no overlap")
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["### Cubes and training data", ""]
    for cube in dict.fromkeys(r["cube"] for r in rows):
        seen = [m for m in models if _trained_on(m, cube)]
        lines.append(f"- `{cube}`: " + (f"in the training data of {', '.join(seen)}" if seen else
                                         "not used for training"))
    lines += [f"- {m} was trained on: {training_data(m)}" if m not in MODE_CODECS else f"- {m} runs {MODE_CODECS[m]}"
              for m in models]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """PSNR (10k) against bpppb, log x, one line per codec (lossless codecs as points at the top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for codec, (rates, psnrs) in curves(rows).items():
        finite = np.isfinite(psnrs)
        if not finite.any():
            continue
        order = np.argsort(rates[finite])
        style = "o-" if codec in tcube.list_models() else ".--"
        ax.plot(rates[finite][order], psnrs[finite][order], style, label=codec, lw=2 if style == "o-" else 1)
    ax.set(xscale="log", xlabel="bits per pixel per band (real bytes)", ylabel="PSNR, 10k convention (dB)",
           title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(rows: list[dict], out: Path, name: str, models: list[str], title: str) -> str:
    """CSV, PNG and Markdown report into ``out``; returns the report."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / f"{name}.png", title)
    text = report(rows, models)
    (out / f"{name}.md").write_text(text + "\n")
    return text


def benchmark(paths: list[str | Path], out: str | Path, *, name: str = "rd", holdout: str | None = None,
              models: list[str] | None = None, baselines: list[str] | None = None, quick: bool = False,
              crop: int | None = None, modes: bool = False, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the suite on the cubes under ``paths`` and write ``name``.csv/.png/.md into ``out``.

    ``crop`` keeps the top-left ``crop`` x ``crop`` pixels of every cube (for quick runs); ``modes``
    adds tec-pc's target-PSNR and error-bounded modes as codecs of their own.
    """
    cubes = load_cubes(paths, holdout)
    if crop:
        cubes = [(n, np.ascontiguousarray(c[..., :crop, :crop])) for n, c in cubes]
    models = models or tcube.list_models()
    suite = codecs(models, baselines, quick, modes)
    rows = run(cubes, suite, progress)
    shapes = ", ".join(f"{n} {c.shape}" for n, c in cubes)
    return write(rows, Path(out), name, models + (list(MODE_CODECS) if modes else []), f"{name}: {shapes}"[:110])


__all__ = ["Codec", "benchmark", "codecs", "curves", "measure", "report", "run", "training_data"]
