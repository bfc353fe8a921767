"""Scale out with dask: code whole stores chunk by chunk on every worker, resumably.

- :func:`compress` reads anything :func:`tcube.readers.open_dataset` opens (zarr, NetCDF, GeoTIFF) or
  an ``xarray.Dataset``; :func:`recompress` reads a zarr store coded any way (zstd, or tcube at
  other settings); :func:`decompress` writes a tcube store back losslessly (zarr defaults, Zstd).
  Outputs are the stores :func:`tcube.xarray2tec` writes (the same :mod:`tcube.jobs`, the same
  bytes): they open with :func:`tcube.tec2xarray`, and their tcube arrays with plain zarr.
- The client writes the store's skeleton and submits the job's tasks, at most two per worker at a
  time. A task reads its chunks' regions from the source, which each worker process opens once,
  codes them in shared forward passes and stores each chunk. Memory per worker: about ``batch``
  x the chunk size.
- Models load once per worker process (:class:`TcubeWorkerPlugin`); tasks carry names, never
  weights. A worker uses its GPU when it sees one (:func:`local_cluster` starts one worker per
  GPU, pinned with ``CUDA_VISIBLE_DEVICES``), else the CPU with cores / workers threads.
- Resumable and idempotent (see :mod:`tcube.jobs`): a rerun of the same job keeps every stored
  chunk that checks out and writes the rest; until every task is done the store is unfinished.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import xarray as xr
from distributed import WorkerPlugin

import tcube.jobs as jobs
from tcube.errors import InputError
from tcube.jobs import Report
from tcube.models import load_model
from tcube.readers import open_dataset
from tcube.settings import Settings

#: Tasks in flight per worker: one running, one queued.
TASKS_PER_WORKER = 2


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


def _run(client: Any, job: jobs.Job, dataset: xr.Dataset | None, progress: Callable | None) -> list[dict]:
    """Submit the job's tasks, a bounded number at a time; results in completion order."""
    from distributed import as_completed

    job_future = client.scatter(job, broadcast=True, hash=False)
    data_future = client.scatter(dataset, broadcast=True, hash=False) if dataset is not None else None
    window = TASKS_PER_WORKER * max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    batches = job.batches()
    pending = iter(batches)
    running = as_completed()

    def submit(n: int) -> None:
        for index, coords in itertools.islice(pending, n):
            running.add(client.submit(jobs.fill, job_future, index, coords, data_future, pure=False))

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


def convert(ds: xr.Dataset, source: tuple[str | None, str | None], dst: str | os.PathLike, rules: Mapping | None,
             settings: Settings, *, client: Any = None, workers: int | None = None, gpus: Sequence | None = None,
             overwrite: bool = False, progress: Callable | None = None) -> Report:
    """Write ``ds`` (opened again by tasks from ``source``, or sent to workers when it is ``(None,
    None)``) to the tcube store ``dst``, coded with ``settings`` under ``rules``: the job behind
    :func:`compress`, :func:`recompress`, :func:`decompress` and the command line's dask runs.
    Other arguments as in :func:`compress`."""
    start = time.perf_counter()
    if client is not None and (workers is not None or gpus):
        raise InputError("workers and gpus start a local cluster: give them or a client, not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a whole number, at least 1; got {workers!r}")
    job = jobs.prepare(ds, source, str(dst), rules, settings, overwrite=overwrite)
    models = sorted({t.stack.settings.model for t in job.targets if t.stack} |
                    set(jobs.source_models(source[1] if source[0] == "store" else None)))
    try:
        with _client(client, workers, gpus, models) as c:
            setup = time.perf_counter() - start
            rows = _run(c, job, ds if source[0] is None else None, progress)
    except BaseException:
        jobs.release(job)
        raise
    jobs.finish(job)
    return jobs.report(job.dst, rows, time.perf_counter() - start - setup, setup)


def compress(src: str | os.PathLike | xr.Dataset, dst: str | os.PathLike, rules: Mapping[str, Mapping] | None = None,
             *, model: str | None = None, quality: int | None = None, max_error: int | None = None,
             psnr: float | None = None, metric: str = "10k", client: Any = None, workers: int | None = None,
             gpus: Sequence[int | str] | None = None, batch: int = 8, overwrite: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Report:
    """Compress a dataset into a tcube zarr store on a dask cluster, chunk by chunk, resumably.

    Parameters
    ----------
    src : path or xarray.Dataset
        Anything :func:`tcube.readers.open_dataset` opens (workers open it themselves: the path must
        be valid on every worker), or a Dataset (sent once to each worker: lazily backed ones
        stay lazy; the job is known by the dask token of its data).
    dst : path or URL
        The zarr store to write (layout of :func:`tcube.xarray2tec`), reachable by every worker;
        never a source, and its folder must exist. Rerunning the same job resumes it; a zarr store
        holding anything else is replaced only with ``overwrite``, and nothing that is not a zarr
        store ever.
    rules, model, quality, max_error, psnr, metric
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
    settings = Settings.make(model, quality, max_error, psnr, metric, batch)
    return convert(ds, source, dst, rules, settings, client=client, workers=workers, gpus=gpus, overwrite=overwrite,
                    progress=progress)


def recompress(src: str | os.PathLike, dst: str | os.PathLike, rules: Mapping[str, Mapping] | None = None, *,
               model: str | None = None, quality: int | None = None, max_error: int | None = None,
               psnr: float | None = None, metric: str = "10k", batch: int = 8, **kwargs: Any) -> Report:
    """Re-code a zarr store (Zstd or any codec, or tcube at other settings) into a tcube store.

    Keyword arguments as in :func:`compress`. A tcube source is decoded first (read through
    :func:`tcube.tec2xarray`), so its variables come out as they went in; a plain zarr store is read as it is.

    Examples
    --------
    >>> recompress("archive.zstd.zarr", "archive.tcube.zarr", quality=6, workers=2)  # doctest: +SKIP
    """
    options = _run_options(kwargs)
    settings = Settings.make(model, quality, max_error, psnr, metric, batch)
    return convert(jobs.open_source("store", str(src)), ("store", str(src)), dst, rules, settings, **options)


def decompress(src: str | os.PathLike, dst: str | os.PathLike, **kwargs: Any) -> Report:
    """Decode a tcube store into a plain zarr store (every variable lossless, Zstd), readable without tcube.

    Keyword arguments as in :func:`compress` (no model or quality).

    Examples
    --------
    >>> decompress("archive.tcube.zarr", "archive.zarr", workers=2)  # doctest: +SKIP
    """
    from tcube.stacks import open_store

    options = _run_options(kwargs)
    settings = Settings.make(batch=options.pop("batch", 8))
    return convert(open_store(str(src)), ("store", str(src)), dst, {"*": {"lossless": True}}, settings, **options)


def _run_options(kwargs: dict) -> dict:
    """``kwargs`` if they are all run options of :func:`compress` (the defaults are :func:`_convert`'s)."""
    allowed = {"client", "workers", "gpus", "batch", "overwrite", "progress"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unexpected arguments {sorted(unknown)} (allowed: {sorted(allowed)})")
    return kwargs
