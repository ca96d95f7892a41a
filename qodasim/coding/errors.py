"""Errors of the coding layer (defined in :mod:`qodasim.errors`)."""

from ..errors import DecodeError

__all__ = ["DecodeError"]
