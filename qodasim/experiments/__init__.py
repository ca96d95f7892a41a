"""Experiments that check the theory's predictions numerically (THEORY §7)."""

from __future__ import annotations

from importlib import import_module

from .base import Param, Progress, Result, Verdict, check_config, load_config

#: Experiment name → module (each defines NAME, run(config, progress) and plot(result, outdir)).
REGISTRY = {
    "variance": "qodasim.experiments.variance",
    "codelength": "qodasim.experiments.codelength",
    "mqv": "qodasim.experiments.mqv",
    "convergence": "qodasim.experiments.convergence",
    "communication": "qodasim.experiments.communication",
    "epsilon": "qodasim.experiments.epsilon",
    "equalbits": "qodasim.experiments.equalbits",
    "dqsgd": "qodasim.experiments.dqsgd",
    "speedup": "qodasim.experiments.speedup",
    "wgan": "qodasim.experiments.wgan",
}


def get(name: str):
    """The module of experiment ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(REGISTRY)}")
    return import_module(REGISTRY[name])


__all__ = ["REGISTRY", "Param", "Progress", "Result", "Verdict", "check_config", "get", "load_config"]
