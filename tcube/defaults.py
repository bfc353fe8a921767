"""Defaults that every entry point shares (kept free of heavy imports, for the command line)."""

#: The model :func:`tcube.encode`, the zarr codecs, ``xarray2tec``, the CLI and ``tcube.parallel``
#: use unless told otherwise.
DEFAULT_MODEL = "tec-hp"
