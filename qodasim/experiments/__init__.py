"""Experiments that check the theory's predictions numerically (THEORY §7)."""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path

from .base import CONFIG_DIR, Param, Progress, Result, Verdict, check_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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
    "realnets": "qodasim.experiments.realnets",
}


def get(name: str):
    """The module of experiment ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(REGISTRY)}")
    return import_module(REGISTRY[name])


def load_config(path_or_name: str | Path, setting: str = "quick") -> tuple[str, dict]:
    """Read a config: a TOML file with ``experiment = NAME`` and tables ``[quick]`` / ``[full]``
    (or flat parameters).  A bare name loads the packaged ``configs/NAME.toml``.

    The merged parameters are checked against the experiment's ``SCHEMA`` (:func:`check_config`):
    unknown or missing keys and bad values raise ``ValueError`` naming the file and the key.
    """
    path = Path(path_or_name)
    if not path.suffix and not path.is_file():
        path = CONFIG_DIR / f"{path_or_name}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
            raise ValueError(f"config {str(path_or_name)!r}: not a file and not a packaged config ({known})")
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read config: {exc}") from None
    name = raw.get("experiment")
    if not isinstance(name, str):
        raise ValueError(f"{path}: missing 'experiment = \"NAME\"'")
    tables = sorted(k for k, v in raw.items() if isinstance(v, dict))
    if set(tables) - {"quick", "full"}:
        raise ValueError(f"{path}: unknown table(s) {tables}; only [quick] and [full] are allowed")
    base = {k: v for k, v in raw.items() if not isinstance(v, dict) and k != "experiment"}
    if setting in raw:
        base.update(raw[setting])
    elif tables:
        raise ValueError(f"{path}: no [{setting}] table")
    module = get(name)
    try:
        return name, check_config(name, module.SCHEMA, base)
    except ValueError as exc:
        raise ValueError(f"{path.name} [{setting}]: {exc}") from None


__all__ = ["REGISTRY", "Param", "Progress", "Result", "Verdict", "check_config", "get", "load_config"]
