"""Where tcube writes: the one place that checks an output against its sources and what is there.

Rules, for every command and API that writes data (compress, recompress, decompress, preview,
xarray2tec, tcube.parallel; ``tcube train --export`` for weights):

- any output (a path, a ``file://`` or other URL, an fsspec mapper, a zarr store object) is
  resolved to what it points at (:func:`locate`: symlinks followed, URLs normalised, store
  objects unwrapped); one that cannot be resolved is refused. It is never one of its sources,
  inside one, or a folder holding one, however either is spelled;
- the folder it goes into must exist: tcube never creates folders (but the store's own);
- a store is written only when it is new, empty, or a zarr store tcube can prove is one (root
  metadata that parses, and nothing in it but zarr entries: metadata documents and the chunk
  keys of its arrays, see :func:`zarr_entries`); a store of the same job is resumed;
  ``overwrite`` replaces another zarr store by deleting exactly its zarr entries, never a folder
  or file of anything else;
- one job writes a store at a time: :class:`OutputLock` (an advisory ``flock`` on the store's
  lock file, which the kernel drops when the process dies; a lock key on other stores);
- an output file is replaced only with ``overwrite`` and only when it is a file of the kind the
  command writes (NetCDF, PNG, GeoTIFF); it is written under a temporary name and renamed when complete.

Publication: a job writes every metadata document of its store under a hidden name
(``zarr.json`` + :data:`HIDDEN_SUFFIX`) and its chunks under their real keys; zarr and xarray
find no group and no array there until :func:`publish` writes the documents under their real
names (arrays first, the root group last) once the last chunk is stored. The job record in the
root attributes says whether the job finished. :func:`open_array` opens the arrays of an
unfinished store for the job that writes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
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
#: Appended to the key of a metadata document an unfinished job keeps out of sight.
HIDDEN_SUFFIX = ".tcube-unfinished"
#: Where the root metadata of an unfinished store waits until its job completes.
UNFINISHED_KEY = ROOT_KEY + HIDDEN_SUFFIX
#: The lock file (or key) of a store that a job is writing.
LOCK_KEY = ".tcube-lock"
_METADATA_NAMES = frozenset({"zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"})
_CHUNK_KEY = re.compile(r"(c([/.]\d+)*|\d+([/.]\d+)*)(\.partial)?")
_FOREIGN_SHOWN = 3


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


@dataclass(frozen=True)
class Location:
    """What an output or a source points at: a local path, a path on another filesystem, or a store object.

    ``scheme`` is ``"file"`` (``path`` absolute, symlinks resolved), a filesystem protocol
    (``"s3"``, ``"memory"``...) with its normalised path, or ``"object"`` for an in-process store
    known only by identity (a :class:`zarr.storage.MemoryStore`: ``path`` is the id of its dict).
    """

    scheme: str
    path: str

    def relation(self, other: Location) -> str | None:
        """``"is"``, ``"is inside"`` or ``"holds"`` when ``self`` and ``other`` overlap, else None.

        Examples
        --------
        >>> Location("s3", "b/a.zarr/x").relation(Location("s3", "b/a.zarr")), Location("s3", "b/a").relation(
        ...     Location("s3", "b/a.zarr"))
        ('is inside', None)
        """
        if self.scheme != other.scheme:
            return None
        if self.path == other.path:
            return "is"
        mine, theirs = self.path.rstrip("/") + "/", other.path.rstrip("/") + "/"
        return "is inside" if mine.startswith(theirs) else "holds" if theirs.startswith(mine) else None

    @property
    def local(self) -> Path | None:
        return Path(self.path) if self.scheme == "file" else None


def _protocol(fs: Any) -> str:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "file" if {"file", "local"} & set(protocols) else str(protocols[0])


def _from_url(url: str) -> Location:
    last = url.split("::")[-1]  # chained URLs (simplecache::s3://...): the storage is the last one
    protocol, sep, rest = last.partition("://")
    if not sep:
        return _from_path(last)
    protocol = protocol.lower()
    if protocol in ("file", "local"):
        return _from_path(rest)
    return Location(protocol, posixpath.normpath("/" + rest).lstrip("/"))


def _from_path(path: str | os.PathLike) -> Location:
    return Location("file", os.path.realpath(os.path.abspath(os.fspath(path))))


def locate(target: Any) -> Location:
    """Resolve an output or a source to what it points at; :class:`~tcube.errors.InputError` when unknown.

    Takes paths, URLs (``file://``, ``s3://``, chained ``a::b://``), fsspec mappers and zarr
    stores (local, fsspec, memory, zip and wrapping stores).

    Examples
    --------
    >>> import tempfile
    >>> folder = os.path.realpath(tempfile.mkdtemp())
    >>> spellings = [folder + "/x.zarr/", "file://" + folder + "/x.zarr", zarr.storage.LocalStore(folder + "/x.zarr")]
    >>> len({locate(s) for s in spellings}), locate("s3://bucket//a/./x.zarr/")
    (1, Location(scheme='s3', path='bucket/a/x.zarr'))
    """
    if isinstance(target, zarr.storage.LocalStore):
        return _from_path(target.root)
    if isinstance(target, zarr.storage.ZipStore):
        return _from_path(target.path)
    if isinstance(target, zarr.storage.FsspecStore):
        loc = Location(_protocol(target.fs), target.path)
        return _from_path(target.path) if loc.scheme == "file" else _from_url(f"{loc.scheme}://{loc.path}")
    if isinstance(target, zarr.storage.MemoryStore):
        return Location("object", str(id(target._store_dict)))
    if isinstance(target, zarr.storage.WrapperStore):
        return locate(target._store)
    if hasattr(target, "fs") and hasattr(target, "root") and not isinstance(target, Store):  # an fsspec mapper
        protocol = _protocol(target.fs)
        return _from_path(target.root) if protocol == "file" else _from_url(f"{protocol}://{target.root}")
    if isinstance(target, str | os.PathLike):
        text = os.fspath(target)
        return _from_url(text) if "://" in str(text) else _from_path(text)
    raise InputError(f"cannot tell where {target!r} writes (tcube knows paths, URLs, fsspec mappers and zarr's "
                     "local, fsspec, memory and zip stores): give the store as a path or URL")


def local_path(target: Any) -> Path | None:
    """``target`` as an absolute filesystem path (symlinks resolved) when it is a local one, else None.

    Examples
    --------
    >>> local_path("memory://x") is None, local_path("a/../b.zarr/") == Path.cwd().resolve() / "b.zarr"
    (True, True)
    """
    try:
        return locate(target).local
    except InputError:
        return None


def _existing_folder(path: Path) -> Path:
    """The parent folder of ``path``, which must exist."""
    if not path.parent.is_dir():
        missing = next(p for p in reversed([path.parent, *path.parent.parents]) if not p.is_dir())
        raise InputError(f"{path}: folder {missing} does not exist (tcube never creates folders)")
    return path.parent


def check_not_source(target: Any, sources: Sequence[Any]) -> None:
    """Refuse an output that is a source, lies inside one, or holds one, however either is spelled.

    Examples
    --------
    >>> check_not_source("cube.zarr/", ["./cube.zarr"])
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: cube.zarr/ is the source ./cube.zarr: refusing to write there
    """
    out = locate(target)
    for source in sources:
        try:
            src = locate(source)
        except InputError:
            continue  # a source of a kind tcube cannot write to either
        relation = out.relation(src)
        if relation:
            raise InputError(f"{target} {relation} the source {source}: refusing to write there")


def store_target(target: Any) -> Any:
    """What jobs open: the resolved path of a local output (symlinks followed), else ``target`` itself."""
    path = local_path(target)
    return str(path) if path is not None else target


def _store(target: Any, writable: bool = False) -> Store | None:
    """A zarr store for ``target`` (read-only unless ``writable``), or None for a missing local path."""
    if isinstance(target, Store):
        return target
    path = local_path(target)
    if path is not None:
        return zarr.storage.LocalStore(path, read_only=not writable) if path.is_dir() else None
    if hasattr(target, "fs") and hasattr(target, "root"):
        return zarr.storage.FsspecStore.from_mapper(target, read_only=not writable)
    return zarr.storage.FsspecStore.from_url(str(target), read_only=not writable)


def _get_json(store: Store, key: str) -> dict | None:
    buf = sync(store.get(key, default_buffer_prototype()))
    if buf is None:
        return None
    try:
        meta = json.loads(buf.to_bytes())
    except (UnicodeDecodeError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _set_json(store: Store, key: str, meta: dict) -> None:
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(json.dumps(meta, indent=2).encode())))


async def _collect(items: Any) -> list[str]:
    return [item async for item in items]


def _keys(target: Any) -> list[str]:
    """Every key of a store; for a local folder also links and special files (as ``name@``), never followed."""
    path = local_path(target)
    if path is None:
        store = _store(target)
        return [] if store is None else sync(_collect(store.list()))
    keys = []
    for folder, dirs, files in os.walk(path):
        rel = os.path.relpath(folder, path)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
            keys.append(key if os.path.isfile(full) and not os.path.islink(full) else key + "@")
    return keys


def _zarr_node(store: Store, key: str) -> dict | None:
    """The metadata document at ``key`` when it is one of zarr (format 2 or 3), else None."""
    meta = _get_json(store, key)
    if meta is None:
        return None
    name = key.rsplit("/", 1)[-1]
    if name in (".zgroup", ".zarray"):
        return meta if meta.get("zarr_format") == 2 else None
    return meta if meta.get("zarr_format") == 3 and meta.get("node_type") in ("group", "array") else None


def _is_array(store: Store, key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name == ".zarray" or (name.startswith(ROOT_KEY) and (_zarr_node(store, key) or {}).get("node_type")
                                 == "array")


def _own(name: str) -> bool:
    """tcube's and zarr's own working files: the lock, hidden metadata, a local store's temporary files."""
    return (name == LOCK_KEY or name.endswith(HIDDEN_SUFFIX) and name.startswith(ROOT_KEY)
            or re.fullmatch(r".*\.[0-9a-f]{32}\.partial", name) is not None)


@dataclass(frozen=True)
class Survey:
    """What is at an output: ``kind`` (missing, file, empty, zarr or other), its zarr entries and the rest."""

    kind: str
    entries: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()


def survey(target: Any) -> Survey:
    """What is at ``target``: a zarr store only when its root metadata parses and every key is a zarr entry.

    Zarr entries are metadata documents (``zarr.json``, ``.zgroup``, ``.zarray``, ``.zattrs``,
    ``.zmetadata``), chunk keys under an array's node, and the working files of tcube and zarr.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    >>> _ = (folder / "thesis.txt").write_text("mine")
    >>> survey(folder)
    Survey(kind='other', entries=('zarr.json',), foreign=('thesis.txt',))
    """
    path = local_path(target)
    if path is not None and not path.exists():
        return Survey("missing")
    if path is not None and not path.is_dir():
        return Survey("file")
    store = _store(target)
    keys = sorted(_keys(target))
    if not [k for k in keys if not _own(k)]:
        return Survey("empty", tuple(keys))
    roots = [k for k in (ROOT_KEY, ".zgroup", ".zarray", UNFINISHED_KEY) if k in keys and _zarr_node(store, k)]
    arrays = sorted({k.rpartition("/")[0] for k in keys if _is_array(store, k)}, key=len, reverse=True)
    entries, foreign = [], []
    for key in keys:
        folder, _, name = key.rpartition("/")
        array = next((a for a in arrays if a == "" or key.startswith(a + "/")), None)
        rest = key[len(array) + 1 if array else 0:] if array is not None else None
        ok = name in _METADATA_NAMES or _own(name) or (rest is not None and _CHUNK_KEY.fullmatch(rest) is not None)
        (entries if ok and not key.endswith("@") else foreign).append(key)
    return Survey("zarr" if roots and not foreign else "other", tuple(entries), tuple(foreign))


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


def delete_array(target: Any, path: str) -> int:
    """Delete the zarr entries of the array at ``path`` (its metadata and chunk keys, nothing else)."""
    found = survey(target)
    keys = [k for k in found.entries if k.startswith(path + "/") and not _own(k.rsplit("/", 1)[-1])]
    store = _store(target, writable=True)
    for key in sorted(keys, key=_is_document):  # the metadata last: a half-deleted array stays an array
        sync(store.delete(key))
    return len(keys)


def _foreign_text(foreign: Sequence[str]) -> str:
    shown = ", ".join(k.rstrip("@") for k in foreign[:_FOREIGN_SHOWN])
    return shown + (f" and {len(foreign) - _FOREIGN_SHOWN} more" if len(foreign) > _FOREIGN_SHOWN else "")


def check_store_output(target: Any, sources: Sequence[Any] = (), *, fingerprint: str | None = None,
                       overwrite: bool = False) -> str:
    """Check that a job may write the zarr store ``target``; says what the job does there.

    Returns ``"new"`` (nothing there, or an empty folder), ``"resume"`` (a store of the same job)
    or ``"replace"`` (a zarr store holding something else, with ``overwrite``: the job deletes its
    zarr entries, :func:`clear_store`).

    Parameters
    ----------
    target : path, URL, fsspec mapper or zarr store
    sources : paths, URLs or stores the job reads
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
    tcube.errors.InputError: ... exists and is not a zarr store: refusing to write into it, ... (it holds thesis.txt)
    """
    check_not_source(target, sources)
    path = local_path(target)
    if path is not None:
        _existing_folder(path)
    found = survey(target)
    if found.kind in ("missing", "empty"):
        return "new"
    if found.kind != "zarr":
        what = "a file" if found.kind == "file" else "not a zarr store"
        held = f" (it holds {_foreign_text(found.foreign)})" if found.foreign else ""
        raise InputError(f"{target} exists and is {what}: refusing to write into it"
                         + (", even with overwrite" if overwrite else "") + held)
    recorded = (job_record(target) or {}).get("fingerprint")
    if fingerprint is not None and recorded == fingerprint and not overwrite:
        return "resume"
    if overwrite:
        return "replace"
    if recorded is None:
        raise InputError(f"{target} is a zarr store that no tcube job wrote: pass overwrite=True (--overwrite) "
                         "to replace it")
    raise InputError(f"{target} holds another job (other source, settings or layout; job {recorded[:8]}, this one "
                     f"{(fingerprint or '?')[:8]}): pass overwrite=True (--overwrite) to replace it")


def clear_store(target: Any) -> int:
    """Delete the zarr entries of a store :func:`survey` proves is one (never anything else, never the lock).

    Returns the number of keys deleted.
    """
    found = survey(target)
    if found.kind != "zarr":
        raise InputError(f"{target} is not a zarr store: refusing to clear it")
    store = _store(target, writable=True)
    keys = [k for k in found.entries if k != LOCK_KEY]
    for key in keys:
        sync(store.delete(key))
    path = local_path(target)
    if path is not None:  # folders left empty (never one that holds anything)
        for folder, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
            if folder != str(path):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
    return len(keys)


_HELD: set[Location] = set()
_HELD_GUARD = threading.Lock()


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "token": uuid.uuid4().hex}


