"""Command line: ``tcube compress | recompress | decompress | info | preview | bench | demo | train``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tcube.defaults import BOUNDED_MODEL, DEFAULT_MODEL, DEFAULT_QUALITY
from tcube.errors import (
    BitstreamError,
    InputError,
    NotATcubeBlobError,
    TcubeError,
    UnfinishedStoreError,
    UnknownModelError,
)

if TYPE_CHECKING:
    import xarray

    from tcube.settings import Settings

#: Rules of a job that stores every variable as it is (decompressing to plain zarr).
LOSSLESS = {"*": {"lossless": True}}

#: Exit codes: 0 success, 2 bad usage (argparse), 3 bad input, 4 damaged or unfinished data, 1 any other tcube
#: error, 130 interrupted (Ctrl-C), 141 the reader of the output went away (a closed pipe, as SIGPIPE reports it).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT, EXIT_DAMAGED, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 3, 4, 130, 141
EXIT_CODES = """exit codes: 0 success, 2 bad usage, 3 bad input (unknown file, model, quality, rule, band layout,
an output that is a source or would replace something else, a file that is not a tcube blob), 4 damaged data
(corrupt or truncated blob or chunk) or an unfinished store, 1 any other tcube error, 130 interrupted (Ctrl-C),
141 the output pipe was closed (e.g. by head)."""


class Progress:
    """A one-line progress bar on stderr (silent when ``enabled`` is false)."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label, self.enabled, self.start = label, enabled, time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        end = "\n" if done >= total else ""
        print(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
              f"{elapsed:5.1f}s eta {eta:5.1f}s", end=end, file=sys.stderr, flush=True)


def _emit(payload: object, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if as_json else text)


def _cmd_train(args: argparse.Namespace) -> int:
    from tcube.train import TrainConfig, train

    cfg = TrainConfig(arch=args.arch, name=args.name or f"tec-{args.arch}", data=args.data, holdout=args.holdout,
                      out=args.out, steps=args.steps, epoch_steps=args.epoch_steps, batch=args.batch,
                      crop=args.crop, lr=args.lr, max_minutes=args.max_minutes, threads=args.threads,
                      seed=args.seed, device=args.device, export=args.export, init=args.init,
                      model={k: v for k, v in (("widths", args.widths), ("m", args.latents), ("nh", args.hyper),
                                               ("kernels", args.kernels)) if v is not None})
    train(cfg)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tcube.demo import run_demo

    run_demo(models=args.models, qualities=args.qualities, as_json=args.json)
    return 0


def _load_rules(path: str | None) -> dict:
    if not path:
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"rules file {path}: {exc}") from exc


def _parallel_requested(args: argparse.Namespace) -> bool:
    return args.workers is not None or args.gpus is not None or args.scheduler is not None


def _gpu_ids(text: str) -> list[str]:
    if text == "all":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--gpus all: no CUDA GPU is visible")
        return [str(i) for i in range(torch.cuda.device_count())]
    ids = [g.strip() for g in text.split(",") if g.strip()]
    if not ids:
        raise InputError(f"--gpus takes GPU ids like 0,1 or 'all', got {text!r}")
    return ids


def _run_parallel(args: argparse.Namespace, ds: xarray.Dataset, source: tuple[str, str], rules: dict,
                  settings: Settings) -> int:
    """Run a job on a dask cluster (:func:`tcube.parallel.convert`) with the command's flags; print its report."""
    import contextlib

    from tcube import parallel

    with contextlib.ExitStack() as stack:
        client = None
        if args.scheduler:
            from distributed import Client

            client = stack.enter_context(Client(args.scheduler))
        report = parallel.convert(ds, source, args.output, rules, settings, client=client, workers=args.workers,
                                  gpus=_gpu_ids(args.gpus) if args.gpus else None, overwrite=args.overwrite,
                                  progress=Progress(args.command, not (args.json or args.quiet)))
    _emit(report.to_dict(), args.json, str(report))
    return EXIT_OK


