"""Scale out with dask: code whole stores chunk by chunk on every worker, resumably.

- :func:`compress` reads anything :func:`tcube.io.open_dataset` opens (zarr, NetCDF, GeoTIFF) or
  an ``xarray.Dataset``; :func:`recompress` reads a zarr store coded any way (zstd, or tcube at
  other settings); :func:`decompress` writes a tcube store back losslessly (zarr defaults, Zstd).
  Outputs have the layout of :func:`tcube.xarray2tec`: they open with :func:`tcube.tec2xarray`,
  and their tcube arrays with plain zarr through the ``"tcube"`` codec.
- The client writes the store's skeleton (metadata, coordinates, variables under 1 MB) and submits
  one task per ``batch`` chunks of an array, at most two per worker at a time. A task reads its
  chunks' regions from the source, which each worker process opens once, codes them in shared
  forward passes and stores each chunk. Memory per worker: about ``batch`` x the chunk size.
- Models load once per worker process (:class:`TcubeWorkerPlugin`); tasks carry names, never
  weights. A worker uses its GPU when it sees one (:func:`local_cluster` starts one worker per
  GPU, pinned with ``CUDA_VISIBLE_DEVICES``), else the CPU with cores / workers threads.
- Resumable and idempotent: the store records the job (a fingerprint of source, settings and
  layout). Rerunning the same job keeps every stored chunk that checks out (present, CRC32
  intact, same model, weights, quality, shape; lossless chunks: decodable) and writes the rest.
  Chunks are written whole (local stores: temporary file, then rename; leftovers are removed) and
  a truncated tcube chunk fails its length and CRC checks, so half a chunk is never read as valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array
import numpy as np
import xarray as xr
import zarr
from distributed import WorkerPlugin

from tcube.bands import L2A_BANDS
from tcube.codecs import TecZarrCodec, check_settings, read_stored_chunk, stored_chunk_problem, write_stored_chunk
from tcube.errors import InputError
from tcube.io import open_dataset
from tcube.models import load_model
from tcube.models.registry import default_device
from tcube.xarray import (
    JOB_ATTR,
    STACK_PREFIX,
    _check_rules,
    _create_stacks,
    _json_safe,
    _plan,
    _read_block,
    _rest,
    _rules_for,
    _Stack,
    _variable_meta,
    tec2xarray,
    writable,
)

#: Variables (not coded by a model) up to this size are written with the skeleton, by the client.
SMALL_BYTES = 1 << 20
#: Tasks in flight per worker: one running, one queued.
TASKS_PER_WORKER = 2
_NOT_A_GROUP = (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError,
                zarr.errors.NodeTypeValidationError)
_OPENERS: dict[str, Callable[[str], xr.Dataset]] = {"dataset": open_dataset, "store": tec2xarray}


@dataclass(frozen=True)
class _Target:
    """Arrays of the output filled together, chunk by chunk: one stack, or plain variables sharing a grid."""

    arrays: tuple[str, ...]
    dims: tuple[str | None, ...]  # source dims of each axis (a stack's band axis: None)
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    bytes_per_value: float  # source bytes per grid position, for the report
    block: tuple[int, ...]  # chunks per task along each axis: a rectangle, read from the source at once
    stack: _Stack | None = None
    meta: dict | None = None

    def tasks(self) -> Iterator[list[tuple[int, ...]]]:
        """The chunk coordinates of each task: rectangles of ``block`` chunks (smaller at the edges)."""
        counts = [-(-n // c) for n, c in zip(self.shape, self.chunks)]
        for start in itertools.product(*(range(0, k, b) for k, b in zip(counts, self.block))):
            yield list(itertools.product(*(range(s, min(s + b, k)) for s, b, k in zip(start, self.block, counts))))

    def region(self, coords: tuple[int, ...], last: tuple[int, ...] | None = None) -> dict[str, slice]:
        """Source region of the chunk at ``coords`` (or of the chunks from ``coords`` to ``last``)."""
        last = last or coords
        return {d: slice(i * c, min((j + 1) * c, n))
                for d, i, j, c, n in zip(self.dims, coords, last, self.chunks, self.shape) if d is not None}

    def bytes_in(self, coords: tuple[int, ...]) -> int:
        return int(self.bytes_per_value * np.prod([s.stop - s.start for s in self.region(coords).values()]))


@dataclass(frozen=True)
class _Job:
    dst: str
    targets: tuple[_Target, ...]
    fingerprint: str
    source_kind: str | None  # how workers open the source: a key of _OPENERS, or None (a scattered dataset)
    source_path: str | None


@dataclass
class Report:
    """What a run did: chunks, bytes and throughput, in total and per worker.

    ``bytes_in`` counts the source bytes (in their own dtypes) of the chunks written by this run,
    ``bytes_out`` what was stored for them; ``seconds`` is the wall time of coding, after the
    cluster started and the skeleton was written (``setup_seconds``).
    """

    store: str
    chunks: int
    written: int
    bytes_in: int
    bytes_out: int
    seconds: float
    setup_seconds: float
    workers: dict[str, dict] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "kept": self.chunks - self.written, "mb_per_s": self.mb_per_s}

    def __str__(self) -> str:
        ratio = self.bytes_in / self.bytes_out if self.bytes_out else float("nan")
        lines = [f"{self.store}: {self.written} of {self.chunks} chunks written ({self.chunks - self.written} "
                 f"already valid), {self.bytes_in / 1e6:.1f} MB in, {self.bytes_out / 1e6:.2f} MB out (ratio "
                 f"{ratio:.1f}), {self.seconds:.1f} s, {self.mb_per_s:.1f} MB/s (setup {self.setup_seconds:.1f} s)"]
        for name, w in sorted(self.workers.items()):
            lines.append(f"  worker {name} ({w['device']}): {w['chunks']} chunks, {w['bytes_in'] / 1e6:.1f} MB in "
                         f"{w['seconds']:.1f} s busy, {w['mb_per_s']:.1f} MB/s")
        return "\n".join(lines)


class TcubeWorkerPlugin(WorkerPlugin):
    """Prepares each dask worker once: torch threads, device, the models loaded.

    A worker that sees a GPU codes on it (``torch.cuda`` picks the first visible device, so pin
    workers with ``CUDA_VISIBLE_DEVICES``, as :func:`local_cluster` does); otherwise on the CPU
    with its share of the host's cores (cores / workers on the host / threads of the worker).

    Parameters
    ----------
    models : sequence of str
        Models to load now; tasks then find them in the process's model cache.
    workers_per_host : dict, optional
        Number of workers on each host (by address host), to share the cores.
    """

    name = "tcube"

    def __init__(self, models: Sequence[str], workers_per_host: Mapping[str, int] | None = None) -> None:
        self.models, self.workers_per_host = tuple(models), dict(workers_per_host or {})

    def setup(self, worker: Any) -> None:
        import torch

        host = _host(worker.address)
        share = os.cpu_count() or 1
        share //= max(1, self.workers_per_host.get(host, 1)) * max(1, worker.state.nthreads)
        torch.set_num_threads(max(1, share))
        for model in self.models:
            load_model(model)  # on the default device: $TCUBE_DEVICE, else CUDA if visible, else CPU


def _host(address: str) -> str:
    return address.rsplit("://", 1)[-1].rsplit(":", 1)[0]


def local_cluster(workers: int | None = None, gpus: Sequence[int | str] | None = None) -> Any:
    """A dask cluster on this machine: one worker per GPU (pinned), else ``workers`` CPU workers.

    Parameters
    ----------
    workers : int, optional
        CPU workers (default: one per core), each with one task at a time.
    gpus : sequence of int or str, optional
        GPU ids: one worker each, with ``CUDA_VISIBLE_DEVICES`` set to its id.

    Examples
    --------
    >>> with local_cluster(workers=1) as cluster:  # doctest: +SKIP
    ...     print(len(cluster.workers))
    1
    """
    with _environ_kept():  # dask's nannies set OMP_NUM_THREADS etc. in this process while they start workers
        return _start_local_cluster(workers, gpus)


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """Give this process's environment back as it was, whatever the block changed in it."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)


