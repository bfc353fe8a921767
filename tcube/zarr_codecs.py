"""tcube inside zarr: a numcodecs codec (zarr format 2) and a native zarr format 3 codec.

Both are registered under the name ``"tcube"`` through entry points (``numcodecs.codecs`` and
``zarr.codecs``), so a store written with them opens with plain ``zarr`` or ``xarray`` in a new
process. Each chunk is one tcube blob (see :mod:`tcube.bitstream`): chunks must hold every band
of the model, on axis 0 of (band, y, x) chunks or axis 1 of (time, band, y, x) chunks; y, x and
time may be chunked freely, edge chunks included. NaN and no-data pixels are kept exactly.

The device is a run-time choice, never stored: the ``device`` argument, else the environment
variable ``TCUBE_DEVICE``, else CUDA when present, else CPU. Blobs decode on any device.

Batching (zarr 3): the codec codes all the chunks zarr hands it at once in shared forward passes.
zarr hands it ``codec_pipeline.batch_size`` chunks (default 1); raise it for speed, e.g.
``zarr.config.set({"codec_pipeline.batch_size": 16})``, before the array is opened or created
(zarr reads the setting then). Memory grows with it: about 25 MB per 12 x 256 x 256 frame (tec-hp, CPU, measured).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ensure_ndarray_like, ndarray_copy
from zarr.abc.codec import ArrayBytesCodec, ArrayBytesCodecPartialDecodeMixin, ArrayBytesCodecPartialEncodeMixin
from zarr.core.buffer import default_buffer_prototype
from zarr.core.common import concurrent_map, parse_named_configuration
from zarr.core.config import config as zarr_config
from zarr.core.sync import sync

from tcube.api import Units, check_blob, modes
from tcube.api.core import decode_blobs
from tcube.bitstream import with_position
from tcube.errors import InputError, TcubeError
from tcube.models import load_model
from tcube.outputs import is_unfinished
from tcube.settings import CODING_KEYS, Settings
from tcube.validate import DTYPES, check_nodata, check_units

CODEC_ID = "tcube"
#: One model call at a time per process: bounded memory, no oversubscribed cores or GPU.
_MODEL_LOCK = threading.Lock()


def check_units_of(nodata: float | None, scale: float | None, offset: float | None) -> None:
    """Fail early on units no chunk could be coded with (each chunk's dtype is checked when coded)."""
    check_nodata(nodata, np.float64)
    check_units(scale, offset)


def check_layout(model: str, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...] | None,
                 float_units: bool = False) -> None:
    """Refuse an array tcube cannot code chunk by chunk: its dtype, dims, or chunks splitting the bands.

    Examples
    --------
    >>> check_layout("tec-fp", (4, 12, 64, 64), np.dtype("int32"), (1, 12, 32, 32))
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: tcube codes uint16, int16, float32 arrays, not int32
    """
    if dtype.name not in DTYPES:
        raise InputError(f"tcube codes {', '.join(DTYPES)} arrays, not {dtype}")
    if float_units and dtype.kind != "f":
        raise InputError(f"scale and offset apply to float32 arrays; a {dtype} array holds digital numbers")
    if len(shape) not in (3, 4):
        raise InputError(f"tcube codes arrays of dims (time, band, y, x) or (band, y, x); got shape {shape}")
    loaded = load_model(model, "cpu")
    bands = shape[-3] if loaded.any_bands else loaded.config.bands
    if chunks is not None and chunks[-3] != bands:
        raise InputError(f"chunks {tuple(chunks)} split the band axis: {model} needs all {bands} bands "
                         f"in every chunk (chunk size {bands} on axis {len(shape) - 3})")


def _code(chunks: list[np.ndarray], settings: Settings, units: Units) -> list[bytes]:
    with _MODEL_LOCK:
        return modes.encode(chunks, settings, units)


def _uncode(blobs: list[bytes], names: list[str], settings: Settings,
            positions: list | None = None) -> list[np.ndarray]:
    with _MODEL_LOCK:
        return decode_blobs(blobs, settings, names, positions)


