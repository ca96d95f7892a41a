"""Sphinx configuration of the qodasim documentation (build: ``python -m sphinx -W -b html docs docs/_build``).

The notebooks of ``notebooks/`` are copied into ``docs/gallery/`` and executed at build time
(myst-nb); the results page includes ``figures/results.md`` and the committed figures.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import qodasim  # noqa: E402

project = "qodasim"
author = "the qodasim developers"
copyright = "2026, the qodasim developers"
release = qodasim.__version__
version = release

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "gallery/_grid.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# -- API reference ---------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "none"  # numpydoc writes the parameters; signatures keep the annotations readable
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
intersphinx_mapping = {}  # no network at build time: links stay inside these pages
nitpicky = True  # every cross-reference must resolve (the theory pages link into the API)
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|cvxpy|numba|pathlib|collections|typing)\..*"),  # no intersphinx here
    (r"py:class", r"(ndarray|array_like|optional|callable|Path|Generator|np\.random\.Generator)"),
]

# -- notebooks (executed at build time) ------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the notebooks carry their outputs (tests/integration/test_notebooks.py keeps them current);
# getting_started.md asks for execution in its own front matter
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML -------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"qodasim {release}"
html_static_path = ["_generated/static"]
# MathJax from the jupyter-server-mathjax wheel (the docs extra), served with the site: no CDN needed.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {  # MathJax 2 (that wheel's version): process Sphinx's and myst-nb's math classes
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                "processClass": "math|output_area", "ignoreClass": "tex2jax_ignore|mathjax_ignore"},
    # the wheel ships the STIX-Web fonts only (no TeX web fonts): use them, never ask for the others
    "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web",
                 "imageFont": None},
}  # fmt: skip
mathjax3_config = None
html_theme_options = {"sidebar_hide_name": False}
suppress_warnings = ["mystnb.unknown_mime_type"]


def _copy_sources() -> None:
    """Bring the notebooks and the reproduce figures into the source tree (generated, git-ignored)."""
    gallery = HERE / "gallery"
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = gallery / nb.name
        if not target.exists() or target.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target)
    figures = HERE / "_generated" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for png in sorted((ROOT / "figures").glob("*.png")):
        shutil.copyfile(png, figures / png.name)
    import jupyter_server_mathjax

    mathjax = HERE / "_generated" / "static" / "mathjax"
    if not (mathjax / "MathJax.js").exists():
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", mathjax, dirs_exist_ok=True)
    _thumbnails(gallery)
    results = (ROOT / "figures" / "results.md").read_text(encoding="utf-8")
    (HERE / "_generated" / "results_table.md").write_text(_narrow_table(results), encoding="utf-8")


def _thumbnails(gallery: Path) -> None:
    """``gallery/_grid.md`` (git-ignored): each notebook's title and its first plot as a thumbnail linking
    to the notebook's page, and a download link to the ``.ipynb``."""
    import base64
    import json

    thumbs = HERE / "_generated" / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    rows = ["| | notebook |", "|---|---|"]
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        title = next((c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                      for c in nb["cells"] if c["cell_type"] == "markdown"), nb_path.stem)  # fmt: skip
        title = title.strip().splitlines()[0].lstrip("# ").strip()
        png = next((o["data"]["image/png"] for c in nb["cells"] if c["cell_type"] == "code"
                    for o in c.get("outputs", []) if "image/png" in o.get("data", {})), None)  # fmt: skip
        cell = ""
        if png:
            (thumbs / f"{nb_path.stem}.png").write_bytes(base64.b64decode(png))
            cell = f"[![{title}](../_generated/thumbs/{nb_path.stem}.png)]({nb_path.stem}.ipynb)"
        rows.append(f"| {cell} | [{title}]({nb_path.stem}.ipynb) — {{download}}`{nb_path.name} <{nb_path.name}>` |")
    (gallery / "_grid.md").write_text("\n".join(rows) + "\n", encoding="utf-8")  # included by gallery/index.md


def _narrow_table(results: str) -> str:
    """``figures/results.md`` with the columns every row shares (setting, day, code) said once above."""
    lines = results.splitlines()
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| experiment")]
    cells = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in rows]
    if not cells or any(len(c) != 7 for c in cells):
        return "\n".join(ln for ln in lines if not ln.startswith("# ")) + "\n"
    shared = {name: {c[i][:10] if name == "date" else c[i] for c in cells}
              for i, name in ((4, "setting"), (5, "date"), (6, "code"))}  # fmt: skip
    if any(len(v) != 1 for v in shared.values()):
        return "\n".join(ln for ln in lines if not ln.startswith("# ")) + "\n"
    (setting,), (day,), (code,) = shared["setting"], shared["date"], shared["code"]
    out = [f"Every row: setting **{setting}**, made on {day} by code `{code}`.", "",
           "| experiment | verdict | check | detail |", "|---|---|---|---|"]  # fmt: skip
    out += [f"| {c[0]} | {c[1]} | {c[2]} | {c[3]} |" for c in cells]
    return "\n".join(out) + "\n"