def _alive(holder: dict) -> bool:
    """Whether the process that holds a lock may still run (always, when it ran on another host)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """One job writes a store at a time: an exclusive lock held from the first check to publication.

    A local store's lock is an advisory ``flock`` on its file :data:`LOCK_KEY`: the kernel drops it
    when the process ends, however it ends, so a crashed job leaves no lock behind. Other stores
    get a lock key recording host, process and a token, taken over when that process is gone
    (on the same host); stores in this process's memory are locked within the process.

    Examples
    --------
    >>> store = zarr.storage.MemoryStore()
    >>> with OutputLock(store):
    ...     OutputLock(store).acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: ... another tcube job is writing it (in this process): ...
    """

    def __init__(self, target: Any) -> None:
        self.target, self.location = target, locate(target)
        self._fd: int | None = None
        self._token: str | None = None
        self._created = False

    def _busy(self, holder: dict | None, where: str) -> InputError:
        who = (f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
               if holder else where)
        return InputError(f"{self.target}: another tcube job is writing it ({who}): wait for it to finish, or stop "
                          "it; one job writes a store at a time")

    def acquire(self) -> OutputLock:
        with _HELD_GUARD:
            if self.location in _HELD:
                raise self._busy(None, "in this process")
            _HELD.add(self.location)
        try:
            if self.location.local is not None:
                self._lock_file(self.location.local)
            elif self.location.scheme != "object":
                self._lock_key()
        except BaseException:
            with _HELD_GUARD:
                _HELD.discard(self.location)
            raise
        return self

    def _lock_file(self, folder: Path) -> None:
        if not folder.exists():
            _existing_folder(folder)
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                self._created = True
        path = folder / LOCK_KEY
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = json.loads(os.pread(fd, 4096, 0) or b"null")
                except ValueError:
                    holder = None
                os.close(fd)
                raise self._busy(holder if isinstance(holder, dict) else None, "another process") from None
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)  # the holder released and removed it between our open and our lock: again
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        self._fd = fd

    def _lock_key(self) -> None:
        store = _store(self.target, writable=True)
        held = _get_json(store, LOCK_KEY)
        if held is not None and _alive(held):
            raise self._busy(held, "another process")
        mine = _holder()
        _set_json(store, LOCK_KEY, mine)
        if (_get_json(store, LOCK_KEY) or {}).get("token") != mine["token"]:
            raise self._busy(_get_json(store, LOCK_KEY), "another process")
        self._token = mine["token"]

    def release(self) -> None:
        """Give the lock up (and remove the store's folder when the job made it and left nothing in it)."""
        folder = self.location.local
        if self._fd is not None and folder is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / LOCK_KEY)
            os.close(self._fd)
            self._fd = None
            if self._created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        if self._token is not None:
            store = _store(self.target, writable=True)
            if (_get_json(store, LOCK_KEY) or {}).get("token") == self._token:
                sync(store.delete(LOCK_KEY))
            self._token = None
        with _HELD_GUARD:
            _HELD.discard(self.location)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _hidden(key: str) -> str:
    return key + HIDDEN_SUFFIX