def chunk_position(key: str, ndim: int) -> tuple[int, ...] | None:
    """The grid position of the chunk a store key names (any chunk key encoding), or None.

    Examples
    --------
    >>> chunk_position("site/tcube_y_x/c/0/3/1/2", 4), chunk_position("B04/0.3.1", 3), chunk_position("zarr.json", 3)
    ((0, 3, 1, 2), (0, 3, 1), None)
    """
    parts = re.split(r"[/.]", str(key))[-ndim:]
    if len(parts) != ndim or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _check_chunk(chunk: np.ndarray) -> np.ndarray:
    if chunk.ndim not in (3, 4):
        raise InputError(f"tcube codes chunks of dims (time, band, y, x) or (band, y, x); got shape {chunk.shape} "
                         "(as a zarr format 2 compressor it needs the chunk's shape: do not use it behind filters)")
    return chunk


def _units(scale: float | None, offset: float | None) -> dict:
    """The units of a codec's config, when not digital numbers."""
    return {k: v for k, v in (("scale", scale), ("offset", offset)) if v is not None}


def _config(settings: Settings, nodata: dict, scale: float | None, offset: float | None) -> dict:
    """A codec's configuration: the model, its first mode setting, ``nodata`` (a dict: empty when
    not recorded), the units, then the other mode settings (the order stores were written in)."""
    recorded = settings.recorded()
    first = dict(list(recorded.items())[:2])
    return {**first, **nodata, **_units(scale, offset), **{k: v for k, v in recorded.items() if k not in first}}


class TecCodec(Codec):
    """numcodecs codec ``"tcube"``: learned lossy compression of Sentinel-2 chunks (zarr format 2).

    Parameters
    ----------
    model, quality, max_error, psnr, metric
        As in :func:`tcube.encode` (``max_error=0`` is lossless); the config records those given.
    nodata : number or None
        Pixels equal to it are kept exactly, as NaN always is. The default 0 is both the
        Sentinel-2 no-data value and zarr format 2's default fill value, so edge chunks and
        missing pixels cost (almost) nothing.
    scale, offset : float, optional
        Units of float32 arrays, as in :func:`tcube.encode` (e.g. ``scale=1e-4`` for reflectance).
    device : str, optional
        Run-time only, not part of the config (see the module docstring).
    batch : int
        Frames per forward pass; run-time only.

    Creating a zarr format 2 array with this compressor checks its dtype and chunks, as format 3
    does for :class:`TecZarrCodec`.

    Examples
    --------
    >>> import numcodecs, numpy as np
    >>> codec = numcodecs.get_codec({"id": "tcube", "model": "tec-fp", "quality": 4})
    >>> chunk = np.full((1, 12, 32, 32), 1500, dtype=np.uint16)
    >>> codec.decode(codec.encode(chunk)).shape
    (1, 12, 32, 32)
    >>> codec.get_config()
    {'id': 'tcube', 'model': 'tec-fp', 'quality': 4, 'nodata': 0}
    """

    codec_id = CODEC_ID

    def __init__(self, model: str | None = None, quality: int | None = None, nodata: float | None = 0,
                 scale: float | None = None, offset: float | None = None, max_error: int | None = None,
                 psnr: float | None = None, metric: str = "10k", *, device: str | None = None,
                 batch: int = 16) -> None:
        self.settings = Settings.make(model, quality, max_error, psnr, metric, batch, device)
        check_units_of(nodata, scale, offset)
        self.nodata, self.scale, self.offset = nodata, scale, offset
        self._order = "C"  # the memory order of the zarr format 2 array it codes (set when zarr opens it)

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if name in CODING_KEYS and settings is not None:  # model, quality, max_error, psnr, metric
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def encode(self, buf: Any) -> bytes:
        chunk = _check_chunk(ensure_ndarray_like(buf))
        return _code([np.ascontiguousarray(chunk)], self.settings, Units(self.nodata, self.scale, self.offset))[0]

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        chunk = _uncode([bytes(ensure_contiguous_ndarray(buf))], ["zarr format 2 chunk"], self.settings)[0]
        if self._order == "F":  # zarr reads the chunk's memory in the array's order
            chunk = np.asfortranarray(chunk)
        return ndarray_copy(chunk, out) if out is not None else chunk

    def validate(self, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]) -> None:
        """Refuse a zarr format 2 array this codec cannot code (called when the array is created)."""
        check_layout(self.model, shape, np.dtype(dtype), chunks, bool(_units(self.scale, self.offset)))

    def get_config(self) -> dict:
        return {"id": self.codec_id, **_config(self.settings, {"nodata": self.nodata}, self.scale, self.offset)}

    def __repr__(self) -> str:
        recorded = self.settings.recorded()
        settings = "".join(f", {k}={v!r}" for k, v in {**recorded, **_units(self.scale, self.offset)}.items()
                           if k != "model")
        return f"TecCodec(model={self.model!r}{settings}, nodata={self.nodata!r})"


