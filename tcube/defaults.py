"""Defaults that every entry point shares (kept free of heavy imports, for the command line)."""

#: The model :func:`tcube.encode`, the zarr codecs, ``xarray2tec``, the CLI and ``tcube.parallel``
#: use unless told otherwise.
DEFAULT_MODEL = "tec-hp"
#: The model of error-bounded coding (``max_error=``): it needs an exactly decoding base.
BOUNDED_MODEL = "tec-pc"
#: Base qualities an error-bounded encoder tries per cube, keeping the smallest blob (0: no learned
#: base, the residual layer alone; on the held-out sets quality 2 beat 4 every time, and 0 beat 2
#: on 64 x 64 chunks, where the base's own bytes outweigh what it saves).
BOUNDED_QUALITIES = (0, 2)
