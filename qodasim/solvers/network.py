"""The network-time model's old home: it is :mod:`qodasim.netlab.model` (this alias stays one release)."""

from ..netlab.model import *  # noqa: F403
from ..netlab.model import __all__  # noqa: F401
