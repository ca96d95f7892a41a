"""A consistent, publication-quality matplotlib style; figures saved as PNG and PDF.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so importing this module
never changes the caller's backend (a notebook keeps its inline plots) and needs no display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}
COLORS = ["#1b6ca8", "#d1495b", "#2e8b57", "#edae49", "#6a4c93", "#00798c", "#444444"]


def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6):
    """A figure of ``nrows × ncols`` panels, each ``width × height`` inches, in the qodasim style.

    The style is applied to matplotlib's global settings (the experiments draw right after)."""
    matplotlib.rcParams.update(STYLE)
    fig = Figure(figsize=(width * ncols, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save(fig, outdir: Path, name: str, caption: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` with the caption as the figure's suptitle-free footnote."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    fig.text(0.01, 0.005, caption, fontsize=6.5, color="#555555", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    paths = [outdir / f"{name}.png", outdir / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    return paths
