"""Errors of the coding layer."""


class DecodeError(ValueError):
    """A bit stream is truncated, corrupt, or not a qodasim message."""