def _is_document(key: str) -> bool:
    return key.rsplit("/", 1)[-1] == ROOT_KEY


def write_hidden(target: Any, build: Callable[[Store], None]) -> None:
    """Write the skeleton ``build`` makes (in memory) to ``target`` with every metadata document hidden.

    The order keeps a store killed at any write one that :func:`survey` knows as this job's and
    that the job completes when rerun: the hidden root first (the job record), then the documents of
    the arrays the skeleton holds data for (coordinates, small variables), their data under its real
    names, and the documents of the arrays the job fills last (when they are all there, so is
    everything before them). Plain zarr and xarray see no node there until :func:`publish`.
    """
    staging = zarr.storage.MemoryStore()
    build(staging)
    store = _store(target, writable=True)
    for key in skeleton_order(list(staging._store_dict)):
        sync(store.set(_hidden(key) if _is_document(key) else key, staging._store_dict[key]))


def skeleton_order(keys: list[str]) -> list[str]:
    """The order :func:`write_hidden` writes a skeleton's keys in.

    Examples
    --------
    >>> skeleton_order(["zarr.json", "time/zarr.json", "time/c/0", "B04/zarr.json"])
    ['zarr.json', 'time/zarr.json', 'time/c/0', 'B04/zarr.json']
    >>> skeleton_order(["B04/zarr.json", "time/c/0", "zarr.json", "time/zarr.json"])
    ['zarr.json', 'time/zarr.json', 'time/c/0', 'B04/zarr.json']
    """
    docs = [k for k in keys if _is_document(k) and k != ROOT_KEY]
    data = [k for k in keys if not _is_document(k)]
    folders = {d: d.rpartition("/")[0] for d in docs}
    holding = {max((f for f in folders.values() if key.startswith(f + "/")), key=len, default="") for key in data}
    return ([ROOT_KEY] if ROOT_KEY in keys else []) + [d for d in docs if folders[d] in holding] + data + [
        d for d in docs if folders[d] not in holding]


