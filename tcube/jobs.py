"""Writing a store as a job: chunk by chunk, resumable, in this process or on a dask cluster.

A job turns a Dataset into a store with the layout of :mod:`tcube.stacks`. :func:`prepare` plans
it, checks and locks the target (:mod:`tcube.outputs`: never a source, never a folder of something
else, another job's store only with ``overwrite``, one job at a time), decides the units of the
source once and writes the skeleton (metadata, hidden until the end; coordinates, variables under
:data:`SMALL_BYTES`). :func:`prepare_append` plans new dates for a finished store, and
:func:`repair` codes the dates a plain xarray append left beside the stacks. Each task (:func:`fill`)
makes a rectangle of chunks valid: it reads their region from the source once, codes the stack
chunks in shared forward passes and stores every chunk whole, bound to its position.
:func:`finish` publishes the store and releases the lock when every task is done. :func:`run`
does it all in this process (``xarray2tec``, ``tcube compress``); :mod:`tcube.parallel` submits
the same tasks to dask workers.

Resumable and idempotent: the store records the job's fingerprint (source, its values or file
signature, variables, rules, layout and codecs). Rerunning the same job keeps every stored chunk
that checks out (present, length and CRC32 intact, same model, weights, quality, shape and
no-data; lossless chunks: decodable) and writes the rest. Until the last task is done, the store
is unfinished and nothing reads it as whole.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array
import numpy as np
import xarray as xr
import zarr

from tcube.errors import InputError
from tcube.models.registry import default_device
from tcube.outputs import (
    JOB_ATTR,
    OutputLock,
    check_not_source,
    check_store_output,
    clear_store,
    local_path,
    locate,
    open_array,
    publish,
    store_target,
    write_hidden,
)
from tcube.readers import open_dataset
from tcube.settings import Settings
from tcube.stacks import (
    STACK_PREFIX,
    Member,
    Stack,
    check_rules,
    create_stacks,
    json_safe,
    open_store,
    plan,
    read_block,
    rest_of,
    rules_for,
    variable_meta,
)
from tcube.validate import check_coded_range, check_count, check_reflectance
from tcube.zarr_codecs import TecZarrCodec, read_stored_chunk, stored_chunk_problem, write_stored_chunk

#: Variables (not coded by a model) up to this size are written with the skeleton.
SMALL_BYTES = 1 << 20
_OPENERS: dict[str, Callable[[str], xr.Dataset]] = {"dataset": open_dataset,
                                                    "store": functools.partial(open_store, plain_ok=True)}


@dataclass(frozen=True)
class Target:
    """Arrays of the output filled together, chunk by chunk: one stack, or plain variables sharing a grid."""

    arrays: tuple[str, ...]
    dims: tuple[str | None, ...]  # source dims of each axis (a stack's band axis: None)
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    bytes_per_value: float  # source bytes per grid position, for the report
    block: tuple[int, ...]  # chunks per task along each axis: a rectangle, read from the source at once
    stack: Stack | None = None
    meta: dict | None = None
    start: tuple[int, ...] | None = None  # where chunk (0, ...) of the source lies in the array (appends)

    def stored(self, coords: tuple[int, ...]) -> tuple[int, ...]:
        """The array's chunk position of the source chunk at ``coords``."""
        return coords if self.start is None else tuple(c + s for c, s in zip(coords, self.start))

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
class Job:
    """What tasks need to know: where to write, what, and how to open the source."""

    dst: Any
    targets: tuple[Target, ...]
    fingerprint: str
    source_kind: str | None  # how tasks open the source: a key of _OPENERS, or None (the dataset is passed)
    source_path: str | None

    def batches(self) -> list[tuple[int, list[tuple]]]:
        """(target index, chunk coordinates) of every task."""
        return [(index, coords) for index, target in enumerate(self.targets) for coords in target.tasks()]


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
        if not self.written:
            return f"{self.store}: complete, nothing to write ({self.chunks} chunks checked, all valid)"
        lines = [f"{self.store}: {self.written} of {self.chunks} chunks written ({self.chunks - self.written} "
                 f"already valid), {self.bytes_in / 1e6:.1f} MB in, {self.bytes_out / 1e6:.2f} MB out (ratio "
                 f"{self.bytes_in / max(self.bytes_out, 1):.1f}), {self.seconds:.1f} s, {self.mb_per_s:.1f} MB/s "
                 f"(setup {self.setup_seconds:.1f} s)"]
        for name, w in sorted(self.workers.items()):
            lines.append(f"  worker {name} ({w['device']}): {w['chunks']} chunks, {w['bytes_in'] / 1e6:.1f} MB in "
                         f"{w['seconds']:.1f} s busy, {w['mb_per_s']:.1f} MB/s")
        return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def _open_source(kind: str, path: str, fingerprint: str) -> xr.Dataset:
    """The source dataset, opened once per process and job."""
    return _OPENERS[kind](path)