#: Packages and modules whose ``__all__`` is the public API (tests/test_docs.py checks the same list).
API_MODULES = [
    ("qodasim", "Top level"),
    ("qodasim.levels", "Levels"),
    ("qodasim.rng", "Random keys"),
    ("qodasim.threads", "Threads"),
    ("qodasim.validate", "Argument checks"),
    ("qodasim.errors", "Exceptions"),
    ("qodasim.suite", "Conformance suites (the check_* runner)"),
    ("qodasim.quantize", "Quantize"),
    ("qodasim.quantize.check", "Quantizer checks (the check_* suite)"),
    ("qodasim.quantize.device", "Device-resident workers (GPU)"),
    ("qodasim.quantize.layers", "Layer layouts and named arrays"),
    ("qodasim.quantize.engine", "Engines (the declared interface and the registry)"),
    ("qodasim.coding", "Code"),
    ("qodasim.coding.check", "Codec checks (the check_* suite)"),
    ("qodasim.bounds", "Bounds"),
    ("qodasim.optimize", "Optimize levels"),
    ("qodasim.optimize.schemes", "Schemes at equal bits"),
    ("qodasim.vi", "Problems"),
    ("qodasim.vi.wgan", "A WGAN as a VI (jax)"),
    ("qodasim.vi.digitscore", "A calibrated measure for generated digits"),
    ("qodasim.vi.check", "Problem checks (the check_* suite)"),
    ("qodasim.solvers", "Solvers"),
    ("qodasim.solvers.check", "Step-rule and level-policy checks (the check_* suites)"),
    ("qodasim.solvers.mpi", "Real workers (MPI)"),
    ("qodasim.solvers.sra", "Scatter-reduce-allgather (SRA)"),
    ("qodasim.netlab", "Network lab (namespaces, shaped links)"),
    ("qodasim.netlab.model", "Network-time model"),
    ("qodasim.netlab.clock", "The model against the clock"),
    ("qodasim.solvers.runspec", "Run files"),
    ("qodasim.solvers.sweep", "Sweeps"),
    ("qodasim.experiments", "Experiments"),
    ("qodasim.experiments.budget", "Equal-budget comparisons"),
    ("qodasim.experiments.analyze", "Analyze your gradients"),
    ("qodasim.experiments.networks", "Real networks' layouts and magnitude families"),
    ("qodasim.torch", "PyTorch: DDP hook and gradient recorder"),
    ("qodasim.torch.sra", "PyTorch: the hook's scatter-reduce-allgather"),
]


def _write_api_pages() -> None:
    """One page per module listing every name of its ``__all__`` (autosummary makes a page each)."""
    import importlib

    api = HERE / "api"
    api.mkdir(exist_ok=True)
    index = ["API reference", "=============", "",
             "Every public object, by stage of the pipeline (levels → quantize → code → bound/optimize →",
             "solve → experiment).", "", ".. toctree::", "   :maxdepth: 1", ""]  # fmt: skip
    mods = {name: importlib.import_module(name) for name, _ in API_MODULES}
    home = {}  # an object re-exported by several modules is documented once, under the deepest one
    for modname in sorted(mods, key=lambda m: m.count(".")):
        for n in getattr(mods[modname], "__all__", []):
            if not n.startswith("__"):
                home[id(getattr(mods[modname], n))] = modname
    for modname, title in API_MODULES:
        mod = mods[modname]
        names = [n for n in getattr(mod, "__all__", []) if not n.startswith("__")]
        own = [n for n in names if home[id(getattr(mod, n))] == modname]
        lines = [f"{title} (``{modname}``)", "=" * (len(title) + len(modname) + 7), "",
                 f".. automodule:: {modname}", "   :no-members:", "", f".. currentmodule:: {modname}", ""]  # fmt: skip
        if own:
            lines += [".. autosummary::", "   :toctree: generated", ""] + [f"   {n}" for n in own] + [""]
        elsewhere = [n for n in names if n not in own]
        if elsewhere:
            lines += ["Also available here (documented where they are defined):", ""]
            lines += [f"* :py:obj:`{n} <{home[id(getattr(mod, n))]}.{n}>`" for n in elsewhere]
        text = "\n".join(lines) + "\n"
        page = api / f"{modname}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        index.append(f"   {modname}")
    text = "\n".join(index) + "\n"
    if not (api / "index.rst").exists() or (api / "index.rst").read_text() != text:
        (api / "index.rst").write_text(text)


def _resolve_alias(app, env, node, contnode):
    """Resolve ``qodasim.Quantizer`` (a re-export) or a short name like ``Quantizer.quantize`` to the
    one documented object it names; leave it unresolved (a nitpicky warning) when none or several."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    names = [name for name in domain.objects if name == target or name.endswith("." + target)]
    if target.startswith("qodasim.") and not names:  # qodasim.X.y -> <module of X>.X.y
        rest, depth = target.split(".", 1)[1], target.count(".")
        names = [name for name in domain.objects  # one or two module levels deeper: qodasim.pkg[.mod].X
                 if name.endswith("." + rest) and name.count(".") in (depth + 1, depth + 2)]  # fmt: skip
    if target.startswith("qodasim.") and not names:  # qodasim.pkg.X -> qodasim.pkg.<submodule>.X
        parts = target.split(".")
        for i in range(len(parts) - 1, 1, -1):
            head, tail = ".".join(parts[:i]), ".".join(parts[i:])
            names = [name for name in domain.objects if name.startswith(head + ".") and name.endswith("." + tail)]
            if names:
                break
    places = {(domain.objects[n].docname, domain.objects[n].node_id) for n in names}  # canonical + alias
    if len(places) != 1:
        return None
    from sphinx.util.nodes import make_refnode

    docname, node_id = places.pop()
    return make_refnode(app.builder, node["refdoc"], docname, node_id, contnode, names[0])


def setup(app):
    app.connect("missing-reference", _resolve_alias)


# Generated before Sphinx looks for source files (an event handler would run after that search).
_copy_sources()
_write_api_pages()
