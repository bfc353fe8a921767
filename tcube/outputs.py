"""Where tcube writes: the one place that checks an output against its sources and what is there.

Rules, for every command and API that writes data (compress, recompress, decompress, preview,
xarray2tec, tcube.parallel; ``tcube train --export`` for weights):

- an output is never one of its sources, inside one, or a folder holding one, however the paths
  are spelled (relative, through symlinks, with a trailing slash);
- the folder it goes into must exist: tcube never creates folders;
- a store is written into only when it is empty, new, or a tcube store of the same job (which is
  then resumed); ``overwrite`` replaces a zarr store, never a folder or file of anything else;
- an output file is replaced only with ``overwrite`` and only when it is a file of the kind the
  command writes (NetCDF, PNG, GeoTIFF); it is written under a temporary name and renamed when complete.

Stores are marked unfinished while a job writes them: the root group metadata is kept aside
under :data:`UNFINISHED_KEY` (so xarray and zarr find no group there) and the job record says
``"finished": false``; :func:`mark_finished` puts it back when the last chunk is stored.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from tcube.errors import InputError, UnfinishedStoreError

#: Root attribute of a store written by a tcube job: its fingerprint, source and whether it finished.
JOB_ATTR = "tcube:job"
ROOT_KEY = "zarr.json"
#: Where the root metadata of an unfinished store waits until its job completes.
UNFINISHED_KEY = "zarr.json.tcube-unfinished"
_MARKERS = (ROOT_KEY, ".zgroup", ".zarray", UNFINISHED_KEY)


@dataclass(frozen=True)
class FileKind:
    """A kind of output file, known by the bytes its content starts with (after ``offset`` bytes)."""

    name: str
    magics: tuple[bytes, ...]
    offset: int = 0

    def matches(self, path: Path) -> bool:
        with open(path, "rb") as f:
            head = f.read(self.offset + max(map(len, self.magics)))[self.offset:]
        return any(head.startswith(m) for m in self.magics)


NETCDF = FileKind("NetCDF", (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n"))
PNG = FileKind("PNG", (b"\x89PNG\r\n\x1a\n",))
GEOTIFF = FileKind("GeoTIFF", (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"))  # TIFF and BigTIFF
SAFETENSORS = FileKind("safetensors", (b"{",), offset=8)  # an 8-byte header length, then its JSON


def local_path(target: Any) -> Path | None:
    """``target`` as an absolute filesystem path (symlinks resolved) when it is one, else None.

    Examples
    --------
    >>> local_path("memory://x") is None, local_path("a/../b.zarr/") == Path.cwd().resolve() / "b.zarr"
    (True, True)
    """
    if isinstance(target, Store) or not isinstance(target, str | os.PathLike) or "://" in str(target):
        return None
    return Path(os.path.realpath(os.path.abspath(os.fspath(target))))


def _existing_folder(path: Path) -> Path:
    """The parent folder of ``path``, which must exist."""
    if not path.parent.is_dir():
        missing = next(p for p in reversed([path.parent, *path.parent.parents]) if not p.is_dir())
        raise InputError(f"{path}: folder {missing} does not exist (tcube never creates folders)")
    return path.parent


def check_not_source(target: Any, sources: Sequence[Any]) -> None:
    """Refuse an output that is a source, lies inside one, or holds one.

    Examples
    --------
    >>> check_not_source("cube.zarr/", ["./cube.zarr"])
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: cube.zarr/ is the source ./cube.zarr: refusing to write there
    """
    out = local_path(target)
    for source in sources:
        src = local_path(source)
        if out is None or src is None:
            if out is None and src is None and str(target).rstrip("/") == str(source).rstrip("/"):
                raise InputError(f"{target} is the source {source}: refusing to write there")
            continue
        relation = ("is" if out == src else "is inside" if src in out.parents else
                    "holds" if out in src.parents else None)
        if relation:
            raise InputError(f"{target} {relation} the source {source}: refusing to write there")


def _store(target: Any, writable: bool = False) -> Store | None:
    """A zarr store for ``target`` (read-only unless ``writable``), or None for a missing local path."""
    if isinstance(target, Store):
        return target
    path = local_path(target)
    if path is not None:
        return zarr.storage.LocalStore(path, read_only=not writable) if path.is_dir() else None
    return zarr.storage.FsspecStore.from_url(str(target), read_only=not writable)


def _get_json(store: Store, key: str) -> dict | None:
    buf = sync(store.get(key, default_buffer_prototype()))
    return None if buf is None else json.loads(buf.to_bytes())


def _root(store: Store | None) -> tuple[str, dict] | None:
    """(key, metadata) of the root group: the published one, else the one an unfinished job keeps aside."""
    if store is None:
        return None
    for key in (ROOT_KEY, UNFINISHED_KEY):
        meta = _get_json(store, key)
        if meta is not None:
            return key, meta
    return None


def _job(target: Any) -> tuple[bool, dict | None]:
    """(unfinished, job record) of a store, from one read of its root metadata."""
    root = _root(_store(target))
    if root is None:
        return False, None
    record = root[1].get("attributes", {}).get(JOB_ATTR)
    record = record if isinstance(record, dict) else None
    return root[0] == UNFINISHED_KEY or (record or {}).get("finished") is False, record


def job_record(target: Any) -> dict | None:
    """The job record of a store (fingerprint, source, finished), or None.

    Examples
    --------
    >>> job_record(zarr.storage.MemoryStore()) is None
    True
    """
    return _job(target)[1]


def is_unfinished(target: Any) -> bool:
    """Whether a job started writing this store and has not completed it."""
    return _job(target)[0]


def check_finished(target: Any) -> None:
    """Raise :class:`~tcube.errors.UnfinishedStoreError` for a store whose job has not completed."""
    unfinished, record = _job(target)
    if unfinished:
        raise UnfinishedStoreError(
            f"{target} is unfinished: the job writing it (from {(record or {}).get('source', 'an unknown source')}) "
            "stopped before the end or is still running; rerun the same command to complete it")


def _kind(target: Any) -> str:
    """'missing', 'empty', 'zarr', 'file' (a local file) or 'other' (anything else already there)."""
    path = local_path(target)
    if path is not None:
        if not path.exists():
            return "missing"
        if not path.is_dir():
            return "file"
        if not any(path.iterdir()):
            return "empty"
        return "zarr" if any((path / m).exists() for m in _MARKERS) else "other"
    store = _store(target)
    if store is None or sync(store.is_empty("")):
        return "empty"
    return "zarr" if any(sync(store.exists(m)) for m in _MARKERS) else "other"


def check_store_output(target: Any, sources: Sequence[Any] = (), *, fingerprint: str | None = None,
                       overwrite: bool = False) -> bool:
    """Check that a job may write the zarr store ``target``; True when it resumes the same job there.

    Parameters
    ----------
    target : path, URL or zarr store
    sources : paths or URLs the job reads
    fingerprint : str, optional
        The job's fingerprint: a store holding the same job is resumed (unless ``overwrite``).
    overwrite : bool
        Replace a zarr store that holds something else (never a folder or file that is not one).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "thesis.txt").write_text("x")
    >>> check_store_output(folder, overwrite=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: ... exists and is not a zarr store: refusing to write into it, even with overwrite
    """
    check_not_source(target, sources)
    path = local_path(target)
    if path is not None:
        _existing_folder(path)
    kind = _kind(target)
    if kind in ("missing", "empty"):
        return False
    if kind != "zarr":
        what = "a file" if kind == "file" else "not a zarr store"
        raise InputError(f"{target} exists and is {what}: refusing to write into it"
                         + (", even with overwrite" if overwrite else ""))
    recorded = (job_record(target) or {}).get("fingerprint")
    if fingerprint is not None and recorded == fingerprint and not overwrite:
        return True
    if overwrite:
        return False
    if recorded is None:
        raise InputError(f"{target} is a zarr store that no tcube job wrote: pass overwrite=True (--overwrite) "
                         "to replace it")
    raise InputError(f"{target} holds another job (other source, settings or layout; job {recorded[:8]}, this one "
                     f"{(fingerprint or '?')[:8]}): pass overwrite=True (--overwrite) to replace it")


def check_file_output(target: str | os.PathLike, kind: FileKind, sources: Sequence[Any] = (), *,
                      overwrite: bool = False) -> Path:
    """Check that a command may write the file ``target`` of ``kind``; returns its absolute path.

    Examples
    --------
    >>> import tempfile
    >>> notes = Path(tempfile.mkdtemp()) / "notes.nc"
    >>> _ = notes.write_text("my notes")
    >>> check_file_output(notes, NETCDF, overwrite=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: ...notes.nc exists and is not a NetCDF file: refusing to replace it
    """
    check_not_source(target, sources)
    path = local_path(target)
    if path is None:
        raise InputError(f"{target}: write files to a local path")
    _existing_folder(path)
    if path.exists():
        if path.is_dir() or not kind.matches(path):
            raise InputError(f"{target} exists and is not a {kind.name} file: refusing to replace it")
        if not overwrite:
            raise InputError(f"{target} exists: pass --overwrite (overwrite=True) to replace it")
    return path


@contextlib.contextmanager
def writing_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block completes,
    removed when it fails or is interrupted, so a half-written file never takes the real name."""
    partial = path.with_name(f".{path.stem}.tcube-partial-{os.getpid()}{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _set_json(store: Store, key: str, meta: dict) -> None:
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(json.dumps(meta, indent=2).encode())))


def mark_unfinished(target: Any, record: dict) -> None:
    """Record the job in the root metadata and keep it aside until :func:`mark_finished`."""
    store = _store(target, writable=True)
    key, meta = _root(store)
    meta.setdefault("attributes", {})[JOB_ATTR] = {**record, "finished": False}
    _set_json(store, UNFINISHED_KEY, meta)
    if key == ROOT_KEY and store.supports_deletes:
        sync(store.delete(ROOT_KEY))
    elif key == ROOT_KEY:  # cannot hide it: the record still says unfinished
        _set_json(store, ROOT_KEY, meta)


def mark_finished(target: Any) -> None:
    """Publish the root metadata of a store whose job stored its last chunk."""
    store = _store(target, writable=True)
    key, meta = _root(store)
    meta.setdefault("attributes", {}).setdefault(JOB_ATTR, {})["finished"] = True
    _set_json(store, ROOT_KEY, meta)
    if store.supports_deletes:
        sync(store.delete(UNFINISHED_KEY))