def _check_v2_arrays_at_creation() -> None:
    """zarr validates format 3 codecs when an array is created, but never a format 2 compressor:
    extend zarr's format 2 metadata so that a :class:`TecCodec` compressor (and its place: no
    filters before it) is checked there too, before anything is written."""
    from zarr.core.metadata.v2 import ArrayV2Metadata

    init = ArrayV2Metadata.__init__
    if getattr(init, "tcube_checked", False):
        return

    @functools.wraps(init)
    def checked(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if isinstance(self.compressor, TecCodec):
            if self.filters:
                raise InputError("tcube needs each chunk's shape: use it as the only codec of a zarr format 2 "
                                 f"array, without filters (got {self.filters})")
            self.compressor.validate(self.shape, self.dtype.to_native_dtype(), self.chunks)
            # zarr hands the codec chunks in the array's memory order and reads decoded chunks in it:
            # blobs hold the chunk's values (any order), decoded in the order of the array at hand
            self.compressor._order = self.order

    checked.tcube_checked = True  # type: ignore[attr-defined]
    ArrayV2Metadata.__init__ = checked


_check_v2_arrays_at_creation()


def chunk_name(byte_getter: Any) -> str:
    """Which chunk of which array a zarr byte getter points at, for error messages.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> chunk_name(SimpleNamespace(path="site/cube/c/0/1/0/2", store="file:///data/x.zarr"))
    "chunk 'c/0/1/0/2' of zarr array 'site/cube' in file:///data/x.zarr"
    """
    path = str(getattr(byte_getter, "path", ""))
    array, sep, key = ("/" + path).rpartition("/c/")
    if not sep:
        array, _, key = ("/" + path).rpartition("/")
    else:
        key = "c/" + key
    where = f" in {byte_getter.store}" if hasattr(byte_getter, "store") else ""
    return f"chunk {key!r} of zarr array {array.strip('/') or '/'!r}{where}"


@dataclass(frozen=True)
class TecZarrCodec(ArrayBytesCodecPartialDecodeMixin, ArrayBytesCodecPartialEncodeMixin, ArrayBytesCodec):
    """zarr format 3 array-to-bytes codec ``"tcube"`` (use it as ``serializer=``).

    Parameters
    ----------
    model, quality, max_error, psnr, metric
        As in :func:`tcube.encode` (``max_error=0`` is lossless); the config records those given.
    nodata : number or None
        Pixels equal to it are kept exactly, as NaN always is; None (default) takes the array's
        fill value, so edge chunks and unwritten pixels cost (almost) nothing.
    device : str, optional
        Run-time only, not stored (see the module docstring).
    batch : int
        Frames per forward pass; run-time only.

    Examples
    --------
    >>> import numpy as np, zarr
    >>> arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(2, 12, 40, 40), chunks=(1, 12, 32, 32),
    ...                         dtype="uint16", serializer=TecZarrCodec(model="tec-fp", quality=4))
    >>> arr[:] = 1500
    >>> int(arr[1, 3, 39, 39]) - 1500 in range(-50, 50)
    True
    """

    is_fixed_size = False

    model: str | None = None
    quality: int | None = None
    nodata: float | None = None
    scale: float | None = None
    offset: float | None = None
    max_error: int | None = None
    psnr: float | None = None
    metric: str = "10k"
    device: str | None = field(default=None, compare=False)
    batch: int = field(default=16, compare=False)
    settings: Settings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        settings = Settings.make(self.model, self.quality, self.max_error, self.psnr, self.metric, self.batch,
                                 self.device)
        check_units_of(self.nodata, self.scale, self.offset)
        for name in CODING_KEYS:
            object.__setattr__(self, name, getattr(settings, name))
        object.__setattr__(self, "settings", settings)

    @classmethod
    def of(cls, settings: Settings, **units: float | None) -> TecZarrCodec:
        """The codec of ``settings`` (and ``nodata``, ``scale``, ``offset`` as keywords)."""
        return cls(**{k: getattr(settings, k) for k in CODING_KEYS}, **units, device=settings.device,
                   batch=settings.batch)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TecZarrCodec:
        _, config = parse_named_configuration(data, CODEC_ID)
        unknown = set(config) - {*CODING_KEYS, "nodata", "scale", "offset"}
        if unknown:
            raise InputError(f"unknown tcube codec settings {sorted(unknown)} (a newer tcube wrote them?)")
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        nodata = {} if self.nodata is None else {"nodata": self.nodata}
        return {"name": CODEC_ID, "configuration": _config(self.settings, nodata, self.scale, self.offset)}

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        check_layout(self.model, shape, dtype.to_native_dtype(), getattr(chunk_grid, "chunk_shape", None),
                     bool(_units(self.scale, self.offset)))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: Any) -> int:
        raise NotImplementedError  # variable-size output

    def nodata_for(self, fill: Any) -> float | None:
        """The no-data value of chunks of an array with fill value ``fill``."""
        if self.nodata is not None:
            return self.nodata
        return None if fill is None or np.isnan(float(fill)) else float(fill)

    def encode_chunks(self, chunks: list[np.ndarray], fill_values: list[Any],
                      positions: list[tuple[int, ...] | None] | None = None) -> list[bytes]:
        """The blobs zarr stores for full-size ``chunks`` of arrays with these fill values, in shared
        forward passes (one batch per distinct no-data value, normally one); each bound to its
        chunk's grid position when ``positions`` gives it.

        Examples
        --------
        >>> import numpy as np
        >>> codec = TecZarrCodec(model="tec-fp", quality=4)
        >>> blobs = codec.encode_chunks([np.full((1, 12, 16, 16), 900, np.uint16)] * 2, [0, 0])
        >>> len(blobs), blobs[0] == blobs[1]
        (2, True)
        """
        out: list[bytes] = [b""] * len(chunks)
        by_nodata: dict = {}
        for i, fill in enumerate(fill_values):
            by_nodata.setdefault(self.nodata_for(fill), []).append(i)
        for nodata, members in by_nodata.items():
            blobs = _code([_check_chunk(chunks[i]) for i in members], self.settings,
                          Units(nodata, self.scale, self.offset))
            for i, blob in zip(members, blobs):
                position = positions[i] if positions is not None else None
                out[i] = blob if position is None else with_position(blob, position)
        return out

    def _decode_arrays(self, blobs: list[bytes], names: list[str], specs: list[Any],
                       positions: list | None = None) -> list[np.ndarray]:
        arrays = _uncode(blobs, names, self.settings, positions)
        for name, array, spec in zip(names, arrays, specs):
            native = spec.dtype.to_native_dtype()
            if array.shape != tuple(spec.shape) or array.dtype != native:
                raise TcubeError(f"{name}: blob holds a {array.dtype} chunk of shape {array.shape}, "
                                 f"the array expects {native} {tuple(spec.shape)}")
        return arrays

    async def encode(self, chunks_and_specs: Iterable[tuple[Any, Any]]) -> list[Any]:
        items = list(chunks_and_specs)
        present = [(i, chunk, spec) for i, (chunk, spec) in enumerate(items) if chunk is not None]
        blobs = await asyncio.to_thread(
            self.encode_chunks, [c.as_numpy_array() for _, c, _ in present], [s.fill_value for _, _, s in present])
        out: list[Any] = [None] * len(items)
        for (i, _, spec), blob in zip(present, blobs):
            out[i] = spec.prototype.buffer.from_bytes(blob)
        return out

    async def _decode_present(self, items: list[tuple[Any, Any, str]], keys: list[str] | None = None) -> list[Any]:
        """Decode (buffer or None, spec, name) items in one batch; None stays None. ``keys``: the
        store keys they were read from, whose chunk positions the blobs must have been written for."""
        present = [(i, buf, spec, name) for i, (buf, spec, name) in enumerate(items) if buf is not None]
        positions = None if keys is None else [chunk_position(keys[i], len(spec.shape)) for i, _, spec, _ in present]
        arrays = await asyncio.to_thread(self._decode_arrays, [b.to_bytes() for _, b, _, _ in present],
                                         [n for *_, n in present], [s for _, _, s, _ in present], positions)
        out: list[Any] = [None] * len(items)
        for (i, *_), array in zip(present, arrays):
            out[i] = array
        return out

    async def decode(self, chunks_and_specs: Iterable[tuple[Any, Any]]) -> list[Any]:
        items = [(buf, spec, "chunk (zarr did not say which: a bytes-to-bytes codec follows tcube)")
                 for buf, spec in chunks_and_specs]
        arrays = await self._decode_present(items)
        return [None if a is None else s.prototype.nd_buffer.from_numpy_array(a) for a, (_, s, _) in zip(arrays, items)]

    async def decode_partial(self, batch_info: Iterable[tuple[Any, Any, Any]]) -> list[Any]:
        batch = list(batch_info)
        bufs = await concurrent_map([(getter, spec.prototype) for getter, _, spec in batch],
                                    lambda getter, prototype: getter.get(prototype),
                                    zarr_config.get("async.concurrency"))
        arrays = await self._decode_present([(buf, spec, chunk_name(getter))
                                             for buf, (getter, _, spec) in zip(bufs, batch)],
                                            [str(getattr(getter, "path", "")) for getter, _, _ in batch])
        return [None if a is None else spec.prototype.nd_buffer.from_numpy_array(a[selection])
                for a, (_, selection, spec) in zip(arrays, batch)]

    async def encode_partial(self, batch_info: Iterable[tuple[Any, Any, Any, Any]]) -> None:
        """Write (part of) chunks, each blob bound to the position of the key it is stored under.

        zarr calls this for every write to an array whose only codec is tcube: chunks written in
        part are read and merged first; a chunk left all fill value is deleted unless the array
        writes empty chunks."""
        batch = list(batch_info)
        shapes = [tuple(spec.shape) for _, _, _, spec in batch]
        partial = [i for i, ((_, _, selection, _), shape) in enumerate(zip(batch, shapes))
                   if not _whole(selection, shape)]
        old = await self.decode_partial([(batch[i][0], tuple(slice(None) for _ in shapes[i]), batch[i][3])
                                         for i in partial])
        chunks: list[np.ndarray] = []
        for i, (_, value, selection, spec) in enumerate(batch):
            native = spec.dtype.to_native_dtype()
            if i in partial and old[partial.index(i)] is not None:
                chunk = old[partial.index(i)].as_numpy_array().astype(native, copy=True)
            else:
                chunk = np.full(shapes[i], spec.fill_value, native)
            chunk[selection] = value.as_numpy_array() if hasattr(value, "as_numpy_array") else value
            chunks.append(chunk)
        keep = [i for i, (chunk, (_, _, _, spec)) in enumerate(zip(chunks, batch))
                if spec.config.write_empty_chunks or not _all_fill(chunk, spec.fill_value)]
        blobs = await asyncio.to_thread(
            self.encode_chunks, [chunks[i] for i in keep], [batch[i][3].fill_value for i in keep],
            [chunk_position(str(getattr(batch[i][0], "path", "")), len(shapes[i])) for i in keep])
        for i, (setter, _, _, spec) in enumerate(batch):
            if i in keep:
                await setter.set(spec.prototype.buffer.from_bytes(blobs[keep.index(i)]))
            else:
                await setter.delete()


