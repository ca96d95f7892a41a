"""Every public object is documented, and the docstring examples run.

The public API is what the package and its subpackages list in ``__all__``; for a public class, its
public methods and properties too.  A class's docstring must be its own (a dataclass without one gets
an auto-generated signature, which does not count).  Module-level data (``CODES``, ``METHODS``, …)
cannot carry a docstring: it must be preceded by a ``#:`` comment, which Sphinx's autodoc shows.
The examples in docstrings run as doctests here (and ``python -m pytest --doctest-modules qodasim``
runs the same)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import qodasim

PACKAGES = (["qodasim", "qodasim.levels", "qodasim.rng", "qodasim.threads", "qodasim.validate", "qodasim.errors",
             "qodasim.suite", "qodasim.quantize.check", "qodasim.coding.check", "qodasim.quantize.device",
             "qodasim.quantize.layers",
             "qodasim.quantize.engine", "qodasim.optimize.schemes", "qodasim.experiments.analyze",
             "qodasim.vi.wgan", "qodasim.vi.digitscore", "qodasim.vi.check", "qodasim.solvers.check",
             "qodasim.experiments.budget",
             "qodasim.solvers.mpi", "qodasim.netlab.model", "qodasim.solvers.sra", "qodasim.torch.sra",
             "qodasim.solvers.runspec", "qodasim.solvers.sweep", "qodasim.netlab.clock",
             "qodasim.experiments.networks"]
            + sorted(f"qodasim.{m.name}" for m in pkgutil.iter_modules(qodasim.__path__) if m.ispkg))  # fmt: skip


def test_the_docs_list_the_same_modules():
    """docs/conf.py builds one API page per module of this list: none may be left out."""
    conf = (Path(__file__).resolve().parents[1] / "docs" / "conf.py").read_text(encoding="utf-8")
    listed = set(re.findall(r'\("(qodasim[\w.]*)", "', conf))
    assert listed == set(PACKAGES), set(PACKAGES) ^ listed


class _Member(tuple):
    """``(class, attribute name)`` of a public method or property."""


def public_objects():
    """``(qualified name, object, module name)`` for every public object."""
    seen = {}
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for name in getattr(mod, "__all__", []):
            if name.startswith("__"):
                continue
            obj = getattr(mod, name)
            seen.setdefault(f"{pkg}.{name}", (obj, pkg))
            if inspect.isclass(obj):
                for attr in dir(obj):
                    owner = next((k for k in obj.__mro__ if attr in vars(k)), object)
                    if attr.startswith("_") or not owner.__module__.startswith("qodasim"):
                        continue
                    member = vars(owner)[attr]
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        seen.setdefault(f"{pkg}.{name}.{attr}", (_Member((obj, attr)), pkg))
    return seen


def _own_doc(obj) -> str:
    if isinstance(obj, _Member):  # (class, member name): an override may inherit its base's docstring
        return inspect.getdoc(getattr(obj[0], obj[1])) or ""
    doc = obj.__doc__ or ""
    if inspect.isclass(obj) and re.match(rf"{re.escape(obj.__name__)}\(", doc):
        return ""  # the dataclass's generated signature
    return doc.strip()


def _documented_data(name: str, obj, pkg: str) -> bool:
    """A ``#:`` comment right above ``NAME =`` (or ``NAME: type =``) in some module of the package."""
    short = name.rsplit(".", 1)[1]
    root = Path(qodasim.__file__).parent
    pattern = re.compile(rf"^{re.escape(short)}\s*(:[^=]*)?=", re.MULTILINE)
    for path in root.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if pattern.match(line):
                j = i - 1
                if j >= 0 and lines[j].lstrip().startswith("#:"):
                    return True
    return False


def undocumented() -> list[str]:
    missing = []
    for name, (obj, pkg) in sorted(public_objects().items()):
        if isinstance(obj, _Member) or inspect.isclass(obj) or inspect.isfunction(obj):
            if not _own_doc(obj):
                missing.append(name)
        elif not _documented_data(name, obj, pkg):
            missing.append(name)
    return missing


