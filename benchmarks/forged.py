"""Forged blobs: how long a decoder takes to refuse blobs whose payload was edited and whose checksum
was then fixed (what an attacker or a buggy writer produces; a plain bit flip is caught by the CRC at once).

    python benchmarks/forged.py [--count 300] [--seed 0]

Blobs of each kind below (real crops of the shipped sample cube) get 1 to 3 random bytes of their
payload replaced and the container's CRC32 recomputed. Each forged blob is decoded once (2 threads);
the table counts how they ended (a tcube error, or decoded values: a forgery that decodes to what the
original decodes to is harmless) and the slowest refusals. Writes ``forged.csv`` and ``forged.md``.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

import tcube
from tcube.data import load_sample_cube
from tcube.errors import TcubeError

sys.path.insert(0, str(Path(__file__).parent))
from common import write_rows  # noqa: E402

#: Kinds of blob: name -> how the sample cube's crop is coded.
KINDS = {
    "tec-pc q8": lambda x: tcube.encode(x, model="tec-pc", quality=8),
    "tec-hx q8, 4 dates": lambda x: tcube.encode(x, model="tec-hx", quality=8),
    "max_error=4": lambda x: tcube.encode(x, max_error=4),
    "lossless, nearest-resampled": lambda x: tcube.encode(_nearest(x), max_error=0),
}


def _nearest(x: np.ndarray) -> np.ndarray:
    """The crop resampled onto a grid 1.6 times finer with nearest neighbour (copy mode)."""
    index = (np.arange(x.shape[-1]) / 1.6).astype(int)
    return np.ascontiguousarray(x[..., index, :][..., index])


def forge(blob: bytes, rng: np.random.Generator, start: int) -> bytes:
    """``blob`` with 1 to 3 payload bytes replaced at random and its CRC32 fixed."""
    body = bytearray(blob[:-4])
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(start, len(body)))
        body[at] = (body[at] + int(rng.integers(1, 256))) % 256
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def measure(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cube = load_sample_cube()[:, :, :96, :96]
    rows = []
    for kind, encode in KINDS.items():
        blob = encode(cube)
        original = np.ma.getdata(tcube.decode(blob))
        start = len(blob) - sum(len(s) for f in tcube.bitstream.unpack(blob).frames for s in f.values()) - 4
        for i in range(count // len(KINDS)):
            forged = forge(blob, rng, start)
            t = time.perf_counter()
            try:
                out = np.ma.getdata(tcube.decode(forged))
                outcome = "decoded, same values" if np.array_equal(out, original) else "decoded, other values"
            except TcubeError as exc:
                outcome = type(exc).__name__
            rows.append({"kind": kind, "forgery": i, "bytes": len(forged), "outcome": outcome,
                         "seconds": round(time.perf_counter() - t, 4)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| kind | forged | refused | decoded, same values | decoded, other values | slowest (s) | over 1 s |",
             "|---|---|---|---|---|---|---|"]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        here = [r for r in rows if r["kind"] == kind]
        same = sum(r["outcome"] == "decoded, same values" for r in here)
        other = sum(r["outcome"] == "decoded, other values" for r in here)
        lines.append(f"| {kind} | {len(here)} | {len(here) - same - other} | {same} | {other} | "
                     f"{max(r['seconds'] for r in here):.3f} | {sum(r['seconds'] > 1 for r in here)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = measure(args.count, args.seed)
    out = Path(args.out)
    write_rows(rows, out / "forged.csv")
    md = table(rows)
    (out / "forged.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