def _whole(selection: tuple, shape: tuple[int, ...]) -> bool:
    """Whether a chunk selection covers the whole chunk."""
    return all(isinstance(s, slice) and s.indices(n)[:2] == (0, n) and s.indices(n)[2] == 1
               for s, n in zip(selection, shape)) and len(selection) == len(shape)


def _all_fill(chunk: np.ndarray, fill: Any) -> bool:
    fill = np.asarray(fill, chunk.dtype)
    return bool(np.all(np.isnan(chunk)) if np.isnan(fill).all() and chunk.dtype.kind == "f"
                else np.all(chunk == fill))


def _sole_tcube_codec(array: zarr.Array) -> TecCodec | TecZarrCodec:
    """The tcube codec of ``array`` when it is the only codec, so that stored chunks are tcube blobs."""
    codecs = [*array.filters, *array.compressors, *([array.serializer] if array.serializer is not None else [])]
    tecs = [c for c in codecs if isinstance(c, TecCodec | TecZarrCodec)]
    if len(tecs) != 1 or len(codecs) != 1:
        raise InputError(f"array {array.path!r} is not coded by tcube alone (codecs: {codecs})")
    return tecs[0]


def _chunk_store_key(array: zarr.Array, coords: tuple[int, ...]) -> str:
    key = array.metadata.encode_chunk_key(tuple(coords))
    return f"{array.path}/{key}" if array.path else key


