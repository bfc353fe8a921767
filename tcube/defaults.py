"""Defaults that every entry point shares (kept free of heavy imports, for the command line)."""

#: The model :func:`tcube.encode`, the zarr codecs, ``xarray2tec``, the CLI and ``tcube.parallel``
#: use unless told otherwise.
DEFAULT_MODEL = "tec-hp"
#: The model of error-bounded coding (``max_error=``): it needs an exactly decoding base.
BOUNDED_MODEL = "tec-pc"
#: Base qualities an error-bounded encoder tries per cube, keeping the smallest blob.
BOUNDED_QUALITIES = (2, 4)
