"""Every committed figure, redrawn from its committed result file, is fit for a paper: no text falls
outside the canvas, and no legend covers a plotted point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.text import Text

from qodasim import experiments
from qodasim.experiments.base import Result

RESULTS = Path(__file__).resolve().parents[2] / "figures" / "results"
NAMES = sorted(p.stem for p in RESULTS.glob("*.json") if p.stem in experiments.REGISTRY)


def text_outside(fig: Figure, tol: float = 1.0) -> list[str]:
    """The visible, non-empty texts whose drawn box leaves the canvas (``tol`` pixels of slack)."""
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    tick_labels, drawn = set(), set()
    for ax in fig.axes:
        for axis in ax._axis_map.values():
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels.update((id(tick.label1), id(tick.label2)))
            for tick in axis._update_ticks():  # the ticks matplotlib draws: inside the view interval
                drawn.update((id(tick.label1), id(tick.label2)))
    bad = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or not t.get_figure():
            continue
        if id(t) in tick_labels and id(t) not in drawn:
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        box = t.get_window_extent(renderer)
        if box.x0 < -tol or box.y0 < -tol or box.x1 > W + tol or box.y1 > H + tol:
            bad.append(f"{t.get_text()[:40]!r} at ({box.x0:.0f}, {box.y0:.0f})–({box.x1:.0f}, {box.y1:.0f}) "
                       f"outside {W:.0f}×{H:.0f}")  # fmt: skip
    return bad


def _points(ax) -> np.ndarray:
    """Display coordinates of every plotted point of ``ax`` (line vertices and scatter offsets)."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible() or line.get_label().startswith("_"):
            continue
        xy = np.column_stack(line.get_data()).astype(float)
        pts.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and coll.get_visible():
            pts.append(coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float)))
    pts = [p for p in pts if p.size]
    return np.concatenate(pts) if pts else np.empty((0, 2))


def legends_on_points(fig: Figure) -> list[str]:
    """Legends whose box contains a plotted point of their axes."""
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    bad = []
    for i, ax in enumerate(fig.axes):
        leg = ax.get_legend()
        if leg is None or not leg.get_visible():
            continue
        box = leg.get_window_extent(renderer)
        pts = _points(ax)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
        if inside.any():
            bad.append(f"panel {i} ({ax.get_title()[:30]!r}): legend covers {int(inside.sum())} point(s)")
    return bad


def _draw(name: str, tmp_path, monkeypatch) -> list[Figure]:
    figures = []

    def spy(self, *args, **kwargs):  # keep the figure, write nothing
        if self not in figures:
            figures.append(self)

    monkeypatch.setattr(Figure, "savefig", spy)
    experiments.get(name).plot(Result.load(RESULTS / f"{name}.json"), tmp_path)
    assert figures, f"{name}: plot saved no figure"
    return figures


@pytest.mark.parametrize("name", NAMES)
def test_committed_figures_keep_text_on_the_canvas_and_legends_off_the_points(name, tmp_path, monkeypatch):
    for fig in _draw(name, tmp_path, monkeypatch):
        assert not text_outside(fig), text_outside(fig)
        assert not legends_on_points(fig), legends_on_points(fig)


def test_the_checks_see_clipped_text_and_a_covered_point():
    """The two checks themselves: a title pushed off the canvas and a legend over a point are found."""
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "o-", label="a line")
    ax.set_title("a title far above", y=1.6)
    assert any("a title far above" in s for s in text_outside(fig))
    ax.legend(loc="center", bbox_to_anchor=(0.5, 0.5), bbox_transform=ax.transAxes)
    ax.plot([0.5], [0.5], "s", label="a point under the legend")
    ax.legend(loc="center")
    assert legends_on_points(fig)
    fig2 = Figure(figsize=(3, 2))
    ax2 = fig2.subplots()
    ax2.plot([0, 1], [0, 1], "o-", label="a line")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig2.tight_layout()
    assert not legends_on_points(fig2)


def test_the_speedup_figure_with_a_network_lab_panel_keeps_its_text_on_the_canvas(tmp_path, monkeypatch):
    """The full setting adds measured lab times as a fourth panel (not in the committed quick figure)."""
    result = Result.load(RESULTS / "speedup.json")
    modes = ("allreduce", "allgather", "sra", "qgenx-allgather", "qgenx-sra")
    result.data["lab"] = {"runs": [{"K": K, "rate_gbit": 1.0, "modes": {m: {"measured": 0.1 * (i + 1) * K,
                                                                           "modelled": 0.09 * (i + 1) * K}
                                                                       for i, m in enumerate(modes)}}
                                   for K in (2, 4)]}  # fmt: skip
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self) if self not in figures else None)
    experiments.get("speedup").plot(result, tmp_path)
    (fig,) = figures
    assert len(fig.axes) == 4 and fig.axes[3].get_ylabel() == "seconds per iteration"
    assert not text_outside(fig), text_outside(fig)
    assert not legends_on_points(fig), legends_on_points(fig)
