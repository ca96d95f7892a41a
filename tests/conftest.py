"""Shared fixtures: quantizers covering global/layer-wise, norms, buckets, level families and engines."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim import LayerLayout, LayerwiseQuantizer, Levels, Quantizer


def random_levels(alpha: int, seed: int) -> Levels:
    rng = np.random.default_rng(seed)
    return Levels.from_interior(np.sort(rng.uniform(0.0, 1.0, alpha)), name=f"random({alpha})")


LEVELS = {
    "uniform4": Levels.uniform(4),
    "uniform15": Levels.uniform(15),
    "exp3": Levels.exponential(3),
    "exp6_p0.3": Levels.exponential(6, 0.3),
    "random5": random_levels(5, 11),
}

LAYOUT = LayerLayout([20, 33, 7, 40], [0, 1, 0, 2], names=("conv1", "conv2", "bias", "fc"))


def make_quantizers(engine: str) -> dict[str, Quantizer | LayerwiseQuantizer]:
    lv = (LEVELS["uniform4"], LEVELS["exp3"], LEVELS["random5"])
    return {
        "global-uniform4-L2": Quantizer(LEVELS["uniform4"], engine=engine),
        "global-uniform15-Linf": Quantizer(LEVELS["uniform15"], q=np.inf, engine=engine),
        "global-exp3-L2-bucket16": Quantizer(LEVELS["exp3"], bucket_size=16, engine=engine),
        "global-random5-L3": Quantizer(LEVELS["random5"], q=3.0, engine=engine),
        "global-exp6-L1-bucket7": Quantizer(LEVELS["exp6_p0.3"], q=1.0, bucket_size=7, engine=engine),
        "layer-scope": LayerwiseQuantizer(LAYOUT, lv, scope="layer", engine=engine),
        "layer-scope-buckets-mixed-q": LayerwiseQuantizer(
            LAYOUT, lv, scope="layer", q=(2.0, np.inf, 2.0), bucket_size=(None, 8, 16), engine=engine
        ),
        "global-scope-M3": LayerwiseQuantizer(LAYOUT, lv, scope="global", engine=engine),
    }


QUANTIZERS = make_quantizers("numba")
NUMPY_QUANTIZERS = make_quantizers("numpy")


@pytest.fixture(params=sorted(QUANTIZERS))
def quantizer(request):
    return QUANTIZERS[request.param]
