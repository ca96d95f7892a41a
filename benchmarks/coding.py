"""Encode/decode throughput of the message protocols (coordinates per second).

d = 2^22, 16 uniform levels (s = 15), Elias-γ, dense and sparse; against a straightforward
pure-Python encoder (bit strings) on d = 2^14, reported as a ratio of throughputs.  ``--quick``:
d = 2^18.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, parser, report  # noqa: E402

from qodasim import Key, Levels, Quantizer  # noqa: E402
from qodasim.coding import decode, encode  # noqa: E402
from qodasim.coding.elias import gamma_bits  # noqa: E402


def python_encode_dense(indices: np.ndarray, signs: np.ndarray) -> bytes:
    """The baseline: Elias-γ of j+1 and a sign bit per coordinate, as Python strings."""
    parts = []
    for j, sg in zip(indices.tolist(), signs.tolist()):
        parts.append(gamma_bits(j + 1))
        if j:
            parts.append("1" if sg < 0 else "0")
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def main() -> None:
    args = parser(__doc__).parse_args()
    d = 2**18 if args.quick else 2**22
    repeats = args.repeats or (3 if args.quick else 5)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(d).astype(np.float32)
    quant = Quantizer(Levels.uniform(15), q=np.inf)  # q = ∞ spreads indices over all 16 levels
    qv = quant.quantize(v, Key(1))
    rows = [("d", float(d), "coordinates")]
    for protocol in ("dense", "sparse"):
        msg = encode(qv, protocol)
        assert decode(msg).equals(qv)
        t_enc = best_time(lambda p=protocol: encode(qv, p), repeats)
        t_dec = best_time(lambda m=msg: decode(m), repeats)
        rows += [
            (f"{protocol}_bits_per_coord", msg.nbits / d, "bits"),
            (f"{protocol}_encode_coords_per_s", d / t_enc, "coord/s (target >= 1e8)"),
            (f"{protocol}_decode_coords_per_s", d / t_dec, "coord/s (target >= 5e7)"),
        ]
    small = 2**14
    qs = quant.quantize(v[:small], Key(1))
    t_py = best_time(lambda: python_encode_dense(qs.indices, qs.signs), 1, warmup=0)
    t_nb_small = best_time(lambda: encode(qs, "dense"), repeats)
    dense_rate = dict((r[0], r[1]) for r in rows)["dense_encode_coords_per_s"]
    rows += [
        ("python_encode_coords_per_s", small / t_py, f"coord/s (d = {small})"),
        ("dense_encode_over_python", dense_rate / (small / t_py), "x"),
        ("dense_encode_small_coords_per_s", small / t_nb_small, f"coord/s (d = {small}, with per-call overhead)"),
    ]
    report("coding", rows, {"quick": args.quick})


if __name__ == "__main__":
    main()
