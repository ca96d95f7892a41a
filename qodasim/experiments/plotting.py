"""A consistent, publication-quality matplotlib style; figures saved as PNG and PDF.

:func:`save` lays a figure out so that it is fit for a paper: every legend sits where it covers no
plotted point (the first free corner of its panel, else outside the panel on the right), every text
lies inside the canvas (``tests/experiments/test_figures.py`` checks both on every committed figure), and the
caption goes into the files' metadata, not into the pixels (the README and the docs print it).

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot, so importing this module
never changes the caller's backend (a notebook keeps its inline plots) and needs no display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 200,  # = savefig.dpi: the layout is computed at the resolution the files are written
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


def image_grid(images, side: int, n: int = 4, pad: int = 1, fill: float = -1.0) -> np.ndarray:
    """The first ``n × n`` images (rows of ``side²`` pixels) on a grid with ``pad``-pixel gaps of value
    ``fill`` between and around them (tiles without gaps read as stripes)."""
    cell = side + pad
    out = np.full((n * cell + pad, n * cell + pad), float(fill))
    for i, img in enumerate(np.asarray(images)[: n * n]):
        r, c = divmod(i, n)
        out[pad + r * cell : pad + r * cell + side, pad + c * cell : pad + c * cell + side] = np.reshape(
            img, (side, side)
        )
    return out


#: Where :func:`place_legends` tries a legend, in order, before putting it outside the panel.
LEGEND_SPOTS = (
    "upper right",
    "upper left",
    "lower left",
    "lower right",
    "center right",
    "center left",
    "upper center",
    "lower center",
    "center",
)


def plotted_points(ax) -> np.ndarray:
    """Display coordinates of the labelled lines' vertices and the scatter points of ``ax``."""
    pts = []
    for line in ax.get_lines():
        if line.get_visible() and not line.get_label().startswith("_"):
            pts.append(line.get_transform().transform(np.column_stack(line.get_data()).astype(float)))
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            pts.append(coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float)))
    pts = [p for p in pts if p.size]
    out = np.concatenate(pts) if pts else np.empty((0, 2))
    return out[np.all(np.isfinite(out), axis=1)]


def _renderer(fig):
    """Draw ``fig`` (no pixels; an Agg canvas attached if it has none) and return its renderer."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def _inside(p: np.ndarray, box) -> bool:
    return bool(np.any((p[:, 0] > box.x0) & (p[:, 0] < box.x1) & (p[:, 1] > box.y0) & (p[:, 1] < box.y1)))


def place_legends(fig) -> None:
    """Move every axes legend to the first of :data:`LEGEND_SPOTS` where it covers no plotted point
    of its panel, else outside the panel's right edge; a legend its plot anchored itself stays.  One
    draw: each spot's box is the legend's box anchored at that spot, as matplotlib anchors it."""
    from matplotlib.legend import Legend
    from matplotlib.transforms import Bbox

    renderer = _renderer(fig)
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None or (leg._bbox_to_anchor is not None and not getattr(leg, "_moved_out", False)):
            continue  # no legend, or one its plot placed itself
        leg.set_bbox_to_anchor(None)  # anchored at the panel again (a previous pass may have moved it out)
        size = leg.get_window_extent(renderer)  # its size does not depend on where it is
        pts = plotted_points(ax)
        for spot in LEGEND_SPOTS:
            x0, y0 = leg._get_anchored_bbox(Legend.codes[spot], Bbox.from_bounds(0, 0, size.width, size.height),
                                            leg.get_bbox_to_anchor(), renderer)  # fmt: skip
            if not _inside(pts, Bbox.from_bounds(x0, y0, size.width, size.height)):
                leg.set_loc(spot)
                break
        else:
            leg.set_loc("upper left")
            leg.set_bbox_to_anchor((1.02, 1.0), transform=ax.transAxes)
            leg._moved_out = True


def any_legend_covers(fig) -> bool:
    """Whether some axes legend covers a plotted point of its panel (as drawn now)."""
    renderer = _renderer(fig)
    return any(_inside(plotted_points(ax), ax.get_legend().get_window_extent(renderer))
               for ax in fig.axes if ax.get_legend() is not None)  # fmt: skip


def fits(fig) -> bool:
    """Whether everything drawn (texts, legends, tick labels) lies inside the canvas."""
    box = fig.get_tightbbox(_renderer(fig))  # inches
    w, h = fig.get_size_inches()
    return box.x0 >= -0.01 and box.y0 >= -0.01 and box.x1 <= w + 0.01 and box.y1 <= h + 0.01


def merge_legends(fig) -> list:
    """Panels whose legends list the same entries share one figure legend below the panels (one per
    group of equal legends, stacked); returns the figure legends made."""
    groups: dict[tuple, list] = {}
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None and leg._bbox_to_anchor is None:
            groups.setdefault(tuple(t.get_text() for t in leg.get_texts()), []).append(ax)
    made = []
    for labels, axs in groups.items():
        if len(axs) < 2:
            continue
        first = axs[0].get_legend()
        handles, size = first.legend_handles, first.get_texts()[0].get_fontsize()
        for ax in axs:
            ax.get_legend().remove()
        made.append(fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3),
                               fontsize=max(size, 6.5), frameon=False))  # fmt: skip
    return made


def _stack_below(fig, legends) -> float:
    """Stack the figure ``legends`` from the bottom edge up; returns the height they take (fraction)."""
    if not legends:
        return 0.0
    renderer = _renderer(fig)
    y = 0.005
    for leg in legends:
        leg.set_bbox_to_anchor((0.5, y), transform=fig.transFigure)
        y += leg.get_window_extent(renderer).height / fig.bbox.height + 0.005
    return y


def layout(fig, max_widen: int = 8) -> None:
    """Fit the panels to the canvas with the legends off the data: equal legends merged below the
    panels (:func:`merge_legends`), the others in a free corner of their panel (:func:`place_legends`);
    where a legend had to leave its panel and the panels no longer fit, widen the canvas by 12% a step."""
    import warnings

    shared = merge_legends(fig)
    for _ in range(max_widen + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "tight_layout not applied": widened below
            bottom = _stack_below(fig, shared)
            fig.tight_layout(rect=(0, bottom, 1, 1))
            place_legends(fig)
            fig.tight_layout(rect=(0, bottom, 1, 1))
        fit = fits(fig)
        if fit and not any_legend_covers(fig):
            return
        if not fit:
            w, h = fig.get_size_inches()
            fig.set_size_inches(w * 1.12, h)


def save(fig, outdir: Path, name: str, caption: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` laid out by :func:`layout`, ``caption`` in the files'
    metadata (PNG ``Description``, PDF ``Subject``)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    layout(fig)
    paths = [outdir / f"{name}.png", outdir / f"{name}.pdf"]
    for p in paths:
        meta = {"CreationDate": None, "Subject": caption} if p.suffix == ".pdf" else {"Description": caption}
        fig.savefig(p, metadata=meta)
    return paths
