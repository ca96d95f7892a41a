"""Encode/decode throughput of the message protocols (coordinates per second).

d = 2^22, 16 uniform levels (s = 15), every Elias code (γ, δ, ω), dense and sparse; against a
straightforward pure-Python encoder (bit strings) on d = 2^14, reported as a ratio of throughputs.
When the peer package ``dsi-bitstream`` is installed (the ``bench`` extra), the raw code words of the
same index array are also written and read with it (one Python call per value, as its API offers)
and with :func:`qodasim.coding.encode_ints` / ``decode_ints``, reported as ratios.  ``--quick``:
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


def peer_rows(indices: np.ndarray, repeats: int) -> list:
    """Raw code words of ``indices`` (0-based; ours code ``j + 1``): qodasim vs ``dsi-bitstream``."""
    try:
        import dsi_bitstream as dsi
    except ImportError:
        print("dsi-bitstream not installed (pip install -e '.[bench]'): no peer ratios")
        return []
    import tempfile

    from qodasim.coding import decode_ints, encode_ints

    n = min(indices.size, 2**16)  # the peer is driven from Python, one call per value
    vals = indices[:n].tolist()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "peer.bin")
        for code in ("gamma", "delta", "omega"):

            def peer_write(code=code):
                w = dsi.BitWriterBigEndian(path)
                put = getattr(w, f"write_{code}")
                for x in vals:
                    put(x)
                w.flush()

            def peer_read(code=code):
                r = dsi.BitReaderBigEndian(path)
                get = getattr(r, f"read_{code}")
                return [get() for _ in range(n)]

            peer_write()
            assert peer_read() == vals
            ours = indices[:n] + 1
            data, nbits = encode_ints(ours, code)
            assert np.array_equal(decode_ints(data, n, code, nbits=nbits), ours)
            t_pw, t_pr = best_time(peer_write, repeats), best_time(peer_read, repeats)
            t_ow = best_time(lambda c=code, o=ours: encode_ints(o, c), repeats)
            t_or = best_time(lambda c=code, b=data, m=nbits: decode_ints(b, n, c, nbits=m), repeats)
            rows += [
                (f"peer_{code}_encode_values_per_s", n / t_pw, f"values/s (dsi-bitstream, n = {n})"),
                (f"peer_{code}_decode_values_per_s", n / t_pr, "values/s (dsi-bitstream)"),
                (f"{code}_encode_over_peer", t_pw / t_ow, "x (encode_ints vs dsi-bitstream)"),
                (f"{code}_decode_over_peer", t_pr / t_or, "x (decode_ints vs dsi-bitstream)"),
            ]
    return rows


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
        for code in ("gamma", "delta", "omega"):
            msg = encode(qv, protocol, code)
            assert decode(msg).equals(qv)
            t_enc = best_time(lambda p=protocol, c=code: encode(qv, p, c), repeats)
            t_dec = best_time(lambda m=msg: decode(m), repeats)
            tag = protocol if code == "gamma" else f"{protocol}_{code}"
            rows += [
                (f"{tag}_bits_per_coord", msg.nbits / d, "bits"),
                (f"{tag}_encode_coords_per_s", d / t_enc, "coord/s (target >= 1e8)"),
                (f"{tag}_decode_coords_per_s", d / t_dec, "coord/s (target >= 5e7)"),
            ]
    rows += peer_rows(qv.indices.astype(np.int64), repeats)
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