def _cmd_recompress(args: argparse.Namespace) -> int:
    from tcube import jobs

    source = ("store", args.input)
    return _run_parallel(args, jobs.open_source(*source), source, _rules(args), _settings(args))


def _settings(args: argparse.Namespace) -> Settings:
    """The coding settings of a command's flags (decompress: the defaults and its batch)."""
    from tcube.settings import Settings

    coding = [getattr(args, k, None) for k in ("model", "quality", "max_error", "psnr")]
    bound = 0 if getattr(args, "lossless", False) else coding[2]
    return Settings.make(*coding[:2], bound, coding[3], getattr(args, "metric", "10k"), args.batch)


def _rules(args: argparse.Namespace) -> dict:
    rules = _load_rules(args.rules)
    if args.chunks:
        rules.setdefault("*", {})["chunks"] = args.chunks
    if args.scale is not None:
        rules.setdefault("*", {})["scale"] = args.scale
    return rules


def _cmd_compress(args: argparse.Namespace) -> int:
    from tcube.datasets import format_stats, store_stats
    from tcube.readers import open_dataset

    if args.append is not None:
        return _cmd_append(args)
    if _parallel_requested(args):
        if args.stats:
            raise InputError("--stats decodes the whole store in this process: not with --workers, --gpus or "
                             "--scheduler (run tcube compress --stats on a sample instead)")
        return _run_parallel(args, open_dataset(args.input), ("dataset", args.input), _rules(args), _settings(args))
    ds = open_dataset(args.input)
    summary, text = _run_serial(ds, ("dataset", args.input), args, _rules(args), _settings(args))
    if args.stats:
        summary["variables"] = store_stats(ds, args.output)
        text += "\n" + format_stats(summary["variables"])
    _emit(summary, args.json, text)
    return EXIT_OK


def _cmd_repair(args: argparse.Namespace) -> int:
    from tcube import jobs

    report = jobs.repair(args.input, Progress(args.command, not (args.json or args.quiet)))
    text = f"{args.input}: nothing to repair" if report is None else f"{args.input}: repaired; {report}"
    _emit({"input": args.input, "repaired": report is not None}, args.json, text)
    return EXIT_OK


def _cmd_append(args: argparse.Namespace) -> int:
    """``tcube compress new.nc store.zarr --append``: the new dates, coded with the store's settings."""
    from tcube import jobs
    from tcube.datasets import describe_store
    from tcube.readers import open_dataset

    coding = [f for f in ("model", "quality", "max_error", "psnr", "rules", "chunks", "scale")
              if getattr(args, f, None) is not None]
    coding += [f for f in ("lossless", "overwrite", "stats") if getattr(args, f, False)]
    if coding or _parallel_requested(args):
        raise InputError("--append codes the new dates with the store's own settings, in this process: not with "
                         f"{', '.join('--' + f.replace('_', '-') for f in coding) or 'the dask flags'}")
    start = time.perf_counter()
    ds = open_dataset(args.input)
    job = jobs.prepare_append(ds, ("dataset", args.input), args.output, args.append, batch=args.batch)
    report = jobs.run(job, ds, Progress(args.command, not (args.json or args.quiet)))
    summary = {"input": args.input, "output": args.output, "seconds": time.perf_counter() - start,
               "chunks": report.chunks, "written": report.written, "appended": int(ds.sizes[args.append]),
               **describe_store(args.output)}
    _emit(summary, args.json, _summary_text(summary) + f"\n(appended {summary['appended']} along {args.append!r})")
    return EXIT_OK


def _run_serial(ds: xarray.Dataset, source: tuple[str, str], args: argparse.Namespace, rules: dict,
                settings: Settings) -> tuple[dict, str]:
    """Run a job in this process with the command's flags; its summary (dict and text)."""
    from tcube import jobs
    from tcube.datasets import describe_store

    start = time.perf_counter()
    job = jobs.prepare(ds, source, args.output, rules, settings, overwrite=args.overwrite)
    report = jobs.run(job, ds, Progress(args.command, not (args.json or args.quiet)))
    summary = {"input": args.input, "output": args.output, "seconds": time.perf_counter() - start,
               "chunks": report.chunks, "written": report.written, **describe_store(args.output)}
    text = _summary_text(summary)
    if not report.written and report.chunks:
        text += f"\n(already complete: {report.chunks} chunks checked, nothing written)"
    return summary, text


