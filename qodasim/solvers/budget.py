"""The equal-budget comparisons' old home: they are :mod:`qodasim.experiments.budget` (this alias stays
one release)."""

from ..experiments.budget import *  # noqa: F403
from ..experiments.budget import __all__  # noqa: F401
