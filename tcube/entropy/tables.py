"""Frozen probability tables: what the range coder needs, computed once at export time.

Tables are stored inside the weights file so that encoder and decoder use bit-identical
probabilities on every machine; nothing about them is recomputed at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

#: Smallest probability given to any table entry before normalisation.
MIN_PROB = 1e-9


@dataclass(frozen=True, eq=False)
class TableSet:
    """A set of discrete distributions, each over ``offset + [0, length - 1)`` plus an escape.

    Table ``t`` occupies ``pmf[start[t]:start[t] + length[t]]``; its last entry is the escape
    symbol, used for values outside its support (they are then coded raw).

    Examples
    --------
    >>> ts = TableSet.from_pmfs([np.array([0.25, 0.5, 0.25])], offsets=[-1])
    >>> ts.n_tables, ts.support(0)
    (1, (-1, 1))
    """

    pmf: np.ndarray  # float32, all tables concatenated (escape included)
    start: np.ndarray  # int64
    length: np.ndarray  # int64, escape included
    offset: np.ndarray  # int64, symbol value of entry 0

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int], escape: list[float] | None = None) -> TableSet:
        """Build from per-table probabilities over the support; ``escape`` is each tail mass."""
        escape = escape if escape is not None else [0.0] * len(pmfs)
        full = [np.maximum(np.append(p, e), MIN_PROB).astype(np.float64) for p, e in zip(pmfs, escape)]
        full = [(f / f.sum()).astype(np.float32) for f in full]
        lengths = np.array([len(f) for f in full], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.concatenate(full), starts, lengths, np.asarray(offsets, dtype=np.int64))

    @property
    def n_tables(self) -> int:
        return len(self.length)

    def support(self, t: int) -> tuple[int, int]:
        """Smallest and largest value table ``t`` codes without escape."""
        return int(self.offset[t]), int(self.offset[t] + self.length[t] - 2)

    def table(self, t: int) -> np.ndarray:
        return self.pmf[self.start[t]: self.start[t] + self.length[t]]

    @cached_property
    def models(self) -> list:
        """One constriction categorical model per table (built lazily, then cached)."""
        import constriction

        categorical = constriction.stream.model.Categorical
        return [categorical(self.table(t).astype(np.float64), perfect=False) for t in range(self.n_tables)]

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors to store in a safetensors file under ``prefix``."""
        return {
            f"{prefix}.pmf": torch.from_numpy(self.pmf.copy()),
            f"{prefix}.start": torch.from_numpy(self.start.copy()),
            f"{prefix}.length": torch.from_numpy(self.length.copy()),
            f"{prefix}.offset": torch.from_numpy(self.offset.copy()),
        }

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor], prefix: str) -> TableSet:
        get = lambda k: tensors[f"{prefix}.{k}"].numpy()  # noqa: E731
        return cls(get("pmf").astype(np.float32), get("start"), get("length"), get("offset"))


def discretise_cdf(cdf: np.ndarray) -> tuple[np.ndarray, float]:
    """Turn CDF values at bin edges into bin masses and the mass outside (escape)."""
    pmf = np.diff(cdf)
    tail = float(cdf[0] + (1.0 - cdf[-1]))
    return np.maximum(pmf, 0.0), max(tail, 0.0)
