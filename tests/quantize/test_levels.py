import numpy as np
import pytest

from qodasim import Levels


def test_uniform_and_exponential_families():
    u = Levels.uniform(4)
    assert np.array_equal(u.values, [0, 0.25, 0.5, 0.75, 1.0])
    assert (u.alpha, u.size, u.s, u.uniform_s) == (3, 5, 4, 4)
    e = Levels.exponential(3)
    assert np.array_equal(e.values, [0, 0.125, 0.25, 0.5, 1.0])
    assert e.uniform_s == 0 and e.alpha == 3
    assert Levels.exponential(0).values.tolist() == [0.0, 1.0]
    assert np.allclose(Levels.exponential(2, 0.3).values, [0, 0.09, 0.3, 1])


def test_index_dtype_is_smallest():
    assert Levels.uniform(255).index_dtype == np.uint8
    assert Levels.uniform(256).index_dtype == np.uint16
    assert Levels.uniform(70000).index_dtype == np.uint32


def test_immutable_and_hashable():
    lv = Levels.uniform(3)
    with pytest.raises(ValueError):
        lv.values[1] = 0.5
    with pytest.raises(AttributeError):
        lv.values = np.zeros(3)
    assert lv == Levels.from_array([0, 1 / 3, 2 / 3, 1]) and hash(lv) == hash(Levels.uniform(3))
    assert lv != Levels.uniform(4)


@pytest.mark.parametrize(
    "values, words",
    [
        ([0, 0.5, 0.5, 1], "strictly increasing"),
        ([0, 0.7, 0.3, 1], "strictly increasing"),
        ([0.1, 0.5, 1], "first level must be 0"),
        ([0, 0.5, 0.9], "last level must be 1"),
        ([0, 1.5, 1], "[0, 1]"),
        ([-0.2, 0, 1], "[0, 1]"),
        ([0, np.nan, 1], "NaN"),
        ([0, np.inf, 1], "NaN or Inf"),
        ([0.0], "at least"),
        ([[0, 1]], "1-D"),
    ],
)
def test_bad_levels_rejected(values, words):
    with pytest.raises(ValueError, match=None) as err:
        Levels(values)
    assert words in str(err.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_family_parameters(bad):
    with pytest.raises(ValueError):
        Levels.uniform(bad)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.5, np.nan])
def test_bad_exponential_p(p):
    with pytest.raises(ValueError, match="p must"):
        Levels.exponential(3, p)
