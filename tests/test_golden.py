"""Numerical regression: golden values (seeded) stored in tests/golden/values.json.

Regenerate deliberately with ``python tests/test_golden.py --regenerate`` after a change that is
*meant* to alter results, and say why in the commit.  Tolerances: exact equality for anything
integer (quantized indices are hashed, bit counts); ``rtol = 1e-9`` for floating-point values that
go through iterative 1-D minimization (tight bounds) or library special functions, far below any
change that matters and above cross-platform libm differences.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "golden" / "values.json"


def compute() -> dict:
    from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer, bounds, coding
    from qodasim.optimize import exact_levels, normalized_magnitudes

    rng = np.random.default_rng(20261124)
    v = rng.standard_normal(5000).astype(np.float32)
    out: dict = {}
    q = Quantizer(Levels.uniform(15)).quantize(v, Key(1, 2, 3))
    out["global_indices_sha256"] = hashlib.sha256(q.indices.tobytes() + q.signs.tobytes()).hexdigest()
    out["global_norm_bits"] = int(q.norms.view(np.uint32)[0])
    layout = LayerLayout([1000, 3000, 1000], [0, 1, 0])
    lq = LayerwiseQuantizer(layout, (Levels.uniform(3), Levels.exponential(5)), bucket_size=(None, 512))
    ql = lq.quantize(v, Key(4))
    out["layerwise_indices_sha256"] = hashlib.sha256(ql.indices.tobytes() + ql.signs.tobytes()).hexdigest()
    out["layerwise_exact_variance"] = lq.exact_variance(v)
    for protocol in ("dense", "sparse"):
        out[f"message_bits_{protocol}"] = coding.encode(ql, protocol, "omega").nbits
        out[f"expected_bits_{protocol}"] = coding.expected_bits(v, lq, protocol, "omega")["total"]
    for spec, d in (("uniform:4", 1000), ("exponential:6:0.5", 4096), ("array:0,0.1,0.35,1", 77)):
        out[f"tight_{spec}_{d}"] = bounds.tight_variance_bound(Levels.parse(spec), d).value
    r = normalized_magnitudes(rng.standard_normal(20000) ** 3)
    ex = exact_levels(r, 5)
    out["exact_dp_psi"] = ex.psi
    out["exact_dp_levels"] = ex.levels.values.tolist()
    return out


def test_golden_values():
    golden = json.loads(GOLDEN.read_text())
    now = compute()
    assert set(now) == set(golden)
    for key, want in golden.items():
        got = now[key]
        if isinstance(want, (str, int)) and not isinstance(want, bool):
            assert got == want, key
        else:
            assert np.allclose(got, want, rtol=1e-9, atol=0), key


if __name__ == "__main__" and "--regenerate" in sys.argv:
    GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
