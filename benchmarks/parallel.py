"""tcube.parallel at scale: throughput against workers and batch size, and a killed job resumed.

    python benchmarks/parallel.py throughput   # workers 1, 2 x batch 1, 4, 8, 16 vs xarray2tec in-process
    python benchmarks/parallel.py resume       # a 4.3 GB cube: peak memory, kill -9 half way, rerun, compare

Sources are zarr stores (Zstd, per-band variables, chunks 1 x 512 x 512) of real Sentinel-2 tiles
(the 16 TerraCodec 264 x 264 tiles, 4 places x 4 seasons) laid out in a mosaic that changes from
date to date. They are written under ``benchmarks/work/`` (git-ignored). Throughput is source
megabytes (uint16) per second of coding, the cluster's start and the store's skeleton excluded
(given apart); memory is the summed resident memory of the job's processes (client, scheduler,
workers), sampled every 0.1 s. Writes ``results/parallel.csv``, ``.md`` and ``.png``, and
``results/parallel_resume.csv`` / ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import zarr
from common import write_rows

from tcube.bands import L2A_BANDS
from tcube.readers import read_cube

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared/data/s2/terracodec"
WORK = HERE / "work"
RESULTS = HERE / "results"
TILE = 264


def make_source(path: Path, dates: int, tiles: int) -> int:
    """A (dates, 12, tiles*264, tiles*264) uint16 cube of real tiles as a zarr store; returns its raw bytes."""
    if (path / "zarr.json").exists():
        return dates * 12 * (tiles * TILE) ** 2 * 2
    cubes = [read_cube(p)[0].astype(np.uint16) for p in sorted(DATA.glob("*.tif"))]
    shutil.rmtree(path, ignore_errors=True)
    group = zarr.open_group(path, mode="w", zarr_format=3)
    side = tiles * TILE
    for name, values in (("time", np.arange(dates)), ("y", 10.0 * np.arange(side)), ("x", 10.0 * np.arange(side))):
        group.create_array(name, data=values, dimension_names=(name,))
    bands = [group.create_array(b, shape=(dates, side, side), chunks=(1, 512, 512), dtype="uint16",
                                dimension_names=("time", "y", "x"), fill_value=0) for b in L2A_BANDS]
    for t in range(dates):
        mosaic = np.empty((12, side, side), np.uint16)
        for i in range(tiles):
            for j in range(tiles):
                mosaic[:, i * TILE:(i + 1) * TILE, j * TILE:(j + 1) * TILE] = cubes[(7 * t + 3 * i + j) % len(cubes)]
        for b, arr in enumerate(bands):
            arr[t] = mosaic[b]
    return dates * 12 * side * side * 2


class PeakMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.root, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tcube.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _compress(src: Path, dst: Path, workers: int, batch: int, fresh: bool = True) -> tuple[dict, int]:
    """One `tcube compress --workers` job in its own process group: (its JSON report, peak bytes)."""
    if fresh:
        shutil.rmtree(dst, ignore_errors=True)
    job = _cli("compress", str(src), str(dst), "--workers", str(workers), "--batch", str(batch), "--json", "--quiet")
    with PeakMemory(job.pid) as memory:
        out, err = job.communicate()
    if job.returncode:
        raise RuntimeError(err)
    return json.loads(out), memory.peak


def _serial(src: Path, dst: Path, batch: int) -> dict:
    """Baseline: xarray2tec in a fresh process (2 torch threads), timed inside it (into a new store:
    the same job again would find every chunk done)."""
    shutil.rmtree(dst, ignore_errors=True)
    code = ("import json, time, tcube, torch; from tcube.readers import open_dataset; torch.set_num_threads(2); "
            f"ds = open_dataset({str(src)!r}); t = time.perf_counter(); "
            f"tcube.xarray2tec(ds, {str(dst)!r}, batch={batch}); print(json.dumps(time.perf_counter() - t))")
    job = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(job.pid) as memory:
        out, err = job.communicate()
    if job.returncode:
        raise RuntimeError(err)
    return {"seconds": json.loads(out.strip().splitlines()[-1]), "peak_mb": memory.peak / 1e6}


def throughput(dates: int, tiles: int) -> None:
    src = WORK / f"source_{dates}x{tiles}.zarr"
    raw = make_source(src, dates, tiles)
    base = _serial(src, WORK / "serial.zarr", 8)
    base_mb_s = raw / 1e6 / base["seconds"]
    rows = [{"runner": "xarray2tec (in-process, 2 threads)", "workers": 1, "batch": 8, "mb": raw / 1e6,
             "seconds": base["seconds"], "setup_seconds": 0.0, "mb_per_s": base_mb_s, "vs_serial": 1.0,
             "peak_mb": base["peak_mb"], "ratio": float("nan")}]
    print(rows[-1], flush=True)
    for workers in (1, 2):
        for batch in (1, 4, 8, 16):
            report, peak = _compress(src, WORK / "parallel.zarr", workers, batch)
            rows.append({"runner": "tcube.parallel", "workers": workers, "batch": batch, "mb": raw / 1e6,
                         "seconds": report["seconds"], "setup_seconds": report["setup_seconds"],
                         "mb_per_s": raw / 1e6 / report["seconds"], "vs_serial": base["seconds"] / report["seconds"],
                         "peak_mb": peak / 1e6, "ratio": report["bytes_in"] / report["bytes_out"]})
            print(rows[-1], flush=True)
    write_rows(rows, RESULTS / "parallel.csv")
    _plot(rows, base_mb_s)
    lines = [f"# tcube.parallel throughput\n\nSource: {dates} dates x 12 bands x {tiles * TILE} x {tiles * TILE} "
             f"uint16 ({raw / 1e6:.0f} MB), tec-hp quality 8, output chunks 1 x 12 x 256 x 256; "
             f"{os.cpu_count()} CPU cores, no GPU. `python benchmarks/parallel.py throughput`.\n",
             "| runner | workers | batch | s | setup s | MB/s | vs xarray2tec | peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['runner']} | {r['workers']} | {r['batch']} | {r['seconds']:.1f} | {r['setup_seconds']:.1f} | "
              f"{r['mb_per_s']:.1f} | {r['vs_serial']:.2f} | {r['peak_mb']:.0f} |" for r in rows]
    (RESULTS / "parallel.md").write_text("\n".join(lines) + "\n")


def _plot(rows: list[dict], base: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for workers in (1, 2):
        pts = [(r["batch"], r["mb_per_s"]) for r in rows if r["runner"] == "tcube.parallel" and r["workers"] == workers]
        ax.plot(*zip(*pts), marker="o", label=f"tcube.parallel, {workers} worker{'s' * (workers > 1)}")
    ax.axhline(base, color="grey", ls="--", label="xarray2tec in-process")
    ax.set(xlabel="chunks per task (batch)", ylabel="MB/s (uint16 source)", xscale="log", ylim=(0, None))
    ax.set_xticks([1, 4, 8, 16], ["1", "4", "8", "16"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "parallel.png", dpi=120)


def _stored(store: Path) -> dict[str, bytes]:
    files = [p for p in store.rglob("*") if p.is_file() and "c" in p.relative_to(store).parts[1:2]]
    return {str(p.relative_to(store)): p.read_bytes() for p in files}


def resume(dates: int, tiles: int, workers: int, batch: int) -> None:
    src = WORK / f"source_{dates}x{tiles}.zarr"
    raw = make_source(src, dates, tiles)
    whole, killed = WORK / "whole.zarr", WORK / "killed.zarr"
    report, peak = _compress(src, whole, workers, batch)
    print("uninterrupted", report["seconds"], peak / 1e6, flush=True)
    shutil.rmtree(killed, ignore_errors=True)
    total = report["chunks"]
    job = _cli("compress", str(src), str(killed), "--workers", str(workers), "--batch", str(batch), "--quiet")
    with PeakMemory(job.pid) as memory:
        while len(list(killed.glob("tcube_y_x/c/*/*/*/*"))) < total // 2 and job.poll() is None:
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    at_kill = len(list(killed.glob("tcube_y_x/c/*/*/*/*")))
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if "tcube.cli" in " ".join(p.info["cmdline"] or [])]
    rerun, rerun_peak = _compress(src, killed, workers, batch, fresh=False)
    a, b = _stored(whole), _stored(killed)
    same = sum(a[k] == b.get(k) for k in a)
    rows = [{"run": "uninterrupted", "chunks": total, "written": report["written"], "seconds": report["seconds"],
             "mb_per_s": report["mb_per_s"], "peak_mb": peak / 1e6, "bytes_out": report["bytes_out"]},
            {"run": "killed (kill -9 of the process group)", "chunks": total, "written": at_kill,
             "seconds": float("nan"), "mb_per_s": float("nan"), "peak_mb": memory.peak / 1e6,
             "bytes_out": float("nan")},
            {"run": "rerun", "chunks": total, "written": rerun["written"], "seconds": rerun["seconds"],
             "mb_per_s": rerun["mb_per_s"], "peak_mb": rerun_peak / 1e6, "bytes_out": rerun["bytes_out"]}]
    write_rows(rows, RESULTS / "parallel_resume.csv")
    lines = [f"# tcube.parallel: a {raw / 1e9:.2f} GB cube, killed half way and resumed\n",
             f"Source: {dates} dates x 12 bands x {tiles * TILE} x {tiles * TILE} uint16, real tiles; "
             f"`tcube compress --workers {workers} --batch {batch}` (tec-hp q8). "
             "`python benchmarks/parallel.py resume`.\n",
             "| run | chunks | written | s | MB/s | peak MB (all processes) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['chunks']} | {r['written']} | {r['seconds']:.1f} | {r['mb_per_s']:.1f} | "
              f"{r['peak_mb']:.0f} |" for r in rows]
    lines.append(f"\nStored chunks byte-identical to the uninterrupted run: {same} of {len(a)} "
                 f"(the resumed store has {len(b)}). tcube processes left after the kill: {len(leftovers)}.")
    (RESULTS / "parallel_resume.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["throughput", "resume"])
    p.add_argument("--dates", type=int, help="dates of the source (default 8 / 40)")
    p.add_argument("--tiles", type=int, help="tiles per side (default 4 / 8)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    WORK.mkdir(exist_ok=True)
    if args.what == "throughput":
        throughput(args.dates or 8, args.tiles or 4)
    else:
        resume(args.dates or 40, args.tiles or 8, args.workers, args.batch)


if __name__ == "__main__":
    main()