def read_stored_chunk(array: zarr.Array, coords: tuple[int, ...]) -> bytes | None:
    """The bytes stored for the chunk at grid position ``coords`` of ``array``; None if never written.

    Examples
    --------
    >>> import zarr
    >>> arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), chunks=(2,), dtype="uint8", compressors=None)
    >>> arr[:2] = 7
    >>> read_stored_chunk(arr, (0,)), read_stored_chunk(arr, (1,))
    (b'\\x07\\x07', None)
    """
    buf = sync(array.store.get(_chunk_store_key(array, coords), default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def write_stored_chunk(array: zarr.Array, coords: tuple[int, ...], blob: bytes) -> None:
    """Store ``blob`` as the chunk at grid position ``coords`` of ``array`` (as encoded by its codecs).

    Local stores write a temporary file and rename it, so a killed writer never leaves half a chunk.
    """
    sync(array.store.set(_chunk_store_key(array, coords), default_buffer_prototype().buffer.from_bytes(blob)))


def stored_chunk_problem(array: zarr.Array, coords: tuple[int, ...]) -> str | None:
    """Why the chunk at ``coords`` of a tcube-coded ``array`` is not what its codec stores now, or None.

    Checks without running the model: present, intact (length and CRC32), made with the
    installed weights of the codec's model, at its quality, with the array's chunk shape, dtype
    and no-data value. A resumed job rewrites exactly the chunks with a problem.

    Examples
    --------
    >>> import numpy as np, zarr
    >>> arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(1, 12, 16, 16), chunks=(1, 12, 16, 16),
    ...                         dtype="uint16", serializer=TecZarrCodec(model="tec-fp", quality=4), compressors=None)
    >>> stored_chunk_problem(arr, (0, 0, 0, 0))
    'missing'
    >>> arr[:] = 900
    >>> stored_chunk_problem(arr, (0, 0, 0, 0)) is None
    True
    """
    codec = _sole_tcube_codec(array)
    blob = read_stored_chunk(array, coords)
    if blob is None:
        return "missing"
    try:
        header = check_blob(blob, coords).header
    except TcubeError as exc:
        return str(exc)
    scale, offset = check_units(codec.scale, codec.offset)
    expected = {"model": codec.model, "quality": codec.quality, "shape": list(array.chunks),
                "dtype": array.dtype.name, "nodata": codec.nodata_for(array.fill_value), "scale": scale,
                "offset": offset}
    differing = [f"{k} {header[k]!r} (wanted {v!r})" for k, v in expected.items() if header[k] != v]
    return "made with other settings: " + ", ".join(differing) if differing else None


def damaged_chunks(array: zarr.Array, device: str | None = None) -> dict[str, str]:
    """Decode every stored chunk of a tcube-coded zarr array; returns {chunk key: error} for those that fail.

    Works for both zarr formats (in format 2 it is the way to learn the keys of damaged chunks).
    Chunks never written are not damaged (zarr reads them as the fill value), except in a store
    whose job has not finished (:mod:`tcube.outputs`): there they are reported as missing.

    Examples
    --------
    >>> import numpy as np, zarr
    >>> arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(12, 40, 40), chunks=(12, 32, 32),
    ...                         dtype="uint16", zarr_format=2, compressors=TecCodec(model="tec-fp"))
    >>> arr[:, :32, :32] = 1200
    >>> raw = arr.store._store_dict
    >>> raw["0.0.0"] = raw["0.0.0"][:-1]  # cut one byte off a stored chunk
    >>> damaged_chunks(arr)
    {'0.0.0': 'zarr format 2 chunk 0.0.0: blob truncated: 196 bytes, header announces 197'}
    """
    settings = _sole_tcube_codec(array).settings.run_time(batch=1, device=device)
    expected = (tuple(array.chunks), array.dtype)
    unfinished = is_unfinished(array.store)
    out = {}
    for coords in itertools.product(*map(range, array.cdata_shape)):
        key = array.metadata.encode_chunk_key(coords)
        blob = read_stored_chunk(array, coords)
        if blob is None:
            if unfinished:
                out[key] = "missing: the job writing this store did not finish (rerun it to complete the store)"
            continue
        name = f"zarr format {array.metadata.zarr_format} chunk {key}"
        try:
            chunk = _uncode([blob], [name], settings, [coords])[0]
            if (chunk.shape, chunk.dtype) != expected:
                raise TcubeError(f"{name}: holds {chunk.dtype} {chunk.shape}, the array has {expected[1]} chunks "
                                 f"{expected[0]}")
        except TcubeError as exc:
            out[key] = str(exc)
    return out