def _start_local_cluster(workers: int | None, gpus: Sequence[int | str] | None) -> Any:
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    if gpus:
        if workers not in (None, len(gpus)):
            raise InputError(f"one worker per GPU: {len(gpus)} GPUs given, but {workers} workers asked for")
        spec = {f"gpu-{g}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(g)}}}
                for g in gpus}
        return SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                           silence_logs=logging.ERROR)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    n = workers or os.cpu_count() or 1
    threads = str(max(1, (os.cpu_count() or 1) // n))  # dask's nannies would set 1: torch then uses one core
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})


@contextlib.contextmanager
def _client(client: Any, workers: int | None, gpus: Sequence[int | str] | None, models: Sequence[str]) -> Iterator:
    """The caller's client, or one on a new :func:`local_cluster`; with the worker plugin registered."""
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if client is None:
            cluster = stack.enter_context(local_cluster(workers, gpus))
            client = stack.enter_context(Client(cluster))
        hosts = [_host(a) for a in client.scheduler_info(n_workers=-1)["workers"]]
        client.register_plugin(TcubeWorkerPlugin(models, {h: hosts.count(h) for h in hosts}), name="tcube")
        yield client


@functools.lru_cache(maxsize=4)
def _open_source(kind: str, path: str, fingerprint: str) -> xr.Dataset:
    """The source dataset, opened once per worker process and job."""
    return _OPENERS[kind](path)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "client"


