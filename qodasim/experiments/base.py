"""The experiment layer: config (TOML) → results file (seeds, versions, config) → verdicts → figures.

Each experiment module defines ``NAME``, ``run(config: dict, progress) -> Result`` and
``plot(result, outdir) -> list[Path]``.  Results are JSON so that figures can be redrawn without
rerunning, and each result carries pass/fail :class:`Verdict` s on the theory's predictions, so the
same code serves as a numerical regression test.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class Verdict:
    """One checked prediction: what was predicted, whether it held, and the numbers behind it."""

    name: str
    passed: bool
    detail: str


@dataclass
class Result:
    """The saved outcome of one experiment run."""

    experiment: str
    config: dict
    data: dict
    verdicts: list[Verdict]
    meta: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1, default=_jsonable) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Result:
        raw = json.loads(Path(path).read_text())
        raw["verdicts"] = [Verdict(**v) for v in raw["verdicts"]]
        return cls(**raw)


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def metadata(seed: int | None = None) -> dict:
    """Versions and machine info stored with every result."""
    import numba
    import numpy as np
    import scipy

    from .. import __version__

    return {
        "qodasim": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seed": seed,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def load_config(path_or_name: str | Path, setting: str = "quick") -> tuple[str, dict]:
    """Read a config: a TOML file with ``experiment = NAME`` and tables ``[quick]`` / ``[full]``
    (or flat parameters).  A bare name loads the packaged ``configs/NAME.toml``."""
    path = Path(path_or_name)
    if not path.suffix:
        path = CONFIG_DIR / f"{path_or_name}.toml"
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    name = raw.get("experiment")
    if not isinstance(name, str):
        raise ValueError(f"{path}: missing 'experiment = \"NAME\"'")
    base = {k: v for k, v in raw.items() if not isinstance(v, dict) and k != "experiment"}
    if setting in raw:
        base.update(raw[setting])
    elif any(isinstance(v, dict) for v in raw.values()):
        raise ValueError(f"{path}: no [{setting}] table")
    return name, base


class Progress:
    """A minimal progress line on stderr (no dependency)."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.done, self.enabled = label, max(1, total), 0, enabled
        self.t0 = time.perf_counter()

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(30 * frac)
            elapsed = time.perf_counter() - self.t0
            sys.stderr.write(f"\r  {self.label:<14} [{bar:<30}] {100 * frac:5.1f}%  {elapsed:6.1f}s")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
