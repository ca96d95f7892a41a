"""Shared test data and helpers, in one place: the quantizer matrix (global/layer-wise, norms, buckets,
level families, both CPU engines), a two-type sample, the exact spread of the squared error, the Monte
Carlo check of an analysis, and hand-made mutants of the real code. Test modules import them from here
(``from cases import ...``); fixtures built on them live in ``conftest.py``."""

from __future__ import annotations

import inspect
import sys
import textwrap

import numpy as np

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


def exact_sd_of_squared_error(Q, v) -> float:
    """Exact standard deviation of ``‖Q(v) − v‖²`` (the coordinates are independent two-point draws)."""
    j, rho, n32, plan = Q.intervals(v)
    lv, lv_start, _ = Q._tables
    base = lv_start[plan.coord_type()]
    n = n32.astype(np.float64)[plan.coord_group()]
    a = np.abs(v)
    e0 = (n * lv[base + j] - a) ** 2
    e1 = (n * lv[base + j + 1] - a) ** 2
    return float(np.sqrt(np.sum(rho * (1 - rho) * (e1 - e0) ** 2)))


def check_analysis_by_monte_carlo(res, v, budget: float, n: int = 300) -> None:
    """Every γ row of ``res`` (an :class:`~qodasim.experiments.analyze.Analysis`) at ``budget``, snapshot 0:
    the exact variance within 4 exact standard errors of a Monte Carlo of the quantizer (fixed keys),
    the expected bits within 4 sample standard errors of the mean real stream, and the recorded stream
    bits equal to :func:`qodasim.coding.encode` of the same draw."""
    from qodasim import Key
    from qodasim.coding import encode

    norm2 = float(np.dot(v, v))
    names = res.meta["schemes"]
    rows = [r for r in res.rows if r["snapshot"] == 0 and r["budget"] == budget and r["code"] == "gamma"]
    assert rows
    for r in rows:
        Q = res.quantizers[0, budget, "gamma", r["scheme"]]
        errs, bits = [], []
        for t in range(n):
            qv = Q.quantize(v, Key(7, 1, t))
            errs.append(float(np.sum((qv.dequantize(np.float64) - v) ** 2)))
            m = encode(qv)
            bits.append((m.bits["payload"] + m.bits["norms"]) / v.size)
        se = exact_sd_of_squared_error(Q, v) / np.sqrt(n) / norm2
        assert abs(np.mean(errs) / norm2 - r["variance"]) <= 4 * se, r["scheme"]
        assert abs(np.mean(bits) - r["bits"]) <= 4 * np.std(bits) / np.sqrt(n) + 1e-12, r["scheme"]
        m = encode(Q.quantize(v, Key(res.meta["seed"], 0, names.index(r["scheme"]))))
        assert r["stream_bits"] == (m.bits["payload"] + m.bits["norms"]) / v.size, r["scheme"]


def two_type_sample(seed: int = 0, sizes=(300, 80, 500, 60), ratio: float = 10.0):
    """Four layers of two types; type 1's layers are 20 % dense and ``ratio`` times smaller."""
    rng = np.random.default_rng(seed)
    layout = LayerLayout(list(sizes), [0, 1, 0, 1])
    v = rng.standard_normal(layout.d)
    for l in (1, 3):
        sl = layout.layer_slice(l)
        v[sl] = v[sl] / ratio * (rng.random(sl.stop - sl.start) < 0.2) * 2.0
    return layout, v


def mutant(monkeypatch, owner, name: str, old: str, new: str) -> None:
    """Replace ``owner.name`` (a module's function or a class's method) by a copy of its source with
    ``old`` replaced by ``new`` (exactly once): a hand-made mutant of the real code, as a
    mutation-testing tool would make."""
    fn = getattr(owner, name)
    module = sys.modules[fn.__module__]
    src = textwrap.dedent(inspect.getsource(fn))
    assert src.count(old) == 1, f"{old!r} occurs {src.count(old)} times in {name}"
    ns = dict(vars(module))
    exec(compile(src.replace(old, new), module.__file__, "exec"), ns)  # noqa: S102
    monkeypatch.setattr(owner, name, ns[name])


def grads(seed: int = 0, scale: bool = True) -> dict:
    """A small model's named float32 gradients: four conv layers (kernels scaled by 10^U(−2, 0)) with
    biases, a heavy-tailed embedding and a dense layer."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(4):
        s = 10.0 ** rng.uniform(-2, 0) if scale else 1.0
        out[f"conv{i}.weight"] = (rng.standard_normal((8, 4, 3, 3)) * s).astype(np.float32)
        out[f"conv{i}.bias"] = (rng.standard_normal(8) * 0.01).astype(np.float32)
    out["embed.weight"] = (rng.standard_t(3, (50, 8)) * 0.05).astype(np.float32)
    out["fc.weight"] = (rng.standard_normal((10, 64)) * 0.1).astype(np.float32)
    return out
