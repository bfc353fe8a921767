"""Defaults that every entry point shares (kept free of heavy imports, for the command line)."""

#: The model :func:`tcube.encode`, the zarr codecs, ``xarray2tec``, the CLI and ``tcube.parallel``
#: use unless told otherwise.
DEFAULT_MODEL = "tec-hx"
#: The quality (1 smallest .. 16 best) of every entry point unless told otherwise, or told an error
#: bound or a PSNR target instead.
DEFAULT_QUALITY = 8
#: The model of error-bounded coding (``max_error=``): it needs an exactly decoding base.
BOUNDED_MODEL = "tec-hx"
#: Base qualities an error-bounded encoder tries per cube, keeping the smallest blob (0: no learned
#: base, the residual layer alone). Measured on the held-out sets (benchmarks/bounded.py): quality 2
#: beat 4 every time; over quality 0 it saved 1.2 % at E = 4 on 264 x 264 x 12 dates and lost on
#: 64 x 64 chunks, for 3.5 times the encoding and 2.4 times the decoding time. Give ``quality=2``
#: for the base.
BOUNDED_QUALITIES = (0,)
