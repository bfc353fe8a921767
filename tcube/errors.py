"""Exception hierarchy: every error tcube raises on purpose is a :class:`TcubeError`."""

from __future__ import annotations


class TcubeError(Exception):
    """Base class of all tcube errors."""


class InputError(TcubeError, ValueError):
    """The input cube, or an argument, is not something tcube can code."""


class UnknownModelError(TcubeError, LookupError):
    """No model of that name is registered."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class UnfinishedStoreError(TcubeError):
    """A store whose writing job has not completed (interrupted, or still running): rerun the job."""


class BitstreamError(TcubeError):
    """A blob cannot be decoded."""


class NotATcubeBlobError(BitstreamError):
    """The bytes do not start with the tcube magic: a foreign or empty blob."""


class UnsupportedVersionError(BitstreamError):
    """The blob was written by a format version this package cannot read."""


class TruncatedBlobError(BitstreamError):
    """The blob is shorter than its header says."""


class CorruptBlobError(BitstreamError):
    """The blob's checksum does not match its content."""


class WeightsMismatchError(BitstreamError):
    """The blob was made with other weights than the installed ones."""


class SymbolChecksumError(BitstreamError):
    """The decoded symbols differ from the encoded ones; ``frame`` is the failing frame's index."""

    def __init__(self, message: str, frame: int | None = None) -> None:
        super().__init__(message)
        self.frame = frame