def _summary_text(d: dict) -> str:
    lines = [f"{d['store']}: {d['stored_bytes']} bytes stored for {d['raw_bytes']} raw bytes "
             f"(ratio {d['ratio']:.1f})" + (f" in {d['seconds']:.1f} s" if "seconds" in d else "")]
    for a in d["arrays"]:
        chunks = f" chunks {'x'.join(map(str, a['chunks']))}" if a['codec'].startswith("tcube") else ""
        lines.append(f"  {a['name']:>24} {a['codec']:>28} {a['stored_bytes']:>10} B  {a['variables']}{chunks}")
    return "\n".join(lines)


def _cmd_decompress(args: argparse.Namespace) -> int:
    from dask.diagnostics import ProgressBar

    from tcube.outputs import NETCDF, check_file_output, writing_file
    from tcube.stacks import open_store

    out = Path(args.output)
    geotiff = out.suffix.lower() in (".tif", ".tiff") or (out.is_dir() and out.suffix.lower() != ".zarr")
    if out.suffix.lower() not in (".nc", ".nc4", ".zarr") and not geotiff:
        raise InputError(f"{out}: write .nc (NetCDF), .zarr (plain zarr), .tif (a Cloud-Optimized GeoTIFF) or into "
                         "an existing folder (one Cloud-Optimized GeoTIFF per date)")
    if _parallel_requested(args):
        if out.suffix.lower() != ".zarr":
            raise InputError(f"{out}: --workers, --gpus and --scheduler write plain zarr (.zarr) only")
        return _run_parallel(args, open_store(args.input), ("store", args.input), LOSSLESS, _settings(args))
    ds = open_store(args.input)
    if geotiff:
        return _decompress_geotiff(ds, args, out)
    if out.suffix.lower() == ".zarr":
        summary, text = _run_serial(ds, ("store", args.input), args, LOSSLESS, _settings(args))
        _emit(summary, args.json, text)
        return EXIT_OK
    path = check_file_output(out, NETCDF, [args.input], overwrite=args.overwrite)
    with writing_file(path) as partial:
        with ProgressBar(out=sys.stderr) if not (args.json or args.quiet) else contextlib.nullcontext():
            ds.to_netcdf(partial)
    _emit({"input": args.input, "output": str(out), "variables": list(map(str, ds.data_vars))}, args.json,
          f"{args.input} -> {out}: {len(ds.data_vars)} variables")
    return EXIT_OK


