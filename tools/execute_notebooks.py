"""Execute the notebooks of ``notebooks/`` in place, so that they are committed with their outputs
(a reader on a code host sees the printed numbers and the plots).

``python tools/execute_notebooks.py [NAME ...]`` runs each notebook top to bottom (nbclient, the
``python3`` kernel, working folder a scratch directory) and writes it back with its outputs and
without volatile metadata (execution timestamps, kernel versions).  ``tests/integration/test_notebooks.py``
re-executes every notebook and compares its text outputs with the committed ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(nb: nbformat.NotebookNode, cwd: str, timeout: int = 600) -> nbformat.NotebookNode:
    """``nb`` executed (a copy), outputs kept, volatile metadata removed."""
    nb = nbformat.from_dict(nb)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.execution_count = None
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = None
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebook file names (default: all)")
    args = p.parse_args(argv)
    paths = [NOTEBOOKS / n for n in args.names] if args.names else sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        with tempfile.TemporaryDirectory() as cwd:
            nb = execute(nbformat.read(path, as_version=4), cwd)
        nbformat.write(nb, path)
        print(f"executed {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
