"""Problem classes: the Kelly auction's solution by its KKT conditions."""

from __future__ import annotations

import numpy as np
import pytest

from qodasim.vi.problems import KellyAuction


@pytest.mark.parametrize(
    "G, want", [((1, 3), [0, 0.7320508]), ((1.2, 1.3, 10), [0, 0, 2.1622777]), ((0.5, 4), [0, 1]), ((2, 3), None)]
)
def test_kelly_with_inactive_bidders(G, want):
    x = KellyAuction(G=G).solution
    if want is not None:
        assert np.allclose(x, want, atol=1e-7)
    else:
        assert np.allclose(x, [0.1396, 0.7094], atol=1e-4)


def test_kelly_kkt_on_random_games():
    """20 random games with 2 to 6 bidders, some priced out: x ≥ 0, A(x) ≥ 0, x·A(x) = 0 to 1e-10."""
    rng = np.random.default_rng(2)
    n_inactive = 0
    for _ in range(20):
        n = int(rng.integers(2, 7))
        k = KellyAuction(G=tuple(np.exp(rng.uniform(-1.5, 2.5, n))), Q=float(rng.uniform(0.5, 2)),
                         Z=float(rng.uniform(0.2, 2)))  # fmt: skip
        x = k.solution
        A = k.operator(x[None])[0]
        assert np.all(x >= 0) and np.all(A >= -1e-10) and np.max(np.abs(x * A)) <= 1e-10
        n_inactive += int(np.sum(x == 0))
    assert n_inactive >= 5  # the instances do exercise the active set
