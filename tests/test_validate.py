"""The shared argument checks (``qodasim.validate``) and the sites that use them: bools, strings, NaN,
out-of-range values and huge seeds are refused with an error naming the argument."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from qodasim.validate import MAX_SEED, check_choice, check_int, check_real, check_seed, is_int


def test_check_int_accepts_integers_and_refuses_the_rest():
    assert check_int(3, "n") == 3 and type(check_int(np.int64(3), "n")) is int
    assert check_int(np.uint8(7), "n", 0, 7) == 7
    for bad in (True, np.bool_(True), 1.0, "1", None, [1], np.float64(2.0)):
        with pytest.raises(ValueError, match=r"^n must be an integer, got "):
            check_int(bad, "n")
    with pytest.raises(ValueError, match=r"^n must be an integer >= 2, got 1$"):
        check_int(1, "n", 2)
    with pytest.raises(ValueError, match=r"^n must be an integer <= 4, got 5$"):
        check_int(5, "n", hi=4)
    with pytest.raises(ValueError, match=r"^n must be an integer in \[0, 4\], got -1$"):
        check_int(-1, "n", 0, 4)
    with pytest.raises(TypeError, match=r"^n must be a count, got list$"):
        check_int([1], "n", what="a count", error=TypeError, show="type")
    assert is_int(np.int32(1)) and not is_int(False) and not is_int(1.0)


def test_check_real_refuses_bools_strings_nan_and_inf():
    assert check_real(1, "x") == 1.0 and type(check_real(np.float32(0.5), "x")) is float
    for bad in (True, "0.5", None, float("nan"), float("inf"), np.array(0.5), complex(1, 0)):
        with pytest.raises(ValueError, match=r"^x must be a finite number, got "):
            check_real(bad, "x")
    assert check_real(float("inf"), "x", finite=False) == float("inf")
    with pytest.raises(ValueError, match=r"^x must be a number, got nan$"):  # NaN never passes
        check_real(float("nan"), "x", finite=False)
    with pytest.raises(ValueError, match=r"^x must be a finite number > 0, got 0.0$"):
        check_real(0.0, "x", 0.0, lo_open=True)
    assert check_real(0.0, "x", 0.0) == 0.0 and check_real(1.0, "x", 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r">= 0 and < 1, got 1.0"):
        check_real(1.0, "x", 0.0, 1.0, hi_open=True)
    with pytest.raises(TypeError, match="^x must"):  # a non-number may take another error than a bad number
        check_real("1", "x", 0.0, type_error=TypeError)
    with pytest.raises(ValueError, match="^x must"):
        check_real(-1.0, "x", 0.0, type_error=TypeError)


def test_check_choice_and_seed():
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^mode must be one of \('a', 'b'\), got 'c'$"):
        check_choice("c", "mode", ("a", "b"))
    with pytest.raises(ValueError, match="mode must be one of"):
        check_choice(["a"], "mode", {"a", "b"})  # unhashable: refused, not a crash
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == 2**64 - 1 and check_seed(np.uint64(5)) == 5
    for bad in (-1, 2**64, 2**64 + 5, 1.5, True, "3"):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\^64\)"):
            check_seed(bad)


def test_sites_refuse_strings_they_used_to_read_as_numbers():
    """Helpers that parsed with ``float(x)`` took ``"0.5"`` and ``True``; they refuse them now."""
    from qodasim.bounds.aggregate import _nonneg
    from qodasim.netlab.model import Network
    from qodasim.solvers import SolverConfig, SolverError
    from qodasim.solvers.steps import ConstantStep

    for bad in ("0.5", True):
        with pytest.raises(SolverError, match="gap_radius must be a finite number > 0"):
            SolverConfig(gap_radius=bad)
        with pytest.raises((TypeError, ValueError), match="bandwidth must be"):
            Network(bad)
        with pytest.raises(ValueError, match="step must be a positive finite number"):
            ConstantStep(bad)
        with pytest.raises(TypeError, match="eps must be"):
            _nonneg(bad, "eps")
    assert SolverConfig(gap_radius=0.5).gap_radius == 0.5 and Network(1e9, 0.0).latency == 0.0


def test_the_validation_idiom_lives_only_in_the_validation_module():
    """No module repeats ``isinstance(x, bool) or not isinstance(x, …)``: it calls ``qodasim.validate``."""
    root = Path(__file__).resolve().parents[1] / "qodasim"
    idiom = re.compile(r"isinstance\([^()]*,\s*bool\)\s*or\s*not\s*isinstance")
    found = [f"{p.relative_to(root)}:{i + 1}" for p in root.rglob("*.py") if p.name != "validate.py"
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()) if idiom.search(line)]  # fmt: skip
    assert not found, found


def test_every_exception_is_in_qodasim_errors_once():
    """``qodasim.errors`` holds every exception; the stage modules raise those same classes; the two
    ``SolverError``s are two names now (the convex one ``ConvexSolverError``, its old name an alias)."""
    from qodasim import coding, errors, optimize, quantize, solvers
    from qodasim.netlab import NetlabError, NetlabUnavailable
    from qodasim.solvers.mpi import CollectiveTimeout

    assert quantize.NormRangeError is errors.NormRangeError and coding.DecodeError is errors.DecodeError
    assert solvers.SolverError is errors.SolverError and optimize.ConvexSolverError is errors.ConvexSolverError
    assert (CollectiveTimeout, NetlabError, NetlabUnavailable) == (errors.CollectiveTimeout, errors.NetlabError,
                                                                   errors.NetlabUnavailable)  # fmt: skip
    assert errors.ConvexSolverError is not errors.SolverError
    assert optimize.SolverError is optimize.ConvexSolverError and optimize.solve is optimize.solve_convex
    assert optimize.METHODS is optimize.LEVEL_METHODS and optimize.LEVEL_METHODS != solvers.METHODS
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, (ValueError, RuntimeError)) and cls.__module__ == "qodasim.errors", name


def test_the_find_types_policy_has_its_own_name():
    from qodasim.solvers.policies import FindTypes, policy_from, policy_to_dict

    pol = policy_from({"policy": "findtypes", "every": 10})
    assert isinstance(pol, FindTypes) and policy_to_dict(pol)["policy"] == "findtypes"
    assert isinstance(policy_from({"policy": "autotypes", "every": 10}), FindTypes)  # the old name, one release
