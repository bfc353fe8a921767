"""How cubes are coded: the one settings type every entry point builds and the coder reads.

:class:`Settings` is built and checked here and nowhere else. The command line, :func:`tcube.encode`,
``xarray2tec``, the zarr codecs and :mod:`tcube.parallel` each turn their arguments into one, and
carry it unchanged down to the coder, which records it in every blob's header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tcube.defaults import BOUNDED_MODEL, BOUNDED_QUALITIES, DEFAULT_MODEL, DEFAULT_QUALITY
from tcube.errors import InputError
from tcube.models.registry import check_name, exact_models
from tcube.validate import N_QUALITIES, check_count, check_max_error, check_metric, check_psnr, check_quality

#: The settings a zarr codec's configuration, a store's rules and a blob's header record.
CODING_KEYS = ("model", "quality", "max_error", "psnr", "metric")


def default_model(max_error: int | None = None, psnr: float | None = None) -> str:
    """The model of a mode: :data:`~tcube.defaults.BOUNDED_MODEL` with an error bound or a PSNR
    target, else :data:`~tcube.defaults.DEFAULT_MODEL`.

    Examples
    --------
    >>> default_model(), default_model(max_error=4)
    ('tec-hx', 'tec-hx')
    """
    return BOUNDED_MODEL if max_error is not None or psnr is not None else DEFAULT_MODEL


def mode_name(max_error: float | None, psnr: float | None) -> str:
    """The mode of an error bound and a PSNR target (either may be None).

    Examples
    --------
    >>> mode_name(None, None), mode_name(0, None), mode_name(4, None), mode_name(None, 45.0)
    ('quality', 'lossless', 'max_error', 'psnr')
    """
    if psnr is not None:
        return "psnr"
    if max_error is None:
        return "quality"
    return "lossless" if max_error == 0 else "max_error"


@dataclass(frozen=True)
class Settings:
    """How to code cubes: model, quality or mode, and the run-time batch and device.

    Build one with :meth:`make` (it fills in the defaults of the mode); every instance is checked.
    ``batch`` and ``device`` change how fast coding runs, never the bytes: they are not compared.

    Parameters
    ----------
    model : str
        A name from :func:`tcube.list_models`.
    quality : int or None
        1 (smallest) to 16 (best). With ``max_error`` the quality of the base (0: none, the
        residual layer alone; None: the encoder tries :data:`~tcube.defaults.BOUNDED_QUALITIES`).
        None with ``psnr`` (the encoder searches it).
    max_error : int or None
        Every valid value decodes within this many digital numbers (0: lossless).
    psnr : float or None
        Every date reaches at least this PSNR (dB, convention ``metric``).
    metric : {"10k", "full"}
        PSNR convention of ``psnr``.
    batch : int
        Frames per forward pass (chunks per task for dataset jobs).
    device : str or None
        Torch device of the transforms; None: ``$TCUBE_DEVICE``, else CUDA when present, else CPU.

    Examples
    --------
    >>> Settings.make()
    Settings(model='tec-hx', quality=8, max_error=None, psnr=None, metric='10k', batch=8, device=None)
    >>> Settings.make(max_error=0).mode, Settings.make(psnr=45).quality
    ('lossless', None)
    >>> Settings.make(model="tec-fp", max_error=4)
    Traceback (most recent call last):
    ...
    tcube.errors.InputError: max_error needs a model that decodes exactly (tec-hx, tec-pc); tec-fp does not
    """

    model: str
    quality: int | None
    max_error: int | None = None
    psnr: float | None = None
    metric: str = "10k"
    batch: int = field(default=8, compare=False)
    device: str | None = field(default=None, compare=False)
    #: Whether a user named the model (else it is the default of the mode).
    model_named: bool = field(default=True, compare=False, repr=False)

    @classmethod
    def make(cls, model: str | None = None, quality: int | None = None, max_error: int | None = None,
             psnr: float | None = None, metric: str = "10k", batch: int = 8, device: str | None = None) -> Settings:
        """Settings from what a user gave (None: not given): the model of the mode unless one is
        named, quality :data:`~tcube.defaults.DEFAULT_QUALITY` unless given or a mode is."""
        if quality is None and max_error is None and psnr is None:
            quality = DEFAULT_QUALITY
        return cls(default_model(max_error, psnr) if model is None else model, quality, max_error, psnr, metric,
                   batch, device, model is not None)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise InputError(f"model must be a model name (tcube info lists them), got {self.model!r}")
        check_name(self.model)
        bound = check_max_error(self.max_error)
        if self.psnr is not None:
            if self.quality is not None or bound is not None:
                raise InputError("psnr chooses the quality and the error bound itself: give psnr, or quality and "
                                 "max_error, not both")
            object.__setattr__(self, "psnr", check_psnr(self.psnr, self.metric))
        else:
            check_metric(self.metric)
        if self.psnr is None and self.quality is None and bound is None:
            raise InputError("give a quality, an error bound (max_error) or a PSNR target (psnr)")
        if self.quality is not None:  # 0 with an error bound: the residual layer alone
            object.__setattr__(self, "quality", check_quality(self.quality, 0 if bound is not None else 1))
        object.__setattr__(self, "max_error", bound)
        if (bound is not None or self.psnr is not None) and self.model not in exact_models():
            raise InputError(f"{'max_error' if self.psnr is None else 'psnr'} needs a model that decodes exactly "
                             f"({', '.join(exact_models())}); {self.model} does not")
        object.__setattr__(self, "batch", check_count(self.batch, "batch"))
        if self.device is not None and not isinstance(self.device, str):
            raise InputError(f"device must be a torch device name such as 'cpu' or 'cuda:0', got {self.device!r}")

    @property
    def mode(self) -> str:
        """``"quality"``, ``"max_error"``, ``"lossless"`` (an error bound of 0) or ``"psnr"``."""
        return mode_name(self.max_error, self.psnr)

    @property
    def qualities(self) -> tuple[int, ...]:
        """The (base) qualities the encoder tries, keeping the smallest blob."""
        if self.quality is not None:
            return (self.quality,)
        return BOUNDED_QUALITIES if self.max_error is not None else tuple(range(1, N_QUALITIES + 1))

    def recorded(self) -> dict[str, Any]:
        """The settings a configuration records: the model, then those of its mode that are set
        (``metric`` with ``psnr`` only).

        Examples
        --------
        >>> Settings.make(max_error=4).recorded()
        {'model': 'tec-hx', 'max_error': 4}
        """
        out: dict[str, Any] = {"model": self.model}
        out.update((k, getattr(self, k)) for k in ("quality", "max_error", "psnr") if getattr(self, k) is not None)
        if self.psnr is not None:
            out["metric"] = self.metric
        return out

    def under(self, rule: Mapping[str, Any]) -> Settings:
        """These settings with a variable's rule over them (its :data:`CODING_KEYS`). A rule that
        sets an error bound or a PSNR target replaces the mode of these settings and takes a
        quality only if it names one; a rule's quality replaces a PSNR target. The model is the
        rule's, else the one these settings name, else the default of the resulting mode.

        Examples
        --------
        >>> s = Settings.make(quality=4)
        >>> s.under({"max_error": 0}).recorded(), s.under({"model": "tec-pc"}).recorded()
        ({'model': 'tec-hx', 'max_error': 0}, {'model': 'tec-pc', 'quality': 4})
        """
        given = {k: rule[k] for k in CODING_KEYS if k in rule}
        if not given:
            return self
        fields = {k: getattr(self, k) for k in CODING_KEYS}
        if "max_error" in given or "psnr" in given:  # the rule's mode replaces these settings' mode
            fields.update(quality=None, max_error=None, psnr=None)
        elif "quality" in given:  # a quality replaces a PSNR target (it keeps an error bound)
            fields["psnr"] = None
        fields.update(given)
        if "model" not in given and not self.model_named:
            fields["model"] = None
        return Settings.make(**fields, batch=self.batch, device=self.device)

    def run_time(self, batch: int | None = None, device: str | None = None) -> Settings:
        """The same coding with another batch or device (None: keep)."""
        return replace(self, batch=self.batch if batch is None else batch,
                       device=self.device if device is None else device)
