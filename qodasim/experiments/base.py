"""The experiment layer: config (TOML) → results file (seeds, versions, config) → verdicts → figures.

Each experiment module defines ``NAME``, ``run(config: dict, progress) -> Result`` and
``plot(result, outdir) -> list[Path]``.  Results are JSON so that figures can be redrawn without
rerunning, and each result carries pass/fail :class:`Verdict` s on the theory's predictions, so the
same code serves as a numerical regression test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..validate import check_int, check_real

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
        """True when every verdict passed."""
        return all(v.passed for v in self.verdicts)

    def save(self, path: Path) -> Path:
        """Write strict JSON (non-finite floats become ``null``) atomically: a temporary file in the
        same folder, then a rename, so a crash never leaves a truncated or half-old file."""
        text = json.dumps(strict_json(asdict(self)), indent=1, allow_nan=False) + "\n"
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: Path) -> Result:
        """Read a result written by :meth:`save`; anything else (not a regular file, not JSON, JSON nested
        too deeply, fields of the wrong type — a verdict's ``passed`` must be ``true`` or ``false``) is a
        ``ValueError`` naming the file."""
        path = Path(path)
        if not path.is_file():  # a FIFO or a device would block the read
            raise ValueError(f"{path.name}: not a regular file")
        try:
            raw = json.loads(path.read_text())
        except RecursionError:
            raise ValueError(f"{path.name}: JSON nested too deeply") from None
        return cls(**_checked_result(raw, path.name))


_RESULT_FIELDS = {"experiment": str, "config": dict, "data": dict, "verdicts": list, "meta": dict}
_VERDICT_FIELDS = {"name": str, "passed": bool, "detail": str}


def _checked_result(raw, name: str) -> dict:
    """The fields of a result file, each of its type, with the verdicts as :class:`Verdict` objects."""
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: a result is a JSON object, got {type(raw).__name__}")
    unknown, missing = set(raw) - set(_RESULT_FIELDS), {"experiment", "config", "data", "verdicts"} - set(raw)
    if unknown or missing:
        raise ValueError(f"{name}: unknown fields {sorted(unknown)} / missing fields {sorted(missing)}")
    for key, typ in _RESULT_FIELDS.items():
        if key in raw and not isinstance(raw[key], typ):
            raise ValueError(f"{name}: {key!r} must be a {typ.__name__}, got {type(raw[key]).__name__}")
    verdicts = []
    for v in raw["verdicts"]:
        if not isinstance(v, dict) or set(v) != set(_VERDICT_FIELDS) or not all(
                isinstance(v[k], t) for k, t in _VERDICT_FIELDS.items()):  # fmt: skip
            raise ValueError(f"{name}: a verdict must be {{name: string, passed: true/false, detail: string}}, "
                             f"got {str(v)[:80]}")  # fmt: skip
        verdicts.append(Verdict(**v))
    return {**raw, "verdicts": verdicts}


def strict_json(x):
    """``x`` with numpy values made plain and every NaN/±Inf replaced by ``None`` (valid JSON)."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return strict_json(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``; the file
    gets the mode an ordinary ``open`` would give it (``0666`` less the umask, e.g. ``0644``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``qodasim`` version plus a hash of the package's own source files (``+src.<10 hex>``).

    The hash identifies the code that made a result exactly, in a git checkout or an installed copy
    alike, and the same sources give the same stamp on every machine."""
    import hashlib

    from .._version import __version__

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}+src.{h.hexdigest()[:10]}"


def metadata(seed: int | None = None) -> dict:
    """Versions and machine info stored with every result."""
    import numba
    import numpy as np
    import scipy

    from .._version import __version__

    return {
        "qodasim": __version__,
        "code_version": code_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seed": seed,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ------------------------------------------------------------------------------- config schemas
_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One config key: its kind (``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"levels"`` — a level spec),
    whether it is a non-empty list of those (``many``), a default (required if none), a lower bound
    and allowed values."""

    kind: str
    default: object = _REQUIRED
    many: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None

    def check(self, key: str, value):
        """``value`` checked and converted for config key ``key`` (a ``ValueError`` naming the key); an
        optional key (default ``None``) also takes ``None``."""
        if value is None and self.default is None:
            return None
        if self.many:
            if not isinstance(value, (list, tuple)) or len(value) == 0:
                raise ValueError(f"{key}: must be a non-empty list, got {value!r}")
            return [self._one(f"{key}[{i}]", v) for i, v in enumerate(value)]
        return self._one(key, value)

    def _one(self, key: str, value):
        value = _KINDS[self.kind](key, value)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{key}: must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{key}: must be <= {self.maximum}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{key}: must be one of {list(self.choices)}, got {value!r}")
        return value


def _as_int(key: str, value) -> int:
    return check_int(value, f"{key}:")


def _as_float(key: str, value) -> float:
    return check_real(value, f"{key}:")


def _as_bool(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: must be true or false, got {value!r}")
    return value


def _as_str(key: str, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string, got {value!r}")
    return value


def _as_levels(key: str, value) -> str:
    from ..levels import Levels

    Levels.parse(_as_str(key, value))  # raises ValueError naming the spec
    return value


#: A config value's check and conversion by its :class:`Param` kind.
_KINDS = {"int": _as_int, "float": _as_float, "bool": _as_bool, "str": _as_str, "levels": _as_levels}


def check_config(name: str, schema: dict[str, Param], config: dict) -> dict:
    """Validate ``config`` against ``schema``: unknown keys, missing keys, wrong types and out-of-range
    values are a ``ValueError`` naming the key; defaults are filled in.  Returns a new dict."""
    if not isinstance(config, dict):
        raise ValueError(f"config of {name!r} must be a table of keys, got {type(config).__name__}")
    unknown = sorted(set(config) - set(schema))
    if unknown:
        raise ValueError(f"{name} config: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(schema)})")
    out = {}
    for key, param in schema.items():
        if key in config:
            out[key] = param.check(f"{name} config: {key}", config[key])
        elif param.default is _REQUIRED:
            raise ValueError(f"{name} config: missing required key {key!r}")
        else:
            out[key] = param.default
    return out


def load_results(results_dir: Path, order=()) -> list[Result]:
    """Every ``*.json`` result in ``results_dir`` (the experiments named in ``order`` first, in that order
    — e.g. ``qodasim.experiments.REGISTRY`` —, then by name); a file that does not load is reported as a
    failed pseudo-result rather than skipped silently."""
    order = {name: i for i, name in enumerate(order)}
    out = []
    for path in sorted(Path(results_dir).glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        try:
            out.append(Result.load(path))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            out.append(Result(path.stem, {}, {}, [Verdict("result_file", False, f"{path.name} unreadable: {exc}")]))
    return out


def results_table(results: list[Result], title: str = "qodasim reproduce") -> str:
    """The markdown table of ``results``: one row per verdict, with each result's setting, date and code
    version (so rows from different runs are never mistaken for one run)."""
    lines = [
        f"# {title}",
        "",
        "Rebuilt from every result file in `results/` after each experiment; each row says when and by which "
        "code its result was made.",
        "",
        "| experiment | verdict | check | detail | setting | date | code |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        meta = res.meta or {}
        code = meta.get("code_version", meta.get("qodasim", "?"))
        tail = f"{meta.get('setting', '?')} | {meta.get('date', '?')} | {code}"
        if meta.get("skipped"):
            lines.append(f"| {res.experiment} | SKIP | — | {meta['skipped']} | {tail} |")
        for v in res.verdicts:
            detail = str(v.detail).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {res.experiment} | {'PASS' if v.passed else 'FAIL'} | {v.name} | {detail} | {tail} |")
    return "\n".join(lines) + "\n"


class Progress:
    """A progress bar on stderr (tqdm); closes itself when ``total`` steps are done."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        from tqdm import tqdm

        self._bar = tqdm(total=max(1, total), desc=f"  {label}", disable=not enabled, file=sys.stderr, leave=True,
                         dynamic_ncols=True, bar_format="{desc:<16}{bar}| {percentage:3.0f}% {elapsed}")  # fmt: skip

    def step(self, n: int = 1) -> None:
        """Advance the bar by ``n`` units (closes it when full)."""
        self._bar.update(n)
        if self._bar.n >= self._bar.total:
            self.close()

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()
