"""Bits that depend on (vector, key) only: golden hashes of quantizer outputs on edge vectors.

The transmitted norms and every index and sign must be the same on every CPU model, for every thread
count and on every engine (THEORY §1: counter-based randomness, a summation order fixed by the
algorithm).  ``tests/golden/edge_hashes.json`` holds SHA-256 hashes of ``(indices, signs, norm bits)``
for edge vectors (norms exactly representable, coordinates exactly on levels, signed zeros, subnormal
entries, tiny and huge scales, chunk boundaries) under several quantizers.  They are checked here
in-process on the numba and numpy engines, in fresh processes with ``NUMBA_NUM_THREADS=1`` and ``2``,
and on the (simulated) CUDA engine in ``tests/quantize/test_cuda.py``.

Regenerate deliberately with ``python tests/test_edge_hashes.py --regenerate`` and say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "edge_hashes.json"


def edge_vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261124)
    on_levels = np.array([k / 4 for k in (1, 2, 3, 4, 0, 1, 2, 3)]) * np.array([1, -1] * 4)
    near = np.nextafter(on_levels, np.inf)
    return {
        "norm5": np.array([3.0, 4.0]),
        "on_levels_uniform4": np.full(16, 0.25),
        "on_levels_signed": on_levels,
        "next_to_levels": near,
        "zeros": np.zeros(7),
        "signed_zeros": np.array([-0.0, 0.0, 1.0, -0.0]),
        "one_nonzero": np.array([0.0, 0.0, -2.5, 0.0]),
        "subnormal_entries": np.array([1e-310, -5e-324, 1.0, 0.0]),
        "tiny": rng.standard_normal(300) * 1e-30,
        "huge": rng.standard_normal(300) * 1e30,
        "near_f32_max": np.array([3.0e38, -1.0, 2.0e38]) / 1.5,
        "f32_random": rng.standard_normal(1000).astype(np.float32),
        "f32_heavy": (rng.standard_t(1.5, 5000) * 100).astype(np.float32),
        "chunk_boundaries": rng.standard_normal(2**17 + 3).astype(np.float32),
    }


def quantizers(engine: str) -> dict:
    from qodasim import LayerLayout, LayerwiseQuantizer, Levels, Quantizer

    rand = Levels.from_interior([0.07, 0.2, 0.55])
    out = {
        "uniform4_L2": Quantizer(Levels.uniform(4), engine=engine),
        "uniform15_Linf": Quantizer(Levels.uniform(15), q=np.inf, engine=engine),
        "exp3_L2_bucket16": Quantizer(Levels.exponential(3), bucket_size=16, engine=engine),
        "random_L1": Quantizer(rand, q=1.0, engine=engine),
        "uniform3000_L2": Quantizer(Levels.uniform(3000), engine=engine),  # the float rounding path
    }

    def layerwise(d: int):
        a = d // 3 if d >= 8 else 0  # (a layer of only subnormal entries would be refused: THEORY §1)
        layout = LayerLayout([a, d - 2 * a, a], [0, 1, 0]) if a else LayerLayout([d])
        lv = (Levels.uniform(3), Levels.exponential(5)) if a else (Levels.uniform(3),)
        return LayerwiseQuantizer(layout, lv, scope="layer", engine=engine)

    out["layerwise"] = layerwise
    return out


def compute(engine: str = "numba") -> dict:
    from qodasim import Key

    out = {}
    for vname, v in edge_vectors().items():
        for qname, q in quantizers(engine).items():
            if callable(q) and not hasattr(q, "quantize"):
                q = q(v.size)
            qv = q.quantize(v, Key(7, 1, 2))
            blob = qv.indices.tobytes() + qv.signs.tobytes() + qv.norms.view(np.uint32).tobytes()
            out[f"{vname}/{qname}"] = hashlib.sha256(blob).hexdigest()[:32]
    return out


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_edge_hashes_engines(engine):
    golden, now = _golden(), compute(engine)
    assert set(now) == set(golden)
    bad = [k for k in golden if now[k] != golden[k]]
    assert not bad, bad


@pytest.mark.integration
@pytest.mark.parametrize("threads", ["1", "2"])
def test_edge_hashes_thread_counts(threads):
    env = dict(os.environ, NUMBA_NUM_THREADS=threads)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    out = subprocess.run([sys.executable, __file__, "--print"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    now = json.loads(out.stdout)
    bad = [k for k, h in _golden().items() if now.get(k) != h]
    assert not bad, bad


def test_hashes_see_a_one_bit_change():
    """The edge set can see a one-ulp change: ‖(3, 4)‖ = 5 is exact, and one float64 ulp more in a
    coordinate moves the transmitted (rounded-up) norm to the next float32."""
    from qodasim import Key, Levels, Quantizer

    v = edge_vectors()["norm5"].copy()
    a = Quantizer(Levels.uniform(4)).quantize(v, Key(7, 1, 2))
    assert a.norms[0] == np.float32(5.0)
    v[1] = np.nextafter(v[1], 5.0)
    b = Quantizer(Levels.uniform(4)).quantize(v, Key(7, 1, 2))
    assert b.norms[0] == np.nextafter(np.float32(5.0), np.float32(6.0))


if __name__ == "__main__":
    if "--regenerate" in sys.argv:
        GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
    elif "--print" in sys.argv:
        print(json.dumps(compute()))
