"""Conformance suites for plug-ins (scikit-learn's ``check_estimator`` style).

Every plug-in kind has a declared interface (a :class:`typing.Protocol`) and a tuple of named
:class:`Check` s: quantizers (:data:`qodasim.quantize.check.QUANTIZER_CHECKS`), message codecs
(:mod:`qodasim.coding.check`), step rules and level policies (:mod:`qodasim.solvers.check`), problems
(:mod:`qodasim.vi.check`).  :func:`run_checks` runs
a whole suite and reports *every* failure at once; :func:`parametrize_with_checks` gives pytest one
test id per (object, check), so a failing check is named in the test report:

>>> from qodasim.suite import parametrize_with_checks
>>> from qodasim.solvers import AdaptiveStep
>>> from qodasim.solvers.check import STEP_RULE_CHECKS
>>> mark = parametrize_with_checks([AdaptiveStep()], STEP_RULE_CHECKS)  # @mark on a test(obj, check)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Check", "parametrize_with_checks", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One named check: ``run(obj)`` raises ``AssertionError`` (or any exception) when ``obj`` fails."""

    name: str
    run: Callable[[object], None]

    def __call__(self, obj) -> None:
        self.run(obj)


def run_checks(obj, checks: Sequence[Check]) -> None:
    """Run every check on ``obj``; raise one ``AssertionError`` listing each failing check and why."""
    failures = []
    for check in checks:
        try:
            check(obj)
        except Exception as exc:  # noqa: BLE001 - a check's failure may be any exception of the plug-in
            failures.append(f"{check.name}: {type(exc).__name__}: {exc}")
    if failures:
        raise AssertionError(f"{len(failures)} of {len(checks)} checks failed for {obj!r}:\n" + "\n".join(failures))


def parametrize_with_checks(objects: Sequence, checks: Sequence[Check]):
    """A ``pytest.mark.parametrize("obj, check", …)`` over every (object, check) pair, with ids
    ``"<object>-<check name>"``; the test body calls ``check(obj)``."""
    import pytest

    pairs = [(obj, check) for obj in objects for check in checks]
    ids = [f"{_short(obj)}-{check.name}" for obj, check in pairs]
    return pytest.mark.parametrize("obj, check", pairs, ids=ids)


def _short(obj) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else type(obj).__name__