def hide_root(target: Any, record: dict, attributes: dict | None = None) -> None:
    """Take a published store out of sight of plain readers for a job that changes it (an append),
    its root attributes updated with ``attributes``."""
    store = _store(target, writable=True)
    key, meta = _root(store)
    meta.setdefault("attributes", {}).update(attributes or {})
    meta["attributes"][JOB_ATTR] = {**record, "finished": False}
    meta.pop("consolidated_metadata", None)  # (a plain writer's listing of the arrays: stale once they change)
    _set_json(store, UNFINISHED_KEY, meta)
    if key == ROOT_KEY and store.supports_deletes:
        sync(store.delete(ROOT_KEY))
    elif key == ROOT_KEY:  # cannot hide it: the record still says unfinished
        _set_json(store, ROOT_KEY, meta)


def set_hidden_array(target: Any, path: str, metadata: dict) -> None:
    """Give an array new metadata (a new shape) that only the job writing the store sees until :func:`publish`."""
    _set_json(_store(target, writable=True), _hidden(f"{path}/{ROOT_KEY}" if path else ROOT_KEY), metadata)


def open_array(target: Any, path: str, mode: str = "r+") -> zarr.Array:
    """An array of a store, with the metadata its unfinished job keeps hidden when there is any.

    Examples
    --------
    >>> store = zarr.storage.MemoryStore()
    >>> write_hidden(store, lambda s: zarr.create_array(s, name="a", shape=(4,), dtype="uint8"))
    >>> open_array(store, "a").shape
    (4,)
    """
    from zarr.core.array import Array, AsyncArray
    from zarr.core.metadata.v3 import ArrayV3Metadata

    store = _store(target, writable=mode != "r")
    meta = _get_json(store, _hidden(f"{path}/{ROOT_KEY}" if path else ROOT_KEY))
    if meta is None:
        return zarr.open_array(store, path=path, mode=mode)
    return Array(AsyncArray(ArrayV3Metadata.from_dict(meta), zarr.storage.StorePath(store, path)))


def publish(target: Any) -> None:
    """Make a store whose job stored its last chunk visible: hidden documents under their real names,
    arrays first and the root group (its job record saying finished) last."""
    store = _store(target, writable=True)
    hidden = [k for k in _keys(target) if k.endswith(HIDDEN_SUFFIX) and _is_document(k.removesuffix(HIDDEN_SUFFIX))]
    if UNFINISHED_KEY not in hidden and _get_json(store, ROOT_KEY) is not None:
        hidden.append(ROOT_KEY)  # a store whose root could not be hidden: its record still changes
    for key in sorted(hidden, key=lambda k: (k in (UNFINISHED_KEY, ROOT_KEY), -k.count("/"))):
        meta = _get_json(store, key)
        if key in (UNFINISHED_KEY, ROOT_KEY):
            record = meta.setdefault("attributes", {}).setdefault(JOB_ATTR, {})
            record["finished"] = True
            record.pop("appending", None)
        _set_json(store, key.removesuffix(HIDDEN_SUFFIX), meta)
    if store.supports_deletes:
        for key in hidden:
            if key.endswith(HIDDEN_SUFFIX):
                sync(store.delete(key))


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