def open_source(kind: str, path: str) -> xr.Dataset:
    """Open a job's source: ``"dataset"`` (anything :func:`tcube.readers.open_dataset` reads) or ``"store"``
    (a zarr store, decoded when tcube wrote it)."""
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


def _cut(target: Target, union: dict, coords: tuple) -> tuple:
    """Where the chunk at ``coords`` lies in a block read for the region ``union``."""
    own = target.region(coords)
    return tuple(slice(own[d].start - union[d].start, own[d].stop - union[d].start) if d else slice(None)
                 for d in target.dims)


def _fill_stack(ds: xr.Dataset, dst: Any, target: Target, coords: list[tuple]) -> tuple[list, int]:
    arr = open_array(dst, target.arrays[0])
    todo = [c for c in coords if stored_chunk_problem(arr, target.stored(c)) is not None]
    if not todo:
        return [], 0
    union = target.region(tuple(map(min, zip(*todo))), tuple(map(max, zip(*todo))))
    read = read_block(ds, target.stack, target.meta, union)  # one read: each source chunk decoded once
    blocks = [_padded(read[_cut(target, union, c)], arr.chunks) for c in todo]
    # the job decided the units (digital numbers) once for the whole source: no chunk decides again
    codec: TecZarrCodec = dataclasses.replace(arr.serializer, batch=sum(len(b) for b in blocks), scale=1.0,
                                              offset=0.0)
    blobs = codec.encode_chunks(blocks, [arr.fill_value] * len(blocks), positions=[target.stored(c) for c in todo])
    for c, blob in zip(todo, blobs):
        write_stored_chunk(arr, target.stored(c), blob)
    return todo, sum(map(len, blobs))


def _plain_chunk_ok(arr: zarr.Array, coords: tuple) -> bool:
    if read_stored_chunk(arr, coords) is None:
        return False
    try:
        arr.get_block_selection(coords)
    except Exception:  # any codec's decoding error: the chunk is rewritten
        return False
    return True


def _fill_plain(ds: xr.Dataset, dst: Any, target: Target, coords: list[tuple]) -> tuple[list, int]:
    arrays = [open_array(dst, name) for name in target.arrays]
    todo = [c for c in coords if not all(_plain_chunk_ok(a, c) for a in arrays)]
    if not todo:
        return [], 0
    union = target.region(tuple(map(min, zip(*todo))), tuple(map(max, zip(*todo))))
    part = ds[list(target.arrays)].isel(union).load()  # one read of the rectangle
    for name, arr in zip(target.arrays, arrays):
        values = part[name].values
        for c in todo:  # whole chunks only: the chunks that were valid stay as they are
            arr.set_block_selection(c, values[_cut(target, union, c)])
    return todo, sum(len(read_stored_chunk(a, c) or b"") for a in arrays for c in todo)