def _decompress_geotiff(ds: xarray.Dataset, args: argparse.Namespace, out: Path) -> int:
    """The store's bands as Cloud-Optimized GeoTIFFs: all written under temporary names, then renamed."""
    from tcube.geo import cog_paths, write_cogs
    from tcube.outputs import GEOTIFF, check_file_output, writing_file

    paths = [check_file_output(p, GEOTIFF, [args.input], overwrite=args.overwrite)
             for p in cog_paths(ds, out, Path(args.input).stem)]
    with contextlib.ExitStack() as stack:
        partials = [stack.enter_context(writing_file(p)) for p in paths]
        left = write_cogs(ds, partials)
    note = f" (not bands on this grid, left out: {', '.join(left)})" if left else ""
    _emit({"input": args.input, "output": [str(p) for p in paths], "left_out": left}, args.json,
          f"{args.input} -> " + (f"{paths[0]} (a Cloud-Optimized GeoTIFF)" if len(paths) == 1 else
                                 f"{len(paths)} Cloud-Optimized GeoTIFFs in {out if out.is_dir() else out.parent}")
          + note)
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from tcube.bench import benchmark

    text = benchmark(args.data, args.out, name=args.name, holdout=args.holdout or None, models=args.models,
                     baselines=args.baselines, quick=args.quick, crop=args.crop, modes=args.modes,
                     progress=Progress("bench", not args.quiet))
    print(text)
    print(f"\nwrote {Path(args.out) / args.name}.csv, .png and .md")
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    import tcube
    from tcube.readers import existing

    target = args.target
    if not target:
        print(json.dumps({m: tcube.models.registry.model_card_summary(m) for m in tcube.list_models()}, indent=2))
        return EXIT_OK
    path = existing(target)
    if path.is_dir():
        from tcube.datasets import describe_store

        summary = describe_store(target)
        _emit(summary, args.json, _summary_text(summary))
    else:
        try:
            summary = tcube.info(path.read_bytes())
        except NotATcubeBlobError as exc:
            raise InputError(f"{target}: not a tcube blob or store (tcube info reads files of tcube.encode and stores "
                             "of tcube compress)") from exc
        except BitstreamError as exc:
            raise type(exc)(f"{target}: {exc}") from exc
        print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_preview(args: argparse.Namespace) -> int:
    from tcube.datasets import tec2xarray
    from tcube.outputs import PNG, check_file_output, writing_file
    from tcube.preview import preview
    from tcube.readers import open_dataset

    path = check_file_output(args.output, PNG, [args.original, args.compressed], overwrite=args.overwrite)
    original, decoded = open_dataset(args.original), tec2xarray(args.compressed)
    with writing_file(path) as partial:
        stats = preview(original, decoded, partial, date=args.date)
    _emit(stats, args.json, f"wrote {args.output}: date {stats['date']}, RGB {stats['bands']}, "
                            f"PSNR {stats['psnr_full']:.2f} dB (full range), mean |error| {stats['mae']:.1f} DN")
    return EXIT_OK


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and the default of every option that has one in its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, argparse.SUPPRESS) and action.default is not False and "default" not in text \
                and action.option_strings:
            default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
            text += f" (default: {default})"
        return text