def test_the_public_api_is_large_and_listed():
    objs = public_objects()
    assert len(objs) > 150  # the list is not accidentally empty
    assert "qodasim.quantize.Quantizer.quantize" in objs and "qodasim.coding.encode" in objs


def test_every_public_object_has_a_docstring():
    missing = undocumented()
    assert not missing, f"{len(missing)} public objects without a docstring: {missing}"


def test_the_check_catches_an_undocumented_function(monkeypatch):
    """The checker itself can go red: strip one docstring and it must be named."""
    from qodasim import quantize

    monkeypatch.setattr(quantize.vector_norm, "__doc__", None)
    assert "qodasim.quantize.vector_norm" in undocumented()


def _modules():
    root = Path(qodasim.__file__).parent
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith("__main__") or "._cuda" in name:
            continue
        yield name.removesuffix(".__init__")


@pytest.mark.parametrize("module", list(_modules()))
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(mod, optionflags=flags, verbose=False, report=True)
    assert result.failed == 0, f"{module}: {result.failed} of {result.attempted} doctest examples failed"


def test_the_most_used_objects_have_examples():
    """The objects a newcomer meets first each carry an example that runs."""
    from qodasim import Key, LayerwiseQuantizer, Levels, Quantizer, bounds, coding, optimize, solvers

    for obj in (Levels, Quantizer, LayerwiseQuantizer, Key, coding.encode, coding.decode,
                bounds.tight_variance_bound, optimize.exact_levels, solvers.solve):  # fmt: skip
        assert ">>> " in (obj.__doc__ or ""), obj.__qualname__


DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```(?:python|\{code-cell\} ipython3)\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("page", ["getting_started.md", "extending.md", "platforms.md", "distributed.md",
                                  "your_model.md"])  # fmt: skip
def test_the_code_on_the_docs_pages_runs(page, monkeypatch):
    """Every ``python`` block of a guide page runs, in order, in one namespace (what a reader pastes).

    ``engine="cuda"`` blocks are run only where a GPU or the simulator is available; *Your own model*
    needs torch (installed in CI); network-lab blocks need root and start processes: they run in
    ``test_netlab`` (integration)."""
    import os
    import sys
    import types

    if page == "your_model.md" and os.environ.get("QODASIM_REQUIRE_TORCH") != "1":
        pytest.importorskip("torch")

    from qodasim.quantize.core import cuda_available

    blocks = _python_blocks(page)
    assert blocks, page
    module = types.ModuleType(f"docs_{page.removesuffix('.md')}")  # a real module: dataclasses look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in blocks:
        if ('engine="cuda"' in block and not cuda_available()) or "qodasim.netlab" in block:
            continue
        block = block.replace("T=2000", "T=200")  # the same code, a shorter run
        exec(compile(block, f"docs/{page}", "exec"), namespace)


def test_the_readme_examples_print_what_the_readme_shows(capsys, monkeypatch):
    """Each ``python`` block of the README runs (in order, one namespace); where a ``text`` block
    follows it, that is exactly what the block prints."""
    import sys
    import types

    text = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    pairs = re.findall(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```)?", text, flags=re.DOTALL)
    assert len(pairs) >= 2 and sum(bool(out) for _, out in pairs) >= 2
    module = types.ModuleType("readme")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for code, shown in pairs:
        capsys.readouterr()
        exec(compile(code, "README.md", "exec"), module.__dict__)
        printed = capsys.readouterr().out
        if shown:
            assert printed == shown, f"README shows\n{shown}\nthe code prints\n{printed}"


def test_ci_runs_each_of_the_readme_test_runs_and_checks_its_status():
    """`.ci/run` runs every pytest invocation of the README's test command on its own line: under
    ``set -e`` a failure in the middle of an ``&&`` list does not stop a script, so a failing run there
    would be followed by an exit status of 0."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("python -m pytest"))
    runs = [run.strip() for run in command.split("&&")]
    assert len(runs) == 3, runs
    ci = (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    code = [line.split("#")[0] for line in ci]
    assert "set -euo pipefail" in code[:6]
    for run in runs:
        assert any(line.strip().startswith(run) and "||" in line for line in code), run
    assert not any("pytest" in line and "&&" in line for line in code), "a pytest run joined by &&"