def _padded(block: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An edge chunk's block grown to the full chunk shape with NaN (the stacks' fill value), as zarr stores it."""
    if block.shape == tuple(shape):
        return block
    out = np.full(shape, np.nan, block.dtype)
    out[tuple(slice(0, n) for n in block.shape)] = block
    return out


def _fill_stack(ds: xr.Dataset, group: zarr.Group, target: _Target, coords: list[tuple]) -> tuple[list, int]:
    arr = group[target.arrays[0]]
    todo = [c for c in coords if stored_chunk_problem(arr, c) is not None]
    if not todo:
        return [], 0
    first, last = tuple(map(min, zip(*todo))), tuple(map(max, zip(*todo)))
    union = target.region(first, last)
    read = _read_block(ds, target.stack, target.meta, union)  # one read: each source chunk decoded once
    blocks = []
    for c in todo:
        own = target.region(c)
        cut = [slice(own[d].start - union[d].start, own[d].stop - union[d].start) if d else slice(None)
               for d in target.dims]
        blocks.append(_padded(read[tuple(cut)], arr.chunks))
    codec: TecZarrCodec = dataclasses.replace(arr.serializer, batch_frames=sum(len(b) for b in blocks))
    blobs = codec.encode_chunks(blocks, [arr.fill_value] * len(blocks))
    for c, blob in zip(todo, blobs):
        write_stored_chunk(arr, c, blob)
    return todo, sum(map(len, blobs))


def _plain_chunk_ok(arr: zarr.Array, coords: tuple) -> bool:
    if read_stored_chunk(arr, coords) is None:
        return False
    try:
        arr.get_block_selection(coords)
    except Exception:  # any codec's decoding error: the chunk is rewritten
        return False
    return True


def _fill_plain(ds: xr.Dataset, group: zarr.Group, target: _Target, coords: list[tuple]) -> tuple[list, int]:
    arrays = [group[name] for name in target.arrays]
    todo = [c for c in coords if not all(_plain_chunk_ok(a, c) for a in arrays)]
    for c in todo:
        region = target.region(c)
        part = ds[list(target.arrays)].isel(region)
        writable(part.drop_vars(list(part.coords)).load()).to_zarr(
            group.store, region=region, mode="r+", consolidated=False)
    return todo, sum(len(read_stored_chunk(a, c) or b"") for a in arrays for c in todo)


def _fill(job: _Job, index: int, coords: list[tuple], dataset: xr.Dataset | None = None) -> dict:
    """Task: make the chunks ``coords`` of target ``index`` valid; returns what it did."""
    start = time.perf_counter()
    target = job.targets[index]
    with dask.config.set(scheduler="synchronous"):  # reads inside a task stay inside it
        ds = dataset if dataset is not None else _open_source(job.source_kind, job.source_path, job.fingerprint)
        group = zarr.open_group(job.dst, mode="r+")
        written, bytes_out = (_fill_stack if target.stack is not None else _fill_plain)(ds, group, target, coords)
    return {"worker": _worker_name(), "device": default_device(), "chunks": len(coords), "written": len(written),
            "bytes_in": sum(target.bytes_in(c) for c in written), "bytes_out": bytes_out,
            "seconds": time.perf_counter() - start}


def _plain_chunks(da: xr.DataArray, rule: Mapping) -> tuple[int, ...]:
    """Chunks of a variable written losslessly: its rule's, else the source's dask chunks, else (1, ..., 256, 256)."""
    if len(rule.get("chunks", ())) == da.ndim:
        return tuple(min(int(c), n) for c, n in zip(rule["chunks"], da.shape))
    if da.chunks:
        return tuple(int(c[0]) for c in da.chunks)
    if da.ndim == 1:
        return (min(da.shape[0], 1 << 18),)
    return tuple([1] * (da.ndim - 2) + [min(256, n) for n in da.shape[-2:]])


def _big(var: xr.Variable) -> bool:
    """Written by tasks: numeric, larger than SMALL_BYTES (others go with the skeleton)."""
    return var.dtype.kind in "iuf" and var.ndim > 0 and var.nbytes > SMALL_BYTES


def _source_chunk(ds: xr.Dataset, name: str, dim: str, factor: int) -> int:
    """Size along ``dim`` (of a grid ``factor`` times finer) of the chunks ``name`` is stored in; 0 if unknown."""
    da = ds[name]
    size = da.encoding.get("preferred_chunks", {}).get(dim)
    if size is None and da.chunks:
        size = da.chunks[da.dims.index(dim)][0]
    return int(size or 0) * factor


def _stack_block(ds: xr.Dataset, s: _Stack, meta: dict, batch: int) -> tuple[int, int, int, int]:
    """Chunks per task for a stack: whole source chunks in y and x, then dates up to ``batch`` chunks."""
    name, info = next(iter(meta.items()))
    ydim, xdim, f = info["grid"]
    by, bx = (max(1, -(-_source_chunk(ds, name, d, f) // c)) for d, c in ((ydim, s.chunks[1]), (xdim, s.chunks[2])))
    return max(1, batch // (by * bx)), 1, by, bx


def _targets(ds: xr.Dataset, stacks: list[_Stack], metas: dict, rest: xr.Dataset, rules: Mapping,
             batch: int) -> list[_Target]:
    targets = []
    for s in stacks:
        per_value = sum(len(info["bands"]) * np.dtype(info["dtype"]).itemsize / info["grid"][2] ** 2
                        for info in metas[s.name].values())
        t = ds.sizes[s.tdim] if s.tdim else 1
        shape = (t, len(L2A_BANDS), ds.sizes[s.ydim], ds.sizes[s.xdim])
        targets.append(_Target((s.name,), (s.tdim, None, s.ydim, s.xdim), shape, (s.chunks[0], len(L2A_BANDS),
                               *s.chunks[1:]), per_value, _stack_block(ds, s, metas[s.name], batch), s, metas[s.name]))
    grids: dict[tuple, list[str]] = {}
    for name, var in rest.data_vars.items():
        if _big(var.variable):
            grids.setdefault((var.dims, var.shape, _plain_chunks(ds[name], _rules_for(rules, name))), []).append(name)
    for (dims, shape, chunks), names in grids.items():  # zarr lists a group's arrays in no fixed order
        names = sorted(names)
        per_value = sum(ds[n].dtype.itemsize for n in names)
        block = (1,) * (len(shape) - 1) + (batch,)
        targets.append(_Target(tuple(names), tuple(map(str, dims)), shape, chunks, per_value, block))
    return targets


def _fingerprint(ds: xr.Dataset, source: str, rules: Mapping, targets: list[_Target]) -> str:
    """What the job is: source, its variables, the rules and the output layout and codecs."""
    desc = {"source": source, "rules": _json_safe(dict(rules)),
            "variables": {str(n): [list(map(str, v.dims)), list(v.shape), v.dtype.str]
                          for n, v in ds.variables.items()},
            "targets": sorted([sorted(t.arrays), t.chunks, t.stack and [t.stack.model, t.stack.quality]]
                              for t in targets)}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _recorded_job(dst: str) -> str | None:
    """Fingerprint of the job that filled ``dst``; None if there is no store or no record."""
    try:
        record = zarr.open_group(dst, mode="r").attrs.get(JOB_ATTR)
    except _NOT_A_GROUP:
        return None
    return record.get("fingerprint") if isinstance(record, Mapping) else None


def _check_destination(dst: str, recorded: str | None, fingerprint: str, overwrite: bool) -> None:
    path = Path(dst)
    if "://" in dst or not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not path.is_dir() or not any((path / m).exists() for m in ("zarr.json", ".zgroup", ".zarray")):
        raise InputError(f"{dst} exists and is not a zarr store: refusing to write over it")
    if overwrite:
        return
    if recorded is None:
        raise InputError(f"{dst} exists but holds no finished tcube.parallel job record (written another way, or "
                         "killed while its skeleton was written): pass overwrite=True (--overwrite) to replace it")
    raise InputError(f"{dst} holds another job (other source, settings or layout; job {recorded[:8]}, this one "
                     f"{fingerprint[:8]}): pass overwrite=True (--overwrite) to replace it")


def _template(rest: xr.Dataset, targets: list[_Target]) -> xr.Dataset:
    """``rest`` with the task-written variables as lazy placeholders (zarr metadata only), the others loaded."""
    out = rest.copy()
    chunked = {name: t.chunks for t in targets if t.stack is None for name in t.arrays}
    for name, var in out.variables.items():
        if name in chunked:
            var.data = dask.array.zeros(var.shape, var.dtype, chunks=chunked[name])
            var.encoding = {}
        else:
            var.load()
    return out


def _remove_partial_files(dst: str) -> None:
    """Temporary files of chunks whose writer was killed (local stores write, then rename)."""
    if "://" not in dst and Path(dst).is_dir():
        for leftover in Path(dst).rglob("*.partial"):
            leftover.unlink(missing_ok=True)


def _batches(targets: list[_Target]) -> list[tuple[int, list[tuple]]]:
    return [(index, coords) for index, target in enumerate(targets) for coords in target.tasks()]


def _run(client: Any, job: _Job, dataset: xr.Dataset | None, batches: list, progress: Callable | None) -> list[dict]:
    """Submit the batches, a bounded number at a time; results in completion order."""
    from distributed import as_completed

    job_future = client.scatter(job, broadcast=True, hash=False)
    data_future = client.scatter(dataset, broadcast=True, hash=False) if dataset is not None else None
    window = TASKS_PER_WORKER * max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    pending = iter(batches)
    running = as_completed()

    def submit(n: int) -> None:
        for index, coords in itertools.islice(pending, n):
            running.add(client.submit(_fill, job_future, index, coords, data_future, pure=False))

    submit(window)
    rows, done, total = [], 0, sum(len(c) for _, c in batches)
    try:
        for future in running:
            rows.append(future.result())
            done += rows[-1]["chunks"]
            submit(1)
            if progress:
                progress(done, total)
    finally:
        client.cancel(list(running.futures))
    return rows


def _report(dst: str, rows: list[dict], seconds: float, setup: float) -> Report:
    workers: dict[str, dict] = {}
    for r in rows:
        w = workers.setdefault(r["worker"], {"chunks": 0, "written": 0, "bytes_in": 0, "bytes_out": 0, "seconds": 0.0})
        for k in w:
            w[k] += r[k]
        w["device"] = r["device"]
    for w in workers.values():
        w["mb_per_s"] = w["bytes_in"] / 1e6 / w["seconds"] if w["seconds"] else 0.0
    total = {k: sum(r[k] for r in rows) for k in ("chunks", "written", "bytes_in", "bytes_out")}
    return Report(dst, seconds=seconds, setup_seconds=setup, workers=workers, **total)


def _source_models(path: str | None) -> list[str]:
    """Models of the tcube arrays of a source store (workers decode with them)."""
    if path is None:
        return []
    try:
        group = zarr.open_group(path, mode="r")
    except _NOT_A_GROUP:
        return []
    return [group[k].serializer.model for k in group.array_keys()
            if k.startswith(STACK_PREFIX) and isinstance(group[k].serializer, TecZarrCodec)]


def _convert(ds: xr.Dataset, source: tuple[str | None, str | None], dst: str | os.PathLike, rules: Mapping | None,
             model: str, quality: int, *, client: Any = None, workers: int | None = None, gpus: Sequence | None = None,
             batch: int = 8, overwrite: bool = False, progress: Callable | None = None) -> Report:
    start = time.perf_counter()
    if batch < 1:
        raise InputError(f"batch must be at least 1 chunk, got {batch}")
    if client is not None and (workers is not None or gpus):
        raise InputError("workers and gpus start a local cluster: give them or a client, not both")
    dst, (kind, path) = str(dst), source
    rules = dict(rules or {})
    _check_rules(ds, rules)
    stacks, skipped = _plan(ds, rules, model, quality)
    for s in stacks:
        check_settings(s.model, s.quality, None)  # unknown model or quality: fail before any work
    rest = _rest(ds, stacks, skipped, rules)
    metas = {s.name: _variable_meta(ds, s, rules) for s in stacks}
    targets = _targets(ds, stacks, metas, rest, rules, batch)
    fingerprint = _fingerprint(ds, path or "dataset", rules, targets)
    recorded = _recorded_job(dst)
    if recorded == fingerprint and not overwrite:
        _remove_partial_files(dst)
    else:
        _check_destination(dst, recorded, fingerprint, overwrite)
        _template(rest, targets).to_zarr(dst, mode="w", zarr_format=3, consolidated=False, compute=False)
        _create_stacks(ds, stacks, metas, dst)
        zarr.open_group(dst, mode="r+").attrs[JOB_ATTR] = {"fingerprint": fingerprint, "source": path or "dataset"}
    job = _Job(dst, tuple(targets), fingerprint, kind, path)
    models = sorted({s.model for s in stacks} | set(_source_models(path if kind == "store" else None)))
    with _client(client, workers, gpus, models) as c:
        setup = time.perf_counter() - start
        rows = _run(c, job, ds if kind is None else None, _batches(targets), progress)
    return _report(dst, rows, time.perf_counter() - start - setup, setup)


def compress(src: str | os.PathLike | xr.Dataset, dst: str | os.PathLike, model: str = "tec-hp", quality: int = 8,
             rules: Mapping[str, Mapping] | None = None, *, client: Any = None, workers: int | None = None,
             gpus: Sequence[int | str] | None = None, batch: int = 8, overwrite: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Report:
    """Compress a dataset into a tcube zarr store on a dask cluster, chunk by chunk, resumably.

    Parameters
    ----------
    src : path or xarray.Dataset
        Anything :func:`tcube.io.open_dataset` opens (workers open it themselves: the path must
        be valid on every worker), or a Dataset (sent once to each worker: lazily backed ones
        stay lazy; the job is then known by its variables and sizes, not its values, so pass
        ``overwrite`` when the values changed).
    dst : path or URL
        The zarr store to write (layout of :func:`tcube.xarray2tec`), reachable by every worker.
        Rerunning the same job resumes it; another job's store is replaced only with ``overwrite``.
    model, quality, rules
        As in :func:`tcube.xarray2tec`.
    client : distributed.Client, optional
        Run on this cluster; by default a :func:`local_cluster` of ``workers`` or ``gpus``.
    batch : int
        Chunks per task, coded in shared forward passes; memory per worker grows with it.
    progress : callable, optional
        Called as ``progress(chunks done, chunks in all)``.

    Returns
    -------
    Report
        Chunks written and kept, bytes in and out, MB/s, per worker.

    Examples
    --------
    >>> import tempfile, xarray as xr, tcube
    >>> cube = tcube.data.load_sample_cube()[:, :, :64, :64]
    >>> ds = xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(tcube.bands.L2A_BANDS)})
    >>> out = tempfile.mkdtemp() + "/cube.zarr"
    >>> report = compress(ds, out, model="tec-fp", workers=1)
    >>> report.written, tcube.tec2xarray(out)["B04"].shape
    (4, (4, 64, 64))
    """
    ds = src if isinstance(src, xr.Dataset) else open_dataset(src)
    source = (None, None) if isinstance(src, xr.Dataset) else ("dataset", str(src))
    return _convert(ds, source, dst, rules, model, quality, client=client, workers=workers, gpus=gpus, batch=batch,
                    overwrite=overwrite, progress=progress)


def recompress(src: str | os.PathLike, dst: str | os.PathLike, model: str = "tec-hp", quality: int = 8,
               rules: Mapping[str, Mapping] | None = None, **kwargs: Any) -> Report:
    """Re-code a zarr store (Zstd or any codec, or tcube at other settings) into a tcube store.

    Keyword arguments as in :func:`compress`. A tcube source is decoded first (read through
    :func:`tcube.tec2xarray`), so its variables come out as they went in.

    Examples
    --------
    >>> recompress("archive.zstd.zarr", "archive.tcube.zarr", quality=6, workers=2)  # doctest: +SKIP
    """
    return _convert(tec2xarray(str(src)), ("store", str(src)), dst, rules, model, quality, **_run_options(kwargs))


def decompress(src: str | os.PathLike, dst: str | os.PathLike, **kwargs: Any) -> Report:
    """Decode a tcube store into a plain zarr store (every variable lossless, Zstd), readable without tcube.

    Keyword arguments as in :func:`compress` (no model or quality).

    Examples
    --------
    >>> decompress("archive.tcube.zarr", "archive.zarr", workers=2)  # doctest: +SKIP
    """
    ds = tec2xarray(str(src))
    return _convert(ds, ("store", str(src)), dst, {"*": {"lossless": True}}, "tec-hp", 8, **_run_options(kwargs))


def _run_options(kwargs: dict) -> dict:
    """``kwargs`` if they are all run options of :func:`compress` (the defaults are :func:`_convert`'s)."""
    allowed = {"client", "workers", "gpus", "batch", "overwrite", "progress"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unexpected arguments {sorted(unknown)} (allowed: {sorted(allowed)})")
    return kwargs