def _subcommand(sub, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose help shows the defaults and ends with the exit codes."""
    return sub.add_parser(name, help=help, epilog=EXIT_CODES, formatter_class=_HelpFormatter, **kwargs)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1.

    Examples
    --------
    >>> positive_int("8")
    8
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _add_batch_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--batch", type=positive_int, default=8, help=help)


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON summary (for scripts) instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_coding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"learned model (tcube info lists them; default {DEFAULT_MODEL}, or "
                                   f"{BOUNDED_MODEL} with --max-error, --lossless or --psnr)")
    p.add_argument("--quality", type=int, help=f"1 (smallest) .. 16 (best) (default: {DEFAULT_QUALITY}); with "
                                               "--max-error the quality of the learned base (default: 0, none)")
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--max-error", type=int, metavar="E", help="every valid value decodes within E digital "
                                                                  "numbers of the original")
    modes.add_argument("--lossless", action="store_true", help="learned lossless coding (--max-error 0)")
    modes.add_argument("--psnr", type=float, metavar="DB", help="every date of every chunk reaches DB decibels "
                                                                "(smallest chunk that does)")
    p.add_argument("--metric", choices=("10k", "full"), default="10k", help="PSNR convention of --psnr")
    p.add_argument("--chunks", type=positive_int, nargs=3, metavar=("T", "Y", "X"),
                   help="chunk sizes (default: 16 256 256 for series of 16 dates or more coded by a model that "
                        "codes dates over time, tec-hx and tec-tt; else 1 256 256); the summary prints each "
                        "array's chunks")
    p.add_argument("--scale", type=float, help="band values are digital numbers x SCALE, e.g. 0.0001 for float "
                                               "reflectance 0..1 without a CF scale_factor (default: from the CF "
                                               "encoding, else 1)")
    p.add_argument("--rules", help="JSON file: per variable model, quality, max_error, psnr, metric, chunks, "
                                   "lossless (stored as is), skip, band, scale, offset, nodata, native_grid ('*' for "
                                   "all)")


def _add_parallel_flags(p: argparse.ArgumentParser, always: bool = False) -> None:
    g = p.add_argument_group("dask" if always else "dask (any of these runs the job on a dask cluster)")
    g.add_argument("--workers", type=positive_int, help="CPU workers of a local cluster (default: one per core)")
    g.add_argument("--gpus", help="GPU ids (0,1 or all): one worker per GPU, pinned to it")
    g.add_argument("--scheduler", help="address of a running dask scheduler to use instead (tcp://host:8786)")


def _add_overwrite_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace {what}")


RESUME_NOTE = """The output is never the input (nor inside it) and its folder must exist. A rerun of the same
command completes an interrupted job (valid chunks are kept); a store holding anything else is
replaced only with --overwrite, and a folder that is not a zarr store never."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcube", description="Learned compression of Sentinel-2 datacubes.", epilog=EXIT_CODES,
        formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"tcube {_package_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    c = _subcommand(
        sub, "compress", "compress a dataset into a tcube zarr store",
        description="Reflectance bands (B02, B8A, B2..., or a band dimension) are stacked per grid and coded by a "
                    "learned model; masks, SCL and everything else are stored losslessly; coordinates, attributes, "
                    "encodings and CRS are kept. Read the result with `tcube decompress`, tcube.tec2xarray, or "
                    "plain xarray.open_zarr.\n\nexamples:\n"
                    "  tcube compress scene.nc scene.zarr --quality 10 --stats\n"
                    "  tcube compress dates_folder/ cube.zarr --model tec-fp --chunks 1 512 512\n"
                    "  tcube compress in.zarr out.zarr --rules rules.json   "
                    "# {\"red\": {\"band\": \"B04\"}, \"QA\": {\"skip\": true}}\n"
                    "  tcube compress new_dates.nc cube.zarr --append   # this week's acquisitions\n\n" + RESUME_NOTE)
    c.add_argument("input", help="zarr store, NetCDF file, GeoTIFF, or a folder of per-date or per-band GeoTIFFs")
    c.add_argument("output", help="zarr store to write, or to complete after an interruption")
    _add_coding_flags(c)
    _add_batch_flag(c, "chunks per model call (with dask: per task)")
    c.add_argument("--stats", action="store_true",
                   help="decode again and report bytes, bpppb, ratio, PSNR, SSIM (not with the dask flags)")
    _add_overwrite_flag(c, "an output zarr store that holds something else")
    c.add_argument("--append", metavar="DIM", nargs="?", const="time", default=None,
                   help="append the input's dates along DIM (default: time) to an existing tcube store, coded with "
                        "the store's own settings (no coding flags)")
    _add_parallel_flags(c)
    _add_output_flags(c)
    c.set_defaults(func=_cmd_compress)

    rp = _subcommand(
        sub, "repair", "repair a tcube store that plain xarray appended to",
        description="xarray's to_zarr(append_dim=...) on a tcube store replaces its attributes and writes the new "
                    "dates beside the coded stacks; this codes those dates into the stacks (with the store's "
                    "settings), puts the attributes back and removes the plain copies. Resumable.\n\nexample:\n"
                    "  tcube repair cube.zarr")
    rp.add_argument("input", help="the tcube zarr store")
    _add_output_flags(rp)
    rp.set_defaults(func=_cmd_repair)

    r = _subcommand(
        sub, "recompress", "re-code a zarr store (zstd or any codec, or tcube at other settings) on a dask cluster",
        description="Like compress --workers, for zarr stores: a tcube store is decoded first, so its variables "
                    "come out as they went in.\n\nexamples:\n"
                    "  tcube recompress archive.zstd.zarr archive.tcube.zarr --quality 8 --workers 2\n"
                    "  tcube recompress archive.tcube.zarr smaller.zarr --quality 4 --gpus all\n\n" + RESUME_NOTE)
    r.add_argument("input", help="zarr store")
    r.add_argument("output", help="tcube zarr store to write (or resume)")
    _add_coding_flags(r)
    _add_batch_flag(r, "chunks per task, coded in shared forward passes")
    _add_overwrite_flag(r, "an output zarr store that holds something else")
    _add_parallel_flags(r, always=True)
    _add_output_flags(r)
    r.set_defaults(func=_cmd_recompress)

    x = _subcommand(sub, "decompress", "decode a tcube store into NetCDF (.nc), plain zarr (.zarr) or "
                    "Cloud-Optimized GeoTIFFs (.tif, or a folder: one per date)",
                    description="Every variable comes back as it went in; the output opens without tcube. "
                                "GeoTIFFs hold the Sentinel-2 bands of the finest grid (CRS, transform, no-data, "
                                "scale and offset; band descriptions are the band names); the command says which "
                                "variables they leave out.\n\nexamples:\n"
                                "  tcube decompress cube.zarr back.nc\n"
                                "  tcube decompress one_date.zarr out.tif\n"
                                "  tcube decompress series.zarr cogs/     # cogs/ exists: one COG per date\n\n"
                                + RESUME_NOTE + " Files are written under temporary names and renamed when "
                                "complete (every date's, for a folder); an existing one is replaced only with "
                                "--overwrite, and only when it is a file of the same kind.")
    x.add_argument("input", help="zarr store written by tcube compress / xarray2tec")
    x.add_argument("output", help="file.nc, store.zarr, file.tif or an existing folder")
    _add_batch_flag(x, "chunks per task")
    _add_overwrite_flag(x, "an existing NetCDF or GeoTIFF file, or a zarr store that holds something else")
    _add_parallel_flags(x)
    _add_output_flags(x)
    x.set_defaults(func=_cmd_decompress)

    v = _subcommand(sub, "preview", "PNG: RGB of original and decoded, and the error map, for one date")
    v.add_argument("original", help="the dataset that was compressed (any input of compress)")
    v.add_argument("compressed", help="the tcube store")
    v.add_argument("output", help="PNG file to write")
    v.add_argument("--date", type=int, default=0, help="index along time")
    _add_overwrite_flag(v, "an existing PNG file")
    v.add_argument("--json", action="store_true", help="print a JSON summary")
    v.set_defaults(func=_cmd_preview)

    d = sub.add_parser("demo", help="compress the shipped sample cube with the default model beside KLT + x265 intra "
                                    "and KLT + JPEG2000; print size, ratio, PSNR, time",
                       formatter_class=_HelpFormatter)
    d.add_argument("--models", nargs="+", default=None, help=f"models to run (default: {DEFAULT_MODEL})")
    d.add_argument("--qualities", nargs="+", type=int, default=[1, 4, 8, 12, 16], help="qualities 1..16")
    d.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("train", help="train a codec on Sentinel-2 files/folders and export safetensors weights",
                       formatter_class=_HelpFormatter)
    t.add_argument("--arch", choices=["fp", "hp", "tt", "pc", "hx"], required=True,
                   help="fp: factorized prior; hp: mean-scale hyperprior; tt: temporal prior on top of --init "
                        "(trained on time series: GeoTIFF places over dates, NetCDF/zarr series); pc: KLT per "
                        "date + one codec shared by the components, any band set (--data: shared/data/s2 or a "
                        "corpus file of python -m tcube.train.corpus); hx: the predictor of tec-hx's detail "
                        "coefficients, a regression over --steps random crops of --crop pixels coded at every quality")
    t.add_argument("--init", help="weights to start from: a model name or a safetensors file (for tt: the "
                                   "model whose transforms it keeps, frozen; default tec-fp)")
    t.add_argument("--name", help="model name written in the weights (default tec-ARCH)")
    t.add_argument("--widths", type=int, nargs="+", help="hidden channels of the analysis stages (default 64 64 64)")
    t.add_argument("--kernels", type=int, nargs="+", help="kernel size of each stride-2 stage (default 5 5 5 5)")
    t.add_argument("--latents", type=int, help="latent channels (default 128)")
    t.add_argument("--hyper", type=int, help="hyper-latent channels, hp only (default 64)")
    t.add_argument("--data", nargs="+", required=True, help="GeoTIFF / NetCDF / zarr / npy files or folders")
    t.add_argument("--holdout", default="0080717", help="files whose path contains this are used for validation only")
    t.add_argument("--out", default="runs/model", help="run folder (checkpoint, resumable)")
    t.add_argument("--steps", type=positive_int, default=4000, help="optimiser steps")
    t.add_argument("--epoch-steps", type=int, default=250, help="validate and checkpoint every N steps")
    t.add_argument("--batch", type=positive_int, default=8, help="crops per step")
    t.add_argument("--crop", type=int, default=96, help="crop size (multiple of 16)")
    t.add_argument("--lr", type=float, default=5e-4, help="learning rate")
    t.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this wall time")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--export", help="write safetensors weights (and a .md model card beside them) here")
    t.set_defaults(func=_cmd_train)

    b = _subcommand(
        sub, "bench", "rate-distortion and speed of every tcube model and classical baseline on cubes",
        description="Runs every tcube model at every quality and every baseline (JPEG2000 per band / joint / PCA, "
                    "JPEG-XL, x265 video, and lossless JPEG2000, JPEG-XL, zstd) over its quality sweep on the same "
                    "cubes; writes NAME.csv, NAME.png and NAME.md (bpppb at 35/40/45/50 dB, BD-rates, MB/s, and the "
                    "data each model was trained on).\n\nexamples:\n"
                    "  tcube bench --quick                                  # the held-out place, small crop\n"
                    "  tcube bench ../shared/data/s2/bigearthnet_example --holdout '' --name rd_bigearthnet")
    b.add_argument("data", nargs="*", default=[str(Path(__file__).resolve().parents[2] / "shared/data/s2/terracodec")],
                   help="files or folders of cubes (default: ../shared/data/s2/terracodec)")
    b.add_argument("--holdout", default="0080717", help="only cubes whose path contains this ('' for all)")
    b.add_argument("--out", default="benchmarks/results", help="folder for NAME.csv/.png/.md")
    b.add_argument("--name", default="rd", help="file name stem")
    b.add_argument("--models", nargs="+", help="tcube models (default: all)")
    b.add_argument("--baselines", nargs="+", help="baselines (default: all; see tcube.baselines.list_baselines())")
    b.add_argument("--quick", action="store_true", help="4 qualities, 5 settings per baseline (CI-size run)")
    b.add_argument("--crop", type=int, help="keep the top-left CROP x CROP pixels of every cube")
    b.add_argument("--modes", action="store_true", help="add tec-pc's quality modes: target PSNR (35-55 dB) and "
                                                        "error bounds (1-64 DN), on the same plot and tables")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_bench)

    i = _subcommand(sub, "info", "describe a tcube store or blob (or, without one, the installed models)")
    i.add_argument("target", nargs="?", help="a zarr store from tcube compress, or a file from tcube.encode")
    i.add_argument("--json", action="store_true", help="JSON output (stores; blobs and models are always JSON)")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tcube`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("tcube: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tcube ... | head`: no traceback, and no second error when Python flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except FileNotFoundError as exc:
        return _fail(f"{exc.filename}: no such file or folder", EXIT_INPUT)
    except (InputError, UnknownModelError) as exc:
        return _fail(exc, EXIT_INPUT)
    except (BitstreamError, UnfinishedStoreError) as exc:
        return _fail(exc, EXIT_DAMAGED)
    except TcubeError as exc:
        return _fail(exc, EXIT_ERROR)


def _fail(message: object, code: int) -> int:
    print(f"tcube: error: {message}", file=sys.stderr)
    return code


def _package_version() -> str:
    from tcube.api import package_version

    return package_version()


if __name__ == "__main__":
    sys.exit(main())