def fill(job: Job, index: int, coords: list[tuple], dataset: xr.Dataset | None = None) -> dict:
    """Task: make the chunks ``coords`` of target ``index`` valid; returns what it did."""
    start = time.perf_counter()
    target = job.targets[index]
    with dask.config.set(scheduler="synchronous"):  # reads inside a task stay inside it
        ds = dataset if dataset is not None else _open_source(job.source_kind, job.source_path, job.fingerprint)
        written, bytes_out = (_fill_stack if target.stack is not None else _fill_plain)(ds, job.dst, target, coords)
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


def _stack_block(ds: xr.Dataset, s: Stack, meta: dict, batch: int) -> tuple[int, int, int, int]:
    """Chunks per task for a stack: whole source chunks in y and x, then dates up to ``batch`` chunks."""
    name, info = next(iter(meta.items()))
    ydim, xdim, f = info["grid"]
    by, bx = (max(1, -(-_source_chunk(ds, name, d, f) // c)) for d, c in ((ydim, s.chunks[1]), (xdim, s.chunks[2])))
    return max(1, batch // (by * bx)), 1, by, bx


def _plain_block(chunks: tuple[int, ...], shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """Chunks per task for plain variables: up to ``batch`` chunks along the first axis."""
    return (min(batch, -(-shape[0] // chunks[0])),) + (1,) * (len(shape) - 1)


def _targets(ds: xr.Dataset, stacks: list[Stack], metas: dict, rest: xr.Dataset, rules: Mapping,
             batch: int) -> list[Target]:
    targets = []
    for s in stacks:
        per_value = sum(len(info["bands"]) * np.dtype(info["dtype"]).itemsize / info["grid"][2] ** 2
                        for info in metas[s.name].values())
        t = ds.sizes[s.tdim] if s.tdim else 1
        shape = (t, len(s.band_names), ds.sizes[s.ydim], ds.sizes[s.xdim])
        targets.append(Target((s.name,), (s.tdim, None, s.ydim, s.xdim), shape, (s.chunks[0], len(s.band_names),
                              *s.chunks[1:]), per_value, _stack_block(ds, s, metas[s.name], batch), s, metas[s.name]))
    grids: dict[tuple, list[str]] = {}
    for name, var in rest.data_vars.items():
        if _big(var.variable):
            grids.setdefault((var.dims, var.shape, _plain_chunks(ds[name], rules_for(rules, name))), []).append(name)
    for (dims, shape, chunks), names in grids.items():  # zarr lists a group's arrays in no fixed order
        names = sorted(names)
        per_value = sum(ds[n].dtype.itemsize for n in names)
        targets.append(Target(tuple(names), tuple(map(str, dims)), shape, chunks, per_value,
                              _plain_block(chunks, shape, batch)))
    return targets


def _file_signature(path: str | None) -> list | None:
    """Sizes and modification times of a local source (a file, or every file of a folder)."""
    root = local_path(path) if path else None
    if root is None or not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [[str(p.relative_to(root)) if p != root else "", p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _codec_id(stack: Stack) -> list:
    """A stack's codec in a job's fingerprint ([model, quality] without a mode, as earlier releases wrote it)."""
    s = stack.settings
    return [s.model, s.quality, *([s.max_error, s.psnr, s.metric] if s.mode != "quality" else [])]


def _recorded_rules(rules: Mapping, settings: Settings) -> dict:
    """``rules`` as a job's fingerprint records them: with the error bound or PSNR target of the
    settings as the default of every variable (as releases before :class:`Settings` wrote them, so
    their unfinished jobs resume)."""
    modes = {k: v for k, v in settings.recorded().items() if k in ("max_error", "psnr", "metric")}
    return {**rules, "*": {**modes, **rules.get("*", {})}} if modes else dict(rules)


def _fingerprint(ds: xr.Dataset, source: tuple[str | None, str | None], rules: Mapping,
                 targets: list[Target]) -> str:
    """What the job is: the source (its file signature, or the dataset's values), variables, rules, layout, codecs."""
    kind, path = source
    desc = {"source": path or "dataset", "rules": json_safe(dict(rules)),
            "signature": _file_signature(path) if kind else dask.base.tokenize(*ds.variables.values()),
            "variables": {str(n): [list(map(str, v.dims)), list(v.shape), v.dtype.str]
                          for n, v in ds.variables.items()},
            "targets": sorted([sorted(t.arrays), t.chunks, t.stack and _codec_id(t.stack)] for t in targets)}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _template(rest: xr.Dataset, targets: list[Target]) -> xr.Dataset:
    """``rest`` with the task-written variables as lazy placeholders (zarr metadata only), the others loaded."""
    out = rest.copy()
    chunked = {name: t.chunks for t in targets if t.stack is None for name in t.arrays}
    for name, var in out.variables.items():
        if name in chunked:
            var.data = dask.array.zeros(var.shape, dtype=var.dtype, chunks=chunked[name])
            var.encoding = {}
        else:
            var.load()
    return out


def _remove_partial_files(dst: Any) -> None:
    """Temporary files of chunks whose writer was killed (local stores write, then rename)."""
    path = local_path(dst)
    if path is not None and path.is_dir():
        for leftover in path.rglob("*.partial"):
            leftover.unlink(missing_ok=True)


def _backing_arrays(obj: Any, depth: int = 0, seen: set | None = None) -> Iterator[zarr.Array]:
    """The zarr arrays a lazily loaded (or dask) variable reads from, however xarray wrapped them."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 16 or isinstance(obj, str | bytes | np.ndarray | int | float):
        return
    seen.add(id(obj))
    if isinstance(obj, zarr.Array):
        yield obj
    elif isinstance(obj, dask.array.Array):
        for layer in obj.dask.layers.values():
            for value in dict(layer).values():
                yield from _backing_arrays(value, depth + 1, seen)
    elif isinstance(obj, tuple | list):
        for item in obj:
            yield from _backing_arrays(item, depth + 1, seen)
    else:
        for attr in ("array", "_array", "value", "args"):
            inner = getattr(obj, attr, None)
            if inner is not None:
                yield from _backing_arrays(inner, depth + 1, seen)


def sources_of(ds: xr.Dataset, path: str | None = None) -> list[Any]:
    """What a job reads: ``path``, the files ``ds`` (or any of its variables) was opened from, and the
    zarr stores its lazy variables read, however they were opened (paths, URLs, mappers, store objects)."""
    found: list[Any] = [path] if path else []
    found += [obj.encoding["source"] for obj in (ds, *ds.variables.values()) if "source" in obj.encoding]
    for var in ds.variables.values():
        found += [arr.store for arr in _backing_arrays(var._data)]
    unique: dict = {}
    for item in found:
        try:
            unique.setdefault(locate(item), item)
        except InputError:
            unique.setdefault(id(item), item)
    return list(unique.values())


#: Dates each stack's units are checked on before anything is written: spread over the whole series.
UNIT_SAMPLES = 8


def _sample_dates(target: Target) -> list[int]:
    """Time chunks spread evenly over a stack's series, first and last included."""
    n = -(-target.shape[0] // target.chunks[0])
    k = min(n, UNIT_SAMPLES)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def _preflight(ds: xr.Dataset, targets: list[Target]) -> None:
    """Decide the units of each stack once for the whole job, before the store is touched.

    The first spatial chunk of time chunks spread over the series is read and checked as the
    model's input: float reflectance given as digital numbers (name ``scale``), or units that put
    most values outside what the models code (a ``scale`` given to digital numbers), are refused.
    Every chunk is then coded in digital numbers: a dark date later in the series is data."""
    for target in targets:
        if target.stack is None:
            continue
        present = sorted({i for info in target.meta.values() for i in info["bands"].values()})
        blocks = [read_block(ds, target.stack, target.meta, target.region((t, 0, 0, 0)))[:, present]
                  for t in _sample_dates(target)]  # not the stand-ins
        sample = np.concatenate([b.reshape(-1) for b in blocks])
        valid = np.isfinite(sample)
        check_reflectance(sample, valid)
        check_coded_range(sample, valid, target.stack.name)


_LOCKS: dict[tuple, OutputLock] = {}


def _lock_id(job: Job) -> tuple:
    return job.fingerprint, locate(job.dst)


def prepare(ds: xr.Dataset, source: tuple[str | None, str | None], dst: Any, rules: Mapping | None,
            settings: Settings, *, overwrite: bool = False) -> Job:
    """Plan a job, lock and check its target and write the skeleton of its store (or find the same job there).

    The job holds the store's :class:`~tcube.outputs.OutputLock` until :func:`finish` or
    :func:`release`; the skeleton's metadata stays hidden until :func:`finish` publishes it.

    Parameters
    ----------
    ds : xarray.Dataset
        What to write.
    source : (kind, path)
        How tasks open ``ds`` again (``"dataset"`` or ``"store"`` and its path), or ``(None, None)``:
        tasks are given ``ds`` (in this process, or scattered to dask workers).
    dst : path, URL, fsspec mapper or zarr store
    rules : dict
        As in :func:`tcube.xarray2tec`.
    settings : Settings
        How variables are coded unless their rules say otherwise; its ``batch``: chunks per task.
    overwrite : bool
        Replace a zarr store that holds another job.
    """
    batch = settings.batch
    rules = dict(rules or {})
    check_rules(ds, rules)
    stacks, skipped = plan(ds, rules, settings)  # each stack's settings are checked as they are made
    sources = sources_of(ds, source[1])
    check_not_source(dst, sources)
    rest = rest_of(ds, stacks, skipped, rules)
    metas = {s.name: variable_meta(ds, s, rules) for s in stacks}
    targets = _targets(ds, stacks, metas, rest, rules, batch)
    fingerprint = _fingerprint(ds, source, _recorded_rules(rules, settings), targets)
    _preflight(ds, targets)
    check_store_output(dst, sources, fingerprint=fingerprint, overwrite=overwrite)  # before a lock file is made
    job = Job(store_target(dst), tuple(targets), fingerprint, *source)
    lock = OutputLock(job.dst).acquire()
    try:
        action = check_store_output(job.dst, sources, fingerprint=fingerprint, overwrite=overwrite)  # under the lock
        if action == "resume" and _has_arrays(job.dst, targets):
            _remove_partial_files(job.dst)
        else:  # a new store (or this job's own, killed while its skeleton was written)
            if action == "replace":
                clear_store(job.dst)
            record = {"fingerprint": fingerprint, "source": source[1] or "dataset", "finished": False}
            template = _template(rest, targets)
            template.attrs[JOB_ATTR] = record  # unfinished from its first byte on

            def skeleton(staging: Any) -> None:
                template.to_zarr(staging, mode="w", zarr_format=3, consolidated=False, compute=False)
                create_stacks(ds, stacks, metas, staging, template.attrs)

            write_hidden(job.dst, skeleton)
    except BaseException:
        lock.release()
        raise
    _LOCKS[_lock_id(job)] = lock
    return job


def release(job: Job) -> None:
    """Give up the job's lock on its store (the store stays unfinished unless :func:`finish` ran)."""
    lock = _LOCKS.pop(_lock_id(job), None)
    if lock is not None:
        lock.release()


def _has_arrays(dst: Any, targets: list[Target]) -> bool:
    """Whether every array the job fills exists in ``dst``."""
    try:
        for target in targets:
            for name in target.arrays:
                open_array(dst, name, mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError, zarr.errors.ArrayNotFoundError):
        return False
    return True


def report(dst: Any, rows: list[dict], seconds: float, setup: float) -> Report:
    """The :class:`Report` of a run from its task results."""
    workers: dict[str, dict] = {}
    for r in rows:
        w = workers.setdefault(r["worker"], {"chunks": 0, "written": 0, "bytes_in": 0, "bytes_out": 0, "seconds": 0.0})
        for k in w:
            w[k] += r[k]
        w["device"] = r["device"]
    for w in workers.values():
        w["mb_per_s"] = w["bytes_in"] / 1e6 / w["seconds"] if w["seconds"] else 0.0
    total = {k: sum(r[k] for r in rows) for k in ("chunks", "written", "bytes_in", "bytes_out")}
    return Report(str(dst), seconds=seconds, setup_seconds=setup, workers=workers, **total)


def finish(job: Job) -> None:
    """Publish the store of a job whose tasks all completed, and release its lock."""
    try:
        publish(job.dst)
    finally:
        release(job)


def run(job: Job, ds: xr.Dataset, progress: Callable[[int, int], None] | None = None, setup: float = 0.0,
        before_publish: Callable[[], None] | None = None) -> Report:
    """Run every task of ``job`` in this process (then ``before_publish``), then publish the store; an
    interrupted run leaves it unfinished."""
    start = time.perf_counter()
    batches = job.batches()
    total, done, rows = sum(len(c) for _, c in batches), 0, []
    try:
        for index, coords in batches:
            rows.append(fill(job, index, coords, ds))
            done += len(coords)
            if progress:
                progress(done, total)
        if before_publish is not None:
            before_publish()
    except BaseException:
        release(job)
        raise
    finish(job)
    return report(job.dst, rows, time.perf_counter() - start, setup)


def source_models(path: str | None) -> list[str]:
    """Models of the tcube arrays of a source store (tasks decode with them)."""
    if path is None:
        return []
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError):
        return []
    return [group[k].serializer.model for k in group.array_keys()
            if k.startswith(STACK_PREFIX) and isinstance(group[k].serializer, TecZarrCodec)]



def _store_stack(arr: zarr.Array, name: str) -> tuple[Stack, dict]:
    """The :class:`~tcube.stacks.Stack` and variables' metadata of a stack array of a store."""
    info = dict(arr.attrs["tcube"])
    names = {index: var for var, v in info["variables"].items() for index in v["bands"].values()}
    tdim, _, ydim, xdim = arr.metadata.dimension_names
    codec = arr.serializer
    stack = Stack(name, info["time_dim"], ydim, xdim, codec.settings, (arr.chunks[0], *arr.chunks[2:]),
                  [Member(names.get(i, ""), band) for i, band in enumerate(info["bands"])])
    if not stack.native:  # a stack of the 12 L2A bands lists only the members it holds
        stack.members = [m for m in stack.members if m.name]
    return stack, info["variables"]


def _append_fingerprint(base: str, ds: xr.Dataset, source: tuple[str | None, str | None], dim: str) -> str:
    kind, path = source
    desc = {"base": base, "dim": dim, "source": path or "dataset",
            "signature": _file_signature(path) if kind else dask.base.tokenize(*ds.variables.values())}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _encoded_values(values: xr.Variable, arr: zarr.Array) -> np.ndarray:
    """Values of a new date as the store keeps them (dates in the store's CF units and calendar)."""
    if values.dtype.kind in "mM":
        var = values.copy()
        var.encoding = {k: arr.attrs[k] for k in ("units", "calendar") if k in arr.attrs}
        var.encoding["dtype"] = arr.dtype
        values = xr.conventions.encode_cf_variable(var)
    out = np.asarray(values.values)
    if out.dtype != arr.dtype and not np.can_cast(out.dtype, arr.dtype, casting="same_kind"):
        raise InputError(f"{arr.path}: new values of dtype {out.dtype} do not fit the store's {arr.dtype}")
    return out.astype(arr.dtype)


def _group_arrays(dst: Any) -> dict[str, zarr.Array]:
    """The arrays of a store (with the metadata an unfinished append keeps hidden)."""
    from tcube.outputs import survey

    names = sorted({k.rpartition("/")[0] for k in survey(dst).entries if k.rpartition("/")[2].startswith("zarr.json")
                    and k.count("/") == 1})
    return {n: open_array(dst, n) for n in names}


def prepare_append(ds: xr.Dataset, source: tuple[str | None, str | None], dst: Any, dim: str = "time", *,
                   batch: int = 8, written: Collection[str] = (), restore: Mapping | None = None) -> Job:
    """Plan appending the dates of ``ds`` along ``dim`` to a finished tcube store, coded with its settings.

    The store is locked and taken out of sight of plain readers (:func:`~tcube.outputs.hide_root`);
    its arrays keep their old, complete metadata until :func:`finish` publishes the longer ones.
    Variables along ``dim`` without a model (masks, the time coordinate) are written here; the
    stacks' new chunks are the job's tasks. An interrupted append is completed by running it again.
    ``written`` names plain arrays that already hold the new dates; ``restore``, root attributes to
    put back (:func:`repair`).
    """
    from tcube.outputs import hide_root, is_unfinished, job_record, set_hidden_array

    batch = check_count(batch, "batch")
    dst = store_target(dst)
    sources = sources_of(ds, source[1])
    check_not_source(dst, sources)
    if dim not in ds.dims:
        raise InputError(f"append_dim {dim!r} is not a dimension of the new data (dims: {list(map(str, ds.dims))})")
    lock = OutputLock(dst).acquire()
    try:
        record = job_record(dst) or {}
        appending = record.get("appending")
        if restore and not record:
            record = dict(restore.get(JOB_ATTR) or {})
        if is_unfinished(dst) and not appending:
            raise InputError(f"{dst} is unfinished: complete the job that writes it before appending to it")
        base = appending["base"] if appending else record.get("fingerprint")
        if base is None:
            raise InputError(f"{dst} is not a store a tcube job wrote: tcube appends to its own stores only")
        fingerprint = _append_fingerprint(base, ds, source, dim)
        if appending and record.get("fingerprint") != fingerprint:
            raise InputError(f"{dst}: another append to it was interrupted; rerun that one to complete it first")
        arrays = _group_arrays(dst)
        lengths = appending["lengths"] if appending else {}
        grown: dict[str, tuple[zarr.Array, int]] = {}
        for name, arr in arrays.items():
            dims = list(arr.metadata.dimension_names or ())
            if dim in dims and name not in written:
                axis = dims.index(dim)
                old = lengths.get(name, arr.shape[axis])
                grown[name] = (arr, axis)
                lengths[name] = old
        targets, plain = _append_plan(ds, arrays, grown, lengths, dim, batch)
        _preflight(ds, targets)
        if not appending:
            hide_root(dst, {"fingerprint": fingerprint, "source": source[1] or "dataset",
                            "appending": {"base": base, "lengths": lengths}}, dict(restore or {}))
            for name, (arr, axis) in grown.items():
                meta = arr.metadata.to_dict()
                meta["shape"] = [n + (ds.sizes[dim] if i == axis else 0) for i, n in enumerate(arr.shape)]
                set_hidden_array(dst, name, meta)
        for name, axis in plain:
            arr = open_array(dst, name)
            region = tuple(slice(lengths[name], lengths[name] + ds.sizes[dim]) if i == axis else slice(None)
                           for i in range(arr.ndim))
            values = ds[name].variable.transpose(*arr.metadata.dimension_names)
            arr[region] = _encoded_values(values, arr)
    except BaseException:
        lock.release()
        raise
    job = Job(dst, tuple(targets), fingerprint, *source)
    _LOCKS[_lock_id(job)] = lock
    return job


def _append_plan(ds: xr.Dataset, arrays: dict, grown: dict, lengths: dict, dim: str,
                 batch: int) -> tuple[list[Target], list[tuple[str, int]]]:
    """The stack targets of an append and the plain arrays it writes along ``dim``; refuses what does not fit."""
    targets, plain, covered = [], [], set()
    for name, (arr, axis) in grown.items():
        if not name.startswith(STACK_PREFIX) or "tcube" not in arr.attrs:
            if name not in ds.variables:
                raise InputError(f"the store keeps {name!r} along {dim!r}; the new data lacks it")
            plain.append((name, axis))
            covered.add(name)
            continue
        stack, meta = _store_stack(arr, name)
        if stack.tdim != dim:
            raise InputError(f"{name} runs along {stack.tdim!r}, not {dim!r}")
        tchunk = arr.chunks[0]
        if lengths[name] % tchunk:
            raise InputError(f"{name}: its last time chunk holds {lengths[name] % tchunk} of {tchunk} dates; appending "
                             "would code them again: append whole chunks of dates, append in a store chunked with "
                             "one date per chunk (--chunks 1 256 256), or rewrite it")
        for var, info in meta.items():
            if var not in ds.data_vars:
                raise InputError(f"the store codes {var!r}; the new data lacks it")
            ydim, xdim, f = info["grid"]
            if ds.sizes.get(ydim, -1) * f != arr.shape[2] or ds.sizes.get(xdim, -1) * f != arr.shape[3]:
                raise InputError(f"{var}: the new data's grid ({ydim}, {xdim}) differs from the store's")
            if list(ds[var].dims) != info["dims"]:
                raise InputError(f"{var}: dims {list(ds[var].dims)} differ from the store's {info['dims']}")
            covered.add(var)
        shape = (ds.sizes[dim], arr.shape[1], arr.shape[2], arr.shape[3])
        per_value = sum(len(i["bands"]) * np.dtype(i["dtype"]).itemsize / i["grid"][2] ** 2 for i in meta.values())
        block = (max(1, batch // max(1, -(-shape[2] // arr.chunks[2]) * -(-shape[3] // arr.chunks[3]))), 1, 1, 1)
        targets.append(Target((name,), (dim, None, stack.ydim, stack.xdim), shape, tuple(arr.chunks), per_value,
                              block, stack, meta, (lengths[name] // tchunk, 0, 0, 0)))
    extra = [str(n) for n in ds.data_vars if n not in covered and dim in ds[n].dims]
    if extra:
        raise InputError(f"the store has no {', '.join(extra)} along {dim!r}: appending adds dates, not variables")
    return targets, plain


def repair(dst: Any, progress: Callable[[int, int], None] | None = None) -> Report | None:
    """Repair a tcube store that a plain ``to_zarr(append_dim=...)`` changed: code the dates it wrote
    beside the stacks into them, put the store's attributes back, remove the plain copies.

    Returns None when the store needs no repair. Resumable: an interrupted repair completes when
    run again (the plain copies go only after the stacks hold their dates).
    """
    from tcube.outputs import delete_array, job_record
    from tcube.stacks import STORE_ATTRS

    dst = store_target(dst)
    record = job_record(dst) or {}
    arrays = _group_arrays(dst)
    stacks = {n: a for n, a in arrays.items() if n.startswith(STACK_PREFIX) and "store" in a.attrs.get("tcube", {})}
    if not stacks:
        raise InputError(f"{dst}: no tcube stack with a copy of the store's attributes (written by tcube >= 0.2): "
                         "nothing tcube can repair")
    first = next(iter(stacks.values()))
    group_attrs = zarr.open_group(dst, mode="r").attrs if not record.get("appending") else {}
    if not record.get("appending") and STORE_ATTRS[0] in group_attrs:
        return None
    plain = sorted({v for a in stacks.values() for v in a.attrs["tcube"]["variables"]} & set(arrays))
    if not plain:
        raise InputError(f"{dst}: its tcube attributes are gone but nothing was written beside its stacks: restore "
                         "them with tcube repair after appending, or recompress the store")
    dim = next(iter(stacks.values())).attrs["tcube"]["time_dim"]
    ds = xr.Dataset({n: (list(arrays[n].metadata.dimension_names), arrays[n][...]) for n in plain})
    restore = {**dict(first.attrs["tcube"]["store"]),
               JOB_ATTR: {k: v for k, v in record.items() if k != "appending"} or {"fingerprint": "repaired"}}
    job = prepare_append(ds, (None, None), dst, dim, written=[n for n in arrays if n not in stacks], restore=restore)

    def drop_plain_copies() -> None:
        for name in plain:
            delete_array(dst, name)

    return run(job, ds, progress, before_publish=drop_plain_copies)
