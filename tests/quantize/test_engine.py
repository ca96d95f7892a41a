"""The quantizers' engine interface (``qodasim.quantize.engine``): every built-in engine conforms
member by member, the registry takes a conforming engine and refuses a broken one, and the engines'
serial combiners agree bit for bit."""

from __future__ import annotations

import types

import numpy as np
import pytest

from qodasim import Key, LayerLayout, LayerwiseQuantizer, Levels, Quantizer
from qodasim.quantize import engine as E

MEMBERS = E._REQUIRED + E._OPTIONAL


@pytest.mark.parametrize("member", MEMBERS)
def test_built_in_engine_has_each_member(engine, member):
    """One id per (engine, member) of :class:`Engine`: present, callable (or ``None`` if optional)."""
    eng = E.get_engine(engine)
    assert not [p for p in E.check_engine(eng) if p.startswith(f"{member}:")]
    assert isinstance(eng, E.Engine) and eng.name == engine


def test_the_device_workspace_is_a_norm_engine():
    """The GPU workspace feeds the norm pass itself (its partials come from the resident vectors): it
    declares every member of :class:`NormEngine`, and its combiners are the CPU engines'."""
    from qodasim.quantize.device import DeviceWorkspace

    for member in ("task_stats", "task_powsum", "combine_max", "combine_sum"):
        assert callable(getattr(DeviceWorkspace, member)), member
    nb = E.get_engine("numba")
    assert DeviceWorkspace.combine_max is nb.combine_max and DeviceWorkspace.combine_sum is nb.combine_sum
    assert issubclass(E.Engine, E.NormEngine)


def test_check_engine_lists_what_is_missing():
    numpy_engine = E.get_engine("numpy")
    assert E.check_engine(numpy_engine) == []
    broken = types.SimpleNamespace(**{m: getattr(numpy_engine, m) for m in MEMBERS})
    del broken.round
    broken.bucket_tables = 3
    del broken.quantize_single_task
    broken.name = ""
    problems = E.check_engine(broken)
    assert problems == ["name: must be a non-empty str", "round: missing or not callable",
                        "bucket_tables: must be callable or None",
                        "quantize_single_task: missing (set it to None when the engine lacks it)"]  # fmt: skip


def _wrapped_numpy():
    """The NumPy engine seen through another object (what a user's engine looks like to qodasim)."""
    numpy_engine = E.get_engine("numpy")
    members = {m: getattr(numpy_engine, m) for m in MEMBERS}
    members["name"] = "wrapped"
    return types.SimpleNamespace(**members)


def test_a_registered_engine_runs_the_quantizers(monkeypatch):
    """A conforming engine registered under a new name quantizes, dequantizes and sums bit for bit as
    the engine it wraps (here the NumPy reference), through the general paths."""
    monkeypatch.setitem(E._LOADERS, "wrapped", _wrapped_numpy)
    assert "wrapped" in E.engine_names()
    v = np.random.default_rng(3).standard_normal(3001)
    for make in (lambda e: Quantizer(Levels.exponential(6, 0.3), bucket_size=100, engine=e),
                 lambda e: LayerwiseQuantizer(LayerLayout([1000, 2001], [0, 1]), (Levels.uniform(3), Levels.uniform(9)),
                                              engine=e)):  # fmt: skip
        mine, ref = make("wrapped"), make("numpy")
        a, b = mine.quantize(v, Key(7)), ref.quantize(v, Key(7))
        assert a.equals(b)
        assert np.array_equal(a.dequantize(engine="wrapped"), b.dequantize(engine="numpy"))
        assert mine.exact_variance(v) == ref.exact_variance(v)
        batch = mine.quantize_batch(np.stack([v, -v, 2 * v, v]), [Key(1), Key(2), Key(3), Key(4)])
        from qodasim.quantize import dequantize_sum

        assert np.array_equal(dequantize_sum(batch, 2, engine="wrapped"), dequantize_sum(batch, 2, engine="numpy"))


def test_the_registry_refuses_bad_engines(monkeypatch):
    def broken():
        eng = _wrapped_numpy()
        del eng.task_phi
        return eng

    monkeypatch.setitem(E._LOADERS, "broken", broken)
    with pytest.raises(TypeError, match="task_phi: missing"):
        E.get_engine("broken")
    with pytest.raises(TypeError, match="task_phi"):
        Quantizer(Levels.uniform(3), engine="broken")
    with pytest.raises(ValueError, match="built-in"):
        E.register_engine("numba", _wrapped_numpy)
    with pytest.raises(TypeError, match="name"):
        E.register_engine("", _wrapped_numpy)
    with pytest.raises(TypeError, match="loader"):
        E.register_engine("x", 3)
    with pytest.raises(ValueError, match="engine must be one of"):
        E.get_engine("nope")
    with pytest.raises(ValueError, match="engine must be one of"):
        E.get_engine(["numba"])


def test_register_engine_adds_a_name(monkeypatch):
    monkeypatch.setattr(E, "_LOADERS", dict(E._LOADERS))
    E.register_engine("wrapped", _wrapped_numpy)
    assert E.get_engine("wrapped").name == "wrapped"


def test_the_engines_combiners_agree_bit_for_bit():
    """The NumPy engine's combiners (``np.fmax.at``, ``np.add.at``) equal the Numba kernels' serial ones:
    task order kept for the sums, a NaN partial skipped by the maximum, groups in any order."""
    nb, npy = E.get_engine("numba"), E.get_engine("numpy")
    rng = np.random.default_rng(11)
    for n_groups, n_tasks in ((1, 1), (3, 50), (40, 1000)):
        tg = rng.integers(0, n_groups, n_tasks)
        part = rng.standard_normal(n_tasks) * 10.0 ** rng.integers(-20, 20, n_tasks)
        part[rng.random(n_tasks) < 0.05] = np.nan
        mx = np.abs(part)
        assert np.array_equal(nb.combine_max(tg, mx, n_groups), npy.combine_max(tg, mx, n_groups))
        s_nb, s_np = nb.combine_sum(tg, part, n_groups), npy.combine_sum(tg, part, n_groups)
        assert np.array_equal(s_nb, s_np, equal_nan=True)


@pytest.mark.integration
def test_the_numpy_engine_runs_no_numba_kernel():
    """In a fresh interpreter, quantizing, dequantizing and the exact variance on the NumPy engine never
    import the Numba kernels (``qodasim.quantize._numba``)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from qodasim import Quantizer, LayerwiseQuantizer, LayerLayout, Levels, Key\n"
        "v = np.arange(50.0)\n"
        "q = Quantizer(Levels.exponential(6, 0.3), engine='numpy', bucket_size=7)\n"
        "q.quantize(v, Key(1)).dequantize(engine='numpy'); q.exact_variance(v)\n"
        "lv = (Levels.uniform(3), Levels.uniform(7))\n"
        "lq = LayerwiseQuantizer(LayerLayout([20, 30], [0, 1]), lv, engine='numpy')\n"
        "lq.quantize(v, Key(2)).dequantize(engine='numpy')\n"
        "print('qodasim.quantize._numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
