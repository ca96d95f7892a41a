"""The package's import graph (every ``import`` and ``from … import`` in every module, also those inside
functions): no cycle between modules.

The last ones went with two moves: ``LayerLayout`` lives in ``quantize.layers`` beside the
named-array helpers its methods use (``plan`` imports it from there), and fitting types to values
(``types="auto"``) is ``optimize.auto_layout``'s, one stage above the quantizers.  The test fails on
any cycle (``KNOWN`` lists accepted ones: none).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "qodasim"

KNOWN: set[frozenset[str]] = set()  # no cycle left


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (``from pkg import name`` goes to ``pkg.name`` when that
    is a module, else to ``pkg``)."""
    mods = modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                if not target or not target.startswith("qodasim"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    graph[m].add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
    return {m: {t for t in ts if t in mods} for m, ts in graph.items()}


def cycles(graph: dict[str, set[str]]) -> set[frozenset]:
    """The strongly connected components with more than one module (or a self-import): Tarjan's, iterative."""
    index, low, on, stack, out, counter = {}, {}, set(), [], set(), [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph[v]:
                    out.add(frozenset(comp))
    return out


def test_no_import_cycle_but_the_known_ones():
    found = cycles(import_graph())
    assert found == KNOWN, {
        "new or changed": [sorted(c) for c in found - KNOWN],
        "gone": [sorted(c) for c in KNOWN - found],
    }


def test_the_cycle_finder_finds_cycles_and_reads_relative_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert cycles({"a": {"a"}, "b": set()}) == {frozenset("a")}
    assert cycles({"a": {"b"}, "b": set()}) == set()
    graph = import_graph()
    assert "qodasim.quantize.plan" in graph["qodasim.quantize.device"]  # from .plan import LayerLayout
    assert "qodasim.torch._parts" in graph["qodasim.torch.sra"]  # from ._parts import …
    assert "qodasim.quantize.layers" in graph["qodasim.optimize.autotype"]  # an import inside a function


def test_moved_modules_keep_their_old_names_for_one_release():
    """``solvers.network`` → ``netlab.model`` and ``solvers.budget`` → ``experiments.budget``: the old
    names re-export the same objects."""
    import qodasim.experiments.budget as budget
    import qodasim.netlab.model as model
    import qodasim.solvers.budget as old_budget
    import qodasim.solvers.network as old_model

    assert old_model.__all__ == model.__all__ and all(getattr(old_model, n) is getattr(model, n) for n in model.__all__)
    assert all(getattr(old_budget, n) is getattr(budget, n) for n in budget.__all__)
